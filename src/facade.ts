/**
 * The facade: one global cache per process, set up once with `setCache()` and used everywhere
 * through the `cache*` functions, which never throw for a server fault.
 *
 * @module
 */

import { backendCandidates } from "./backend_choice.ts";
import { type BackendName, readBackendSettings, RedisConfig, ValkeyConfig } from "./config.ts";
import { CacheDependencyError, CacheInputError } from "./errors.ts";
import { inputList } from "./batch.ts";
import { type CacheLogger, FaultLog } from "./log.ts";
import type { CircuitBreakerOptions, NearCacheOptions } from "./provider_options.ts";
import { MemoryCache } from "./memory.ts";
import { otelFromEnv, type OtelOptions } from "./otel.ts";
import { RedisCache } from "./redis.ts";
import { type EnvRecord, readEnv } from "./runtime.ts";
import { type CacheEventListener, type CacheStats, emptyStats } from "./stats.ts";
import { requireTags } from "./tags.ts";
import type {
  CacheBackend,
  Compute,
  EntryOptions,
  GetOrSetOptions,
  InvalidateTagsOptions,
  SetOptions,
} from "./types.ts";
import { ValkeyCache } from "./valkey.ts";

/**
 * Options of `setCache`. Everything not given is read from the environment.
 *
 * @example Installing from explicit options instead of the environment
 * ```ts
 * import { cacheGet, cacheSet, closeCache, setCache, type SetCacheOptions } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const options: SetCacheOptions = {
 *   provider: "memory",
 *   ttl: 600,
 *   env: {}, // read no CACHE_BACKEND / ENABLE_CACHE / REDIS_* from the process
 *   onEvent: (event) => seen.push(`${event.type}:${event.operation}`),
 * };
 * assert.equal(await setCache(options), true);
 * await cacheSet("greeting", "hello");
 * assert.equal(await cacheGet("greeting"), "hello");
 * assert.deepEqual(seen, ["set:set", "hit:get"]);
 * await closeCache();
 * ```
 */
export interface SetCacheOptions {
  /**
   * Which provider to install; `auto` picks Valkey when `VALKEY_*` variables are set, else Redis.
   *
   * @default {CACHE_BACKEND, else "auto"}
   */
  provider?: BackendName;
  /**
   * Connection settings for the Redis or Valkey provider.
   *
   * @default {RedisConfig.fromEnv(env) or ValkeyConfig.fromEnv(env)}
   */
  config?: RedisConfig;
  /**
   * Default TTL in seconds; `null` stores without expiry.
   *
   * @default {REDIS_CACHE_TTL, else 3600}
   */
  ttl?: number | null;
  /**
   * Seconds a connect or command may take before it counts as a miss.
   *
   * @default {REDIS_TIMEOUT, else 4}
   */
  timeout?: number;
  /**
   * The environment to read instead of the process's.
   *
   * @default {Deno.env / process.env}
   */
  env?: EnvRecord;
  /**
   * Where fault lines go.
   *
   * @default {console.warn}
   */
  logger?: CacheLogger;
  /**
   * Receives an event for every hit, miss, set, error and clear of the installed cache (see
   * `CacheEvent`), to wire metrics without patching. It runs synchronously inside the cache
   * call; one that throws is logged and ignored, never breaking the call.
   *
   * @default {undefined}
   */
  onEvent?: CacheEventListener;
  /**
   * The circuit breaker of the server (each master in cluster mode): see
   * `RedisCacheOptions.circuitBreaker`. `MemoryCache` has none and ignores it.
   *
   * @default {config.circuitBreaker (REDIS_CIRCUIT_BREAKER, true)}
   */
  circuitBreaker?: boolean | CircuitBreakerOptions;
  /**
   * The near cache of the Redis or Valkey provider (hot entries served from process memory, kept
   * coherent by the server): see `RedisCacheOptions.nearCache`. `true` or `{ maxEntries?,
   * maxBytes?, maxStaleness? }` turns it on, `false` off, whatever `CACHE_NEAR_CACHE` says.
   * `MemoryCache` already serves from process memory: it accepts the option and ignores it.
   *
   * @default {config.nearCache (CACHE_NEAR_CACHE, false)}
   */
  nearCache?: boolean | NearCacheOptions;
  /**
   * OpenTelemetry metrics (and, asked for, spans) of the installed cache: see
   * `RedisCacheOptions.otel`. `@opentelemetry/api` is imported only when this (or `CACHE_OTEL`)
   * turns it on; `setCache()` resolves once recording has started.
   *
   * @default {CACHE_OTEL (false)}
   *
   * @example Metrics for Prometheus through the global meter provider, spans too
   * ```ts ignore
   * import { setCache } from "@core-lib/cache";
   * import { metrics } from "@opentelemetry/api";
   * import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
   * import { MeterProvider } from "@opentelemetry/sdk-metrics";
   *
   * metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PrometheusExporter()] }));
   * await setCache({ otel: { spans: true } }); // spans go to the global tracer provider
   * ```
   */
  otel?: boolean | OtelOptions;
}

