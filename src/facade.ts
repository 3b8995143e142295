/**
 * The facade's calls: the `cache*` functions, which read, write and clear through the process's
 * one cache (src/global_cache.ts: `setCache()` installs it) and never throw for a server fault.
 * With no cache installed, a read resolves `null`, a write `false`, a clear `0`, and
 * `cacheGetOrSet` runs `compute()`.
 *
 * @module
 */

import { CacheInputError } from "./errors.ts";
import { inputList } from "./batch.ts";
import { getCache, resolveBackend, withBackend } from "./global_cache.ts";
import { type CacheStats, emptyStats } from "./stats.ts";
import { requireTags } from "./tags.ts";
import type {
  Compute,
  EntryOptions,
  GetOrSetOptions,
  InvalidateTagsOptions,
  SetOptions,
} from "./types.ts";

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
  const backend = getCache();
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
  return getCache()?.stats() ?? emptyStats();
}
