/**
 * The provider shared by `RedisCache` (ioredis) and `ValkeyCache` (iovalkey): both clients speak
 * the same protocol with the same API, so one implementation serves both and each subclass only
 * says which package to load and which config to read.
 *
 * @module
 */

import { isIP } from "node:net";
import { type RedisConfig, urlHost } from "./config.ts";
import { CacheConfigError, CacheDependencyError, CacheInputError } from "./errors.ts";
import { commandName, faultCause } from "./faults.ts";
import {
  DEFAULT_MAX_KEY_INPUT_BYTES,
  globEscape,
  hashInput,
  normalizeCompanyId,
  requireCompanyId,
} from "./keys.ts";
import {
  clearClusterRegistry,
  type ClusterClient,
  type ClusterConstructor,
  clusterOptions,
  clusterScriptClient,
  groupBySlot,
  pruneClusterRegistry,
  readWithFallback,
  type RegistryWalk,
  sampleClusterRegistry,
  seedNodes,
} from "./cluster.ts";
import { entryList, inputList } from "./batch.ts";
import { Coalescer } from "./coalesce.ts";
import { watchDeadlines } from "./deadline_watch.ts";
import { ClusterLayout, type KeyLayout, StandaloneLayout } from "./layout.ts";
import { keySlot } from "./slots.ts";
import { type CacheLogger, FaultLog } from "./log.ts";
import {
  loadScriptSources,
  registerScripts,
  runScript,
  type Script,
  type ScriptClient,
  type ScriptName,
} from "./scripts.ts";
import { readTextFile } from "./runtime.ts";
import { scanRegistries } from "./registries.ts";
import { type StallWatch, watchStalls } from "./stall_watch.ts";
import type {
  CacheBackend,
  ClearOptions,
  Compute,
  EntryOptions,
  GetOrSetOptions,
  SetOptions,
} from "./types.ts";
import {
  GENERATION_TTL_MS,
  GetOrSetRunner,
  type GetOrSetStore,
  type LockReply,
} from "./get_or_set.ts";
import { type CacheEventListener, type CacheStats, type Histogram, Metrics } from "./stats.ts";
import { DEFAULT_MAX_VALUE_BYTES, parseValue, serializeValue, ttlToMs } from "./values.ts";

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
   * In cluster mode (on by default) only GETs are pipelined, on a second, private `Cluster`
   * client (a GET whose pipeline meets a redirection is sent again on its own); every other
   * command is sent on its own, so a reshard never surfaces a redirection.
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
}

/**
 * The commands this library sends, as ioredis and iovalkey both define them. Kept structural so
 * the two client libraries stay optional peer dependencies.
 *
 * @example A provider's client, typed without importing ioredis
 * ```ts
 * import { type ProtocolClient, RedisCache, RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * async function ready(client: ProtocolClient | null): Promise<boolean> {
 *   return client?.status === "ready" && (await client.ping()) === "PONG";
 * }
 * const cache = new RedisCache({ config: new RedisConfig({ port: 6380 }) });
 * assert.equal(await ready(cache.client), false); // no client before connect()
 * ```
 */
export interface ProtocolClient extends ScriptClient {
  /** The connection state: "wait", "connecting", "ready", "reconnecting", "end", ... */
  readonly status: string;
  /** Opens the connection (the client is created with `lazyConnect`). */
  connect(): Promise<void>;
  /** Closes the connection at once, dropping pending replies. */
  disconnect(reconnect?: boolean): void;
  /** Closes the connection after pending replies (QUIT). */
  quit(): Promise<unknown>;
  /** PING. */
  ping(): Promise<string>;
  /** GET. */
  get(key: string): Promise<string | null>;
  /** MGET. */
  mget(...keys: string[]): Promise<(string | null)[]>;
  /** EXISTS. */
  exists(...keys: string[]): Promise<number>;
  /** SCAN with MATCH / COUNT / TYPE arguments. */
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  /** Adds an event listener ("error", "ready", "end"). */
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  /** Adds a one-time event listener. */
  once(event: string, listener: (...args: unknown[]) => void): unknown;
}

/**
 * Constructs a client of one library (ioredis or iovalkey) from ioredis-style options.
 *
 * @example What a provider's loader returns
 * ```ts
 * import type { ClientConstructor } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * // Loaded only when called, as the providers do.
 * const load = async (): Promise<ClientConstructor> =>
 *   (await import("ioredis")).Redis as unknown as ClientConstructor;
 * assert.equal(typeof load, "function");
 * ```
 */
export type ClientConstructor = new (options: Record<string, unknown>) => ProtocolClient;

