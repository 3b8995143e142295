/**
 * What the provider needs to drive Redis Cluster / Valkey Cluster through the client library's
 * `Cluster` class: the structural types (both libraries stay optional peer dependencies), the
 * seeds, the Cluster options, a script client that registers scripts on every master, and the
 * grouping of a batch's keys by hash slot.
 *
 * @module
 */

import type { RedisConfig } from "./config.ts";
import type { ProtocolClient } from "./provider.ts";
import type { ScriptClient, ScriptName } from "./scripts.ts";
import { keySlot } from "./slots.ts";

/**
 * A cluster client of ioredis or iovalkey (`Cluster`), as the provider drives it.
 *
 * @example A helper that takes a cluster client
 * ```ts
 * import type { ClusterClient } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * // PINGs every master, e.g. for a readiness probe.
 * async function pingMasters(cluster: ClusterClient): Promise<string[]> {
 *   return await Promise.all(cluster.nodes("master").map((node) => node.ping()));
 * }
 *
 * // A real one is an ioredis / iovalkey `Cluster`; this stand-in has only what the helper uses.
 * const roles: (string | undefined)[] = [];
 * const cluster = {
 *   nodes: (role?: string) => {
 *     roles.push(role);
 *     return [{ ping: async () => "PONG" }, { ping: async () => "PONG" }];
 *   },
 * } as unknown as ClusterClient;
 * assert.deepEqual(await pingMasters(cluster), ["PONG", "PONG"]);
 * assert.deepEqual(roles, ["master"]);
 * ```
 */
export interface ClusterClient extends ProtocolClient {
  /** The connections to the nodes of one role (each a standalone client). */
  nodes(role?: "all" | "master" | "slave"): ProtocolClient[];
  /** SRANDMEMBER with a count. */
  srandmember(key: string, count: number): Promise<string[]>;
  /** SREM. */
  srem(key: string, ...members: string[]): Promise<number>;
  /** SSCAN with COUNT. */
  sscan(key: string, cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
}

/**
 * Constructs a cluster client of one library (ioredis or iovalkey `Cluster`).
 *
 * @example Opening a cluster with the `Cluster` class a caller passes in
 * ```ts
 * import type { ClusterClient, ClusterConstructor } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * // ioredis's or iovalkey's `Cluster` fits `ClusterConstructor`.
 * function openCluster(Cluster: ClusterConstructor, seeds: string[]): ClusterClient {
 *   const startupNodes = seeds.map((seed) => {
 *     const colon = seed.lastIndexOf(":");
 *     return { host: seed.slice(0, colon), port: Number(seed.slice(colon + 1)) };
 *   });
 *   return new Cluster(startupNodes, { lazyConnect: true });
 * }
 *
 * // A stand-in that records its arguments instead of connecting.
 * let received: unknown[] = [];
 * const Recording = class {
 *   constructor(...args: unknown[]) {
 *     received = args;
 *   }
 * } as unknown as ClusterConstructor;
 * openCluster(Recording, ["10.0.0.1:7000", "10.0.0.2:7001"]);
 * assert.deepEqual(received, [
 *   [{ host: "10.0.0.1", port: 7000 }, { host: "10.0.0.2", port: 7001 }],
 *   { lazyConnect: true },
 * ]);
 * ```
 */
export type ClusterConstructor = new (
  startupNodes: { host: string; port: number }[],
  options: Record<string, unknown>,
) => ClusterClient;

/** The config's seeds (`host:port`, IPv6 in brackets) as the Cluster class takes them. */
export function seedNodes(config: RedisConfig): { host: string; port: number }[] {
  return config.clusterNodes.map((seed) => {
    const colon = seed.lastIndexOf(":");
    const host = seed.slice(0, colon);
    return {
      host: host.startsWith("[") ? host.slice(1, -1) : host,
      port: Number(seed.slice(colon + 1)),
    };
  });
}

/**
 * Options of the `Cluster` class for this provider.
 *
 * - No offline queue: while the cluster is (re)connecting a call fails at once, as a miss.
 * - No auto-pipelining, except on the provider's private GET client (`pipelined`): ioredis
 *   retries a cluster pipeline on MOVED / ASK only when every command in it is read-only and
 *   failed the same way, so a pipeline that mixes scripts, or keys of a slot being migrated with
 *   others, would surface redirections during a reshard. Each command sent on its own is
 *   redirected and retried by itself; a pipelined GET that meets a redirection is sent again on
 *   its own ({@linkcode readWithFallback}).
 * - Redirections (MOVED, ASK), TRYAGAIN (a multi-key command on a slot in migration) and
 *   CLUSTERDOWN are retried by the library with short delays; the provider's deadline watch
 *   bounds the whole call by the timeout.
 * - Host names are kept as given (no DNS lookup to an IP), so TLS certificate checks match them.
 */
export function clusterOptions(
  config: RedisConfig,
  timeoutMs: number,
  tls: Record<string, unknown> | undefined,
  pipelined = false,
): Record<string, unknown> {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableAutoPipelining: pipelined,
    enableReadyCheck: true,
    scaleReads: "master",
    // TRYAGAIN lasts while a slot migrates, which a busy machine can stretch: retry for about
    // the timeout (the deadline watch ends the call then anyway) rather than a fixed 16 times.
    maxRedirections: Math.max(16, Math.ceil(timeoutMs / 50)),
    retryDelayOnMoved: 0,
    retryDelayOnTryAgain: 50,
    retryDelayOnClusterDown: 100,
    retryDelayOnFailover: 100,
    slotsRefreshTimeout: timeoutMs,
    slotsRefreshInterval: 5000,
    clusterRetryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
    // The pipelined GET client gives up at the first sign of motion or loss, without the delayed
    // retries above: its GET is then sent again on the plain client, which retries per command
    // under the deadline watch (see readWithFallback). A pipeline resent after a delay would
    // restart its commands' deadlines.
    ...(pipelined
      ? {
        maxRedirections: 4,
        retryDelayOnTryAgain: 0,
        retryDelayOnClusterDown: 0,
        retryDelayOnFailover: 0,
      }
      : {}),
    dnsLookup: (
      address: string,
      callback: (error: Error | null, address: string) => void,
    ) => callback(null, address),
    redisOptions: {
      username: config.username,
      password: config.password,
      tls,
      connectTimeout: timeoutMs,
      // A cluster node connection that fails is dropped and made again on the next MOVED or
      // slot refresh; the cluster retries the command meanwhile.
      maxRetriesPerRequest: config.retryOnTimeout ? 1 : 0,
    },
  };
}

