/**
 * `MemoryCache`: an in-process provider with the same semantics as the Redis ones.
 *
 * @module
 */

import { entryList, inputList } from "./batch.ts";
import { CacheInputError } from "./errors.ts";
import {
  DEFAULT_MAX_KEY_INPUT_BYTES,
  entryKey,
  hashInput,
  normalizeCompanyId,
  registryKey,
  requireCompanyId,
} from "./keys.ts";
import { type CacheLogger, FaultLog } from "./log.ts";
import { allGenerationKey, registryGenerationKey, StandaloneLayout } from "./layout.ts";
import { GetOrSetRunner, type GetOrSetStore } from "./get_or_set.ts";
import { attachOtel, type OtelHandle, type OtelOptions } from "./otel.ts";
import type { NearCacheOptions } from "./provider_options.ts";
import { type CacheEventListener, type CacheStats, type Histogram, Metrics } from "./stats.ts";
import { requireTags, tagIndexKey, tagSetKey, validateTags } from "./tags.ts";
import type {
  CacheBackend,
  ClearOptions,
  Compute,
  EntryOptions,
  GetOrSetOptions,
  InvalidateTagsOptions,
  SetOptions,
} from "./types.ts";
import { DEFAULT_MAX_VALUE_BYTES, parseValue, serializeValue, ttlToMs } from "./values.ts";

/**
 * Options of `MemoryCache`.
 *
 * @example A named cache with its own prefix, no expiry and a value size limit
 * ```ts
 * import { CacheSerializationError, MemoryCache, type MemoryCacheOptions } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const keys: string[] = [];
 * const options: MemoryCacheOptions = {
 *   name: "reports",
 *   prefix: "app:",
 *   ttl: null,
 *   maxValueBytes: 1024,
 *   onEvent: (event) => {
 *     if (event.key !== undefined) keys.push(event.key);
 *   },
 * };
 * const cache = new MemoryCache(options);
 * assert.equal(cache.name, "reports");
 * await cache.set({ month: "2026-11" }, { total: 1200 }, { companyId: "acme" });
 * assert.match(keys[0], /^app:tenant:acme:reports:/);
 * await assert.rejects(cache.set("big", "x".repeat(2048)), CacheSerializationError);
 * ```
 */
export interface MemoryCacheOptions {
  /**
   * The cache's name: the `<name>` part of every key.
   *
   * @default {""}
   */
  name?: string;
  /**
   * Default TTL in seconds for writes that give none; `null` stores without expiry.
   *
   * @default {3600}
   */
  ttl?: number | null;
  /**
   * The key prefix.
   *
   * @default {"cache:"}
   */
  prefix?: string;
  /**
   * The largest value, in UTF-8 bytes of its JSON, that `set` accepts.
   *
   * @default {67108864 (64 MiB)}
   */
  maxValueBytes?: number;
  /**
   * The largest key input, in bytes of its canonical JSON (pure ASCII), that any call accepts.
   *
   * @default {1048576 (1 MiB)}
   */
  maxKeyInputBytes?: number;
  /**
   * Where warnings go: an event listener that throws, a failed background refresh.
   *
   * @default {console.warn}
   */
  logger?: CacheLogger;
  /**
   * Receives an event for every hit, miss, set and clear (see `CacheEvent`); more listeners can
   * be added with `subscribe`. A listener that throws never breaks a cache call.
   *
   * @default {undefined}
   */
  onEvent?: CacheEventListener;
  /**
   * Accepted for parity with `RedisCacheOptions.nearCache` and ignored: every entry of a
   * `MemoryCache` already lives in process memory, so there is no server round trip to save and
   * nothing to keep coherent. Code can pass the same options to every provider.
   *
   * @default {undefined (ignored)}
   */
  nearCache?: boolean | NearCacheOptions;
  /**
   * OpenTelemetry metrics (and, asked for, spans), as for `RedisCacheOptions.otel`, with
   * `db.system.name` `memory` and no `server.*` attributes. Recording starts once
   * `@opentelemetry/api` has loaded: `await connect()` waits for it.
   *
   * @default {false (nothing imported, nothing recorded)}
   */
  otel?: boolean | OtelOptions;
}

