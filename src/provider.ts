/**
 * The provider shared by `RedisCache` (ioredis) and `ValkeyCache` (iovalkey): both clients speak
 * the same protocol with the same API, so one implementation serves both and each subclass only
 * says which package to load and which config to read.
 *
 * @module
 */

import type { RedisConfig } from "./config.ts";
import { CacheConfigError, CacheDependencyError, CacheInputError } from "./errors.ts";
import { hashInput, normalizeCompanyId, requireCompanyId } from "./keys.ts";
import {
  clearClusterRegistry,
  type ClusterClient,
  type ClusterConstructor,
  clusterOptions,
  clusterScriptClient,
  groupBySlot,
  pruneClusterRegistry,
  type RegistryWalk,
  sampleClusterRegistry,
  seedNodes,
} from "./cluster.ts";
import { watchDeadlines } from "./deadline_watch.ts";
import { ClusterLayout, type KeyLayout, StandaloneLayout } from "./layout.ts";
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
import type { CacheBackend, ClearOptions, EntryOptions, SetOptions } from "./types.ts";
import {
  DEFAULT_MAX_VALUE_BYTES,
  entryPair,
  parseValue,
  serializeValue,
  ttlToMs,
} from "./values.ts";

/** Options of `RedisCache` and `ValkeyCache`. */
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
   * How many connections to open and spread calls over, at most `config.maxConnections`.
   *
   * @default {1}
   */
  poolSize?: number;
  /**
   * Queue commands issued in the same tick into one write (ioredis `enableAutoPipelining`).
   *
   * @default {true}
   */
  autoPipelining?: boolean;
  /**
   * The largest value, in UTF-8 bytes of its JSON, that `set` accepts.
   *
   * @default {67108864 (64 MiB)}
   */
  maxValueBytes?: number;
  /**
   * Where fault lines go (rate-limited; never holds the password).
   *
   * @default {console.warn}
   */
  logger?: CacheLogger;
  /**
   * How many random registry members each write samples to prune expired ones; `0` disables it.
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
}

/**
 * The commands this library sends, as ioredis and iovalkey both define them. Kept structural so
 * the two client libraries stay optional peer dependencies.
 */