/**
 * A script client over a cluster: EVALSHA goes through the cluster (routed to the slot of the
 * script's keys, redirections followed); SCRIPT LOAD, after a NOSCRIPT reply, loads the script
 * on every master, since any of them may be the one that answered (a new master after a reshard
 * or a failover has an empty script cache).
 *
 * @param cluster The cluster client.
 * @param bound Bounds a node call by the timeout (node calls bypass the cluster's deadline watch).
 * @returns The script client.
 */
export function clusterScriptClient(
  cluster: ClusterClient,
  bound: <T>(promise: Promise<T>, what: string) => Promise<T>,
): ScriptClient {
  return {
    evalsha: (sha, numKeys, ...keysAndArgs) => cluster.evalsha(sha, numKeys, ...keysAndArgs),
    script: (subcommand, source) =>
      bound(
        Promise.all(cluster.nodes("master").map((node) => node.script(subcommand, source))),
        "script load",
      ),
  };
}

/**
 * Groups the positions of `keys` by hash slot, in first-seen order, so each group can be one
 * multi-key command and the replies put back in input order.
 *
 * @example Two slots
 * ```ts
 * import { groupBySlot } from "./cluster.ts";
 * import assert from "node:assert/strict";
 *
 * const groups = groupBySlot(["{a}1", "{b}1", "{a}2"]);
 * assert.deepEqual([...groups.values()], [[0, 2], [1]]);
 * ```
 *
 * @param keys The keys of a batch.
 * @returns Slot → positions in `keys`.
 */
export function groupBySlot(keys: readonly string[]): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const slot = keySlot(keys[i]);
    const group = groups.get(slot);
    if (group) group.push(i);
    else groups.set(slot, [i]);
  }
  return groups;
}

