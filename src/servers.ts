/**
 * The seam between what the cache means and how its commands reach the servers. The provider
 * (src/provider.ts) is written once against {@link Servers}; a topology (src/topology/) supplies
 * one for a single server or for a cluster, with the key layout and the registry upkeep that fit
 * it ({@link Topology}). Nothing here runs a command: it only holds the interfaces.
 *
 * @module
 */

import type { BreakerSettings } from "./circuit_breaker.ts";
import type { ClientConstructor, ClusterConstructor, ProtocolClient } from "./client_types.ts";
import type { RedisConfig } from "./config.ts";
import type { KeyLayout } from "./layout.ts";
import type { FaultLog } from "./log.ts";
import type { ScriptName } from "./scripts.ts";
import type { TrackingGroup, TrackingGroupOptions } from "./tracking_group.ts";

/** What `Servers.track` is given: the near cache, its prefixes and settings, and listeners. */
export type TrackOptions = Omit<TrackingGroupOptions, "Client" | "clientOptions">;

/** A node's SCAN, each call bounded by the provider's timeout. */
export type Scanner = Pick<ProtocolClient, "scan">;

/**
 * How a cluster's calls are gathered and sent: per group (a hash slot: the calls of one group may
 * share a command), and per lane (the master serving a group: one write per master per round
 * trip).
 */
export interface Lanes {
  /** The group of `key`: its hash slot. */
  groupOf(key: string): number;
  /** The lane serving `group` now: its master's `host:port` (`undefined` while unknown). */
  laneOf(group: number): string | undefined;
  /**
   * Runs `send`, which sends commands through the sender, so that the commands of one lane go
   * out together (one pipeline per master).
   */
  together(send: () => void): void;
}

/**
 * The servers behind one provider, as its semantics use them. Every command rejects on a fault
 * (never throws synchronously), which the provider serves as a miss.
 */
