/**
 * How a `Cluster` client of ioredis / iovalkey is set up and used here: the seeds, the options,
 * a script client that loads scripts on every master, explicit pipelines, and the errors a
 * pipelined command is sent again on its own after.
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
 * - No auto-pipelining: ioredis retries a cluster pipeline on MOVED / ASK only when every command
 *   in it failed the same way and the others were read-only, so a pipeline that mixes scripts, or
 *   keys of a slot being migrated with others, would surface redirections during a reshard. Each
 *   command sent on its own is redirected and retried by itself. The provider pipelines only the
 *   commands it coalesces, explicitly, one pipeline per master, and sends a command whose
 *   pipeline met a redirection again on its own (see `ClusterServers`).
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
 * Whether a pipelined command that failed with `error` is worth sending again on its own: a
 * redirection ({@linkcode isRedirection}) or a dropped node connection, which the client retries
 * per command (a failover, a restarted node).
 *
 * @example A dropped connection is resent, a server's refusal is not
 * ```ts
 * import { isResendable } from "./cluster_client.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isResendable(new Error("Connection is closed.")), true);
 * assert.equal(isResendable(new Error("MOVED 3999 127.0.0.1:7001")), true);
 * assert.equal(isResendable(new Error("OOM command not allowed")), false);
 * ```
 *
 * @param error What a command was rejected with.
 * @returns `true` when sending it again on its own may succeed.
 */
export function isResendable(error: unknown): boolean {
  return error instanceof Error && (REDIRECTION.test(error.message) || DROPPED.test(error.message));
}

/**
 * An explicit pipeline of a `Cluster` client: its commands, which must all be served by one
 * master, go out in one write when `exec()` is called.
 */
export interface ClusterPipeline {
  /** Queues a GET. */
  get(key: string): ClusterPipeline;
  /** Queues an MGET. */
  mget(...keys: string[]): ClusterPipeline;
  /** Queues an SRANDMEMBER with a count. */
  srandmember(key: string, count: number): ClusterPipeline;
  /** Queues an EVALSHA. */
  evalsha(sha: string, numKeys: number, ...keysAndArgs: (string | number)[]): ClusterPipeline;
  /** Sends the queued commands: each reply, or error, in order. */
  exec(): Promise<[error: Error | null, reply: unknown][] | null>;
}

/** A new explicit pipeline of `cluster` (ioredis / iovalkey `Cluster#pipeline`). */
export function pipelineOf(cluster: ClusterClient): ClusterPipeline {
  return (cluster as unknown as { pipeline(): ClusterPipeline }).pipeline();
}

/** A command of ioredis / iovalkey: its reply, and rejecting it settles its caller. */
export interface PipelinedCommand {
  readonly promise: Promise<unknown>;
  reject(error: Error): void;
}

/** The command queued last on `pipeline` (its private queue: ioredis and iovalkey alike). */
export function lastCommand(pipeline: ClusterPipeline): PipelinedCommand {
  const queue = (pipeline as unknown as { _queue: PipelinedCommand[] })._queue;
  return queue[queue.length - 1];
}
