/**
 * The shapes every provider shares: per-call options and the `CacheBackend` interface that the
 * facade drives.
 *
 * @module
 */

import type { CacheEventListener, CacheStats } from "./stats.ts";

/** Options of a call that addresses one scope. */
export interface EntryOptions {
  /**
   * The tenant the entry belongs to: a non-empty string, or an integer (`0` is tenant `"0"`).
   * Omit it for the global scope.
   *
   * @default {undefined}
   */
  companyId?: string | number;
}

/** Options of a write. */
export interface SetOptions extends EntryOptions {
  /**
   * Seconds until the entry expires (fractions allowed); `null` stores without expiry.
   *
   * @default {the cache's default TTL}
   */
  ttl?: number | null;
}

/** Options of `getOrSet` / `cacheGetOrSet`. */
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

/** Produces the value `getOrSet` stores on a miss: any JSON-serializable value, or a promise of one. */
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
  getMany<T = unknown>(inputs: readonly unknown[], options?: EntryOptions): Promise<(T | null)[]>;
  /** Stores several entries of one scope, each batch atomically. */
  setMany(
    entries: readonly (readonly [unknown, unknown])[],
    options?: SetOptions,
  ): Promise<boolean>;
  /** Deletes every entry of one tenant; returns how many keys were deleted. */
  clearCompany(companyId: string | number, options?: ClearOptions): Promise<number>;
  /** Deletes every entry stored without a tenant; returns how many keys were deleted. */
  clearGlobal(options?: ClearOptions): Promise<number>;
  /** Deletes every entry of every scope under this prefix; returns how many keys were deleted. */
  clearAll(options?: ClearOptions): Promise<number>;
  /** Removes registry members whose key has expired; returns how many were removed. */
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
