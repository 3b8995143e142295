/**
 * The options of `RedisCache` and `ValkeyCache`, and their resolution against the config: every
 * option checked, every default filled in, before the provider exists.
 *
 * @module
 */

import type { BreakerSettings } from "./circuit_breaker.ts";
import type { RedisConfig } from "./config.ts";
import { CacheInputError } from "./errors.ts";
import { DEFAULT_MAX_KEY_INPUT_BYTES } from "./keys.ts";
import type { CacheLogger } from "./log.ts";
import type { OtelOptions } from "./otel_options.ts";
import type { CacheEventListener } from "./stats.ts";
import { DEFAULT_MAX_VALUE_BYTES, ttlToMs } from "./values.ts";

/**
 * Options of `RedisCache` and `ValkeyCache`.
 *
 * @example A named cache with its own TTL and prefix
 * ```ts
 * import { RedisCache, type RedisCacheOptions, RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const options: RedisCacheOptions = {
 *   config: new RedisConfig({ host: "127.0.0.1", port: 6380, prefix: "app:" }),
 *   name: "users",
 *   ttl: 60,
 *   timeout: 2,
 * };
 * const cache = new RedisCache(options); // no I/O until connect()
 * assert.equal(cache.prefix, "app:");
 * assert.equal(cache.name, "users");
 * ```
 */
export interface RedisCacheOptions<Config extends RedisConfig = RedisConfig> {
  /**
   * Where and how to connect.
   *
   * @default {RedisConfig.fromEnv() (ValkeyConfig.fromEnv() for ValkeyCache)}
   */
  config?: Config;
  /**
   * The cache's name: the `<name>` part of every key (`<prefix><name>:<hash>`).
   *
   * @default {""}
   */
  name?: string;
  /**
   * Default TTL in seconds for writes that give none; `null` stores without expiry.
   *
   * @default {config.ttl (REDIS_CACHE_TTL, 3600)}
   */
  ttl?: number | null;
  /**
   * Seconds a connect or a command may take before it counts as a fault (a miss).
   *
   * @default {config.timeout (REDIS_TIMEOUT, 4)}
   */
  timeout?: number;
  /**
   * How many connections to open and spread calls over, at most `config.maxConnections` (in
   * cluster mode, how many `Cluster` clients, each with one connection per node).
   *
   * @default {1}
   */
  poolSize?: number;
  /**
   * Queue commands issued in the same tick into one write (ioredis `enableAutoPipelining`).
   *
   * On a single server it is off by default: the provider coalesces one tick's GETs into one
   * MGET and its writes into one script call itself (src/coalesce.ts) and sends them at once,
   * while ioredis's pipelining defers every command to a `setImmediate` and keeps one pipeline
   * in flight at a time, which cost sequential calls about 10% and coalesced ones about 8% in
   * `deno task bench`. Turn it on when many concurrent `exists` / `delete` calls matter more.
   *
   * In cluster mode (on by default) the provider coalesces per hash slot and sends the coalesced
   * commands (a tick's GETs, MGETs of one slot and writes) as one pipeline per master, one at a
   * time per master: the calls made while a master's pipeline is out join the next one. A command
   * whose pipeline meets a redirection is sent again on its own, and every other command is sent
   * on its own, so a reshard never surfaces a redirection. Off, each coalesced command is sent on
   * its own.
   *
   * @default {false on a single server, true in cluster mode}
   */
  autoPipelining?: boolean;
  /**
   * The largest value, in UTF-8 bytes of its JSON, that `set` accepts; a larger one is a
   * `CacheSerializationError` and nothing is sent.
   *
   * @default {config.maxValueBytes (REDIS_MAX_VALUE_BYTES, 67108864 = 64 MiB)}
   */
  maxValueBytes?: number;
  /**
   * The largest key input, in bytes of its canonical JSON (pure ASCII), that any call accepts; a
   * larger one is a `CacheInputError` and nothing is sent.
   *
   * @default {1048576 (1 MiB)}
   */
  maxKeyInputBytes?: number;
  /**
   * Where fault lines go (rate-limited; never holds the password).
   *
   * @default {console.warn}
   */
  logger?: CacheLogger;
  /**
   * How many random registry members a write samples, per key it newly registers, to prune the
   * expired ones (a registry then stays within about 2× its live keys); `0` disables it.
   *
   * @default {2}
   */
  pruneSample?: number;
  /**
   * How many keys one clear script call deletes, bounding how long it blocks the server.
   *
   * @default {500}
   */
  clearBatchSize?: number;
  /**
   * Receives an event for every hit, miss, set, error and clear (see `CacheEvent`); more
   * listeners can be added with `subscribe`. A listener that throws never breaks a cache call.
   *
   * @default {undefined}
   */
  onEvent?: CacheEventListener;
  /**
   * The circuit breaker of each target (the server; each master in cluster mode). After one
   * timeout, or `threshold` connection faults in a row, calls to that target resolve at once as
   * misses / `false` / `0` without being sent (`getOrSet` returns `compute()`'s value unstored),
   * and a PING every `probeInterval` seconds closes it at the first answer. `false` turns it
   * off: every call then waits for its own timeout while a server hangs.
   *
   * @default {config.circuitBreaker (REDIS_CIRCUIT_BREAKER, true), threshold 3
   * (REDIS_CIRCUIT_BREAKER_THRESHOLD), probeInterval 0.1 (REDIS_CIRCUIT_BREAKER_PROBE_INTERVAL)}
   */
  circuitBreaker?: boolean | CircuitBreakerOptions;
  /**
   * The near cache: hot entries served from process memory, kept coherent by the server's
   * invalidations (CLIENT TRACKING). `true` or `{}` turns it on with the config's settings, an
   * object with some settings overrides those; `false` turns it off even when the config has it
   * on. A malformed value is a `CacheInputError` from the constructor.
   *
   * @default {config.nearCache (CACHE_NEAR_CACHE, false)}
   */
  nearCache?: boolean | NearCacheOptions;
  /**
   * OpenTelemetry metrics (and, asked for, spans) of every call, through `@opentelemetry/api`
   * (an optional peer, imported only when this is on): `true` for metrics, or `OtelOptions`.
   * `connect()` waits until the API has loaded; a malformed value is a `CacheInputError` from the
   * constructor. See the README's Observability section for the metric names.
   *
   * @default {false (nothing imported, nothing recorded)}
   */
  otel?: boolean | OtelOptions;
}

