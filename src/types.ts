/**
 * The shapes every provider shares: per-call options and the `CacheBackend` interface that the
 * facade drives.
 *
 * @module
 */

import type { CacheEventListener, CacheStats } from "./stats.ts";

/**
 * Options of a call that addresses one scope.
 *
 * @example Tenant and global scopes
 * ```ts
 * import { type EntryOptions, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * const acme: EntryOptions = { companyId: "acme" };
 * await cache.set("settings", { theme: "dark" }, acme);
 * assert.deepEqual(await cache.get("settings", acme), { theme: "dark" });
 * assert.equal(await cache.get("settings"), null); // the global scope is another entry
 * // An integer tenant id is the same tenant as its decimal string.
 * await cache.set("plan", "pro", { companyId: 42 });
 * assert.equal(await cache.get("plan", { companyId: "42" }), "pro");
 * ```
 */
export interface EntryOptions {
  /**
   * The tenant the entry belongs to: a non-empty string, or an integer (`0` is tenant `"0"`).
   * Omit it for the global scope.
   *
   * @default {undefined}
   */
  companyId?: string | number;
}

/**
 * Options of a write.
 *
 * @example A short TTL and no expiry
 * ```ts
 * import { MemoryCache, type SetOptions } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache({ ttl: 3600 });
 * const brief: SetOptions = { companyId: "acme", ttl: 0.05 };
 * await cache.set("otp", "123456", brief);
 * await cache.set("logo", "logo.png", { companyId: "acme", ttl: null }); // never expires
 * await new Promise((resolve) => setTimeout(resolve, 100));
 * assert.equal(await cache.get("otp", { companyId: "acme" }), null);
 * assert.equal(await cache.get("logo", { companyId: "acme" }), "logo.png");
 * ```
 */
export interface SetOptions extends EntryOptions {
  /**
   * Seconds until the entry expires (fractions allowed); `null` stores without expiry.
   *
   * @default {the cache's default TTL}
   */
  ttl?: number | null;
  /**
   * Tags the entry carries, so that `invalidateTags` / `cacheInvalidateTags` can delete every
   * entry of the scope carrying one of them: at most 64 non-empty strings of at most 1,024 UTF-8
   * bytes each (anything else is a `CacheInputError`, and nothing is written). Omitted or empty:
   * an untagged entry.
   *
   * @default {undefined}
   */
  tags?: readonly string[];
}

/**
 * Options of `getOrSet` / `cacheGetOrSet`.
 *
 * @example Serving a stale value while one refresh runs
 * ```ts
 * import { type GetOrSetOptions, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * const options: GetOrSetOptions = {
 *   companyId: "acme",
 *   ttl: 0.05,
 *   staleWhileRevalidate: 60,
 *   lockTimeout: 5,
 * };
 * let version = 0;
 * const loadRates = () => ++version;
 * assert.equal(await cache.getOrSet("rates", loadRates, options), 1);
 * await new Promise((resolve) => setTimeout(resolve, 100)); // past the TTL, in the stale window
 * assert.equal(await cache.getOrSet("rates", loadRates, options), 1); // stale; refresh started
 * await new Promise((resolve) => setTimeout(resolve, 20));
 * assert.equal(await cache.getOrSet("rates", loadRates, options), 2);
 * assert.equal(cache.stats().staleHits, 1);
 * ```
 */
export interface GetOrSetOptions extends SetOptions {
  /**
   * Seconds one process may hold the key's lock while it computes; others wait for its value at
   * most this long, then compute themselves. Set it above your slowest `compute()`.
   *
   * @default {10}
   */
  lockTimeout?: number;
  /**
   * Seconds after the TTL during which the stale value is still served while one background
   * refresh runs; `0` or omitted turns it off. The entry's server TTL is `ttl + staleWhileRevalidate`,
   * so a plain `get` also sees the value during that window.
   *
   * @default {0}
   */
  staleWhileRevalidate?: number;
}

/**
 * Produces the value `getOrSet` stores on a miss: any JSON-serializable value, or a promise of one.
 *
 * @example A synchronous and an asynchronous compute
 * ```ts
 * import { type Compute, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * const fromConfig: Compute<number> = () => 30;
 * const fromDatabase: Compute<{ name: string }> = async () => ({ name: "Acme Inc." });
 * assert.equal(await cache.getOrSet("timeout", fromConfig), 30);
 * assert.deepEqual(await cache.getOrSet({ company: "acme" }, fromDatabase), { name: "Acme Inc." });
 * // On a hit, the compute is not called.
 * const failing: Compute<number> = () => {
 *   throw new Error("not called on a hit");
 * };
 * assert.equal(await cache.getOrSet("timeout", failing), 30);
 * ```
 */
export type Compute<T> = () => T | Promise<T>;

