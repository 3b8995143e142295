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
import { StandaloneLayout } from "./layout.ts";
import { GetOrSetRunner } from "./get_or_set.ts";
import { MemoryStore, type PreparedWrite } from "./memory_store.ts";
import { attachOtel, type OtelHandle } from "./otel.ts";
import type { OtelOptions } from "./otel_options.ts";
import type { NearCacheOptions } from "./provider_options.ts";
import { type CacheEventListener, type CacheStats, type Histogram, Metrics } from "./stats.ts";
import { requireTags, validateTags } from "./tags.ts";
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
  /** Entries, registries, tags, locks and generations (src/memory_store.ts). */
  readonly #store: MemoryStore;
  readonly #log: FaultLog;
  readonly #metrics: Metrics;
  /** The OpenTelemetry recorder's link, when the `otel` option is on (src/otel.ts). */
  readonly #otel: OtelHandle;
  readonly #opGet: Histogram;
  readonly #opSet: Histogram;
  readonly #opGetMany: Histogram;
  readonly #opSetMany: Histogram;
  readonly #getOrSet: GetOrSetRunner;
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
    this.#store = new MemoryStore(this.prefix);
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
      store: this.#store.getOrSetStore(() => this.#refuseGetOrSet()),
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
    this.#store.reset();
  }

  /** The cached value (a fresh copy), or `null` on a miss. */
  async get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#key(input, companyId);
    if (this.#refused("get")) return null;
    const text = this.#store.text(key);
    this.#metrics.lookup(this.#opGet, text !== undefined, start, companyId, key);
    return text === undefined ? null : parseValue<T>(text);
  }

  /** Stores a copy of `value` (as JSON text) and registers its key. */
  async set(input: unknown, value: unknown, options?: SetOptions): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const prepared = this.#prepare([[input, value]], companyId, options?.ttl, options?.tags);
    if (this.#refused("set")) return false;
    const [key] = this.#store.write(prepared);
    this.#metrics.stored(this.#opSet, start, companyId, key);
    return true;
  }

  /** Deletes one entry; `true` when it existed. */
  async delete(input: unknown, options?: EntryOptions): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#key(input, companyId);
    if (this.#refused("delete")) return false;
    return this.#store.delete(key, registryKey(this.prefix, companyId));
  }

  /** `true` when the entry exists and has not expired. */
  async exists(input: unknown, options?: EntryOptions): Promise<boolean> {
    const key = this.#key(input, normalizeCompanyId(options?.companyId));
    if (this.#refused("exists")) return false;
    return this.#store.text(key) !== undefined;
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
    const texts = keys.map((key) => this.#store.text(key));
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
    const keys = this.#store.write(prepared);
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
    const deleted = this.#store.invalidateTags(registryKey(this.prefix, companyId), checked);
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
    const deleted = this.#store.clear(registryKey(this.prefix, id));
    this.#metrics.cleared(this.#metrics.operation("clearCompany"), start, deleted, id);
    return deleted;
  }

  /** Deletes every entry stored without a tenant; returns how many were deleted. */
  async clearGlobal(_options?: ClearOptions): Promise<number> {
    const start = performance.now();
    if (this.#refused("clearGlobal")) return 0;
    const deleted = this.#store.clear(registryKey(this.prefix, undefined));
    this.#metrics.cleared(this.#metrics.operation("clearGlobal"), start, deleted);
    return deleted;
  }

  /** Deletes every entry of every scope; returns how many were deleted. */
  async clearAll(_options?: ClearOptions): Promise<number> {
    const start = performance.now();
    if (this.#refused("clearAll")) return 0;
    const deleted = this.#store.clearAll();
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

  /** Removes registry members whose entry has expired; returns how many were removed. */
  async pruneRegistries(): Promise<number> {
    if (this.#refused("prune")) return 0;
    return this.#store.prune();
  }

  #key(input: unknown, companyId: string | undefined): string {
    return entryKey(this.prefix, this.name, hashInput(input, this.#maxKeyInputBytes), companyId);
  }
}
