/**
 * A tenant-aware cache for Redis and Valkey: one facade, set up once from the environment, used
 * everywhere. Keys are hashed from any JSON-serializable input, scoped to a tenant
 * (`companyId`) or the global scope, and registered atomically by Lua scripts so a tenant can be
 * cleared without touching anyone else's entries. Server faults degrade to cache misses; they
 * never crash the caller.
 *
 * The key layout and registries are byte-compatible with the Python `core_lib.cache` original.
 *
 * @example Quick start (in-process cache; use `provider: "redis"` or the environment for a server)
 * ```ts
 * import { cacheClearCompany, cacheGet, cacheSet, closeCache, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * await setCache({ provider: "memory" });
 * const query = { report: "sales", month: "2026-11" };
 * assert.equal(await cacheGet(query, { companyId: "acme" }), null);
 * await cacheSet(query, { total: 1200 }, { companyId: "acme", ttl: 300 });
 * assert.deepEqual(await cacheGet(query, { companyId: "acme" }), { total: 1200 });
 * assert.equal(await cacheClearCompany("acme"), 1);
 * await closeCache();
 * ```
 *
 * @module
 */

export {
  cacheClearAll,
  cacheClearCompany,
  cacheClearGlobal,
  cacheDelete,
  cacheExists,
  cacheGet,
  cacheGetMany,
  cacheGetOrSet,
  cacheInvalidateTags,
  cachePruneRegistries,
  cacheSet,
  cacheSetMany,
  cacheStats,
} from "./src/facade.ts";
export {
  closeCache,
  getCache,
  getCacheClient,
  setCache,
  type SetCacheOptions,
} from "./src/global_cache.ts";
export { RedisCache } from "./src/redis.ts";
export { ValkeyCache } from "./src/valkey.ts";
export { MemoryCache, type MemoryCacheOptions } from "./src/memory.ts";
export { type RedisCacheOptions, RedisProtocolCache } from "./src/provider.ts";
export type { CircuitBreakerOptions, NearCacheOptions } from "./src/provider_options.ts";
export type {
  ClientConstructor,
  ClusterClient,
  ClusterConstructor,
  ProtocolClient,
} from "./src/client_types.ts";
export {
  type BackendName,
  hasValkeyEnv,
  readBackendSettings,
  RedisConfig,
  type RedisConfigOptions,
  ValkeyConfig,
} from "./src/config.ts";
export {
  CacheConfigError,
  CacheDependencyError,
  CacheError,
  CacheInputError,
  CacheSerializationError,
} from "./src/errors.ts";
export type {
  CacheBackend,
  ClearOptions,
  Compute,
  EntryOptions,
  GetOrSetOptions,
  InvalidateTagsOptions,
  SetOptions,
} from "./src/types.ts";
export type {
  CacheEvent,
  CacheEventListener,
  CacheStats,
  NearCacheStats,
  OperationStats,
} from "./src/stats.ts";
export type { CacheLogger } from "./src/log.ts";
export type { OtelMeterProvider, OtelOptions, OtelTracerProvider } from "./src/otel_options.ts";
export type { ScriptClient } from "./src/scripts.ts";
export type { EnvRecord } from "./src/runtime.ts";
