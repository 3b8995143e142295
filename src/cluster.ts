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
import type { ScriptClient } from "./scripts.ts";
import { keySlot } from "./slots.ts";

/** A cluster client of ioredis or iovalkey (`Cluster`), as the provider drives it. */
export interface ClusterClient extends ProtocolClient {
  /** The connections to the nodes of one role (each a standalone client). */
  nodes(role?: "all" | "master" | "slave"): ProtocolClient[];
}

/** Constructs a cluster client of one library (ioredis or iovalkey `Cluster`). */
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
 * - No auto-pipelining at the cluster level: ioredis retries a cluster pipeline on MOVED / ASK
 *   only when every command in it is read-only and failed the same way, so a pipeline that mixes
 *   scripts, or keys of a slot being migrated with others, would surface redirections during a
 *   reshard; each command sent on its own is redirected and retried by itself.
 * - Redirections (MOVED, ASK), TRYAGAIN (a multi-key command on a slot in migration) and
 *   CLUSTERDOWN are retried by the library with short delays; the provider's deadline watch
 *   bounds the whole call by the timeout.
 * - Host names are kept as given (no DNS lookup to an IP), so TLS certificate checks match them.
 */
export function clusterOptions(
  config: RedisConfig,
  timeoutMs: number,
  tls: Record<string, unknown> | undefined,
): Record<string, unknown> {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableAutoPipelining: false,
    enableReadyCheck: true,
    scaleReads: "master",
    maxRedirections: 16,
    retryDelayOnMoved: 0,
    retryDelayOnTryAgain: 50,
    retryDelayOnClusterDown: 100,
    retryDelayOnFailover: 100,
    slotsRefreshTimeout: timeoutMs,
    slotsRefreshInterval: 5000,
    clusterRetryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
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