/**
 * The settings of the near cache (the `nearCache` option); each defaults to the config's.
 *
 * @example A near cache of at most 1,000 entries
 * ```ts
 * import { type NearCacheOptions, RedisCache, RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const nearCache: NearCacheOptions = { maxEntries: 1000, maxStaleness: 0.5 };
 * const cache = new RedisCache({ config: new RedisConfig({ port: 6390 }), nearCache });
 * assert.equal(cache.prefix, "cache:");
 * ```
 */
export interface NearCacheOptions {
  /**
   * The most entries held (a whole number >= 1); the least recently used go beyond it.
   *
   * @default {config.nearCacheMaxEntries (CACHE_NEAR_CACHE_MAX_ENTRIES, 10000)}
   */
  maxEntries?: number;
  /**
   * The most bytes of value JSON text held (UTF-8; a whole number >= 1); the least recently used
   * go beyond it.
   *
   * @default {config.nearCacheMaxBytes (CACHE_NEAR_CACHE_MAX_BYTES, 67108864 = 64 MiB)}
   */
  maxBytes?: number;
  /**
   * Seconds: the longest a value may be served after it changed on the server when the
   * invalidation stream is cut (a dropped or hung subscriber connection); above 0, at most 60.
   *
   * @default {config.nearCacheMaxStaleness (CACHE_NEAR_CACHE_MAX_STALENESS, 1)}
   */
  maxStaleness?: number;
}

/** The near cache's settings, resolved. */
export interface NearCacheResolved {
  /** The most entries held. */
  maxEntries: number;
  /** The most bytes of value JSON text held. */
  maxBytes: number;
  /** The longest a changed value may be served under faults, in milliseconds. */
  maxStalenessMs: number;
}