interface Lock {
  token: string;
  /** Epoch milliseconds after which the lock is free. */
  expiresAt: number;
}

/** A validated write: the entries' keys and JSON texts, their TTL and their registry. */
interface PreparedWrite {
  pairs: [string, string][];
  ttlMs: number;
  registry: string;
  /** The entries' tags (checked), empty for none. */
  tags: readonly string[];
}

interface Entry {
  text: string;
  /** Epoch milliseconds after which the entry is gone; 0 = never. */
  expiresAt: number;
}

/**
 * An in-process cache with the semantics of `RedisCache`: the same keys, TTLs, tenants, clears
 * and JSON round-trip (values are stored as JSON text, so a caller can never mutate a cached
 * value through a reference). The quick-start demo's default and a stand-in for unit tests; never
 * chosen by `auto`.
 *
 * @example Tenant isolation and clears
 * ```ts
 * import { MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * await cache.set("report", { total: 1 }, { companyId: "acme" });
 * await cache.set("report", { total: 2 }, { companyId: "globex" });
 * assert.equal(await cache.clearCompany("acme"), 1);
 * assert.equal(await cache.get("report", { companyId: "acme" }), null);
 * assert.deepEqual(await cache.get("report", { companyId: "globex" }), { total: 2 });
 * ```
 */
export class MemoryCache implements CacheBackend {
  /** The cache's name, the `<name>` part of every key. */
  readonly name: string;
  /** The key prefix. */
  readonly prefix: string;
  readonly #defaultTtl: number | null;
  readonly #maxValueBytes: number;
  readonly #maxKeyInputBytes: number;
  readonly #entries = new Map<string, Entry>();
  readonly #registries = new Map<string, Set<string>>();
  /** Tag sets (entry keys) by tag set key, as on the server (src/tags.ts). */
  readonly #tagSets = new Map<string, Set<string>>();
  /** Each scope's tag sets, by tag index key. */
  readonly #tagIndexes = new Map<string, Set<string>>();
  /** getOrSet's locks, by lock key. */
  readonly #locks = new Map<string, Lock>();
  /** Generation counters, by counter key (created by a getOrSet miss, bumped by clears). */
  readonly #generations = new Map<string, number>();
  readonly #log: FaultLog;
  readonly #metrics: Metrics;
  /** The OpenTelemetry recorder's link, when the `otel` option is on (src/otel.ts). */
  readonly #otel: OtelHandle;
  readonly #opGet: Histogram;
  readonly #opSet: Histogram;
  readonly #opGetMany: Histogram;
  readonly #opSetMany: Histogram;
  readonly #getOrSet: GetOrSetRunner;
  #sweepAt = 1024;
  /** Set by close(): like a server provider's closed connection, every later call is a miss. */
  #closed = false;

