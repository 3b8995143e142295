/**
 * How a `Cluster` client of ioredis / iovalkey is set up and used here: the seeds, the options,
 * a script client that loads scripts on every master, and the redirections a read retries on its
 * own.
 *
 * @module
 */

import type { ClusterClient } from "../client_types.ts";
import type { RedisConfig } from "../config.ts";
import type { ScriptClient } from "../scripts.ts";

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
 * import { isRedirection } from "./cluster_client.ts";
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
 * A read (or a script call that may run twice) through the auto-pipelined cluster client (several
 * calls to one master share a write); when the pipeline meets a redirection it cannot follow (a
 * reshard in progress) or a dropped node connection, the call is sent again on its own through the
 * plain client, which follows MOVED /
 * ASK / TRYAGAIN and retries a lost connection per command, under the deadline watch. Not when
 * half the timeout is already spent, so a call stays bounded by about the timeout.
 *
 * @param pipelined The auto-pipelined cluster client (or its script client).
 * @param plain The plain cluster client (or its script client).
 * @param read The call (a GET, an MGET of one slot, a resendable script) on either client.
 * @param timeoutMs The provider's timeout.
 * @returns What the read returns.
 */
export async function readWithFallback<C, T>(
  pipelined: C,
  plain: C,
  read: (client: C) => Promise<T>,
  timeoutMs: number,
): Promise<T> {
  const started = Date.now();
  try {
    return await read(pipelined);
  } catch (error) {
    const retry = isRedirection(error) || (error instanceof Error && DROPPED.test(error.message));
    if (!retry || Date.now() - started > timeoutMs / 2) throw error;
    return await read(plain);
  }
}