const SET_MANY_CHUNK = 1000;
const PRUNE_PAGE = 500;
const CLUSTER_SAMPLE_EVERY = 16;

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
  readonly #defaultTtl: number | null;
  readonly #timeoutMs: number;
  readonly #poolSize: number;
  readonly #autoPipelining: boolean;
  readonly #maxValueBytes: number;
  readonly #maxKeyInputBytes: number;
  readonly #pruneSample: number;
  readonly #clearBatch: number;
  readonly #log: FaultLog;
  readonly #metrics: Metrics;
  readonly #op: Record<OperationName, Histogram>;
  readonly #getOrSet: GetOrSetRunner;
  readonly #layout: KeyLayout;
  #clients: ProtocolClient[] = [];
  /** What runs the scripts of `#clients[i]`: the client itself, or a cluster script client. */
  #scriptClients: ScriptClient[] = [];
  /** Cluster with auto-pipelining: a private pipelined client per `#clients[i]`, for GETs. */
  #readers: ProtocolClient[] = [];
  /** Writes so far, for the cluster's sampled registry pruning. */
  #writes = 0;
  #watches: StallWatch[] = [];
  /** A single server's tick-coalescing of GETs and writes (none in cluster mode). */
  readonly #coalescer: Coalescer | undefined;
  #next = 0;
  #scripts: Record<ScriptName, Script> | undefined;
  #closed = false;
  /** The last error a connection emitted: names the cause when connect() only sees "closed". */
  #lastConnectionError: unknown;

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
    this.name = checkName(options.name);
    this.#defaultTtl = options.ttl === undefined ? config.ttl : options.ttl;
    if (this.#defaultTtl !== null) ttlToMs(this.#defaultTtl, null);
    const timeout = options.timeout ?? config.timeout;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new CacheInputError(`Invalid timeout ${timeout}: pass a positive number of seconds`);
    }
    this.#timeoutMs = Math.ceil(timeout * 1000);
    this.#poolSize = Math.min(
      positiveInt("poolSize", options.poolSize ?? 1),
      config.maxConnections,
    );
    this.#autoPipelining = options.autoPipelining ?? config.mode === "cluster";
    this.#maxValueBytes = positiveInt(
      "maxValueBytes",
      options.maxValueBytes ?? config.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
    );
    this.#maxKeyInputBytes = positiveInt(
      "maxKeyInputBytes",
      options.maxKeyInputBytes ?? DEFAULT_MAX_KEY_INPUT_BYTES,
    );
    this.#pruneSample = nonNegativeInt("pruneSample", options.pruneSample ?? 2);
    this.#clearBatch = positiveInt("clearBatchSize", options.clearBatchSize ?? 500);
    this.#log = new FaultLog(options.logger, [config.password]);
    this.#metrics = new Metrics(
      options.onEvent,
      (error) => this.#log.fault("listener", "A cache event listener threw; ignored", error),
    );
    this.#op = operations(this.#metrics);
    this.#layout = config.mode === "cluster"
      ? new ClusterLayout(config.prefix, {
        tenantBuckets: config.clusterTenantBuckets,
        globalBuckets: config.clusterGlobalBuckets,
      })
      : new StandaloneLayout(config.prefix);
    this.#getOrSet = new GetOrSetRunner({
      prefix: config.prefix,
      layout: this.#layout,
      name: this.name,
      defaultTtl: this.#defaultTtl,
      maxValueBytes: this.#maxValueBytes,
      maxKeyInputBytes: this.#maxKeyInputBytes,
      store: this.#store(),
      metrics: this.#metrics,
      log: this.#log,
      fault: (operation, error) => this.#fault(operation, error),
    });
    // A cluster spreads one tick's keys over slots and masters, so there each call is sent alone.
    this.#coalescer = this.#layout.clustered ? undefined : new Coalescer({
      get: (key) => this.#send(() => this.#pick().get(key)),
      mget: (keys) => this.#send(() => this.#pick().mget(...keys)),
      write: (registry, keys, texts, ttlMs) => this.#write(registry, keys, texts, ttlMs),
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
    return this.#clients[0] ?? null;
  }

  /**
   * Connects every pooled connection, pings and registers the Lua scripts. Resolves `false`
   * (logged, never thrown) when the server cannot be reached; the connections keep retrying in
   * the background, so the cache comes alive when the server does.
   */
  async connect(): Promise<boolean> {
    if (this.#closed) return false;
    this.#scripts ??= await loadScriptSources();
    if (this.#clients.length === 0) {
      const tls = this.config.tls ? await tlsOptions(this.config, this.#envPrefix()) : undefined;
      // A close() during the awaits above found no connection to close: open none now.
      if (this.#closed) return false;
      if (this.#layout.clustered) {
        // Each node is checked against its own host name, not the first seed's.
        if (tls) delete tls.servername;
        const Cluster = await this.#loadClient(() => this.loadClusterClass());
        if (this.#closed) return false;
        for (let i = 0; i < this.#poolSize; i++) {
          const cluster = this.#createClusterClient(Cluster, tls, false);
          this.#clients.push(cluster);
          if (this.#autoPipelining) {
            this.#readers.push(this.#createClusterClient(Cluster, tls, true));
          }
          this.#scriptClients.push(
            clusterScriptClient(
              cluster,
              (promise, what) => withTimeout(promise, this.#timeoutMs, what),
            ),
          );
        }
      } else {
        const Client = await this.#loadClient(() => this.loadClientClass());
        if (this.#closed) return false;
        for (let i = 0; i < this.#poolSize; i++) {
          const client = this.#createClient(Client, tls);
          this.#clients.push(client);
          this.#scriptClients.push(client);
        }
      }
    }
    try {
      await withTimeout(
        Promise.all([
          ...this.#clients.map((client) => this.#ready(client)),
          ...this.#readers.map((reader) => this.#ready(reader, false)),
        ]),
        this.#timeoutMs,
        "connect",
      );
      if (this.#closed) return false;
      this.#log.recovered("connect");
      return true;
    } catch (error) {
      // close() during the connect ended it: not a fault to report.
      if (this.#closed) return false;
      // The connect promise often only says "Connection is closed": the connection's own error
      // (WRONGPASS, an untrusted certificate) tells the operator what to fix.
      const prefix = this.#envPrefix();
      const own = faultCause(error, prefix);
      const cause = own ?? faultCause(this.#lastConnectionError, prefix);
      this.#log.fault(
        "connect",
        cause
          ? `Cannot connect to the ${this.clientPackage} server at ${this.#where()}: ${cause.summary}; caching is off until it answers (retrying in the background)`
          : `Cannot reach ${this.clientPackage} server at ${this.#where()}; caching is off until it answers (retrying in the background)`,
        own || !cause ? error : this.#lastConnectionError,
      );
      return false;
    }
  }

  /** `true` when every connection answers PING within the timeout. */
  async healthCheck(): Promise<boolean> {
    if (this.#clients.length === 0) return false;
    try {
      const replies = await withTimeout(
        Promise.all(this.#clients.flatMap((client) => this.#nodesOf(client).map((n) => n.ping()))),
        this.#timeoutMs,
        "health check",
      );
      return replies.every((reply) => reply === "PONG");
    } catch (error) {
      this.#fault("health", error);
      return false;
    }
  }

  /** Closes every connection; later calls are misses. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const watch of this.#watches) watch.stop();
    const clients = [...this.#clients, ...this.#readers];
    await Promise.all(clients.map(async (client) => {
      if (client.status !== "ready") return dropConnection(client);
      try {
        await withTimeout(client.quit(), this.#timeoutMs, "quit");
      } catch {
        dropConnection(client);
      }
    }));
  }

  /** The cached value, or `null` on a miss or a server fault (logged). */
  async get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#layout.entryKey(this.name, this.#hash(input), companyId);
    let text: string | null;
    try {
      text = await this.#read(key);
    } catch (error) {
      this.#fault("get", error);
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
    const text = serializeValue(value, this.#maxValueBytes);
    const ttlMs = ttlToMs(options?.ttl, this.#defaultTtl);
    const registry = this.#layout.registryKey(hash, companyId);
    const ok = this.#coalescer
      ? await this.#coalescer.write(registry, key, text, ttlMs)
      : await this.#write(registry, [key], [text], ttlMs);
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
      const deleted = await this.#run("delete_and_unregister", [
        key,
        this.#layout.registryKey(hash, companyId),
      ], []);
      this.#metrics.timed(this.#op.delete, start);
      return deleted === 1;
    } catch (error) {
      this.#fault("delete", error);
      this.#metrics.failed(this.#op.delete, start, companyId, key);
      return false;
    }
  }

  /** `true` when the entry exists (one EXISTS, no value transfer). */
  async exists(input: unknown, options?: EntryOptions): Promise<boolean> {
    const start = performance.now();
    const key = this.#key(input, options?.companyId);
    try {
      const found = (await this.#pick().exists(key)) === 1;
      this.#metrics.timed(this.#op.exists, start);
      return found;
    } catch (error) {
      this.#fault("exists", error);
      this.#metrics.failed(this.#op.exists, start, normalizeCompanyId(options?.companyId), key);
      return false;
    }
  }

  /** The values of `inputs` in one MGET, in input order, `null` for each miss. */
  async getMany<T = unknown>(
    inputs: Iterable<unknown>,
    options?: EntryOptions,
  ): Promise<(T | null)[]> {
    const start = performance.now();
    const companyId = normalizeCompanyId(options?.companyId);
    const keys = inputList(inputs).map((input) =>
      this.#layout.entryKey(this.name, this.#hash(input), companyId)
    );
    if (keys.length === 0) return [];
    let texts: (string | null)[];
    try {
      texts = this.#layout.clustered
        ? await this.#mgetBySlot(keys)
        : await this.#pick().mget(...keys);
    } catch (error) {
      this.#fault("getMany", error);
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
    const ttlMs = ttlToMs(options?.ttl, this.#defaultTtl);
    // One group per registry: the scope on a single server, each bucket (one slot) in a cluster.
    const groups = new Map<string, { keys: string[]; texts: string[] }>();
    for (const [input, value] of entryList(entries)) {
      const hash = this.#hash(input);
      const text = serializeValue(value, this.#maxValueBytes);
      const registry = this.#layout.registryKey(hash, companyId);
      let group = groups.get(registry);
      if (!group) groups.set(registry, group = { keys: [], texts: [] });
      group.keys.push(this.#layout.entryKey(this.name, hash, companyId));
      group.texts.push(text);
    }
    let ok = true;
    let stored = 0;
    await Promise.all([...groups].map(async ([registry, { keys, texts }]) => {
      for (let from = 0; from < keys.length; from += SET_MANY_CHUNK) {
        const end = from + SET_MANY_CHUNK;
        const batch = await this.#write(
          registry,
          keys.slice(from, end),
          texts.slice(from, end),
          ttlMs,
        );
        if (batch) stored += Math.min(end, keys.length) - from;
        ok = batch && ok;
      }
    }));
    if (ok) this.#metrics.stored(this.#op.setMany, start, companyId, undefined, stored);
    else this.#metrics.failed(this.#op.setMany, start, companyId);
    return ok;
  }

  /**
   * Deletes every entry of one tenant in bounded batches; returns the keys deleted.
   * `options.onProgress` receives the running count after each batch.
   */
  async clearCompany(companyId: string | number, options?: ClearOptions): Promise<number> {
    const start = performance.now();
    const id = requireCompanyId(companyId);
    return await this.#clearRegistries(
      this.#layout.scopeRegistries(id),
      this.#op.clearCompany,
      start,
      options,
      id,
    );
  }

  /** Deletes every entry stored without a tenant; returns the keys deleted. */
  async clearGlobal(options?: ClearOptions): Promise<number> {
    const start = performance.now();
    return await this.#clearRegistries(
      this.#layout.scopeRegistries(undefined),
      this.#op.clearGlobal,
      start,
      options,
    );
  }

  /**
   * Deletes every registered entry under this prefix, tenants and global, including registries
   * written by the Python original; touches no key outside the prefix.
   */
  async clearAll(options?: ClearOptions): Promise<number> {
    const start = performance.now();
    try {
      // First the clear-all epoch: a getOrSet of a tenant that has no registry yet is invalidated
      // too.
      await this.#bumpEpochs();
    } catch (error) {
      this.#fault("clear", error);
      this.#metrics.failed(this.#op.clearAll, start);
      return 0;
    }
    const registries = await this.#scanRegistries();
    if (registries === null) {
      this.#metrics.failed(this.#op.clearAll, start);
      return 0;
    }
    return await this.#clearRegistries(registries, this.#op.clearAll, start, options);
  }

  /** Walks every registry and removes members whose key is gone; returns how many. */
  async pruneRegistries(): Promise<number> {
    const start = performance.now();
    const registries = await this.#scanRegistries();
    if (registries === null) {
      this.#metrics.failed(this.#op.prune, start);
      return 0;
    }
    let removed = 0;
    try {
      for (const registry of registries) {
        if (this.#layout.clustered) {
          removed += await pruneClusterRegistry(this.#walk(), registry, PRUNE_PAGE);
          continue;
        }
        let cursor = "0";
        do {
          const [next, count] = await this.#run("prune_registry", [registry], [
            cursor,
            PRUNE_PAGE,
          ]) as [string, number];
          cursor = String(next);
          removed += count;
        } while (cursor !== "0");
      }
      this.#metrics.timed(this.#op.prune, start);
    } catch (error) {
      this.#fault("prune", error);
      this.#metrics.failed(this.#op.prune, start);
    }
    return removed;
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
    return this.#metrics.snapshot();
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

  /** The primitives of getOrSet, each one command or script on this provider's connections. */
  #store(): GetOrSetStore {
    return {
      get: (key) => this.#read(key),
      readOrLock: async (keys, token, lockMs, staleMs) => {
        // The token's first 48 bits seed a missing generation counter with a random value.
        const seed = parseInt(token.slice(0, 12), 16);
        const [status, text, generation, all] = await this.#run(
          "read_or_lock",
          [keys.key, keys.lock, keys.generation, keys.all],
          [token, lockMs, staleMs, seed, GENERATION_TTL_MS],
        ) as [LockReply["status"], string | null, string | null, string | null];
        return { status, text, generation: generation ?? "", all: all ?? "" };
      },
      setIfGeneration: async (keys, text, ttlMs, reply, token) => {
        const stored = (await this.#run(
          "set_if_generation",
          [keys.registry, keys.key, keys.generation, keys.all, keys.lock],
          [ttlMs, this.#inScriptSample(), text, reply.generation, reply.all, token],
        )) === 1;
        if (stored) this.#sampleAfterWrite(keys.registry);
        return stored;
      },
      releaseLock: async (keys, token) => {
        await this.#run("release_lock", [keys.lock], [token]);
      },
    };
  }

  async #write(registry: string, keys: string[], texts: string[], ttlMs: number): Promise<boolean> {
    try {
      // The script samples pruneSample members per member it adds, so a batch prunes as much as
      // the same writes one by one (lua/set_and_register.lua).
      await this.#run("set_and_register", [registry, ...keys], [
        ttlMs,
        this.#inScriptSample(),
        ...texts,
      ]);
      this.#sampleAfterWrite(registry);
      return true;
    } catch (error) {
      this.#fault("set", error);
      return false;
    }
  }

  async #clearRegistries(
    registries: string[],
    op: Histogram,
    start: number,
    options?: ClearOptions,
    companyId?: string,
  ): Promise<number> {
    const prefix = this.config.prefix;
    const onProgress = options?.onProgress;
    let deleted = 0;
    try {
      for (const registry of registries) {
        if (this.#layout.clustered) {
          // The bucket's generation counter first (a script may only read declared keys, so the
          // cluster form deletes in separate calls; see lua/clear_members.lua).
          await this.#run("bump_generation", [this.#layout.generationKey(registry)], []);
          await clearClusterRegistry(this.#walk(), registry, this.#clearBatch, (count) => {
            deleted += count;
            if (onProgress) reportProgress(onProgress, deleted);
          });
          continue;
        }
        // The scope's generation counter goes with it: the script bumps it atomically.
        const keys = [registry, this.#layout.generationKey(registry)];
        for (;;) {
          const [count, left] = await this.#run("clear_registry", keys, [
            this.#clearBatch,
            prefix,
          ]) as [number, number];
          deleted += count;
          if (onProgress) reportProgress(onProgress, deleted);
          if (left === 0) break;
        }
      }
    } catch (error) {
      this.#fault("clear", error);
      this.#metrics.failed(op, start, companyId);
      return deleted;
    }
    this.#metrics.cleared(op, start, deleted, companyId);
    return deleted;
  }

  /**
   * Every Set named `<prefix>registry:*` that the layout treats as a registry, found with SCAN
   * (on every master of a cluster); `null` on a server fault.
   */
  async #scanRegistries(): Promise<string[] | null> {
    try {
      const found: string[] = [];
      for (const node of this.#nodesOf(this.#pick())) {
        for (const key of await scanRegistries(this.#bounded(node), this.config.prefix)) {
          if (this.#layout.isRegistry(key)) found.push(key);
        }
      }
      return found;
    } catch (error) {
      this.#fault("scan", error);
      return null;
    }
  }

  /**
   * Increments the clear-all epoch: the one key of a single server, or in a cluster every
   * bucket's epoch that exists (found with SCAN on every master; one script call per slot).
   * Throws on a server fault.
   */
  async #bumpEpochs(): Promise<void> {
    const single = this.#layout.epochKey(this.#layout.scopeRegistries(undefined)[0]);
    if (!this.#layout.clustered) {
      await this.#run("bump_generation", [single], []);
      return;
    }
    const pattern = `${globEscape(this.config.prefix)}generation:all:*`;
    const epochs: string[] = [];
    for (const node of this.#nodesOf(this.#pick())) {
      const client = this.#bounded(node);
      let cursor = "0";
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        epochs.push(...keys);
      } while (cursor !== "0");
    }
    const bySlot = new Map<number, string[]>();
    for (const key of epochs) {
      const slot = keySlot(key);
      bySlot.set(slot, [...bySlot.get(slot) ?? [], key]);
    }
    for (const keys of bySlot.values()) await this.#run("bump_generation", keys, []);
  }

  /** A node's SCAN, each call bounded by the timeout (node calls bypass a cluster's watch). */
  #bounded(node: ProtocolClient): Pick<ProtocolClient, "scan"> {
    return {
      scan: (cursor: string, ...args: (string | number)[]) =>
        withTimeout(node.scan(cursor, ...args), this.#timeoutMs, "scan"),
    };
  }

  /** The connections to address one by one: the masters of a cluster, else the client. */
  #nodesOf(client: ProtocolClient): ProtocolClient[] {
    return this.#layout.clustered ? (client as ClusterClient).nodes("master") : [client];
  }

  /**
   * The prune sample a write script takes itself: a single server's scripts sample registry
   * members in place; a cluster script may only touch the keys it declares, so there the
   * provider samples separately (`#sampleAfterWrite`).
   */
  #inScriptSample(): number {
    return this.#layout.clustered ? 0 : this.#pruneSample;
  }

  /**
   * In a cluster, every 16th write samples 16 times as many members of its registry, off the
   * write's path (`lua/prune_members.lua`): the sampling rate per write of a single server's
   * scripts, for one extra round trip per 16 writes. Best effort: `pruneRegistries()` catches up.
   */
  #sampleAfterWrite(registry: string): void {
    if (!this.#layout.clustered || this.#pruneSample === 0) return;
    if (++this.#writes % CLUSTER_SAMPLE_EVERY !== 0) return;
    sampleClusterRegistry(this.#walk(), registry, this.#pruneSample * CLUSTER_SAMPLE_EVERY)
      .catch(() => {});
  }

  /** What the cluster registry walks (src/cluster.ts) need. */
  #walk(): RegistryWalk {
    return {
      client: this.#pick() as ClusterClient,
      run: (name, keys, args) => this.#run(name, keys, args),
      prefix: this.config.prefix,
    };
  }

  /**
   * MGET per hash slot (a multi-key command must stay in one slot), replies in key order. A slot
   * whose MGET fails (its master down) reads as misses; the others are still served.
   */
  async #mgetBySlot(keys: string[]): Promise<(string | null)[]> {
    const client = this.#pick();
    const texts: (string | null)[] = new Array(keys.length).fill(null);
    await Promise.all([...groupBySlot(keys).values()].map(async (positions) => {
      try {
        const replies = await client.mget(...positions.map((i) => keys[i]));
        positions.forEach((position, i) => texts[position] = replies[i]);
      } catch (error) {
        this.#fault("getMany", error);
      }
    }));
    return texts;
  }

  #key(input: unknown, companyId: string | number | undefined): string {
    return this.#layout.entryKey(this.name, this.#hash(input), normalizeCompanyId(companyId));
  }

  /** The input's hash; a key input over maxKeyInputBytes is a CacheInputError. */
  #hash(input: unknown): string {
    return hashInput(input, this.#maxKeyInputBytes);
  }

  #parse<T>(text: string, key: string): T | null {
    try {
      return parseValue<T>(text);
    } catch (error) {
      this.#log.fault("parse", `Entry ${key} does not hold JSON text; read as a miss`, error);
      return null;
    }
  }

  #run(name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    // #scripts is set by connect(); a call before it finds no connection and faults anyway.
    const scripts = this.#scripts;
    if (!scripts) return Promise.reject(new Error("not connected: call connect() first"));
    this.#coalescer?.flush();
    return runScript(this.#scriptClients[this.#pickIndex()], scripts[name], keys, args);
  }

  /**
   * Sends a command; a throw before it goes out ("not connected" from `#pick`) becomes a
   * rejection, served as a miss like any fault. Not an async function: a read on the hot path
   * saves its promise.
   */
  #send<T>(command: () => Promise<T>): Promise<T> {
    try {
      return command();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A connection for a command; what this tick coalesced goes out before it, in call order. */
  #pick(): ProtocolClient {
    this.#coalescer?.flush();
    return this.#clients[this.#pickIndex()];
  }

  /**
   * A GET: in this tick's MGET on a single server; on a cluster pipelined (with a fallback on
   * redirections), or on the client.
   */
  #read(key: string): Promise<string | null> {
    if (this.#coalescer) return this.#coalescer.read(key);
    const i = this.#pickIndex();
    const reader = this.#readers[i];
    return reader === undefined
      ? this.#clients[i].get(key)
      : readWithFallback(reader, this.#clients[i], key, this.#timeoutMs);
  }

  #pickIndex(): number {
    const count = this.#clients.length;
    if (count === 1) return 0;
    if (count === 0) throw new Error("not connected: call connect() first");
    this.#next = (this.#next + 1) % count;
    return this.#next;
  }

  #fault(operation: string, error: unknown): void {
    const cause = faultCause(error, this.#envPrefix());
    this.#log.fault(
      operation,
      cause
        ? `Cache ${operation} failed at ${this.#where()}: ${cause.summary}; served as a miss`
        : `Cache ${operation} failed at ${this.#where()}; served as a miss`,
      error,
    );
  }

  /** `REDIS` or `VALKEY`: the environment variables a fault message points at. */
  #envPrefix(): string {
    return this.clientPackage === "iovalkey" ? "VALKEY" : "REDIS";
  }

  #where(): string {
    if (this.#layout.clustered) return `cluster ${this.config.clusterNodes.join(",")}`;
    // `[::1]:6379/0`: a bare IPv6 host would run into its port.
    return `${urlHost(this.config.host)}:${this.config.port}/${this.config.db}`;
  }

  async #loadClient<C>(load: () => Promise<C>): Promise<C> {
    try {
      return await load();
    } catch (error) {
      throw new CacheDependencyError(
        `Cannot load the "${this.clientPackage}" package: install it (npm install ${this.clientPackage}) or pick another provider`,
        { cause: error },
      );
    }
  }

  #createClient(
    Client: ClientConstructor,
    tls: Record<string, unknown> | undefined,
  ): ProtocolClient {
    const config = this.config;
    const client = new Client({
      host: config.host,
      port: config.port,
      db: config.db,
      username: config.username,
      password: config.password,
      tls,
      lazyConnect: true,
      connectTimeout: this.#timeoutMs,
      // Memory stays bounded and every call settles within the timeout however long the server
      // is down or hung (tests/faults_test.ts):
      // - no commandTimeout: its per-command timer costs more than the command itself; the stall
      //   watch below (src/stall_watch.ts) rejects every waiting call once the connection has
      //   gone `timeout` without a reply, and drops a silent connection, so a hung server (SIGSTOP,
      //   a network black hole) cannot pile up the calls made during the hang.
      // - enableOfflineQueue false: while the connection is not ready (server down, reconnecting)
      //   a call fails at once and is served as a miss, instead of waiting in an offline queue
      //   that grows with every call for as long as the outage lasts.
      // - maxRetriesPerRequest: with REDIS_RETRY_ON_TIMEOUT (the default) the commands in flight
      //   when a connection drops may be resent once after the reconnect, so a brief reset costs
      //   no miss; with 0 they fail at the first drop. The stall watch bounds the wait either way.
      enableOfflineQueue: false,
      maxRetriesPerRequest: config.retryOnTimeout ? 1 : 0,
      enableAutoPipelining: this.#autoPipelining,
      // Reconnect attempts back off to one per second: cheap for a down server (one refused TCP
      // connect), and a restarted server is in use again within about a second.
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), 1000),
    });
    client.on("error", (error) => {
      this.#lastConnectionError = error;
      // ioredis only logs a failed SELECT (or HELLO) of a new connection and goes on, so every
      // later command would run on database 0: another application's data. Ending the stream
      // here, before the connection is ready (its ready check is sent after SELECT's reply),
      // makes every command on it fail, and the reconnect tries the same SELECT again.
      if (REFUSED_SETUP.has(commandName(error) ?? "")) client.disconnect(true);
      const cause = faultCause(error, this.#envPrefix());
      this.#log.fault(
        "connection",
        cause
          ? `Connection to ${this.#where()} failed: ${cause.summary}`
          : `Connection to ${this.#where()} failed`,
        error,
      );
    });
    this.#watches.push(watchStalls(
      client as unknown as Parameters<typeof watchStalls>[0],
      this.#timeoutMs,
      (error) =>
        this.#log.fault(
          "stall",
          `No reply from ${this.#where()} for ${this.#timeoutMs} ms; calls are served as misses while it reconnects`,
          error,
        ),
    ));
    client.on("ready", () => {
      this.#lastConnectionError = undefined;
      this.#log.recovered("connection");
      // A restarted server has lost its scripts: register them again before calls arrive.
      if (this.#scripts) {
        registerScripts(client, this.#scripts).catch((error) => this.#fault("script load", error));
      }
    });
    return client;
  }

  #createClusterClient(
    Cluster: ClusterConstructor,
    tls: Record<string, unknown> | undefined,
    pipelined: boolean,
  ): ClusterClient {
    const cluster = new Cluster(
      seedNodes(this.config),
      clusterOptions(this.config, this.#timeoutMs, tls, pipelined),
    );
    const connectionFault = (error: unknown, node?: unknown) => {
      this.#lastConnectionError = error;
      const cause = faultCause(error, this.#envPrefix());
      const where = node === undefined ? this.#where() : `node ${String(node)} of ${this.#where()}`;
      this.#log.fault(
        "connection",
        cause ? `Connection to ${where} failed: ${cause.summary}` : `Connection to ${where} failed`,
        error,
      );
    };
    cluster.on("error", (error) => connectionFault(error));
    cluster.on("node error", (error, node) => connectionFault(error, node));
    // Per-command deadlines: with one master down the others keep answering, so the single
    // server's stall watch (no reply at all for the timeout) would never fire.
    this.#watches.push(watchDeadlines(
      cluster as unknown as Parameters<typeof watchDeadlines>[0],
      this.#timeoutMs,
      (error) =>
        this.#log.fault(
          "stall",
          `No reply from a node of ${this.#where()} within ${this.#timeoutMs} ms; served as a miss`,
          error,
        ),
    ));
    cluster.on("ready", () => {
      this.#lastConnectionError = undefined;
      this.#log.recovered("connection");
    });
    // A node connection made after connect() (a new master after a reshard, a node that came
    // back) may lack the scripts: register them when it is ready. NOSCRIPT is retried anyway.
    cluster.on("+node", (node) => {
      const scripts = this.#scripts;
      if (!scripts || pipelined) return; // the GET client runs no script
      (node as ProtocolClient).once("ready", () => {
        registerScripts(node as ProtocolClient, scripts).catch((error) =>
          this.#fault("script load", error)
        );
      });
    });
    return cluster;
  }

  async #ready(client: ProtocolClient, scripts = true): Promise<void> {
    if (client.status === "wait") await client.connect();
    else if (client.status !== "ready") {
      await new Promise<void>((resolve, reject) => {
        client.once("ready", () => resolve());
        client.once("end", () => reject(new Error("connection closed")));
      });
    }
    // A single server: the client; a cluster: every master (each has its own script cache).
    await Promise.all(
      this.#nodesOf(client).map(async (node) => {
        await node.ping();
        if (scripts) await registerScripts(node, this.#scripts!);
      }),
    );
  }
}

