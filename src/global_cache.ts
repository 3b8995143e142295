/**
 * The process's one cache behind the facade: `setCache()` installs it (from options or the
 * environment), `getCache()` / `getCacheClient()` read it, `closeCache()` closes it, and
 * `withBackend()` / `resolveBackend()` hand it to a facade call (src/facade.ts), setting it up
 * from the environment on the first call when no `setCache()` ran.
 *
 * @module
 */

import { backendCandidates } from "./backend_choice.ts";
import { type BackendName, readBackendSettings, RedisConfig, ValkeyConfig } from "./config.ts";
import { CacheDependencyError } from "./errors.ts";
import { type CacheLogger, FaultLog } from "./log.ts";
import type { CircuitBreakerOptions, NearCacheOptions } from "./provider_options.ts";
import { MemoryCache } from "./memory.ts";
import { otelFromEnv, type OtelOptions } from "./otel_options.ts";
import { RedisCache } from "./redis.ts";
import { type EnvRecord, readEnv } from "./runtime.ts";
import type { CacheEventListener } from "./stats.ts";
import type { CacheBackend } from "./types.ts";
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
export function resolveBackend(): Promise<CacheBackend | null> {
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
export function withBackend<R>(
  call: (backend: CacheBackend) => Promise<R>,
  fallback: R,
): Promise<R> {
  const backend = current;
  if (backend) return call(backend);
  return resolveBackend().then((resolved) => resolved ? call(resolved) : fallback);
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