/** What the cluster registry walks need from the provider. */
export interface RegistryWalk {
  /** The cluster client. */
  client: ClusterClient;
  /** Runs a script by EVALSHA (with the provider's NOSCRIPT handling). */
  run(name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown>;
  /** The key prefix every member must start with. */
  prefix: string;
}

/**
 * Splits registry members into those of the registry's slot (which a script may declare with
 * it) and foreign ones (keys of other slots, added by hand), which are dropped from the registry
 * with a plain SREM and their keys left alone.
 */
async function localMembers(walk: RegistryWalk, registry: string, members: string[]) {
  const slot = keySlot(registry);
  const local = members.filter((member) => keySlot(member) === slot);
  if (local.length < members.length) {
    await walk.client.srem(registry, ...members.filter((member) => keySlot(member) !== slot));
  }
  return local;
}

/**
 * Clears one registry of a cluster in batches: SRANDMEMBER reads up to `batch` members, and
 * `clear_members` deletes them with every key declared (see lua/clear_members.lua), until the
 * registry is empty.
 *
 * @param walk The client, script runner and prefix.
 * @param registry The registry key.
 * @param batch How many members one script call deletes.
 * @param onBatch Told the keys each batch deleted.
 */
export async function clearClusterRegistry(
  walk: RegistryWalk,
  registry: string,
  batch: number,
  onBatch: (deleted: number) => void,
): Promise<void> {
  for (;;) {
    const members = await walk.client.srandmember(registry, batch);
    if (members.length === 0) return;
    const local = await localMembers(walk, registry, members);
    if (local.length === 0) continue;
    const deleted = await walk.run("clear_members", [registry, ...local], [walk.prefix]);
    onBatch(Number(deleted));
  }
}

/**
 * Prunes one registry of a cluster: SSCAN pages, each checked by `prune_members` with the
 * members declared as keys.
 *
 * @param walk The client, script runner and prefix.
 * @param registry The registry key.
 * @param page The SSCAN COUNT hint.
 * @returns How many members were removed.
 */
export async function pruneClusterRegistry(
  walk: RegistryWalk,
  registry: string,
  page: number,
): Promise<number> {
  let removed = 0;
  let cursor = "0";
  do {
    const [next, members] = await walk.client.sscan(registry, cursor, "COUNT", page);
    cursor = next;
    const local = await localMembers(walk, registry, members);
    if (local.length > 0) {
      removed += Number(await walk.run("prune_members", [registry, ...local], []));
    }
  } while (cursor !== "0");
  return removed;
}

/**
 * Prunes a random sample of one registry of a cluster (what set_and_register's sampling does on
 * a single server, where a script may read undeclared keys).
 *
 * @param walk The client, script runner and prefix.
 * @param registry The registry key.
 * @param count How many members to sample.
 * @returns How many members were removed.
 */
export async function sampleClusterRegistry(
  walk: RegistryWalk,
  registry: string,
  count: number,
): Promise<number> {
  const members = await walk.client.srandmember(registry, count);
  const local = await localMembers(walk, registry, members);
  return local.length === 0 ? 0 : Number(await walk.run("prune_members", [registry, ...local], []));
}

// Errors of a cluster in motion (a slot moved or moving, a pipeline whose keys no longer share a
// node), as opposed to a node that is silent.
const REDIRECTION =
  /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b|Cluster redirections|same slot|slots allocation group/;
// A dropped node connection: the plain client retries it (a failover, a restarted node).
const DROPPED = /^Connection is closed|isn't ready/;

/**
 * Whether `error` comes from a cluster in motion (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, too many
 * redirections, a pipeline split across nodes): worth one more try on its own.
 *
 * @example Telling a redirection from a fault
 * ```ts
 * import { isRedirection } from "./cluster.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isRedirection(new Error("ASK 3999 127.0.0.1:7001")), true);
 * assert.equal(isRedirection(new Error("Connection is closed.")), false);
 * ```
 *
 * @param error What a command was rejected with.
 * @returns `true` for a redirection-type error.
 */
export function isRedirection(error: unknown): boolean {
  return error instanceof Error && REDIRECTION.test(error.message);
}

/**
 * A GET through the auto-pipelined cluster client (several GETs to one master share a write);
 * when the pipeline meets a redirection it cannot follow (a reshard in progress) or a dropped node
 * connection, the GET is sent again on its own through the plain client, which follows MOVED /
 * ASK / TRYAGAIN and retries a lost connection per command, under the deadline watch. Not when
 * half the timeout is already spent, so a call stays bounded by about the timeout.
 *
 * @param pipelined The auto-pipelined cluster client.
 * @param plain The plain cluster client.
 * @param key The key to read.
 * @param timeoutMs The provider's timeout.
 * @returns The value, or `null`.
 */
export async function readWithFallback(
  pipelined: ProtocolClient,
  plain: ProtocolClient,
  key: string,
  timeoutMs: number,
): Promise<string | null> {
  const started = Date.now();
  try {
    return await pipelined.get(key);
  } catch (error) {
    const retry = isRedirection(error) || (error instanceof Error && DROPPED.test(error.message));
    if (!retry || Date.now() - started > timeoutMs / 2) throw error;
    return await plain.get(key);
  }
}
