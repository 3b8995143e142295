/**
 * The provider shared by `RedisCache` (ioredis) and `ValkeyCache` (iovalkey): what the cache
 * means (which keys, values and registries a call touches, what it counts and reports), written
 * once against the servers of its topology (src/servers.ts), a single server or a cluster
 * (src/topology/). Both client libraries speak the same protocol with the same API, so each
 * subclass only says which package to load and which config to read.
 *
 * The jobs it hands out, each in a module of its own: moving entries to and from the servers,
 * coalesced and through the near cache (src/entry_io.ts); clears, tag invalidations and prunes
 * (src/clears.ts); getOrSet's flow (src/get_or_set.ts) and its store (src/get_or_set_store.ts);
 * the log lines about faults, connects and circuit breakers (src/provider_log.ts); counters and
 * latencies (src/stats.ts).
 *
 * @module
 */

import { entryList, inputList } from "./batch.ts";
import type { ClientConstructor, ClusterConstructor, ProtocolClient } from "./client_types.ts";
import type { RedisConfig } from "./config.ts";
import { EntryIO } from "./entry_io.ts";
import { attachOtel, type OtelHandle } from "./otel.ts";
import { GetOrSetRunner } from "./get_or_set.ts";
import { getOrSetStore } from "./get_or_set_store.ts";
import { EntryKeys } from "./entry_keys.ts";
import { hashInput, normalizeCompanyId, requireCompanyId } from "./keys.ts";
import type { KeyLayout } from "./layout.ts";
import { FaultLog } from "./log.ts";
import {
  type RedisCacheOptions,
  type ResolvedOptions,
  resolveOptions,
} from "./provider_options.ts";
import { ProviderLog } from "./provider_log.ts";
import { Clears, type OnBatch, progressCounter } from "./clears.ts";
import { NearTier } from "./near_tier.ts";
import type { Servers } from "./servers.ts";
import {
  type CacheEventListener,
  type CacheStats,
  type Histogram,
  Metrics,
  operationHistograms,
  type OperationName,
} from "./stats.ts";
import { requireTags, tagTarget, validateTags } from "./tags.ts";
import { chooseTopology } from "./topology/choose.ts";
import type {
  CacheBackend,
  ClearOptions,
  Compute,
  EntryOptions,
  GetOrSetOptions,
  InvalidateTagsOptions,
  SetOptions,
} from "./types.ts";
import { parseValue, serializeValue, ttlToMs } from "./values.ts";

export type { RedisCacheOptions } from "./provider_options.ts";

/**
 * The Redis-protocol provider. Use `RedisCache` or `ValkeyCache`; this base only holds what they
 * share.
 *
 * @example Both providers are this class
 * ```ts
 * import {
 *   RedisCache,
 *   RedisConfig,
 *   RedisProtocolCache,
 *   ValkeyCache,
 *   ValkeyConfig,
 * } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const redis = new RedisCache({ config: new RedisConfig({ port: 6380 }) });
 * const valkey = new ValkeyCache({ config: new ValkeyConfig({ port: 6381 }) });
 * assert.ok(redis instanceof RedisProtocolCache && valkey instanceof RedisProtocolCache);
 * assert.equal(redis.client, null); // the constructor does no I/O
 * ```
 */
export abstract class RedisProtocolCache<Config extends RedisConfig> implements CacheBackend {
  /** The cache's name, the `<name>` part of every key. */
  readonly name: string;
  /** The resolved connection settings. */
  readonly config: Config;
  readonly #options: ResolvedOptions;
  readonly #log: FaultLog;
  /** The lines about the servers' faults, connects and breakers (src/provider_log.ts). */
  readonly #report: ProviderLog;
  readonly #metrics: Metrics;
  /** The OpenTelemetry recorder's link, when the `otel` option is on (src/otel.ts). */
  readonly #otel: OtelHandle;
  readonly #op: Record<OperationName, Histogram>;
  readonly #getOrSet: GetOrSetRunner;
  readonly #layout: KeyLayout;
  /** The entry keys of reads' inputs, remembered for hot inputs (src/entry_keys.ts). */
  readonly #keys: EntryKeys;
  readonly #servers: Servers;
  /** The entries' reads and writes: coalesced, through the near cache (src/entry_io.ts). */
  readonly #io: EntryIO;
  /** Clears, tag invalidations and prunes (src/clears.ts). */
  readonly #clears: Clears;
  /** The near cache, when it is on (src/near_tier.ts). */
  readonly #near: NearTier | undefined;
  #closed = false;