/**
 * The settings of the circuit breaker (the `circuitBreaker` option); each defaults to the
 * config's.
 *
 * @example A breaker that opens after five connection faults and probes every quarter second
 * ```ts
 * import { type CircuitBreakerOptions, RedisCache, RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const circuitBreaker: CircuitBreakerOptions = { threshold: 5, probeInterval: 0.25 };
 * const cache = new RedisCache({ config: new RedisConfig({ port: 6390 }), circuitBreaker });
 * assert.equal(cache.prefix, "cache:");
 * ```
 */
export interface CircuitBreakerOptions {
  /**
   * Connection faults in a row (refused, reset, not connected) that open the breaker; a timeout
   * opens it at once.
   *
   * @default {3}
   */
  threshold?: number;
  /**
   * Seconds between the PINGs that probe an open target (its first answer closes the breaker).
   *
   * @default {0.1}
   */
  probeInterval?: number;
}

/** The options with every default filled in and checked. */
export interface ResolvedOptions {
  /** The cache's name. */
  name: string;
  /** The default TTL in seconds, `null` for no expiry. */
  defaultTtl: number | null;
  /** The connect and command timeout, in milliseconds. */
  timeoutMs: number;
  /** Connections (or `Cluster` clients) to open. */
  poolSize: number;
  /** `autoPipelining` as given: `undefined` takes the topology's default. */
  autoPipelining: boolean | undefined;
  /** The largest value, in bytes of its JSON. */
  maxValueBytes: number;
  /** The largest key input, in bytes of its canonical JSON. */
  maxKeyInputBytes: number;
  /** Registry members a write samples per key it registers. */
  pruneSample: number;
  /** Keys one clear script call deletes. */
  clearBatch: number;
  /** The breaker of each target, or `null` when it is off. */
  breaker: BreakerSettings | null;
  /** The near cache's settings, or `null` when it is off. */
  nearCache: NearCacheResolved | null;
}

/**
 * Checks the options and fills in their defaults from the config; a bad option is a
 * `CacheInputError`.
 */
export function resolveOptions<Config extends RedisConfig>(
  config: Config,
  options: RedisCacheOptions<Config>,
): ResolvedOptions {
  const name = checkName(options.name);
  const defaultTtl = options.ttl === undefined ? config.ttl : options.ttl;
  if (defaultTtl !== null) ttlToMs(defaultTtl, null);
  const timeout = options.timeout ?? config.timeout;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new CacheInputError(`Invalid timeout ${timeout}: pass a positive number of seconds`);
  }
  return {
    name,
    defaultTtl,
    timeoutMs: Math.ceil(timeout * 1000),
    poolSize: Math.min(positiveInt("poolSize", options.poolSize ?? 1), config.maxConnections),
    autoPipelining: options.autoPipelining,
    maxValueBytes: positiveInt(
      "maxValueBytes",
      options.maxValueBytes ?? config.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
    ),
    maxKeyInputBytes: positiveInt(
      "maxKeyInputBytes",
      options.maxKeyInputBytes ?? DEFAULT_MAX_KEY_INPUT_BYTES,
    ),
    pruneSample: nonNegativeInt("pruneSample", options.pruneSample ?? 2),
    clearBatch: positiveInt("clearBatchSize", options.clearBatchSize ?? 500),
    breaker: resolveBreaker(config, options.circuitBreaker),
    nearCache: resolveNearCache(config, options.nearCache),
  };
}