async function tlsOptions(
  config: RedisConfig,
  envPrefix: string,
): Promise<Record<string, unknown>> {
  // `servername` (SNI) lets certificate checks match the configured host name. An IP address is
  // not a valid SNI name (RFC 6066; Node rejects it): the certificate is then checked against the
  // IP address, which must be among its subjectAltNames.
  const options: Record<string, unknown> = isIP(config.host) === 0
    ? { servername: config.host }
    : {};
  if (config.tlsCa) {
    try {
      options.ca = await readTextFile(config.tlsCa);
    } catch (error) {
      throw new CacheConfigError(
        `Cannot read the TLS CA file ${config.tlsCa} (${envPrefix}_TLS_CA): ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }
  return options;
}

/**
 * Closes a connection now. `disconnect()` alone only half-closes the socket (FIN) and waits for
 * the server's side, which a hung server (SIGSTOP, a black hole) never sends: the socket, and
 * a `connect()` waiting on it, would live on and keep the process from exiting. Destroying the
 * stream ends both at once. A cluster client has no stream of its own: its `disconnect()`
 * closes every node's.
 */
function dropConnection(client: ProtocolClient): void {
  client.disconnect();
  (client as { stream?: { destroy?: () => void } }).stream?.destroy?.();
}

/**
 * Connection set-up commands whose failure leaves a connection on the wrong database or
 * protocol: such a connection must never serve a call.
 */
const REFUSED_SETUP = new Set(["select", "hello"]);

/** Calls a progress callback; its errors are ignored, so they can never cut a clear short. */
function reportProgress(onProgress: (deleted: number) => void, deleted: number): void {
  try {
    onProgress(deleted);
  } catch {
    // The clear goes on: a failing progress display must not leave a tenant half-cleared.
  }
}

/** The operations whose latency a provider records. */
type OperationName =
  | "get"
  | "set"
  | "delete"
  | "exists"
  | "getMany"
  | "setMany"
  | "clearCompany"
  | "clearGlobal"
  | "clearAll"
  | "prune";

function operations(metrics: Metrics): Record<OperationName, Histogram> {
  const names: OperationName[] = [
    "get",
    "set",
    "delete",
    "exists",
    "getMany",
    "setMany",
    "clearCompany",
    "clearGlobal",
    "clearAll",
    "prune",
  ];
  return Object.fromEntries(names.map((name) => [name, metrics.operation(name)])) as Record<
    OperationName,
    Histogram
  >;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
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