  /** The npm package whose client this provider drives. */
  protected abstract readonly clientPackage: "ioredis" | "iovalkey";

  /** Loads the client library; subclasses import their package by a literal specifier. */
  protected abstract loadClientClass(): Promise<ClientConstructor>;

  /**
   * Loads the client library's cluster class (for `mode: "cluster"`); subclasses import their
   * package by a literal specifier. The default has no cluster support.
   */
  protected loadClusterClass(): Promise<ClusterConstructor> {
    return Promise.reject(new Error(`no cluster client for ${this.clientPackage}`));
  }

  /**
   * Resolves the options against the config; no I/O happens until `connect()`.
   *
   * @param config The resolved config (from the options or the environment).
   * @param options The provider options.
   */
  protected constructor(config: Config, options: RedisCacheOptions<Config>) {
    this.config = config;
    this.#options = resolveOptions(config, options);
    this.name = this.#options.name;
    this.#log = new FaultLog(options.logger, [config.password]);
    this.#metrics = new Metrics(
      options.onEvent,
      (error) => this.#log.fault("listener", "A cache event listener threw; ignored", error),
    );
    this.#op = operationHistograms(this.#metrics);
    this.#report = new ProviderLog({
      log: this.#log,
      metrics: this.#metrics,
      clientPackage: () => this.clientPackage,
      where: () => this.#servers.where,
      probeIntervalMs: this.#options.breaker?.probeIntervalMs,
    });
    this.#otel = attachOtel(this.#metrics, options.otel, () => ({
      system: this.clientPackage === "iovalkey" ? "valkey" : "redis",
      config,
      name: this.name,
      stats: () => this.stats(),
    }), this.#log);
    const clientPackage = () => this.clientPackage;
    const report = this.#report;
    const topology = chooseTopology({
      config,
      timeoutMs: this.#options.timeoutMs,
      poolSize: this.#options.poolSize,
      autoPipelining: this.#options.autoPipelining,
      // The subclass's fields are set after this constructor: read them when used.
      get clientPackage() {
        return clientPackage();
      },
      get envPrefix() {
        return report.envPrefix;
      },
      loadClient: () => this.loadClientClass(),
      loadCluster: () => this.loadClusterClass(),
      log: this.#log,
      fault: (operation, error) => report.fault(operation, error),
      breaker: this.#options.breaker,
      circuit: (target, open, { error, openMs }) => report.circuit(target, open, error, openMs),
    });
    this.#servers = topology.servers;
    this.#layout = topology.layout;
    this.#keys = new EntryKeys(this.#layout, this.name, this.#options.maxKeyInputBytes);
    const upkeep = topology.upkeep({
      servers: () => this.#io.now(),
      layout: this.#layout,
      prefix: config.prefix,
      pruneSample: this.#options.pruneSample,
      clearBatch: this.#options.clearBatch,
    });
    const layout = this.#layout;
    const near = this.#options.nearCache;
    this.#near = near === null ? undefined : new NearTier(near, {
      servers: this.#servers,
      layout,
      prefix: config.prefix,
      name: this.name,
      log: this.#log,
      onDrop: (kind, count) => {
        if (this.#metrics.listening) {
          this.#metrics.emit(`near-${kind}`, "nearCache", 0, undefined, undefined, count);
        }
      },
    });
    const fault = (operation: string, error: unknown) => report.fault(operation, error);
    this.#io = new EntryIO({ servers: this.#servers, upkeep, near: this.#near, fault });
    this.#clears = new Clears({
      servers: () => this.#io.now(),
      layout,
      prefix: config.prefix,
      upkeep,
      tags: {
        servers: () => this.#io.now(),
        clustered: layout.clustered,
        prefix: config.prefix,
        batch: this.#options.clearBatch,
        generationKey: (registry) => layout.generationKey(registry),
      },
      fault,
    });
    this.#getOrSet = new GetOrSetRunner({
      prefix: config.prefix,
      layout: this.#layout,
      name: this.name,
      defaultTtl: this.#options.defaultTtl,
      maxValueBytes: this.#options.maxValueBytes,
      maxKeyInputBytes: this.#options.maxKeyInputBytes,
      store: getOrSetStore(this.#io, config.prefix),
      metrics: this.#metrics,
      log: this.#log,
      fault,
    });
  }

  /** The key prefix, used exactly as configured. */
  get prefix(): string {
    return this.config.prefix;
  }

  /**
   * The first connection's client (an ioredis or iovalkey `Redis`; cast it to that type for the
   * full command set), `null` before `connect()`.
   */
  get client(): ProtocolClient | null {
    return this.#servers.client;
  }

  /**
   * Connects every pooled connection, pings and registers the Lua scripts. Resolves `false`
   * (logged, never thrown) when the server cannot be reached; the connections keep retrying in
   * the background, so the cache comes alive when the server does.
   */
  async connect(): Promise<boolean> {
    if (this.#closed) return false;
    // With the otel option, recording starts before the first call (never rejects).
    await this.#otel.ready;
    // A missing client library or an unreadable CA file is the caller's to fix: thrown.
    await this.#servers.open();
    // A close() during the awaits above found no connection to close: open none now.
    if (this.#closed) return false;
    try {
      // The near cache's subscribers connect alongside; until they are armed it is bypassed.
      await Promise.all([
        this.#servers.ready(),
        this.#near?.start(this.#options.timeoutMs),
      ]);
      if (this.#closed) return false;
      this.#log.recovered("connect");
      return true;
    } catch (error) {
      // close() during the connect ended it: not a fault to report.
      if (this.#closed) return false;
      this.#report.connectFailed(error, this.#servers.lastConnectionError);
      return false;
    }
  }

  /** `true` when every connection answers PING within the timeout. */
  async healthCheck(): Promise<boolean> {
    try {
      return await this.#servers.ping();
    } catch (error) {
      this.#report.fault("health", error);
      return false;
    }
  }

  /** Closes every connection; later calls are misses. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#otel.close();
    await Promise.all([this.#servers.close(), this.#near?.close()]);
  }

  /** The cached value, or `null` on a miss or a server fault (logged). */
  async get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#keys.of(input, companyId);
    let now: number | undefined;
    if (this.#near !== undefined) {
      // One clock read serves the near cache's checks, and ends a hit's measured time.
      now = performance.now();
      let local: T | null | undefined;
      try {
        local = this.#near.cache.get<T>(key, now);
      } catch (error) {
        // Held, but not JSON (a foreign write): read as a miss, as a server read of it would be.
        this.#parseFault(key, error);
        local = null;
      }
      if (local !== undefined) {
        this.#metrics.lookup(this.#op.get, true, start, companyId, key, now);
        return local;
      }
    }
    let text: string | null;
    try {
      text = await this.#io.fetchText(key, now);
    } catch (error) {
      this.#report.fault("get", error);
      this.#metrics.failed(this.#op.get, start, companyId, key);
      return null;
    }
    this.#metrics.lookup(this.#op.get, text !== null, start, companyId, key);
    return text === null ? null : this.#parse<T>(text, key);
  }

  /**
   * Stores `value` and registers its key in one EVALSHA (shared with the other writes of the same
   * scope and TTL made in the same tick); `false` on a server fault.
   */
  async set(input: unknown, value: unknown, options?: SetOptions): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const hash = this.#hash(input);
    const key = this.#layout.entryKey(this.name, hash, companyId);
    const text = serializeValue(value, this.#options.maxValueBytes);
    const ttlMs = ttlToMs(options?.ttl, this.#options.defaultTtl);
    const tags = validateTags(options?.tags);
    const registry = this.#layout.registryKey(hash, companyId);
    const ok = await this.#io.write(
      registry,
      key,
      text,
      ttlMs,
      tags.length === 0 ? undefined : tagTarget(this.config.prefix, registry, tags),
    );
    if (ok) this.#metrics.stored(this.#op.set, start, companyId, key);
    else this.#metrics.failed(this.#op.set, start, companyId, key);
    return ok;
  }

  /** Deletes one entry and unregisters it; `true` when it existed. */
  async delete(input: unknown, options?: EntryOptions): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const hash = this.#hash(input);
    const key = this.#layout.entryKey(this.name, hash, companyId);
    try {
      const deleted = await this.#io.remove(key, this.#layout.registryKey(hash, companyId));
      this.#metrics.timed(this.#op.delete, start);
      return deleted;
    } catch (error) {
      this.#report.fault("delete", error);
      this.#metrics.failed(this.#op.delete, start, companyId, key);
      return false;
    }
  }

  /** `true` when the entry exists (one EXISTS, no value transfer). */
  async exists(input: unknown, options?: EntryOptions): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#keys.of(input, companyId);
    if (this.#near?.cache.holds(key) === true) {
      this.#metrics.timed(this.#op.exists, start);
      return true;
    }
    try {
      const found = (await this.#io.now().exists(key)) === 1;
      this.#metrics.timed(this.#op.exists, start);
      return found;
    } catch (error) {
      this.#report.fault("exists", error);
      this.#metrics.failed(this.#op.exists, start, companyId, key);
      return false;
    }
  }

  /** The values of `inputs` in one MGET (one per slot in a cluster), in input order. */
  async getMany<T = unknown>(
    inputs: Iterable<unknown>,
    options?: EntryOptions,
  ): Promise<(T | null)[]> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const keys = inputList(inputs).map((input) => this.#keys.of(input, companyId));
    if (keys.length === 0) return [];
    let texts: (string | null)[];
    try {
      texts = await this.#io.readMany(keys, (error) => this.#report.fault("getMany", error));
    } catch (error) {
      this.#report.fault("getMany", error);
      this.#metrics.failed(this.#op.getMany, start, companyId);
      return keys.map(() => null);
    }
    this.#metrics.lookups(
      this.#op.getMany,
      keys,
      texts.map((text) => text !== null),
      start,
      companyId,
    );
    return texts.map((text, i) => text === null ? null : this.#parse<T>(text, keys[i]));
  }

  /**
   * Stores every entry of one scope: each batch of up to 1000 entries is one atomic EVALSHA.
   * Every entry is validated before anything is sent, so bad input writes nothing.
   */
  async setMany(
    entries: Iterable<readonly [unknown, unknown]>,
    options?: SetOptions,
  ): Promise<boolean> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const ttlMs = ttlToMs(options?.ttl, this.#options.defaultTtl);
    const tags = validateTags(options?.tags);
    // One group per registry: the scope on a single server, each bucket (one slot) in a cluster.
    const groups = new Map<string, { keys: string[]; texts: string[] }>();
    for (const [input, value] of entryList(entries)) {
      const hash = this.#hash(input);
      const text = serializeValue(value, this.#options.maxValueBytes);
      const registry = this.#layout.registryKey(hash, companyId);
      let group = groups.get(registry);
      if (!group) groups.set(registry, group = { keys: [], texts: [] });
      group.keys.push(this.#layout.entryKey(this.name, hash, companyId));
      group.texts.push(text);
    }
    let ok = true;
    let stored = 0;
    await Promise.all([...groups].map(async ([registry, { keys, texts }]) => {
      const target = tagTarget(this.config.prefix, registry, tags);
      const written = await this.#io.writeInBatches(registry, keys, texts, ttlMs, target);
      stored += written;
      ok = written === keys.length && ok;
    }));
    if (ok) this.#metrics.stored(this.#op.setMany, start, companyId, undefined, stored);
    else this.#metrics.failed(this.#op.setMany, start, companyId);
    return ok;
  }

  /**
   * Deletes every entry of one scope that carries any of `tags`, in bounded batches (one bounded
   * script call per batch, fanned out over the scope's buckets in a cluster); returns the keys
   * deleted, an entry carrying several of the tags counted once. Counts as a clear for
   * getOrSet: the scope's generation is bumped, so a value computed across it is not stored.
   * `options.onProgress` receives the running count after each batch.
   */
  async invalidateTags(
    tags: readonly string[],
    options?: InvalidateTagsOptions,
  ): Promise<number> {
    const start = performance.now();
    const checked = requireTags(tags);
    const companyId = normalizeCompanyId(options?.companyId);
    return await this.#cleared(
      this.#op.invalidateTags,
      start,
      companyId,
      options,
      (onBatch) => this.#clears.invalidateTags(companyId, checked, onBatch),
    );
  }

  /**
   * Deletes every entry of one tenant in bounded batches; returns the keys deleted.
   * `options.onProgress` receives the running count after each batch.
   */
  async clearCompany(companyId: string | number, options?: ClearOptions): Promise<number> {
    const start = performance.now();
    const id = requireCompanyId(companyId);
    const registries = this.#layout.scopeRegistries(id);
    return await this.#cleared(
      this.#op.clearCompany,
      start,
      id,
      options,
      (onBatch) => this.#clears.clearRegistries(registries, onBatch),
    );
  }

  /** Deletes every entry stored without a tenant; returns the keys deleted. */
  async clearGlobal(options?: ClearOptions): Promise<number> {
    const start = performance.now();
    const registries = this.#layout.scopeRegistries(undefined);
    return await this.#cleared(
      this.#op.clearGlobal,
      start,
      undefined,
      options,
      (onBatch) => this.#clears.clearRegistries(registries, onBatch),
    );
  }

  /**
   * Deletes every registered entry under this prefix, tenants and global, including registries
   * written by the Python original; touches no key outside the prefix.
   */
  async clearAll(options?: ClearOptions): Promise<number> {
    const start = performance.now();
    return await this.#cleared(
      this.#op.clearAll,
      start,
      undefined,
      options,
      (onBatch) => this.#clears.clearAll(onBatch),
      true,
    );
  }

  /**
   * Walks every registry, tag set and tag index and removes members whose key is gone; returns
   * how many.
   */
  async pruneRegistries(): Promise<number> {
    const start = performance.now();
    const removed = await this.#clears.prune();
    if (removed === null) this.#metrics.failed(this.#op.prune, start);
    else this.#metrics.timed(this.#op.prune, start);
    return removed ?? 0;
  }

  /**
   * The cached value, or runs `compute()` once per key across this process's callers and, through
   * a lock on the server, across processes; stores its result unless a clear ran while it was
   * computed (generation counters, checked by the write script); returns it. With
   * `staleWhileRevalidate`, a stale value is returned at once while one caller refreshes it in
   * the background. A server fault never throws: `compute()`'s value is returned, unstored. An
   * error thrown by `compute()` reaches the caller; nothing is stored and the lock is released.
   *
   * @param input Any JSON-serializable value naming the entry.
   * @param compute Produces the value on a miss.
   * @param options `ttl`, `companyId`, `lockTimeout` (seconds, default 10) and
   * `staleWhileRevalidate` (seconds, default off).
   * @returns The value, as JSON carries it (cached or computed alike).
   */
  getOrSet<T>(input: unknown, compute: Compute<T>, options?: GetOrSetOptions): Promise<T> {
    return this.#getOrSet.run(input, compute, options);
  }

  /** Counters and latency percentiles since this provider was created. */
  stats(): CacheStats {
    const stats = this.#metrics.snapshot(this.#servers.openCircuits());
    if (this.#near !== undefined) stats.nearCache = this.#near.stats();
    return stats;
  }

  /**
   * Adds an event listener (hit, miss, set, error, clear).
   *
   * @param listener Called synchronously with each event; its errors are ignored.
   * @returns The function that removes the listener.
   */
  subscribe(listener: CacheEventListener): () => void {
    return this.#metrics.subscribe(listener);
  }

  /**
   * Runs a clear or a tag invalidation of one scope (`companyId`; `undefined`: global) or, with
   * `all`, of everything, counting its batches for `options.onProgress` and the result, then drops
   * what the near cache held of it and records it; returns the keys deleted (up to a fault,
   * logged).
   */
  async #cleared(
    op: Histogram,
    start: number,
    companyId: string | undefined,
    options: ClearOptions | undefined,
    run: (onBatch: OnBatch) => Promise<boolean>,
    all = false,
  ): Promise<number> {
    const progress = progressCounter(options?.onProgress);
    const ok = await run(progress.onBatch);
    const deleted = progress.deleted;
    // The server's invalidations of the same keys may arrive after the call resolves.
    if (all) this.#near?.cache.flush();
    else this.#near?.dropScope(companyId);
    if (ok) this.#metrics.cleared(op, start, deleted, companyId);
    else this.#metrics.failed(op, start, companyId);
    return deleted;
  }

  /** The input's hash; a key input over maxKeyInputBytes is a CacheInputError. */
  #hash(input: unknown): string {
    return hashInput(input, this.#options.maxKeyInputBytes);
  }

  #parse<T>(text: string, key: string): T | null {
    try {
      return parseValue<T>(text);
    } catch (error) {
      this.#parseFault(key, error);
      return null;
    }
  }

  #parseFault(key: string, error: unknown): void {
    this.#log.fault("parse", `Entry ${key} does not hold JSON text; read as a miss`, error);
  }
}