export interface ProtocolClient extends ScriptClient {
  /** The connection state: "wait", "connecting", "ready", "reconnecting", "end", ... */
  readonly status: string;
  /** Opens the connection (the client is created with `lazyConnect`). */
  connect(): Promise<void>;
  /** Closes the connection at once, dropping pending replies. */
  disconnect(): void;
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

/** Constructs a client of one library (ioredis or iovalkey) from ioredis-style options. */
export type ClientConstructor = new (options: Record<string, unknown>) => ProtocolClient;

const SET_MANY_CHUNK = 1000;
const PRUNE_PAGE = 500;
const CLUSTER_SAMPLE_EVERY = 16;

/**
 * The Redis-protocol provider. Use `RedisCache` or `ValkeyCache`; this base only holds what they
 * share.
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
  readonly #pruneSample: number;
  readonly #clearBatch: number;
  readonly #log: FaultLog;
  readonly #layout: KeyLayout;
  #clients: ProtocolClient[] = [];
  /** What runs the scripts of `#clients[i]`: the client itself, or a cluster script client. */
  #scriptClients: ScriptClient[] = [];
  /** Writes so far, for the cluster's sampled registry pruning. */
  #writes = 0;
  #watches: StallWatch[] = [];
  #next = 0;
  #scripts: Record<ScriptName, Script> | undefined;
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
    this.#autoPipelining = options.autoPipelining ?? true;
    this.#maxValueBytes = positiveInt(
      "maxValueBytes",
      options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
    );
    this.#pruneSample = nonNegativeInt("pruneSample", options.pruneSample ?? 2);
    this.#clearBatch = positiveInt("clearBatchSize", options.clearBatchSize ?? 500);
    this.#log = new FaultLog(options.logger, [config.password]);
    this.#layout = config.mode === "cluster"
      ? new ClusterLayout(config.prefix, {
        tenantBuckets: config.clusterTenantBuckets,
        globalBuckets: config.clusterGlobalBuckets,
      })
      : new StandaloneLayout(config.prefix);
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
      const tls = this.config.tls ? await tlsOptions(this.config) : undefined;
      if (this.#layout.clustered) {
        const Cluster = await this.#loadClient(() => this.loadClusterClass());
        for (let i = 0; i < this.#poolSize; i++) {
          const cluster = this.#createClusterClient(Cluster, tls);
          this.#clients.push(cluster);
          this.#scriptClients.push(
            clusterScriptClient(
              cluster,
              (promise, what) => withTimeout(promise, this.#timeoutMs, what),
            ),
          );
        }
      } else {
        const Client = await this.#loadClient(() => this.loadClientClass());
        for (let i = 0; i < this.#poolSize; i++) {
          const client = this.#createClient(Client, tls);
          this.#clients.push(client);
          this.#scriptClients.push(client);
        }
      }
    }
    try {
      await withTimeout(
        Promise.all(this.#clients.map((client) => this.#ready(client))),
        this.#timeoutMs,
        "connect",
      );
      this.#log.recovered("connect");
      return true;
    } catch (error) {
      this.#log.fault(
        "connect",
        `Cannot reach ${this.clientPackage} server at ${this.#where()}; caching is off until it answers (retrying in the background)`,
        error,
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
    const clients = this.#clients;
    await Promise.all(clients.map(async (client) => {
      if (client.status !== "ready") return client.disconnect();
      try {
        await withTimeout(client.quit(), this.#timeoutMs, "quit");
      } catch {
        client.disconnect();
      }
    }));
  }

  /** The cached value, or `null` on a miss or a server fault (logged). */
  async get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
    const key = this.#key(input, options?.companyId);
    let text: string | null;
    try {
      text = await this.#pick().get(key);
    } catch (error) {
      this.#fault("get", error);
      return null;
    }
    return text === null ? null : this.#parse<T>(text, key);
  }

  /** Stores `value` and registers its key in one EVALSHA; `false` on a server fault. */
  async set(input: unknown, value: unknown, options?: SetOptions): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const hash = hashInput(input);
    const key = this.#layout.entryKey(this.name, hash, companyId);
    const text = serializeValue(value, this.#maxValueBytes);
    const ttlMs = ttlToMs(options?.ttl, this.#defaultTtl);
    return await this.#store(this.#layout.registryKey(hash, companyId), [key], [text], ttlMs);
  }

  /** Deletes one entry and unregisters it; `true` when it existed. */
  async delete(input: unknown, options?: EntryOptions): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const hash = hashInput(input);
    const key = this.#layout.entryKey(this.name, hash, companyId);
    try {
      const deleted = await this.#run("delete_and_unregister", [
        key,
        this.#layout.registryKey(hash, companyId),
      ], []);
      return deleted === 1;
    } catch (error) {
      this.#fault("delete", error);
      return false;
    }
  }

  /** `true` when the entry exists (one EXISTS, no value transfer). */
  async exists(input: unknown, options?: EntryOptions): Promise<boolean> {
    const key = this.#key(input, options?.companyId);
    try {
      return (await this.#pick().exists(key)) === 1;
    } catch (error) {
      this.#fault("exists", error);
      return false;
    }
  }

  /** The values of `inputs` in one MGET, in input order, `null` for each miss. */
  async getMany<T = unknown>(
    inputs: readonly unknown[],
    options?: EntryOptions,
  ): Promise<(T | null)[]> {
    const companyId = normalizeCompanyId(options?.companyId);
    const keys = inputs.map((input) =>
      this.#layout.entryKey(this.name, hashInput(input), companyId)
    );
    if (keys.length === 0) return [];
    let texts: (string | null)[];
    try {
      texts = this.#layout.clustered
        ? await this.#mgetBySlot(keys)
        : await this.#pick().mget(...keys);
    } catch (error) {
      this.#fault("getMany", error);
      return keys.map(() => null);
    }
    return texts.map((text, i) => text === null ? null : this.#parse<T>(text, keys[i]));
  }

  /**
   * Stores every entry of one scope: each batch of up to 1000 entries is one atomic EVALSHA.
   * Every entry is validated before anything is sent, so bad input writes nothing.
   */
  async setMany(
    entries: readonly (readonly [unknown, unknown])[],
    options?: SetOptions,
  ): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const ttlMs = ttlToMs(options?.ttl, this.#defaultTtl);
    // One group per registry: a scope standalone, a bucket (one slot) in a cluster.
    const groups = new Map<string, { keys: string[]; texts: string[] }>();
    for (const entry of entries) {
      const [input, value] = entryPair(entry);
      const hash = hashInput(input);
      const text = serializeValue(value, this.#maxValueBytes);
      const registry = this.#layout.registryKey(hash, companyId);
      let group = groups.get(registry);
      if (!group) groups.set(registry, group = { keys: [], texts: [] });
      group.keys.push(this.#layout.entryKey(this.name, hash, companyId));
      group.texts.push(text);
    }
    const results = await Promise.all([...groups].map(async ([registry, { keys, texts }]) => {
      let ok = true;
      for (let start = 0; start < keys.length; start += SET_MANY_CHUNK) {
        const end = start + SET_MANY_CHUNK;
        ok = await this.#store(registry, keys.slice(start, end), texts.slice(start, end), ttlMs) &&
          ok;
      }
      return ok;
    }));
    return results.every(Boolean);
  }

  /**
   * Deletes every entry of one tenant in bounded batches; returns the keys deleted.
   * `options.onProgress` receives the running count after each batch.
   */
  async clearCompany(companyId: string | number, options?: ClearOptions): Promise<number> {
    const id = requireCompanyId(companyId);
    return await this.#clearRegistries(this.#layout.scopeRegistries(id), options);
  }

  /** Deletes every entry stored without a tenant; returns the keys deleted. */
  async clearGlobal(options?: ClearOptions): Promise<number> {
    return await this.#clearRegistries(this.#layout.scopeRegistries(undefined), options);
  }

  /**
   * Deletes every registered entry under this prefix, tenants and global, including registries
   * written by the Python original; touches no key outside the prefix.
   */
  async clearAll(options?: ClearOptions): Promise<number> {
    const registries = await this.#scanRegistries();
    return registries === null ? 0 : await this.#clearRegistries(registries, options);
  }

  /** Walks every registry and removes members whose key is gone; returns how many. */
  async pruneRegistries(): Promise<number> {
    const registries = await this.#scanRegistries();
    if (registries === null) return 0;
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
    } catch (error) {
      this.#fault("prune", error);
    }
    return removed;
  }

  async #store(registry: string, keys: string[], texts: string[], ttlMs: number): Promise<boolean> {
    const clustered = this.#layout.clustered;
    try {
      await this.#run("set_and_register", [registry, ...keys], [
        ttlMs,
        // A cluster script may only touch declared keys: the cluster samples on its own, below.
        clustered ? 0 : this.#pruneSample,
        ...texts,
      ]);
      if (clustered && this.#pruneSample > 0 && ++this.#writes % CLUSTER_SAMPLE_EVERY === 0) {
        // Every 16th write samples 16 times as many members, off the write's path: the same
        // sampling rate per write as a single server's script, one extra round trip per 16.
        sampleClusterRegistry(this.#walk(), registry, this.#pruneSample * CLUSTER_SAMPLE_EVERY)
          .catch(() => {}); // best effort; pruneRegistries() catches up
      }
      return true;
    } catch (error) {
      this.#fault("set", error);
      return false;
    }
  }

  async #clearRegistries(registries: string[], options?: ClearOptions): Promise<number> {
    const onProgress = options?.onProgress;
    let deleted = 0;
    try {
      for (const registry of registries) {
        if (this.#layout.clustered) {
          await clearClusterRegistry(this.#walk(), registry, this.#clearBatch, (count) => {
            deleted += count;
            if (onProgress) reportProgress(onProgress, deleted);
          });
          continue;
        }
        for (;;) {
          const [count, left] = await this.#run("clear_registry", [registry], [
            this.#clearBatch,
            this.config.prefix,
          ]) as [number, number];
          deleted += count;
          if (onProgress) reportProgress(onProgress, deleted);
          if (left === 0) break;
        }
      }
    } catch (error) {
      this.#fault("clear", error);
    }
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
        // Each SCAN call is bounded (node connections bypass a cluster's deadline watch).
        const bounded = {
          scan: (cursor: string, ...args: (string | number)[]) =>
            withTimeout(node.scan(cursor, ...args), this.#timeoutMs, "scan"),
        };
        for (const key of await scanRegistries(bounded, this.config.prefix)) {
          if (this.#layout.isRegistry(key)) found.push(key);
        }
      }
      return found;
    } catch (error) {
      this.#fault("scan", error);
      return null;
    }
  }

  /** The connections to address one by one: the masters of a cluster, else the client. */
  #nodesOf(client: ProtocolClient): ProtocolClient[] {
    return this.#layout.clustered ? (client as ClusterClient).nodes("master") : [client];
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
    return this.#layout.entryKey(this.name, hashInput(input), normalizeCompanyId(companyId));
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
    return runScript(this.#scriptClients[this.#pickIndex()], scripts[name], keys, args);
  }

  #pick(): ProtocolClient {
    return this.#clients[this.#pickIndex()];
  }

  #pickIndex(): number {
    const count = this.#clients.length;
    if (count === 1) return 0;
    if (count === 0) throw new Error("not connected: call connect() first");
    this.#next = (this.#next + 1) % count;
    return this.#next;
  }

  #fault(operation: string, error: unknown): void {
    this.#log.fault(
      operation,
      `Cache ${operation} failed at ${this.#where()}; served as a miss`,
      error,
    );
  }

  #where(): string {
    if (this.#layout.clustered) return `cluster ${this.config.clusterNodes.join(",")}`;
    return `${this.config.host}:${this.config.port}/${this.config.db}`;
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
      // No commandTimeout: its per-command timer costs more than the command (see
      // stall_watch.ts); the stall watch below bounds every call by the same timeout.
      // No offline queue: while the server is down a call fails at once (a miss) instead of
      // waiting in a queue that grows without bound; retries happen at the connection level.
      enableOfflineQueue: false,
      maxRetriesPerRequest: config.retryOnTimeout ? 1 : 0,
      enableAutoPipelining: this.#autoPipelining,
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
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
    client.on(
      "error",
      (error) => this.#log.fault("connection", `Connection to ${this.#where()} failed`, error),
    );
    client.on("ready", () => {
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
  ): ClusterClient {
    const cluster = new Cluster(
      seedNodes(this.config),
      clusterOptions(this.config, this.#timeoutMs, tls),
    );
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
    cluster.on(
      "error",
      (error) => this.#log.fault("connection", `Connection to ${this.#where()} failed`, error),
    );
    cluster.on("node error", (error, node) =>
      this.#log.fault(
        "connection",
        `Connection to node ${String(node)} of ${this.#where()} failed`,
        error,
      ));
    cluster.on("ready", () => this.#log.recovered("connection"));
    // A node connection made after connect() (a new master after a reshard, a node that came
    // back) may lack the scripts: register them when it is ready. NOSCRIPT is retried anyway.
    cluster.on("+node", (node) => {
      const scripts = this.#scripts;
      if (!scripts) return;
      (node as ProtocolClient).once("ready", () => {
        registerScripts(node as ProtocolClient, scripts).catch((error) =>
          this.#fault("script load", error)
        );
      });
    });
    return cluster;
  }

  async #ready(client: ProtocolClient): Promise<void> {
    if (client.status === "wait") await client.connect();
    else if (client.status !== "ready") {
      await new Promise<void>((resolve, reject) => {
        client.once("ready", () => resolve());
        client.once("end", () => reject(new Error("connection closed")));
      });
    }
    // Standalone: the client; cluster: every master (each has its own script cache).
    await Promise.all(
      this.#nodesOf(client).map(async (node) => {
        await node.ping();
        await registerScripts(node, this.#scripts!);
      }),
    );
  }
}

async function tlsOptions(config: RedisConfig): Promise<Record<string, unknown>> {
  // `servername` lets certificate checks match the configured host name.
  const options: Record<string, unknown> = { servername: config.host };
  if (config.tlsCa) {
    try {
      options.ca = await readTextFile(config.tlsCa);
    } catch (error) {
      throw new CacheConfigError(
        `Cannot read the TLS CA file ${config.tlsCa} (REDIS_TLS_CA): ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return options;
}

/** Calls a progress callback; its errors are ignored, so they can never cut a clear short. */
function reportProgress(onProgress: (deleted: number) => void, deleted: number): void {
  try {
    onProgress(deleted);
  } catch {
    // The clear goes on: a failing progress display must not leave a tenant half-cleared.
  }
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