function resolveBreaker(
  config: RedisConfig,
  option: boolean | CircuitBreakerOptions | undefined,
): BreakerSettings | null {
  if (
    option !== undefined && typeof option !== "boolean" && (typeof option !== "object" ||
      option === null || Array.isArray(option))
  ) {
    throw new CacheInputError(
      `Invalid circuitBreaker ${String(option)}: pass true, false or ` +
        "{ threshold?, probeInterval? }",
    );
  }
  if (option === false || (option === undefined && !config.circuitBreaker)) return null;
  const settings = typeof option === "object" ? option : {};
  const probeInterval = settings.probeInterval ?? config.circuitBreakerProbeInterval;
  if (!Number.isFinite(probeInterval) || probeInterval <= 0 || probeInterval > 60) {
    throw new CacheInputError(
      `Invalid circuitBreaker.probeInterval ${probeInterval}: pass a number of seconds above 0 ` +
        "and at most 60 (default 0.1)",
    );
  }
  return {
    threshold: positiveInt(
      "circuitBreaker.threshold",
      settings.threshold ?? config.circuitBreakerThreshold,
    ),
    probeIntervalMs: Math.max(1, Math.round(probeInterval * 1000)),
  };
}

/**
 * Resolves the `nearCache` option against the config: the option wins; `true` or an object turns
 * the near cache on, taking the config's value for each setting the object leaves out; `false`
 * turns it off whatever the config says; `undefined` follows `config.nearCache`
 * (`CACHE_NEAR_CACHE`). The config's settings were checked when it was built; the option's are
 * checked here.
 *
 * @param config The provider's config.
 * @param option The `nearCache` option as given.
 * @returns The settings, or `null` when the near cache is off.
 * @throws {CacheInputError} When the option or one of its settings is malformed (the message
 * names it).
 */
export function resolveNearCache(
  config: RedisConfig,
  option: boolean | NearCacheOptions | undefined,
): NearCacheResolved | null {
  if (
    option !== undefined && typeof option !== "boolean" && (typeof option !== "object" ||
      option === null || Array.isArray(option))
  ) {
    throw new CacheInputError(
      `Invalid nearCache ${show(option)}: pass true, false or ` +
        "{ maxEntries?, maxBytes?, maxStaleness? }",
    );
  }
  if (option === false || (option === undefined && !config.nearCache)) return null;
  const settings: NearCacheOptions = typeof option === "object" ? option : {};
  const maxStaleness = settings.maxStaleness === undefined
    ? config.nearCacheMaxStaleness
    : settings.maxStaleness;
  if (typeof maxStaleness !== "number" || !(maxStaleness > 0 && maxStaleness <= 60)) {
    throw new CacheInputError(
      `Invalid nearCache.maxStaleness ${show(maxStaleness)}: pass a number of seconds above 0 ` +
        "and at most 60 (default 1)",
    );
  }
  return {
    maxEntries: nearCacheInt(
      "maxEntries",
      settings.maxEntries === undefined ? config.nearCacheMaxEntries : settings.maxEntries,
      "10000",
    ),
    maxBytes: nearCacheInt(
      "maxBytes",
      settings.maxBytes === undefined ? config.nearCacheMaxBytes : settings.maxBytes,
      "67108864, 64 MiB",
    ),
    maxStalenessMs: Math.max(1, Math.round(maxStaleness * 1000)),
  };
}

/** Checks a whole-number setting of the near cache; `fallback` is its default, for the message. */
function nearCacheInt(setting: string, value: unknown, fallback: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1) {
    throw new CacheInputError(
      `Invalid nearCache.${setting} ${show(value)}: pass a whole number of at least 1 ` +
        `(default ${fallback})`,
    );
  }
  return value as number;
}

/** An option value as a message shows it: strings quoted, so `"100"` reads as a string. */
function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "(an array)";
  if (typeof value === "function" || (typeof value === "object" && value !== null)) {
    return `(a value of type ${typeof value})`;
  }
  return String(value);
}

function checkName(name: unknown): string {
  if (name === undefined) return "";
  if (typeof name !== "string") {
    throw new CacheInputError(`Invalid name ${String(name)}: pass a string (default "")`);
  }
  return name;
}

function positiveInt(option: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new CacheInputError(`Invalid ${option} ${value}: pass a whole number of at least 1`);
  }
  return value;
}

function nonNegativeInt(option: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new CacheInputError(`Invalid ${option} ${value}: pass a whole number of at least 0`);
  }
  return value;
}