let current: CacheBackend | null = null;
let installing: Promise<boolean> | null = null;
let lazySetup: Promise<void> | null = null;
/** The provider a `setCache()` in flight is connecting, so `closeCache()` can close it too. */
let connecting: CacheBackend | null = null;
/** Bumped by every `closeCache()`: a set-up that started before it must not install. */
let epoch = 0;
const facadeLog = new FaultLog();

/**
 * Installs the process's cache. With no argument, reads the environment (`CACHE_BACKEND`,
 * `ENABLE_CACHE`, `REDIS_*`, `VALKEY_*`, `CACHE_NEAR_CACHE*`). Connects, pings and loads the Lua scripts.
 *
 * Resolves `true` when the cache is usable; `false` when caching is disabled
 * (`ENABLE_CACHE=false`) or the server cannot be reached (logged once; the client keeps
 * reconnecting, so the cache comes alive when the server does). A second call while a cache is
 * installed keeps it and resolves `true`; call `closeCache()` first to reconfigure. Throws
 * `CacheConfigError` for a malformed setting.
 *
 * @param options Provider, config, TTL, timeout, or the environment to read.
 * @returns Whether the cache is usable now.
 *
 * @example Installing the in-process cache
 * ```ts
 * import { cacheGet, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await setCache({ provider: "memory" }), true);
 * await cacheSet({ user: 1 }, { name: "Ada" });
 * assert.deepEqual(await cacheGet({ user: 1 }), { name: "Ada" });
 * await closeCache();
 * ```
 */
export function setCache(options: SetCacheOptions = {}): Promise<boolean> {
  if (current) return Promise.resolve(true);
  if (!installing) {
    const promise: Promise<boolean> = install(options).finally(() => {
      if (installing === promise) installing = null;
    });
    installing = promise;
    // An explicit set-up, whatever its outcome (disabled, unreachable, bad config), is the
    // process's set-up: facade calls must not start another one from the environment.
    lazySetup ??= installing.then(() => undefined, () => undefined);
  }
  return installing;
}

async function install(options: SetCacheOptions): Promise<boolean> {
  const env = options.env ?? readEnv();
  const settings = readBackendSettings(env);
  if (!settings.enabled) return false;
  // The same resolution as the admin CLI's (src/backend_choice.ts): under `auto` the variables
  // pick the server, the installed package only the client.
  const candidates = backendCandidates(env, {
    provider: options.provider ?? settings.backend,
    config: options.config,
  });
  const started = epoch;
  for (const [index, { kind, config }] of candidates.entries()) {
    if (epoch !== started) return false;
    const backend = createBackend(kind, { ...options, config }, env);
    connecting = backend;
    let connected: boolean;
    try {
      connected = await backend.connect();
    } catch (error) {
      if (!(error instanceof CacheDependencyError)) throw error;
      // Under `auto`, a client library that cannot be loaded hands over to the other one.
      if (index < candidates.length - 1) continue;
      // None loads: name the package the configuration asked for first, not the last tried.
      if (candidates.length > 1) throw noClientPackage(candidates.map((c) => c.kind), error);
      throw error;
    } finally {
      if (connecting === backend) connecting = null;
    }
    // A closeCache() while this connected has closed the backend already: installing it now
    // would bring back a cache the caller closed, with a connection that keeps the process alive.
    if (epoch !== started) {
      await backend.close();
      return false;
    }
    current = backend;
    return connected;
  }
  return false;
}

