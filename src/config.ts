/**
 * The config classes of the Redis and Valkey providers, `RedisConfig` and `ValkeyConfig`:
 * construction from options (an explicit option wins over `url`'s part, which wins over the
 * default), `fromEnv`, and the redacted views (`toJSON`, `toString`, inspect).
 *
 * The environment and URL parsing live in src/config_env.ts and the per-field checks in
 * src/config_fields.ts; what other modules import from here is re-exported below, so importers
 * name this one module. Every malformed value is a `CacheConfigError` that names the option or
 * variable, the value it got (never a password) and the form it accepts.
 *
 * @module
 */

import { parseConnectionUrl, resolveEnv, URL_FIELDS, type UrlParts } from "./config_env.ts";
import {
  checkField,
  clusterMode,
  DEFAULTS,
  type FieldName,
  invalid,
  type RedisConfigOptions,
  showOption,
  urlHost,
} from "./config_fields.ts";
import { type EnvRecord, readEnv } from "./runtime.ts";

export { type BackendName, hasValkeyEnv, readBackendSettings } from "./config_env.ts";
export { type RedisConfigOptions, urlHost } from "./config_fields.ts";

const HIDDEN = "***";
/**
 * Where and how to reach a Redis server, with the defaults of the original library. Validated on
 * construction; every field is readonly. The password is kept out of `toString()`, `JSON.stringify` and
 * inspection (shown as `***`).
 *
 * @example Defaults, a URL and a hidden password
 * ```ts
 * import { RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const config = new RedisConfig({ url: "rediss://app:s%40cret@db.example.com:6380/2" });
 * assert.equal(config.host, "db.example.com");
 * assert.equal(config.tls, true);
 * assert.equal(config.password, "s@cret");
 * assert.equal(config.ttl, 3600);
 * assert.ok(!JSON.stringify(config).includes("s@cret"));
 * ```
 *
 * @example Cluster mode from seeds
 * ```ts
 * import { RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const config = RedisConfig.fromEnv({ REDIS_CLUSTER_NODES: "10.0.0.1:7000,10.0.0.2:7000" });
 * assert.equal(config.mode, "cluster");
 * assert.deepEqual(config.clusterNodes, ["10.0.0.1:7000", "10.0.0.2:7000"]);
 * assert.equal(config.clusterGlobalBuckets, 16);
 * ```
 */
export class RedisConfig {
  /** Server host name or IP address. */
  readonly host: string;
  /** Server TCP port. */
  readonly port: number;
  /** Database index. */
  readonly db: number;
  /** `"cluster"` for Redis Cluster / Valkey Cluster, else `"standalone"`. */
  readonly mode: "standalone" | "cluster";
  /** Cluster seeds as `host:port` (in cluster mode; `[host:port]` when none was given). */
  readonly clusterNodes: readonly string[];
  /** Cluster mode: buckets per tenant. */
  readonly clusterTenantBuckets: number;
  /** Cluster mode: buckets of the global scope. */
  readonly clusterGlobalBuckets: number;
  /** ACL user name, or `undefined` for the default user. */
  readonly username: string | undefined;
  /** Upper bound on the number of connections a provider opens. */
  readonly maxConnections: number;
  /** Whether a command that timed out is retried once. */
  readonly retryOnTimeout: boolean;
  /** Seconds a connect or a command may take. */
  readonly timeout: number;
  /** Default entry TTL in seconds; `null` means no expiry. */
  readonly ttl: number | null;
  /** Prefix of every key this library writes. */
  readonly prefix: string;
  /** Whether to connect over TLS. */
  readonly tls: boolean;
  /** Path to a CA certificate file for TLS, or `undefined`. */
  readonly tlsCa: string | undefined;
  /** The largest value, in UTF-8 bytes of its JSON, that a write accepts. */
  readonly maxValueBytes: number;
  /** Whether each target has a circuit breaker. */
  readonly circuitBreaker: boolean;
  /** Connection faults in a row that open a circuit breaker. */
  readonly circuitBreakerThreshold: number;
  /** Seconds between the PINGs that probe an open breaker's target. */
  readonly circuitBreakerProbeInterval: number;
  /** Whether the providers keep a near cache (a provider's `nearCache` option wins). */
  readonly nearCache: boolean;
  /** The most entries a near cache holds. */
  readonly nearCacheMaxEntries: number;
  /** The most bytes of value JSON text a near cache holds. */
  readonly nearCacheMaxBytes: number;
  /** Seconds a near cache may serve a changed value while its invalidation stream is cut. */
  readonly nearCacheMaxStaleness: number;
  readonly #password: string | undefined;