export interface Servers {
  /** Where the servers are, for messages: `host:port/db`, or `cluster <seeds>`. */
  readonly where: string;
  /** The first connection's client, `null` before `open()`. */
  readonly client: ProtocolClient | null;
  /** The last error a connection emitted, `undefined` once one is ready again. */
  readonly lastConnectionError: unknown;
  /**
   * Creates the clients, once: loads the scripts' sources, the client library and the TLS CA
   * file, and rejects with what the caller must fix (`CacheDependencyError`,
   * `CacheConfigError`). Creates nothing once `close()` was called.
   */
  open(): Promise<void>;
  /**
   * Connects every client, pings and registers the Lua scripts on every node; rejects when that
   * fails within the timeout, while the connections keep retrying in the background.
   */
  ready(): Promise<void>;
  /** Closes every connection; later commands fail. */
  close(): Promise<void>;
  /** The targets (`host:port`) whose circuit breaker is open now. */
  openCircuits(): string[];
  /** `true` when every node answers PONG within the timeout; rejects on a fault. */
  ping(): Promise<boolean>;
  /**
   * The rejection every call on `key`'s server gets while its circuit breaker is open, else
   * `undefined` (one property check while every breaker is closed).
   */
  refusal(key: string): Promise<never> | undefined;
  /**
   * How the coalescer (src/coalesce.ts) gathers and sends: per hash slot and master in a cluster
   * with auto-pipelining; `undefined` for one batch per tick.
   */
  readonly lanes?: Lanes;
  /** GET. */
  get(key: string): Promise<string | null>;
  /** One MGET of keys that share a slot (any keys on a single server), replies in key order. */
  mget(keys: string[]): Promise<(string | null)[]>;
  /**
   * The positions of `keys` grouped so that each group can be one MGET or one script call: one
   * group on a single server, one per hash slot in a cluster (in first-seen order).
   */
  slotGroups(keys: readonly string[]): number[][];
  /**
   * Runs `flush`, which sends the calls gathered after a tick's first one, when gathering should
   * end: once the tick's microtasks have run on a single server, whose replies to one tick's
   * callers arrive together; at the end of the event-loop turn in a cluster, whose masters'
   * replies arrive in socket events of their own, so that the callers they resume share commands.
   */
  endOfTick(flush: () => void): void;
  /**
   * The values of any keys, in key order. Where the keys span several servers, the keys of one
   * that fails read as misses and `onFault` is told; the others are still served.
   */
  readMany(keys: string[], onFault: (error: unknown) => void): Promise<(string | null)[]>;
  /** One PTTL: the remaining time to live in milliseconds (-1: no expiry, -2: absent). */
  pttl(key: string): Promise<number>;
  /** EXISTS of one key. */
  exists(key: string): Promise<number>;
  /** Runs a script (EVALSHA, loading it on NOSCRIPT) on keys that share a slot. */
  run(script: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown>;
  /**
   * Runs a script whose second run changes nothing (`set_and_register`), like `run`; a cluster
   * may pipeline it with the other calls to the same master and, after a redirection or a dropped
   * connection, send it again on its own.
   */
  runResendable(script: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown>;
  /** One scanner per node holding keys: the server, or every master of a cluster. */
  scanners(): Scanner[];
  /** SRANDMEMBER with a count. */
  srandmember(key: string, count: number): Promise<string[]>;
  /**
   * Runs `send` at once; the commands it sends may wait to go out with the next ones to their
   * server (a cluster's next pipeline to the master, at the latest at the end of the tick). For
   * work off every caller's path, whose order with other calls does not matter (the registry
   * sample after a write). Without it, they go out at once.
   */
  soon?(send: () => void): void;
  /** SREM. */
  srem(key: string, ...members: string[]): Promise<number>;
  /** SSCAN with a COUNT hint. */
  sscan(key: string, cursor: string, count: number): Promise<[string, string[]]>;
  /**
   * Starts the near cache's invalidation subscribers: one per server that holds entries (the
   * server; each master of a cluster, following its topology). `undefined` before `open()` or
   * after `close()`.
   */
  track(options: TrackOptions): Promise<TrackingGroup | undefined>;
}

/**
 * How a provider keeps its registries: the clears, prunes and prune samples, in the form the
 * topology's scripts allow (src/registry_upkeep.ts).
 */
export interface RegistryUpkeep {
  /** How many members `set_and_register` samples per member it adds (0: not in the script). */
  readonly inScriptSample: number;
  /** After a write to `registry`: the sample taken outside the script, if any (never throws). */
  afterWrite(registry: string): void;
  /**
   * Deletes the keys of every member of `registry` in bounded batches and increments its
   * generation counter; `onBatch` is told each batch's count.
   */
  clear(registry: string, onBatch: (deleted: number) => void): Promise<void>;
  /** Removes the members of `registry` whose key is gone; returns how many. */
  prune(registry: string): Promise<number>;
  /** Increments every clear-all epoch (see `KeyLayout.epochKey`). */
  bumpEpochs(): Promise<void>;
}

/** What a registry upkeep works with. */
export interface UpkeepContext {
  /** The servers, with the calls this tick coalesced sent first (so calls keep their order). */
  servers(): Servers;
  /** The key layout. */
  layout: KeyLayout;
  /** The key prefix. */
  prefix: string;
  /** Registry members to sample per key a write registers (0: none). */
  pruneSample: number;
  /** Keys one clear script call deletes. */
  clearBatch: number;
}

/** What a topology is given: the provider's resolved settings and its fault reporting. */
export interface TopologyOptions {
  /** The connection settings. */
  config: RedisConfig;
  /** The connect and command timeout, in milliseconds. */
  timeoutMs: number;
  /** How many connections (or `Cluster` clients) to open. */
  poolSize: number;
  /** The `autoPipelining` option; `undefined` takes the topology's default. */
  autoPipelining: boolean | undefined;
  /** The npm package whose client is driven (named when it cannot be loaded). */
  clientPackage: "ioredis" | "iovalkey";
  /** `REDIS` or `VALKEY`: the environment variables a fault message points at. */
  envPrefix: string;
  /** Loads the client library's `Redis` class. */
  loadClient(): Promise<ClientConstructor>;
  /** Loads the client library's `Cluster` class. */
  loadCluster(): Promise<ClusterConstructor>;
  /** Where connection faults, stalls and recoveries go. */
  log: FaultLog;
  /** Reports a command's fault (`Cache <operation> failed at ...`). */
  fault(operation: string, error: unknown): void;
  /** The circuit breaker of each target, or `null` when it is turned off. */
  breaker: BreakerSettings | null;
  /** Told when a target's breaker opens (`error`: the fault that opened it) or closes. */
  circuit(target: string, open: boolean, detail: { error?: unknown; openMs?: number }): void;
}

/** One topology: its servers, where its keys live, and how its registries are kept. */
export interface Topology {
  /** The servers. */
  readonly servers: Servers;
  /** The key layout of this topology. */
  readonly layout: KeyLayout;
  /** Makes the registry upkeep this topology's scripts allow. */
  upkeep(context: UpkeepContext): RegistryUpkeep;
}