/** No client package of any candidate loads: say what to install for the server configured. */
function noClientPackage(kinds: string[], cause: unknown): CacheDependencyError {
  const packages = kinds.map((kind) => kind === "valkey" ? "iovalkey" : "ioredis");
  const [wanted, other] = packages;
  return new CacheDependencyError(
    `Cannot load a client for the configured ${kinds[0]} server: install ${wanted} ` +
      `(npm install ${wanted}), or ${other}, which speaks to it as well`,
    { cause },
  );
}

function createBackend(
  kind: Exclude<BackendName, "auto">,
  options: SetCacheOptions,
  env: EnvRecord,
): CacheBackend {
  const otel = options.otel ?? otelFromEnv(env);
  const common = {
    ttl: options.ttl,
    timeout: options.timeout,
    logger: options.logger,
    onEvent: options.onEvent,
    circuitBreaker: options.circuitBreaker,
    nearCache: options.nearCache,
    otel,
  };
  if (kind === "memory") {
    // No circuitBreaker or nearCache here: an in-process store has no server to guard or to
    // save round trips to, so the options are accepted and ignored.
    const config = RedisConfig.fromEnv(env);
    return new MemoryCache({
      ttl: options.ttl === undefined ? config.ttl : options.ttl,
      maxValueBytes: config.maxValueBytes,
      logger: options.logger,
      onEvent: options.onEvent,
      otel,
    });
  }
  if (kind === "valkey") {
    const config = options.config ?? ValkeyConfig.fromEnv(env);
    return new ValkeyCache({ ...common, config: config as ValkeyConfig });
  }
  return new RedisCache({ ...common, config: options.config ?? RedisConfig.fromEnv(env) });
}

/**
 * The installed cache for a facade call: the current one, or, before any `setCache`, the one
 * `setCache()` installs from the environment (run once, as the original's lazy `get_cache`).
 */
function resolveBackend(): Promise<CacheBackend | null> {
  if (!lazySetup) {
    setCache().catch((error) =>
      facadeLog.fault(
        "setup",
        "Cannot set up the cache from the environment; caching is off",
        error,
      )
    );
  }
  return lazySetup!.then(() => current);
}

/**
 * The installed provider, or `null` when none is installed.
 *
 * @returns The provider `setCache` installed.
 *
 * @example Reading the installed provider
 * ```ts
 * import { closeCache, getCache, MemoryCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * assert.ok(getCache() instanceof MemoryCache);
 * await closeCache();
 * assert.equal(getCache(), null);
 * ```
 */
export function getCache(): CacheBackend | null {
  return current;
}

/**
 * The ioredis / iovalkey client of the installed provider, for direct operations; `null` when no
 * cache is installed or the provider is `MemoryCache`.
 *
 * @returns The client, typed loosely since either library may be in use.
 *
 * @example No client for the in-process cache
 * ```ts
 * import { closeCache, getCacheClient, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * assert.equal(getCacheClient(), null);
 * await closeCache();
 * ```
 */
export function getCacheClient(): unknown {
  const backend = current as { client?: unknown } | null;
  return backend?.client ?? null;
}

/**
 * Runs `call` on the installed cache, or resolves `fallback` when there is none. Kept free of an
 * extra `await` when a cache is installed: this is every call's hot path.
 */
function withBackend<R>(call: (backend: CacheBackend) => Promise<R>, fallback: R): Promise<R> {
  const backend = current;
  if (backend) return call(backend);
  return resolveBackend().then((resolved) => resolved ? call(resolved) : fallback);
}

/**
 * Reads an entry.
 *
 * @param input Any JSON-serializable value naming the entry (hashed into the key).
 * @param options `companyId` for a tenant's entry; omit for the global scope.
 * @returns The value, or `null` on a miss, with no cache, or on a server fault (logged).
 *
 * @example Miss, then hit
 * ```ts
 * import { cacheGet, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * assert.equal(await cacheGet({ q: "top" }, { companyId: 7 }), null);
 * await cacheSet({ q: "top" }, [1, 2], { companyId: 7 });
 * assert.deepEqual(await cacheGet<number[]>({ q: "top" }, { companyId: 7 }), [1, 2]);
 * await closeCache();
 * ```
 */
