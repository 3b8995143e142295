/**
 * The cluster topology (Redis Cluster, Valkey Cluster): `Cluster` clients of ioredis / iovalkey,
 * each under a deadline watch (with one master down the others keep answering, so only a
 * per-command deadline bounds a call) that feeds a circuit breaker per master; the coalesced
 * commands sent as one pipeline per master (src/topology/cluster_pipelines.ts); batches split by
 * hash slot; scans and script loads on every master; the hash-tagged layout and the upkeep that
 * declares every key to its scripts.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { CircuitBreaker, CircuitOpenError, isServerReply } from "../circuit_breaker.ts";
import type { ClusterClient, ClusterConstructor, ProtocolClient } from "../client_types.ts";
import { type BreakerFeed, type RejectableCommand, watchDeadlines } from "../deadline_watch.ts";
import { ClusterLayout } from "../layout.ts";
import { SlotUpkeep } from "../registry_upkeep.ts";
import {
  registerScripts,
  runScript,
  type Script,
  type ScriptClient,
  type ScriptName,
} from "../scripts.ts";
import type {
  Lanes,
  Scanner,
  Servers,
  Topology,
  TopologyOptions,
  TrackOptions,
} from "../servers.ts";
import { groupBySlot, keySlot } from "../slots.ts";
import type { StallWatch } from "../stall_watch.ts";
import { TrackingGroup } from "../tracking_group.ts";
import { clusterOptions, clusterScriptClient, seedNodes } from "./cluster_client.ts";
import { ClusterPipelines } from "./cluster_pipelines.ts";
import {
  closeAll,
  connectionFault,
  dropConnection,
  loadLibrary,
  loadOpenParts,
  send,
  tlsOptions,
  untilReady,
  withTimeout,
} from "./connection.ts";

/** The cluster topology for `options` (no I/O until `open()`). */
export function clusterTopology(options: TopologyOptions): Topology {
  const { config } = options;
  const servers = new ClusterServers(options);
  return {
    servers,
    layout: new ClusterLayout(config.prefix, {
      tenantBuckets: config.clusterTenantBuckets,
      globalBuckets: config.clusterGlobalBuckets,
    }),
    upkeep: (context) => new SlotUpkeep(context, servers),
  };
}

/** A pool of `Cluster` clients. */
export class ClusterServers implements Servers {
  readonly where: string;
  /**
   * With auto-pipelining (the default): the coalescer gathers per slot and sends per master, each
   * master's commands as one pipeline (see `together`).
   */
  readonly lanes: Lanes | undefined;
  readonly #options: TopologyOptions;
  #clients: ClusterClient[] = [];
  /** What runs the scripts of `#clients[i]`: a script client that loads on every master. */
  #scriptClients: ScriptClient[] = [];
  /** The coalesced commands' pipelines (with auto-pipelining). */
  readonly #pipelines: ClusterPipelines;
  #watches: StallWatch[] = [];
  #next = 0;
  #scripts: Record<ScriptName, Script> | undefined;
  #closed = false;
  #lastConnectionError: unknown;
  /**
   * The breakers of the masters that faulted lately or are open, by `host:port`; a master is
   * dropped from it when it answers again, so a healthy cluster's map is empty.
   */
  readonly #breakers = new Map<string, CircuitBreaker>();
  #openCount = 0;
  readonly #feed: BreakerFeed | undefined;
  /** Connections of their own that probe masters the cluster client has no connection to. */
  readonly #probeClients = new Map<string, ProtocolClient>();