/**
 * Options of a provider's clear (`clearCompany`, `clearGlobal`, `clearAll`).
 *
 * @example Watching a clear's progress
 * ```ts
 * import { type ClearOptions, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * await cache.set("k", 1, { companyId: "acme" });
 * const seen: number[] = [];
 * const options: ClearOptions = { onProgress: (deleted) => seen.push(deleted) };
 * // RedisCache / ValkeyCache call onProgress after every batch; MemoryCache clears in one step.
 * assert.equal(await cache.clearCompany("acme", options), 1);
 * assert.ok(seen.every((deleted) => deleted <= 1));
 * ```
 */
export interface ClearOptions {
  /**
   * Called after each batch a clear deletes, with the number of keys deleted so far, so a long
   * clear can show progress. Errors it throws are ignored. `MemoryCache` clears in one step and
   * does not call it.
   *
   * @default {undefined}
   */
  onProgress?: (deleted: number) => void;
}

/**
 * Options of `invalidateTags` / `cacheInvalidateTags`: the scope, and a progress callback.
 *
 * @example Invalidating a tag of one tenant
 * ```ts
 * import { type InvalidateTagsOptions, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * await cache.set("orders", [1, 2], { companyId: "acme", tags: ["user:42"] });
 * await cache.set("orders", [3], { companyId: "globex", tags: ["user:42"] });
 * const options: InvalidateTagsOptions = { companyId: "acme" };
 * assert.equal(await cache.invalidateTags(["user:42"], options), 1);
 * assert.deepEqual(await cache.get("orders", { companyId: "globex" }), [3]);
 * ```
 */
export interface InvalidateTagsOptions extends EntryOptions, ClearOptions {}

/**
 * What every provider (`RedisCache`, `ValkeyCache`, `MemoryCache`) offers; the facade functions
 * call the installed one.
 *
 * @example Using a provider directly
 * ```ts
 * import { type CacheBackend, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache: CacheBackend = new MemoryCache();
 * await cache.set({ q: 1 }, "v", { companyId: "acme" });
 * assert.equal(await cache.get({ q: 1 }, { companyId: "acme" }), "v");
 * assert.equal(await cache.get({ q: 1 }), null);
 * ```
 */
export interface CacheBackend {
  /** The cache's name, the `<name>` part of every key. */
  readonly name: string;
  /** The key prefix, used exactly as configured. */
  readonly prefix: string;
  /** Connects, pings and loads the scripts; `false` when the server cannot be reached. */
  connect(): Promise<boolean>;
  /** `true` when the server answers PING within the timeout. */
  healthCheck(): Promise<boolean>;
  /** Closes every connection. */
  close(): Promise<void>;
  /** The cached value, or `null` on a miss or a server fault. */
  get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null>;
  /** Stores a value and registers its key in its scope; `false` on a server fault. */
  set(input: unknown, value: unknown, options?: SetOptions): Promise<boolean>;
  /** Deletes one entry; `true` when it existed. */
  delete(input: unknown, options?: EntryOptions): Promise<boolean>;
  /** `true` when the entry exists. */
  exists(input: unknown, options?: EntryOptions): Promise<boolean>;
  /** The values of several entries of one scope, in input order, `null` for each miss. */
  getMany<T = unknown>(inputs: Iterable<unknown>, options?: EntryOptions): Promise<(T | null)[]>;
  /** Stores several entries of one scope, each batch atomically. */
  setMany(
    entries: Iterable<readonly [unknown, unknown]>,
    options?: SetOptions,
  ): Promise<boolean>;
  /** Deletes every entry of one tenant; returns how many keys were deleted. */
  clearCompany(companyId: string | number, options?: ClearOptions): Promise<number>;
  /** Deletes every entry stored without a tenant; returns how many keys were deleted. */
  clearGlobal(options?: ClearOptions): Promise<number>;
  /** Deletes every entry of every scope under this prefix; returns how many keys were deleted. */
  clearAll(options?: ClearOptions): Promise<number>;
  /**
   * Deletes every entry of one scope carrying any of `tags`; returns how many keys were deleted
   * (an entry carrying several of them counts once).
   */
  invalidateTags(tags: readonly string[], options?: InvalidateTagsOptions): Promise<number>;
  /** Removes registry and tag set members whose key has expired; returns how many were removed. */
  pruneRegistries(): Promise<number>;
  /**
   * The cached value, or runs `compute()` once (per key, across callers and processes), stores
   * its result unless a clear ran meanwhile, and returns it. Never throws for a server fault;
   * an error thrown by `compute()` reaches the caller and nothing is stored.
   */
  getOrSet<T>(input: unknown, compute: Compute<T>, options?: GetOrSetOptions): Promise<T>;
  /** Counters and latency percentiles since the provider was created. */
  stats(): CacheStats;
  /** Adds an event listener; returns the function that removes it. */
  subscribe(listener: CacheEventListener): () => void;
}