export function cacheGet<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
  return withBackend((backend) => backend.get<T>(input, options), null);
}

/**
 * Stores an entry and registers it in its scope, atomically (one EVALSHA).
 *
 * @param input Any JSON-serializable value naming the entry.
 * @param value Any JSON-serializable value.
 * @param options `ttl` in seconds (`null`: no expiry) and `companyId`.
 * @returns `true` when stored; `false` with no cache or on a server fault.
 *
 * @example Storing with a TTL
 * ```ts
 * import { cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * assert.equal(await cacheSet("k", { v: 1 }, { ttl: 30, companyId: "acme" }), true);
 * await closeCache();
 * ```
 */
export function cacheSet(input: unknown, value: unknown, options?: SetOptions): Promise<boolean> {
  return withBackend((backend) => backend.set(input, value, options), false);
}

/**
 * Deletes an entry and removes it from its registry.
 *
 * @param input The entry's input.
 * @param options `companyId` for a tenant's entry.
 * @returns `true` when an entry was deleted.
 *
 * @example Deleting
 * ```ts
 * import { cacheDelete, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("k", 1);
 * assert.equal(await cacheDelete("k"), true);
 * assert.equal(await cacheDelete("k"), false);
 * await closeCache();
 * ```
 */
export function cacheDelete(input: unknown, options?: EntryOptions): Promise<boolean> {
  return withBackend((backend) => backend.delete(input, options), false);
}

/**
 * Whether an entry exists (one EXISTS, no value transfer).
 *
 * @param input The entry's input.
 * @param options `companyId` for a tenant's entry.
 * @returns `true` when the entry exists.
 *
 * @example Checking existence
 * ```ts
 * import { cacheExists, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("k", 1, { companyId: "acme" });
 * assert.equal(await cacheExists("k", { companyId: "acme" }), true);
 * assert.equal(await cacheExists("k"), false);
 * await closeCache();
 * ```
 */
export function cacheExists(input: unknown, options?: EntryOptions): Promise<boolean> {
  return withBackend((backend) => backend.exists(input, options), false);
}

/**
 * Reads several entries of one scope in one MGET.
 *
 * @param inputs The entries' inputs.
 * @param options `companyId` for a tenant's entries.
 * @returns The values in input order, `null` for each miss.
 *
 * @example Batch read
 * ```ts
 * import { cacheGetMany, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("a", 1);
 * assert.deepEqual(await cacheGetMany(["a", "b"]), [1, null]);
 * await closeCache();
 * ```
 */
export function cacheGetMany<T = unknown>(
  inputs: Iterable<unknown>,
  options?: EntryOptions,
): Promise<(T | null)[]> {
  let list: readonly unknown[];
  try {
    list = inputList(inputs);
  } catch (error) {
    return Promise.reject(error);
  }
  return withBackend((backend) => backend.getMany<T>(list, options), list.map(() => null));
}

/**
 * Stores several entries of one scope; each batch is one atomic script call.
 *
 * @param entries `[input, value]` pairs.
 * @param options `ttl` and `companyId`, applied to every entry.
 * @returns `true` when every entry was stored.
 *
 * @example Batch write
 * ```ts
 * import { cacheGet, cacheSetMany, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSetMany([["a", 1], ["b", 2]], { companyId: "acme" });
 * assert.equal(await cacheGet("b", { companyId: "acme" }), 2);
 * await closeCache();
 * ```
 */
export function cacheSetMany(
  entries: Iterable<readonly [unknown, unknown]>,
  options?: SetOptions,
): Promise<boolean> {
  return withBackend((backend) => backend.setMany(entries, options), false);
}

/**
 * Deletes every entry of one tenant.
 *
 * @param companyId The tenant's id.
 * @returns How many keys were deleted.
 *
 * @example Clearing one tenant
 * ```ts
 * import { cacheClearCompany, cacheGet, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("k", 1, { companyId: "acme" });
 * await cacheSet("k", 2, { companyId: "globex" });
 * assert.equal(await cacheClearCompany("acme"), 1);
 * assert.equal(await cacheGet("k", { companyId: "globex" }), 2);
 * await closeCache();
 * ```
 */