  /**
   * Creates an empty cache.
   *
   * @param options Name, default TTL, prefix and value size limit.
   */
  constructor(options: MemoryCacheOptions = {}) {
    if (options.name !== undefined && typeof options.name !== "string") {
      throw new CacheInputError(`Invalid name ${String(options.name)}: pass a string`);
    }
    if (options.prefix !== undefined && typeof options.prefix !== "string") {
      throw new CacheInputError(`Invalid prefix ${String(options.prefix)}: pass a string`);
    }
    this.name = options.name ?? "";
    this.prefix = options.prefix ?? "cache:";
    this.#defaultTtl = options.ttl === undefined ? 3600 : options.ttl;
    if (this.#defaultTtl !== null) ttlToMs(this.#defaultTtl, null);
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.#maxKeyInputBytes = options.maxKeyInputBytes ?? DEFAULT_MAX_KEY_INPUT_BYTES;
    this.#log = new FaultLog(options.logger);
    this.#metrics = new Metrics(
      options.onEvent,
      (error) => this.#log.fault("listener", "A cache event listener threw; ignored", error),
    );
    this.#opGet = this.#metrics.operation("get");
    this.#opSet = this.#metrics.operation("set");
    this.#opGetMany = this.#metrics.operation("getMany");
    this.#opSetMany = this.#metrics.operation("setMany");
    this.#otel = attachOtel(this.#metrics, options.otel, () => ({
      system: "memory",
      name: this.name,
      stats: () => this.stats(),
    }), this.#log);
    this.#getOrSet = new GetOrSetRunner({
      prefix: this.prefix,
      layout: new StandaloneLayout(this.prefix),
      name: this.name,
      defaultTtl: this.#defaultTtl,
      maxValueBytes: this.#maxValueBytes,
      maxKeyInputBytes: this.#maxKeyInputBytes,
      store: this.#store(),
      metrics: this.#metrics,
      log: this.#log,
      // An in-process store has no server to fail.
      fault: () => {},
    });
  }

  /** Always `null`: there is no server client. */
  get client(): null {
    return null;
  }

  /**
   * `true` until `close()`; a closed cache cannot be opened again. With the `otel` option, it
   * resolves once recording has started.
   */
  async connect(): Promise<boolean> {
    await this.#otel.ready;
    return !this.#closed;
  }

  /** `true` until `close()`. */
  async healthCheck(): Promise<boolean> {
    return !this.#closed;
  }

  /**
   * Drops every entry. Later calls behave as on a closed server connection: reads miss, writes
   * resolve `false`, clears `0` (logged once), so a test that uses MemoryCache in place of
   * `RedisCache` sees what production would.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#otel.close();
    this.#entries.clear();
    this.#registries.clear();
    this.#tagSets.clear();
    this.#tagIndexes.clear();
    this.#locks.clear();
    this.#generations.clear();
  }

  /** The cached value (a fresh copy), or `null` on a miss. */
  async get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#key(input, companyId);
    if (this.#refused("get")) return null;
    const text = this.#live(key)?.text;
    this.#metrics.lookup(this.#opGet, text !== undefined, start, companyId, key);
    return text === undefined ? null : parseValue<T>(text);
  }

  /** Stores a copy of `value` (as JSON text) and registers its key. */
  async set(input: unknown, value: unknown, options?: SetOptions): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const prepared = this.#prepare([[input, value]], companyId, options?.ttl, options?.tags);
    if (this.#refused("set")) return false;
    const [key] = this.#write(prepared);
    this.#metrics.stored(this.#opSet, start, companyId, key);
    return true;
  }

  /** Deletes one entry; `true` when it existed. */
  async delete(input: unknown, options?: EntryOptions): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#key(input, companyId);
    if (this.#refused("delete")) return false;
    const existed = this.#live(key) !== undefined;
    this.#entries.delete(key);
    this.#unregister(registryKey(this.prefix, companyId), key);
    return existed;
  }

  /** `true` when the entry exists and has not expired. */
  async exists(input: unknown, options?: EntryOptions): Promise<boolean> {
    const key = this.#key(input, normalizeCompanyId(options?.companyId));
    if (this.#refused("exists")) return false;
    return this.#live(key) !== undefined;
  }

  /** The values of `inputs`, in input order, `null` for each miss. */
  async getMany<T = unknown>(
    inputs: Iterable<unknown>,
    options?: EntryOptions,
  ): Promise<(T | null)[]> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const keys = inputList(inputs).map((input) => this.#key(input, companyId));
    if (keys.length > 0 && this.#refused("getMany")) return keys.map(() => null);
    const texts = keys.map((key) => this.#live(key)?.text);
    if (keys.length > 0) {
      const found = texts.map((text) => text !== undefined);
      this.#metrics.lookups(this.#opGetMany, keys, found, start, companyId);
    }
    return texts.map((text) => text === undefined ? null : parseValue<T>(text));
  }

  /** Stores every entry; all are validated before any is written. */
  async setMany(
    entries: Iterable<readonly [unknown, unknown]>,
    options?: SetOptions,
  ): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const prepared = this.#prepare(entryList(entries), companyId, options?.ttl, options?.tags);
    if (this.#refused("setMany")) return false;
    const keys = this.#write(prepared);
    this.#metrics.stored(this.#opSetMany, start, companyId, undefined, keys.length);
    return true;
  }

  /** Validates every entry (a CacheInputError / CacheSerializationError before any write). */
  #prepare(
    entries: readonly (readonly [unknown, unknown])[],
    companyId: string | undefined,
    ttl: number | null | undefined,
    tags: unknown,
  ): PreparedWrite {
    const ttlMs = ttlToMs(ttl, this.#defaultTtl);
    const checked = validateTags(tags);
    const pairs = entries.map(([input, value]): [string, string] => [
      this.#key(input, companyId),
      serializeValue(value, this.#maxValueBytes),
    ]);
    return { pairs, ttlMs, registry: registryKey(this.prefix, companyId), tags: checked };
  }

  /** Stores validated entries and registers them; returns their keys. */
  #write({ pairs: prepared, ttlMs, registry, tags }: PreparedWrite): string[] {
    let members = this.#registries.get(registry);
    if (!members) this.#registries.set(registry, members = new Set());
    const expiresAt = ttlMs === 0 ? 0 : Date.now() + ttlMs;
    for (const [key, text] of prepared) {
      this.#entries.set(key, { text, expiresAt });
      members.add(key);
    }
    const keys = prepared.map(([key]) => key);
    this.#tag(registry, tags, keys);
    this.#maybeSweep();
    return keys;
  }

  /** Adds `keys` to the set of each of `tags` in `registry`'s scope. */
  #tag(registry: string, tags: readonly string[], keys: readonly string[]): void {
    if (tags.length === 0) return;
    const indexKey = tagIndexKey(this.prefix, registry);
    let index = this.#tagIndexes.get(indexKey);
    if (!index) this.#tagIndexes.set(indexKey, index = new Set());
    for (const tag of tags) {
      const setKey = tagSetKey(this.prefix, registry, tag);
      let set = this.#tagSets.get(setKey);
      if (!set) this.#tagSets.set(setKey, set = new Set());
      for (const key of keys) set.add(key);
      index.add(setKey);
    }
  }

  /**
   * Deletes every entry of one scope that carries any of `tags`; returns how many were deleted
   * (an entry carrying several of them counts once). Counts as a clear for getOrSet. It deletes
   * in one step, so it never calls `onProgress`.
   */
  async invalidateTags(
    tags: readonly string[],
    options?: InvalidateTagsOptions,
  ): Promise<number> {
    const start = performance.now();
    const checked = requireTags(tags);
    const companyId = normalizeCompanyId(options?.companyId);
    if (this.#refused("invalidateTags")) return 0;
    const registry = registryKey(this.prefix, companyId);
    this.#bump(registryGenerationKey(this.prefix, registry));
    const index = this.#tagIndexes.get(tagIndexKey(this.prefix, registry));
    let deleted = 0;
    for (const tag of checked) {
      const setKey = tagSetKey(this.prefix, registry, tag);
      const set = this.#tagSets.get(setKey);
      if (!set) continue;
      for (const key of set) {
        if (this.#live(key) !== undefined) deleted++;
        this.#entries.delete(key);
        this.#unregister(registry, key);
      }
      this.#tagSets.delete(setKey);
      index?.delete(setKey);
    }
    if (index?.size === 0) this.#tagIndexes.delete(tagIndexKey(this.prefix, registry));
    this.#metrics.cleared(this.#metrics.operation("invalidateTags"), start, deleted, companyId);
    return deleted;
  }

  /**
   * Deletes every entry of one tenant; returns how many were deleted. It clears in one step, so
   * it never calls `onProgress`.
   */
  async clearCompany(companyId: string | number, _options?: ClearOptions): Promise<number> {
    const start = performance.now();
    const id = requireCompanyId(companyId);
    if (this.#refused("clearCompany")) return 0;
    const deleted = this.#clear(registryKey(this.prefix, id));
    this.#metrics.cleared(this.#metrics.operation("clearCompany"), start, deleted, id);
    return deleted;
  }

  /** Deletes every entry stored without a tenant; returns how many were deleted. */
  async clearGlobal(_options?: ClearOptions): Promise<number> {
    const start = performance.now();
    if (this.#refused("clearGlobal")) return 0;
    const deleted = this.#clear(registryKey(this.prefix, undefined));
    this.#metrics.cleared(this.#metrics.operation("clearGlobal"), start, deleted);
    return deleted;
  }

  /** Deletes every entry of every scope; returns how many were deleted. */
  async clearAll(_options?: ClearOptions): Promise<number> {
    const start = performance.now();
    if (this.#refused("clearAll")) return 0;
    this.#bump(allGenerationKey(this.prefix));
    let deleted = 0;
    for (const registry of [...this.#registries.keys()]) deleted += this.#clear(registry);
    this.#tagSets.clear();
    this.#tagIndexes.clear();
    this.#metrics.cleared(this.#metrics.operation("clearAll"), start, deleted);
    return deleted;
  }

  /**
   * The cached value, or runs `compute()` once per key (concurrent callers share it), stores its
   * result unless a clear ran while it was computed, and returns it; with
   * `staleWhileRevalidate`, serves a stale value while one refresh runs. Same semantics as
   * `RedisCache.getOrSet`, in-process.
   *
   * @param input Any JSON-serializable value naming the entry.
   * @param compute Produces the value on a miss.
   * @param options `ttl`, `companyId`, `lockTimeout` and `staleWhileRevalidate` (seconds).
   * @returns The value, as JSON carries it (cached or computed alike).
   */
  getOrSet<T>(input: unknown, compute: Compute<T>, options?: GetOrSetOptions): Promise<T> {
    return this.#getOrSet.run(input, compute, options);
  }

  /** Counters and latency percentiles since this cache was created. */
  stats(): CacheStats {
    return this.#metrics.snapshot();
  }

  /**
   * Adds an event listener (hit, miss, set, clear).
   *
   * @param listener Called synchronously with each event; its errors are ignored.
   * @returns The function that removes the listener.
   */
  subscribe(listener: CacheEventListener): () => void {
    return this.#metrics.subscribe(listener);
  }

  /** getOrSet's primitives, with the semantics of the Lua scripts. */
  #store(): GetOrSetStore {
    return {
      get: async (key) => {
        this.#refuseGetOrSet();
        return this.#live(key)?.text ?? null;
      },
      readOrLock: async (keys, token, lockMs, staleMs) => {
        this.#refuseGetOrSet();
        const now = Date.now();
        const entry = this.#live(keys.key);
        if (entry) {
          const left = entry.expiresAt === 0 ? Infinity : entry.expiresAt - now;
          if (staleMs <= 0 || left > staleMs) {
            return { status: 1, text: entry.text, generation: "", all: "" };
          }
        }
        const lock = this.#locks.get(keys.lock);
        const taken = !lock || lock.expiresAt <= now;
        if (taken) this.#locks.set(keys.lock, { token, expiresAt: now + lockMs });
        for (const counter of [keys.generation, keys.all]) {
          if (!this.#generations.has(counter)) this.#generations.set(counter, 0);
        }
        return {
          status: entry ? (taken ? 2 : 3) : (taken ? 4 : 5),
          text: entry?.text ?? null,
          generation: String(this.#generations.get(keys.generation)),
          all: String(this.#generations.get(keys.all)),
        };
      },
      setIfGeneration: async (keys, text, ttlMs, reply, token) => {
        this.#refuseGetOrSet();
        this.#unlock(keys.lock, token);
        if (
          String(this.#generations.get(keys.generation)) !== reply.generation ||
          String(this.#generations.get(keys.all)) !== reply.all
        ) return false;
        let members = this.#registries.get(keys.registry);
        if (!members) this.#registries.set(keys.registry, members = new Set());
        this.#entries.set(keys.key, { text, expiresAt: ttlMs === 0 ? 0 : Date.now() + ttlMs });
        members.add(keys.key);
        this.#tag(keys.registry, keys.tags, [keys.key]);
        this.#maybeSweep();
        return true;
      },
      releaseLock: async (keys, token) => this.#unlock(keys.lock, token),
    };
  }

  /**
   * `true` (logged once) when the cache is closed: the call is then served as a miss, as a
   * server provider serves it once its connections are closed.
   */
  #refused(operation: string): boolean {
    if (!this.#closed) return false;
    this.#log.fault(
      "closed",
      `MemoryCache ${operation} after close(): served as a miss (nothing is stored once closed)`,
    );
    return true;
  }

  /** getOrSet's store after close(): a fault, so the runner returns compute()'s value unstored. */
  #refuseGetOrSet(): void {
    if (this.#refused("getOrSet")) throw new Error("MemoryCache is closed");
  }

  #unlock(lock: string, token: string): void {
    if (token !== "" && this.#locks.get(lock)?.token === token) this.#locks.delete(lock);
  }

  /** Increments a generation counter that exists (a getOrSet may be relying on it). */
  #bump(counter: string): void {
    const value = this.#generations.get(counter);
    if (value !== undefined) this.#generations.set(counter, value + 1);
  }

  /** Removes registry members whose entry has expired; returns how many were removed. */
  async pruneRegistries(): Promise<number> {
    if (this.#refused("prune")) return 0;
    let removed = 0;
    for (const [registry, members] of this.#registries) {
      for (const key of members) {
        if (this.#live(key) === undefined) {
          members.delete(key);
          removed++;
        }
      }
      if (members.size === 0) this.#registries.delete(registry);
    }
    return removed + this.#pruneTagSets();
  }

  /** Drops tag set members whose entry is gone, and empty tag sets; returns members removed. */
  #pruneTagSets(): number {
    let removed = 0;
    for (const [setKey, set] of this.#tagSets) {
      for (const key of set) {
        if (this.#live(key) === undefined) {
          set.delete(key);
          removed++;
        }
      }
      if (set.size === 0) this.#tagSets.delete(setKey);
    }
    for (const [indexKey, index] of this.#tagIndexes) {
      for (const setKey of index) {
        if (!this.#tagSets.has(setKey)) {
          index.delete(setKey);
          removed++;
        }
      }
      if (index.size === 0) this.#tagIndexes.delete(indexKey);
    }
    return removed;
  }

  #key(input: unknown, companyId: string | undefined): string {
    return entryKey(this.prefix, this.name, hashInput(input, this.#maxKeyInputBytes), companyId);
  }

  /** The entry if it exists and has not expired; drops it when it has. */
  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt !== 0 && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #clear(registry: string): number {
    this.#bump(registryGenerationKey(this.prefix, registry));
    const indexKey = tagIndexKey(this.prefix, registry);
    for (const setKey of this.#tagIndexes.get(indexKey) ?? []) this.#tagSets.delete(setKey);
    this.#tagIndexes.delete(indexKey);
    const members = this.#registries.get(registry);
    if (!members) return 0;
    let deleted = 0;
    for (const key of members) {
      if (this.#live(key) !== undefined) deleted++;
      this.#entries.delete(key);
    }
    this.#registries.delete(registry);
    return deleted;
  }

  #unregister(registry: string, key: string): void {
    const members = this.#registries.get(registry);
    if (!members) return;
    members.delete(key);
    if (members.size === 0) this.#registries.delete(registry);
  }

  /** Drops expired entries once the map has doubled since the last sweep, so it stays bounded. */
  #maybeSweep(): void {
    if (this.#entries.size < this.#sweepAt) return;
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt !== 0 && entry.expiresAt <= now) this.#entries.delete(key);
    }
    // Tag sets stay bounded as the server's do (there, by sampling in the write script).
    if (this.#tagSets.size > 0) this.#pruneTagSets();
    this.#sweepAt = Math.max(1024, this.#entries.size * 2);
  }
}
