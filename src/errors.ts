/**
 * The error classes a caller may catch. Every message says what was wrong and how to fix it.
 *
 * @module
 */

/**
 * Base class of every error this library throws on purpose.
 *
 * @example Catching any cache error
 * ```ts
 * import { CacheError, CacheInputError } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * assert.ok(new CacheInputError("Bad input") instanceof CacheError);
 * ```
 */
export class CacheError extends Error {
  /**
   * Creates the error.
   *
   * @param message What went wrong and what to do about it.
   * @param options Standard error options; `cause` is kept.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CacheError";
  }
}

/**
 * A key input, tenant id, TTL or value that the cache cannot accept. Thrown before anything is
 * sent to the server, so nothing is written.
 *
 * Among them: a key input JSON cannot carry (`undefined`, a function, a `Map`, `NaN`, ...) or
 * nested more than 1,000 levels deep (`MAX_NESTING_DEPTH`; the message names the path, such as
 * `input.a[2]`), and a TTL that is not a positive number of seconds up to 9,007,199,254,740
 * (about 285,000 years, `MAX_TTL_SECONDS`: the servers count expiry in 64-bit milliseconds).
 *
 * @example Rejecting an empty tenant id
 * ```ts
 * import { CacheInputError, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * await assert.rejects(() => cache.set("k", 1, { companyId: "" }), CacheInputError);
 * ```
 */
export class CacheInputError extends CacheError {
  /**
   * Creates the error.
   *
   * @param message What was wrong with the input and how to fix it.
   * @param options Standard error options; `cause` is kept.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CacheInputError";
  }
}

/**
 * A value that JSON cannot carry faithfully, so it would not read back as it was stored:
 * `undefined` (also as a property or an array entry), functions, symbols, BigInt, `NaN` /
 * `Infinity`, circular references, objects other than arrays and plain objects without a
 * `toJSON` method (`Map`, `Set`, typed arrays, `RegExp`, `Error`, boxed primitives, class
 * instances), also inside what a `toJSON` returns; a value nested more than 1,000 levels deep;
 * or a value whose JSON exceeds the configured maximum size. The message names what was refused
 * and where, such as `value.items[3].when`. A subclass of `CacheInputError`.
 *
 * @example Rejecting a circular value
 * ```ts
 * import { CacheSerializationError, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const loop: Record<string, unknown> = {};
 * loop.self = loop;
 * await assert.rejects(() => new MemoryCache().set("k", loop), CacheSerializationError);
 * ```
 */
export class CacheSerializationError extends CacheInputError {
  /**
   * Creates the error.
   *
   * @param message What could not be serialized and how to fix it.
   * @param options Standard error options; `cause` is kept.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CacheSerializationError";
  }
}

/**
 * A configuration that cannot work: a malformed environment variable (named in the message), an
 * unknown backend, or a bad option.
 *
 * @example Rejecting a malformed port
 * ```ts
 * import { CacheConfigError, RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => RedisConfig.fromEnv({ REDIS_PORT: "abc" }), CacheConfigError);
 * ```
 */
export class CacheConfigError extends CacheError {
  /**
   * Creates the error.
   *
   * @param message Which setting was wrong and what values it accepts.
   * @param options Standard error options; `cause` is kept.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CacheConfigError";
  }
}

/**
 * The client library a provider needs (`ioredis` or `iovalkey`) cannot be loaded.
 *
 * @example Recognising a missing client library
 * ```ts
 * import { CacheDependencyError } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const error = new CacheDependencyError("Cannot load ioredis: run `npm install ioredis`");
 * assert.match(error.message, /npm install ioredis/);
 * ```
 */
export class CacheDependencyError extends CacheError {
  /**
   * Creates the error.
   *
   * @param message Which package is missing and how to install it.
   * @param options Standard error options; `cause` is kept.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CacheDependencyError";
  }
}