export function cacheClearCompany(companyId: string | number): Promise<number> {
  return withBackend((backend) => backend.clearCompany(companyId), 0);
}

/**
 * Deletes every entry of one scope (a tenant with `companyId`, else the global scope) that
 * carries any of `tags` (given with `cacheSet`, `cacheSetMany` or `cacheGetOrSet`), in bounded
 * batches. Never touches another scope's entries, whatever the tenant ids and tags hold. Counts
 * as a clear for `cacheGetOrSet`: a value whose compute started before it is returned, not
 * stored.
 *
 * @param tags The tags: at most 64 non-empty strings of at most 1,024 UTF-8 bytes each (anything
 * else is a `CacheInputError`).
 * @param options `companyId` for a tenant's entries; omit for the global scope. `onProgress`
 * receives the running count after each batch.
 * @returns How many keys were deleted (an entry carrying several of the tags counts once); `0`
 * with no cache or on a server fault (logged).
 *
 * @example Dropping everything cached about one user of one tenant
 * ```ts
 * import { cacheGet, cacheInvalidateTags, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("profile:42", { name: "Ada" }, { companyId: "acme", tags: ["user:42"] });
 * await cacheSet("orders:42", [1, 2], { companyId: "acme", tags: ["user:42", "orders"] });
 * await cacheSet("orders:7", [3], { companyId: "acme", tags: ["user:7", "orders"] });
 * assert.equal(await cacheInvalidateTags(["user:42"], { companyId: "acme" }), 2);
 * assert.equal(await cacheGet("orders:42", { companyId: "acme" }), null);
 * assert.deepEqual(await cacheGet("orders:7", { companyId: "acme" }), [3]);
 * await closeCache();
 * ```
 */
export function cacheInvalidateTags(
  tags: readonly string[],
  options?: InvalidateTagsOptions,
): Promise<number> {
  // Bad tags are a CacheInputError even with no cache, as bad input is everywhere.
  requireTags(tags);
  return withBackend((backend) => backend.invalidateTags(tags, options), 0);
}

/**
 * Deletes every entry stored without a tenant.
 *
 * @returns How many keys were deleted.
 *
 * @example Clearing the global scope
 * ```ts
 * import { cacheClearGlobal, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("k", 1);
 * assert.equal(await cacheClearGlobal(), 1);
 * await closeCache();
 * ```
 */
export function cacheClearGlobal(): Promise<number> {
  return withBackend((backend) => backend.clearGlobal(), 0);
}

/**
 * Deletes every entry of every tenant and the global scope; touches no key outside the prefix.
 *
 * @returns How many keys were deleted.
 *
 * @example Clearing everything
 * ```ts
 * import { cacheClearAll, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("k", 1);
 * await cacheSet("k", 1, { companyId: "acme" });
 * assert.equal(await cacheClearAll(), 2);
 * await closeCache();
 * ```
 */
export function cacheClearAll(): Promise<number> {
  return withBackend((backend) => backend.clearAll(), 0);
}

/**
 * Removes registry members whose key has expired, in every registry of the prefix.
 *
 * @returns How many members were removed.
 *
 * @example Pruning after expiry
 * ```ts
 * import { cachePruneRegistries, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheSet("k", 1, { ttl: 0.01 });
 * await new Promise((resolve) => setTimeout(resolve, 30));
 * assert.equal(await cachePruneRegistries(), 1);
 * await closeCache();
 * ```
 */
export function cachePruneRegistries(): Promise<number> {
  return withBackend((backend) => backend.pruneRegistries(), 0);
}