  /** @param options The provider's settings. */
  constructor(options: TopologyOptions) {
    this.#options = options;
    this.#pipelines = new ClusterPipelines({
      clients: () => this.#clients,
      pick: () => this.#pickIndex(),
      timeoutMs: options.timeoutMs,
    });
    this.lanes = (options.autoPipelining ?? true)
      ? {
        groupOf: keySlot,
        laneOf: (slot) => this.#masterOfSlot(slot),
        together: (sendAll) => this.#pipelines.together(sendAll),
      }
      : undefined;
    this.where = `cluster ${options.config.clusterNodes.join(",")}`;
    if (options.breaker) {
      const breakers = this.#breakers;
      this.#feed = {
        get watching() {
          return breakers.size > 0;
        },
        succeeded: (command) => {
          const master = this.#masterOf(command);
          const breaker = master === undefined ? undefined : breakers.get(master);
          if (breaker === undefined || breaker.open) return;
          breakers.delete(master!);
        },
        refusal: (command) => {
          const master = this.#masterOf(command);
          const breaker = master === undefined ? undefined : breakers.get(master);
          return breaker?.open ? new CircuitOpenError(master!) : undefined;
        },
        failed: (command, error, timedOut) => {
          // After close(), the commands the closing fails open no breaker (none would be stopped).
          if (this.#closed || isServerReply(error) || error instanceof CircuitOpenError) return;
          const master = this.#masterOf(command);
          if (master !== undefined) this.#breakerOf(master).failed(error, timedOut);
        },
      };
    }
  }

  get client(): ProtocolClient | null {
    return this.#clients[0] ?? null;
  }

  get lastConnectionError(): unknown {
    return this.#lastConnectionError;
  }

  async open(): Promise<void> {
    if (this.#closed || this.#clients.length > 0) return;
    const parts = await loadOpenParts(
      this.#options,
      () => this.#options.loadCluster(),
      () => this.#closed,
    );
    if (parts === undefined || this.#clients.length > 0) return;
    this.#scripts = parts.scripts;
    const { tls, Library: Cluster } = parts;
    const { timeoutMs } = this.#options;
    // Each node is checked against its own host name, not the first seed's.
    if (tls) delete tls.servername;
    for (let i = 0; i < this.#options.poolSize; i++) {
      const cluster = this.#createClient(Cluster, tls);
      this.#clients.push(cluster);
      const bound = <T>(promise: Promise<T>, what: string) => withTimeout(promise, timeoutMs, what);
      this.#scriptClients.push(clusterScriptClient(cluster, bound));
    }
  }

  async ready(): Promise<void> {
    await withTimeout(
      Promise.all(this.#clients.map((client) => this.#ready(client))),
      this.#options.timeoutMs,
      "connect",
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const breaker of this.#breakers.values()) breaker.stop();
    for (const master of [...this.#probeClients.keys()]) this.#dropProbeClient(master);
    for (const watch of this.#watches) watch.stop();
    await closeAll(this.#clients, this.#options.timeoutMs);
  }

  /** Every master of every client answers PONG. */
  async ping(): Promise<boolean> {
    if (this.#clients.length === 0) return false;
    const replies = await withTimeout(
      Promise.all(this.#clients.flatMap((client) => client.nodes("master").map((n) => n.ping()))),
      this.#options.timeoutMs,
      "health check",
    );
    return replies.every((reply) => reply === "PONG");
  }

  openCircuits(): string[] {
    return [...this.#breakers.values()].filter((b) => b.open).map((b) => b.target);
  }

  /** A GET: in its master's pipeline inside `together()` or `soon()`, else on its own. */
  get(key: string): Promise<string | null> {
    const refusal = this.refusal(key);
    if (refusal) return refusal;
    if (!this.#pipelines.gathering) return send(() => this.#pick().get(key));
    return this.#pipelines.add(
      key,
      (pipeline) => pipeline.get(key),
      (index) => this.#clients[index].get(key),
    ) as Promise<string | null>;
  }

  /** An MGET of one slot, like a GET. */
  mget(keys: string[]): Promise<(string | null)[]> {
    const refusal = this.refusal(keys[0]);
    if (refusal) return refusal;
    if (!this.#pipelines.gathering) return send(() => this.#pick().mget(...keys));
    return this.#pipelines.add(
      keys[0],
      (pipeline) => pipeline.mget(...keys),
      (index) => this.#clients[index].mget(...keys),
    ) as Promise<(string | null)[]>;
  }

  /** One group per hash slot: a multi-key command must stay within one. */
  slotGroups(keys: readonly string[]): number[][] {
    return [...groupBySlot(keys).values()];
  }

  /**
   * At the end of the event-loop turn (as ioredis's auto-pipelining sends): the callers resumed
   * by every master's replies of this turn share commands.
   */
  endOfTick(flush: () => void): void {
    setImmediate(flush);
  }

  /**
   * MGET per hash slot, replies in key order. A slot whose MGET fails (its master down) reads as
   * misses; the others are still served.
   */
  async readMany(
    keys: string[],
    onFault: (error: unknown) => void,
  ): Promise<(string | null)[]> {
    const client = this.#pick();
    const texts: (string | null)[] = new Array(keys.length).fill(null);
    await Promise.all([...groupBySlot(keys).values()].map(async (positions) => {
      try {
        const refusal = this.refusal(keys[positions[0]]);
        if (refusal) await refusal;
        const replies = await client.mget(...positions.map((i) => keys[i]));
        positions.forEach((position, i) => texts[position] = replies[i]);
      } catch (error) {
        onFault(error);
      }
    }));
    return texts;
  }

  exists(key: string): Promise<number> {
    return this.refusal(key) ?? send(() => this.#pick().exists(key));
  }

  pttl(key: string): Promise<number> {
    return this.refusal(key) ?? send(() => this.#pick().pttl(key));
  }

  run(script: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    const refusal = this.refusal(keys[0]);
    if (refusal) return refusal;
    // #scripts is set by open(); a call before it finds no connection and faults anyway.
    const scripts = this.#scripts;
    if (!scripts) return Promise.reject(new Error("not connected: call connect() first"));
    return send(() =>
      runScript(this.#scriptClients[this.#pickIndex()], scripts[script], keys, args)
    );
  }

  /** In its master's pipeline inside `together()` or `soon()`, like a GET; else like `run`. */
  runResendable(script: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    if (!this.#pipelines.gathering) return this.run(script, keys, args);
    const refusal = this.refusal(keys[0]);
    if (refusal) return refusal;
    const source = this.#scripts![script];
    return this.#pipelines.add(
      keys[0],
      (pipeline) => pipeline.evalsha(source.sha, keys.length, ...keys, ...args),
      (index) => runScript(this.#scriptClients[index], source, keys, args),
    );
  }

  /**
   * With auto-pipelining, the commands `send` sends (SRANDMEMBER, GET, MGET, `runResendable`)
   * go out with the next pipelines to their masters, or at the end of the tick (see
   * `ClusterPipelines.soon`).
   */
  soon(send: () => void): void {
    if (this.lanes === undefined) send();
    else this.#pipelines.soon(send);
  }

  /** Every master, each SCAN bounded by the timeout (node calls bypass the deadline watch). */
  scanners(): Scanner[] {
    const timeoutMs = this.#options.timeoutMs;
    return this.#pick().nodes("master").map((node) => ({
      scan: (cursor: string, ...args: (string | number)[]) => {
        const breaker = this.#breakers.get(nodeKey(node));
        return breaker?.open
          ? breaker.refusal
          : withTimeout(node.scan(cursor, ...args), timeoutMs, "scan");
      },
    }));
  }

  /** SRANDMEMBER: in its master's pipeline inside `together()` or `soon()`, else on its own. */
  srandmember(key: string, count: number): Promise<string[]> {
    const refusal = this.refusal(key);
    if (refusal) return refusal;
    if (!this.#pipelines.gathering) return send(() => this.#pick().srandmember(key, count));
    return this.#pipelines.add(
      key,
      (pipeline) => pipeline.srandmember(key, count),
      (index) => this.#clients[index].srandmember(key, count),
    ) as Promise<string[]>;
  }

  srem(key: string, ...members: string[]): Promise<number> {
    return this.refusal(key) ?? send(() => this.#pick().srem(key, ...members));
  }

  sscan(key: string, cursor: string, count: number): Promise<[string, string[]]> {
    return this.refusal(key) ?? send(() => this.#pick().sscan(key, cursor, "COUNT", count));
  }

  /**
   * One subscriber per master that serves slots, following the cluster client's slot table: each
   * refresh of it (a redirection, a failover, a node added or gone) that changed the masters or
   * their slots empties the near cache and re-arms tracking on the masters as they are now.
   */
  async track(options: TrackOptions): Promise<TrackingGroup | undefined> {
    const cluster = this.#clients[0];
    if (cluster === undefined || this.#closed) return undefined;
    const { config, timeoutMs, envPrefix, clientPackage } = this.#options;
    const Client = await loadLibrary(() => this.#options.loadClient(), clientPackage);
    const tls = config.tls ? await tlsOptions(config, envPrefix) : undefined;
    // Each node is checked against its own host name, not the first seed's.
    if (tls) delete tls.servername;
    if (this.#closed) return undefined;
    const group = new TrackingGroup({
      ...options,
      Client,
      clientOptions: {
        username: config.username,
        password: config.password,
        tls,
        connectTimeout: timeoutMs,
      },
    });
    const follow = () => {
      const owners = slotOwners(cluster);
      // Before the first slot table there is nothing to track yet (the near cache stays off).
      if (owners.targets.length > 0) group.setTargets(owners.targets, owners.layout);
    };
    cluster.on("refresh", follow);
    cluster.on("+node", follow);
    cluster.on("-node", follow);
    follow();
    return group;
  }

  /**
   * The refusal of the breaker of `key`'s master when it is open, else `undefined`. Costs nothing
   * while every breaker is closed; otherwise one slot computation and table lookup.
   */
  refusal(key: string | undefined): Promise<never> | undefined {
    if (this.#openCount === 0 || key === undefined) return undefined;
    const master = this.#masterOfSlot(keySlot(key));
    const breaker = master === undefined ? undefined : this.#breakers.get(master);
    return breaker?.open ? breaker.refusal : undefined;
  }

  /** The `host:port` of the master a command was routed to (by its slot), if it has keys. */
  #masterOf(command: RejectableCommand): string | undefined {
    const slot = (command as { getSlot?: () => number | null }).getSlot?.();
    return typeof slot === "number" ? this.#masterOfSlot(slot) : undefined;
  }

  /** The `host:port` of the master serving `slot`, from the cluster client's slot table. */
  #masterOfSlot(slot: number): string | undefined {
    return (this.#clients[0] as unknown as { slots?: string[][] } | undefined)?.slots?.[slot]?.[0];
  }

  /**
   * One probe of `master`: `CLUSTER INFO`, a PING that also says whether the node serves its
   * slots (a restarted master answers PING at once but CLUSTERDOWN for about 2 s until it has
   * rejoined). Sent on the cluster client's connection to it when that is up (a hung master's
   * stays up; its reply comes right after it resumes). The cluster client drops the
   * connection to a master that died and makes a new one only when a command is routed there,
   * which the open breaker prevents: a restarted master is then asked on a probe connection of
   * its own. A master that serves no slot any more (failed over, resharded away) has nothing
   * routed to it: the breaker closes.
   */
  async #probeMaster(master: string): Promise<unknown> {
    const { timeoutMs } = this.#options;
    const node = this.#clients[0]?.nodes("master").find((n) => nodeKey(n) === master);
    if (node !== undefined && node.status === "ready") {
      return await withTimeout(servesSlots(node), timeoutMs, "probe");
    }
    const slots = (this.#clients[0] as unknown as { slots?: string[][] } | undefined)?.slots;
    if (!slots?.some((owners) => owners?.[0] === master)) return;
    const probe = await this.#probeClient(master);
    if (probe.status !== "ready") throw new Error(`${master} is not up`);
    return await withTimeout(servesSlots(probe), timeoutMs, "probe");
  }

  /**
   * The probe connection to `master` (made on first use; it reconnects every probe interval). None
   * is made once `close()` was called, even by a probe that started before: `close()` drops the
   * probe connections there are, and one made after it would reconnect for ever.
   */
  async #probeClient(master: string): Promise<ProtocolClient> {
    const existing = this.#probeClients.get(master);
    if (existing !== undefined) return existing;
    const { config, timeoutMs, breaker } = this.#options;
    const Client = await this.#options.loadClient();
    const tls = config.tls ? await tlsOptions(config, this.#options.envPrefix) : undefined;
    if (this.#closed) throw new Error("the cache is closed");
    const made = this.#probeClients.get(master);
    if (made !== undefined) return made;
    const colon = master.lastIndexOf(":");
    const probe = new Client({
      host: master.slice(0, colon),
      port: Number(master.slice(colon + 1)),
      username: config.username,
      password: config.password,
      tls,
      connectTimeout: timeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => breaker!.probeIntervalMs,
    });
    // Its refusals while the master is down are the breaker's business, already logged.
    probe.on("error", () => {});
    this.#probeClients.set(master, probe);
    return probe;
  }

  #dropProbeClient(master: string): void {
    const probe = this.#probeClients.get(master);
    if (probe === undefined) return;
    this.#probeClients.delete(master);
    dropConnection(probe);
  }

  /** The breaker of `master`, made on its first fault. */
  #breakerOf(master: string): CircuitBreaker {
    let breaker = this.#breakers.get(master);
    if (breaker !== undefined) return breaker;
    const { breaker: settings, circuit } = this.#options;
    breaker = new CircuitBreaker(master, settings!, {
      probe: () => this.#probeMaster(master),
      opened: (target, error) => {
        this.#openCount++;
        // The calls still waiting on that master resolve now, as misses.
        const refused = new CircuitOpenError(target);
        const onTarget = (command: unknown) =>
          this.#masterOf(command as RejectableCommand) === target;
        for (const watch of this.#watches) watch.rejectAll(refused, onTarget);
        circuit(target, true, { error });
      },
      closed: (target, openMs) => {
        this.#openCount--;
        this.#breakers.delete(target);
        this.#dropProbeClient(target);
        circuit(target, false, { openMs });
      },
    });
    this.#breakers.set(master, breaker);
    return breaker;
  }

  #pick(): ClusterClient {
    return this.#clients[this.#pickIndex()];
  }

  #pickIndex(): number {
    const count = this.#clients.length;
    if (count === 1) return 0;
    if (count === 0) throw new Error("not connected: call connect() first");
    this.#next = (this.#next + 1) % count;
    return this.#next;
  }

  #createClient(
    Cluster: ClusterConstructor,
    tls: Record<string, unknown> | undefined,
  ): ClusterClient {
    const { config, timeoutMs, log, envPrefix } = this.#options;
    const cluster = new Cluster(seedNodes(config), clusterOptions(config, timeoutMs, tls));
    const fault = (error: unknown, node?: unknown) => {
      this.#lastConnectionError = error;
      const where = node === undefined ? this.where : `node ${String(node)} of ${this.where}`;
      connectionFault(log, envPrefix, where, error);
    };
    cluster.on("error", (error) => fault(error));
    cluster.on("node error", (error, node) => fault(error, node));
    // Per-command deadlines: with one master down the others keep answering, so the single
    // server's stall watch (no reply at all for the timeout) would never fire.
    this.#watches.push(watchDeadlines(
      cluster as unknown as Parameters<typeof watchDeadlines>[0],
      timeoutMs,
      (error) => {
        // With breakers, the opening line of the master's says this (once).
        if (this.#feed) return;
        log.fault(
          "stall",
          `No reply from a node of ${this.where} within ${timeoutMs} ms; served as a miss`,
          error,
        );
      },
      this.#feed,
    ));
    cluster.on("ready", () => {
      this.#lastConnectionError = undefined;
      log.recovered("connection");
    });
    // A node connection made after connect() (a new master after a reshard, a node that came
    // back) may lack the scripts: register them when it is ready. NOSCRIPT is retried anyway.
    cluster.on("+node", (node) => {
      const scripts = this.#scripts;
      if (!scripts) return;
      (node as ProtocolClient).once("ready", () => {
        registerScripts(node as ProtocolClient, scripts).catch((error) =>
          this.#options.fault("script load", error)
        );
      });
    });
    return cluster;
  }

  /** Ready, and every master answers PING and has the scripts. */
  async #ready(client: ClusterClient): Promise<void> {
    await untilReady(client);
    await Promise.all(
      client.nodes("master").map(async (node) => {
        await node.ping();
        await registerScripts(node, this.#scripts!);
      }),
    );
  }
}

/**
 * The masters serving slots in a cluster client's slot table, and the table itself in runs of
 * slots (`<first>-<last>=<host:port>`), which changes with a reshard or a failover.
 */
function slotOwners(cluster: ClusterClient): { targets: string[]; layout: string } {
  const slots = (cluster as unknown as { slots?: (string[] | undefined)[] }).slots ?? [];
  const targets = new Set<string>();
  const runs: string[] = [];
  let from = 0;
  for (let slot = 0; slot <= slots.length; slot++) {
    const owner = slots[slot]?.[0];
    if (slot < slots.length && owner === slots[from]?.[0]) continue;
    const previous = slots[from]?.[0];
    if (previous !== undefined) {
      targets.add(previous);
      runs.push(`${from}-${slot - 1}=${previous}`);
    }
    from = slot;
  }
  return { targets: [...targets], layout: runs.join(",") };
}

/** A node connection's `host:port`, as the cluster client's slot table names it. */
function nodeKey(node: ProtocolClient): string {
  const options = (node as unknown as { options: { host: string; port: number } }).options;
  return `${options.host}:${options.port}`;
}

/** Resolves when `node` answers `CLUSTER INFO` with `cluster_state:ok`; rejects otherwise. */
async function servesSlots(node: ProtocolClient): Promise<void> {
  const info = await (node as unknown as { cluster(sub: "INFO"): Promise<string> }).cluster("INFO");
  if (!/^cluster_state:ok\b/m.test(info)) throw new Error("the node does not serve its slots yet");
}