  /**
   * Builds and validates a config.
   *
   * @param options Explicit settings; each wins over the matching part of `options.url`, which
   * wins over the default. See `RedisConfigOptions`.
   * @throws {CacheConfigError} When an option is malformed (the message names the option and the
   * accepted values).
   */
  constructor(options: RedisConfigOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw invalid(
        "RedisConfig options",
        `a value of type ${options === null ? "null" : typeof options}`,
        "an object such as { host, port, db, ttl }",
      );
    }
    const url = options.url === undefined ? undefined : parseConnectionUrl(options.url, "url");
    const pick = <F extends FieldName>(field: F, fallback: unknown): unknown => {
      const value = options[field];
      if (value !== undefined) {
        return checkField(field, value, `option "${field}"`, showOption(field, value));
      }
      if (url && URL_FIELDS.has(field)) return url[field as keyof UrlParts];
      return fallback;
    };
    this.host = pick("host", DEFAULTS.host) as string;
    this.port = pick("port", DEFAULTS.port) as number;
    this.db = pick("db", DEFAULTS.db) as number;
    const seeds = pick("clusterNodes", undefined) as readonly string[] | undefined;
    this.mode = clusterMode(options.mode, seeds, this.db, pick("prefix", DEFAULTS.prefix));
    this.clusterNodes = this.mode === "cluster"
      ? seeds ?? Object.freeze([`${urlHost(this.host)}:${this.port}`])
      : Object.freeze([]);
    this.clusterTenantBuckets = pick(
      "clusterTenantBuckets",
      DEFAULTS.clusterTenantBuckets,
    ) as number;
    this.clusterGlobalBuckets = pick(
      "clusterGlobalBuckets",
      DEFAULTS.clusterGlobalBuckets,
    ) as number;
    this.username = pick("username", undefined) as string | undefined;
    this.#password = pick("password", undefined) as string | undefined;
    this.maxConnections = pick("maxConnections", DEFAULTS.maxConnections) as number;
    this.retryOnTimeout = pick("retryOnTimeout", DEFAULTS.retryOnTimeout) as boolean;
    this.timeout = pick("timeout", DEFAULTS.timeout) as number;
    this.ttl = pick("ttl", DEFAULTS.ttl) as number | null;
    this.prefix = pick("prefix", DEFAULTS.prefix) as string;
    this.tls = pick("tls", DEFAULTS.tls) as boolean;
    this.tlsCa = pick("tlsCa", undefined) as string | undefined;
    this.maxValueBytes = pick("maxValueBytes", DEFAULTS.maxValueBytes) as number;
    this.circuitBreaker = pick("circuitBreaker", DEFAULTS.circuitBreaker) as boolean;
    this.circuitBreakerThreshold = pick(
      "circuitBreakerThreshold",
      DEFAULTS.circuitBreakerThreshold,
    ) as number;
    this.circuitBreakerProbeInterval = pick(
      "circuitBreakerProbeInterval",
      DEFAULTS.circuitBreakerProbeInterval,
    ) as number;
    this.nearCache = pick("nearCache", DEFAULTS.nearCache) as boolean;
    this.nearCacheMaxEntries = pick("nearCacheMaxEntries", DEFAULTS.nearCacheMaxEntries) as number;
    this.nearCacheMaxBytes = pick("nearCacheMaxBytes", DEFAULTS.nearCacheMaxBytes) as number;
    this.nearCacheMaxStaleness = pick(
      "nearCacheMaxStaleness",
      DEFAULTS.nearCacheMaxStaleness,
    ) as number;
  }

  /**
   * The password, or `undefined`. A getter over a private field, so it never shows up when the
   * config is enumerated, spread, serialized or inspected.
   *
   * @example Reading the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = new RedisConfig({ password: "hunter2" });
   * assert.equal(config.password, "hunter2");
   * assert.ok(!Object.keys(config).includes("password"));
   * ```
   */
  get password(): string | undefined {
    return this.#password;
  }

  /**
   * Reads the config from `REDIS_*` variables and `REDIS_URL`. An explicit variable wins over the
   * URL's part, which wins over the default; empty variables count as unset. Integers may carry
   * surrounding spaces and a trailing `# comment`; booleans accept true/false, 1/0, yes/no,
   * on/off in any case; `REDIS_CACHE_TTL` accepts `none` / `null` for no expiry.
   *
   * Variables: `REDIS_HOST`, `REDIS_PORT`, `REDIS_DB`, `REDIS_USERNAME`, `REDIS_PASSWORD`,
   * `REDIS_MAX_CONNECTIONS`, `REDIS_RETRY_ON_TIMEOUT`, `REDIS_TIMEOUT`, `REDIS_CACHE_TTL`,
   * `REDIS_PREFIX`, `REDIS_TLS`, `REDIS_TLS_CA`, `REDIS_MAX_VALUE_BYTES`, `REDIS_URL`, and the
   * circuit breaker's `REDIS_CIRCUIT_BREAKER` (true), `REDIS_CIRCUIT_BREAKER_THRESHOLD` (3),
   * `REDIS_CIRCUIT_BREAKER_PROBE_INTERVAL` (seconds, 0.1).
   * The near cache's variables have no `REDIS_` prefix (`ValkeyConfig.fromEnv` reads the same
   * ones): `CACHE_NEAR_CACHE` (false), `CACHE_NEAR_CACHE_MAX_ENTRIES` (10000),
   * `CACHE_NEAR_CACHE_MAX_BYTES` (67108864), `CACHE_NEAR_CACHE_MAX_STALENESS` (seconds, 1).
   * Cluster mode: `REDIS_CLUSTER_NODES` (comma-separated `host:port` seeds; setting it selects
   * cluster mode), `REDIS_CLUSTER_TENANT_BUCKETS` (1), `REDIS_CLUSTER_GLOBAL_BUCKETS` (16).
   *
   * @example Reading an explicit environment
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = RedisConfig.fromEnv({
   *   REDIS_URL: "redis://cache.internal:6380/1",
   *   REDIS_PORT: "6381 # replica",
   *   REDIS_CACHE_TTL: "none",
   *   CACHE_NEAR_CACHE: "yes",
   * });
   * assert.equal(config.host, "cache.internal");
   * assert.equal(config.port, 6381);
   * assert.equal(config.db, 1);
   * assert.equal(config.ttl, null);
   * assert.equal(config.nearCache, true);
   * assert.equal(config.nearCacheMaxEntries, 10000);
   * ```
   *
   * @param env The variables to read; defaults to the process environment.
   * @returns The validated config.
   * @throws {CacheConfigError} When a variable is malformed (the message names it).
   */
  static fromEnv(env: EnvRecord = readEnv()): RedisConfig {
    return new RedisConfig(resolveEnv(env, ["REDIS"]));
  }

  /**
   * A plain view of the config for `JSON.stringify`, with the password replaced by `"***"` when
   * one is set.
   *
   * @example Serializing without the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const json = JSON.parse(JSON.stringify(new RedisConfig({ password: "hunter2" })));
   * assert.equal(json.password, "***");
   * assert.equal(json.port, 6379);
   * ```
   *
   * @returns Every field (the cluster fields in cluster mode only); `password` is `"***"` or
   * `undefined`.
   */
  toJSON(): Omit<RedisConfigOptions, "url"> {
    return {
      host: this.host,
      port: this.port,
      db: this.db,
      ...(this.mode === "cluster"
        ? {
          mode: this.mode,
          clusterNodes: [...this.clusterNodes],
          clusterTenantBuckets: this.clusterTenantBuckets,
          clusterGlobalBuckets: this.clusterGlobalBuckets,
        }
        : {}),
      username: this.username,
      password: this.#password === undefined ? undefined : HIDDEN,
      maxConnections: this.maxConnections,
      retryOnTimeout: this.retryOnTimeout,
      timeout: this.timeout,
      ttl: this.ttl,
      prefix: this.prefix,
      tls: this.tls,
      tlsCa: this.tlsCa,
      maxValueBytes: this.maxValueBytes,
      circuitBreaker: this.circuitBreaker,
      circuitBreakerThreshold: this.circuitBreakerThreshold,
      circuitBreakerProbeInterval: this.circuitBreakerProbeInterval,
      nearCache: this.nearCache,
      nearCacheMaxEntries: this.nearCacheMaxEntries,
      nearCacheMaxBytes: this.nearCacheMaxBytes,
      nearCacheMaxStaleness: this.nearCacheMaxStaleness,
    };
  }

  /**
   * A one-line description, the endpoint as a URL with the password shown as `***`.
   *
   * @example Describing a config
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = new RedisConfig({ username: "app", password: "hunter2", db: 2 });
   * assert.equal(String(config), "RedisConfig(redis://app:***@localhost:6379/2)");
   * ```
   *
   * @returns `RedisConfig(redis://[user[:***]@]host:port/db)` (`ValkeyConfig(...)` for a
   * `ValkeyConfig`, `rediss://` with TLS).
   */
  toString(): string {
    const user = this.username === undefined ? "" : encodeURIComponent(this.username);
    const auth = this.#password === undefined ? (user ? `${user}@` : "") : `${user}:${HIDDEN}@`;
    const scheme = this.tls ? "rediss" : "redis";
    if (this.mode === "cluster") {
      return `${this.#className()}(${scheme}://${auth}${this.clusterNodes.join(",")} cluster)`;
    }
    return `${this.#className()}(${scheme}://${auth}${urlHost(this.host)}:${this.port}/${this.db})`;
  }

  /**
   * Deno's inspect hook (`console.log`, `Deno.inspect`): the redacted view of `toJSON()`.
   *
   * @example Inspecting without the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const shown = Deno.inspect(new RedisConfig({ password: "hunter2" }));
   * assert.ok(shown.includes("***"));
   * assert.ok(!shown.includes("hunter2"));
   * ```
   *
   * @param inspect The runtime's inspect function.
   * @param options The inspect options, passed through.
   * @returns The class name followed by the inspected redacted view.
   */
  [Symbol.for("Deno.customInspect")](
    inspect: (value: unknown, options?: unknown) => string,
    options?: unknown,
  ): string {
    return `${this.#className()} ${inspect(this.toJSON(), options)}`;
  }

  /**
   * Node's inspect hook (`console.log`, `util.inspect`): the redacted view of `toJSON()`.
   *
   * @example Inspecting without the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import { inspect } from "node:util";
   * import assert from "node:assert/strict";
   *
   * assert.ok(!inspect(new RedisConfig({ password: "hunter2" })).includes("hunter2"));
   * ```
   *
   * @param _depth The current depth (unused).
   * @param options The inspect options, passed through.
   * @param inspect The runtime's inspect function (Node >= 16.14).
   * @returns The class name followed by the inspected redacted view.
   */
  [Symbol.for("nodejs.util.inspect.custom")](
    _depth?: number,
    options?: unknown,
    inspect?: (value: unknown, options?: unknown) => string,
  ): string {
    const view = inspect ? inspect(this.toJSON(), options) : JSON.stringify(this.toJSON());
    return `${this.#className()} ${view}`;
  }

  #className(): string {
    return this instanceof ValkeyConfig ? "ValkeyConfig" : "RedisConfig";
  }
}