/**
 * Reads an entry, or computes and stores it: returns the cached value when there is one;
 * otherwise runs `compute()` and stores its result with `ttl`.
 *
 * - Concurrent calls for one key share one `compute()`: within a process (single-flight) and,
 *   on Redis / Valkey, across processes, through a lock per key (`<prefix>lock:...`, SET NX PX with
 *   a random owner token, released by an owner-checked script). Others wait for the value, at
 *   most `lockTimeout` seconds (default 10), then compute themselves.
 * - A value computed while a clear of its scope ran (`cacheClearCompany`, `cacheClearGlobal`,
 *   `cacheClearAll`) is returned but not stored, so no pre-clear data outlives a clear.
 * - `staleWhileRevalidate` (seconds): after the TTL, the stale value is returned at once while one
 *   caller refreshes it in the background; a failed refresh is logged and the stale value keeps
 *   being served until it expires, `ttl + staleWhileRevalidate` after it was stored.
 * - A server fault never throws: `compute()` runs and its value is returned. An error thrown by
 *   `compute()` reaches the caller; nothing is stored and the lock is released.
 * - The value comes back as JSON carries it, cached or computed alike. With no cache installed
 *   (`ENABLE_CACHE=false`), `compute()`'s value is returned as is.
 *
 * @param input Any JSON-serializable value naming the entry.
 * @param compute Produces the value on a miss: a value or a promise of one.
 * @param options `ttl`, `companyId`, `lockTimeout` and `staleWhileRevalidate` (seconds).
 * @returns The cached or computed value.
 *
 * @example Computing once, then serving from the cache
 * ```ts
 * import { cacheGetOrSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * let calls = 0;
 * const loadReport = async () => {
 *   calls++;
 *   return { total: 1200 };
 * };
 * const options = { companyId: "acme", ttl: 300 };
 * const [a, b] = await Promise.all([
 *   cacheGetOrSet({ report: "sales" }, loadReport, options),
 *   cacheGetOrSet({ report: "sales" }, loadReport, options),
 * ]);
 * assert.deepEqual(a, { total: 1200 });
 * assert.deepEqual(b, { total: 1200 });
 * assert.deepEqual(await cacheGetOrSet({ report: "sales" }, loadReport, options), { total: 1200 });
 * assert.equal(calls, 1);
 * await closeCache();
 * ```
 */
export function cacheGetOrSet<T>(
  input: unknown,
  compute: Compute<T>,
  options?: GetOrSetOptions,
): Promise<T> {
  const backend = current;
  if (backend) return backend.getOrSet(input, compute, options);
  return resolveBackend().then((resolved) => {
    if (resolved) return resolved.getOrSet(input, compute, options);
    if (typeof compute !== "function") {
      throw new CacheInputError(
        `Invalid compute ${String(compute)}: pass a function that returns the value to cache`,
      );
    }
    return compute();
  });
}

/**
 * Counters and latency percentiles of the installed cache since `setCache`: hits, misses,
 * stale hits, sets, discarded sets (computed across a clear), errors, lock waits, clears, and
 * p50 / p95 / p99 / max milliseconds per operation. All zero when no cache is installed.
 *
 * @returns A snapshot; later calls do not change it.
 *
 * @example Counting hits and misses
 * ```ts
 * import { cacheGet, cacheSet, cacheStats, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await cacheGet("k");
 * await cacheSet("k", 1);
 * await cacheGet("k");
 * const stats = cacheStats();
 * assert.equal(stats.hits, 1);
 * assert.equal(stats.misses, 1);
 * assert.equal(stats.sets, 1);
 * assert.equal(stats.operations.get.calls, 2);
 * assert.ok(stats.operations.get.p99 >= stats.operations.get.p50);
 * await closeCache();
 * ```
 */
export function cacheStats(): CacheStats {
  return current?.stats() ?? emptyStats();
}

/**
 * Closes the installed cache's connections and unsets it; the next facade call sets up from the
 * environment again.
 *
 * @returns Resolves when the connections are closed.
 *
 * @example Reconfiguring
 * ```ts
 * import { closeCache, getCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * await closeCache();
 * assert.equal(getCache(), null);
 * ```
 */
export async function closeCache(): Promise<void> {
  epoch++;
  const backend = current;
  const pending = connecting;
  const inFlight = installing;
  current = null;
  connecting = null;
  lazySetup = null;
  installing = null;
  // A set-up in flight is closed too, and awaited: once this resolves no cache is installed and
  // no connection is open, whatever was in flight.
  await Promise.all([backend?.close(), pending?.close(), inFlight?.catch(() => false)]);
}