/**
 * Where and how to reach a Valkey server: the same fields and defaults as `RedisConfig`, read
 * from `VALKEY_*` variables with a fallback to their `REDIS_*` twins.
 *
 * @example Falling back to REDIS_* variables
 * ```ts
 * import { ValkeyConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const config = ValkeyConfig.fromEnv({ VALKEY_HOST: "valkey.internal", REDIS_DB: "3" });
 * assert.ok(config instanceof ValkeyConfig);
 * assert.equal(config.host, "valkey.internal");
 * assert.equal(config.db, 3);
 * ```
 */
export class ValkeyConfig extends RedisConfig {
  /**
   * Reads the config from the environment. For each field the lookup order is `VALKEY_<X>`, then
   * `VALKEY_URL`'s part, then `REDIS_<X>`, then `REDIS_URL`'s part, then the default; parsing
   * follows `RedisConfig.fromEnv`, and errors name the variable actually read. The near cache's
   * `CACHE_NEAR_CACHE*` variables have no prefix: the same ones as `RedisConfig.fromEnv` reads. A URL describes
   * its whole endpoint: host, port, db, user, password and TLS come from it (port 6379 and db 0
   * when it omits them) unless the same prefix's explicit variable is set.
   *
   * @example Reading VALKEY_URL
   * ```ts
   * import { ValkeyConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = ValkeyConfig.fromEnv({
   *   VALKEY_URL: "valkeys://:p%23ss@valkey.internal:6390",
   *   REDIS_PREFIX: "app:",
   * });
   * assert.equal(config.port, 6390);
   * assert.equal(config.tls, true);
   * assert.equal(config.password, "p#ss");
   * assert.equal(config.prefix, "app:");
   * ```
   *
   * @param env The variables to read; defaults to the process environment.
   * @returns The validated config.
   * @throws {CacheConfigError} When a variable is malformed (the message names it).
   */
  static override fromEnv(env: EnvRecord = readEnv()): ValkeyConfig {
    return new ValkeyConfig(resolveEnv(env, ["VALKEY", "REDIS"]));
  }
}
