/**
 * Cluster harness: a throw-away Redis Cluster or Valkey Cluster of N masters (no replicas) on
 * free loopback ports, built from `redis-server --cluster-enabled yes` processes started by
 * tests/harness.ts and joined with `redis-cli --cluster create ... --cluster-yes` (or
 * `valkey-cli`). Runs unchanged under Deno and Node 20: only `node:` modules.
 *
 * Set `REDIS_CLUSTER_NODES` / `VALKEY_CLUSTER_NODES` (`host:port,host:port`) to use an existing
 * cluster instead; such a handle cannot kill nodes or reshard.
 */

import process from "node:process";
import { setTimeout as delay } from "node:timers/promises";
import { freePort, type ServerKind, startServer, type TestServer } from "./harness.ts";

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** How many masters. @default {3} */
  masters?: number;
  /** Sets `--requirepass` (and `--masterauth`) on every node; the nodes' `cli` carry it. */
  password?: string;
}

/** A running cluster. */
export interface TestCluster {
  /** Which implementation this is. */
  readonly kind: ServerKind;
  /** The master processes, in creation order (node i serves the i-th third of the slots). */
  readonly nodes: readonly TestServer[];
  /** `host:port` of every master, comma-separated: the value of REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** True when REDIS_CLUSTER_NODES / VALKEY_CLUSTER_NODES named an existing cluster. */
  readonly external: boolean;
  /** Runs the cli in cluster mode (`-c`, follows redirects) against the first node. */
  cli(...args: string[]): Promise<string>;
  /** The node id (CLUSTER MYID) of node `index`. */
  nodeId(index: number): Promise<string>;
  /** The index of the node that serves `key`'s slot now. */
  nodeOf(key: string): Promise<number>;
  /** For each of the 16384 slots, the index of the node serving it now (-1: none). */
  slotOwners(): Promise<number[]>;
  /**
   * Moves `slots` slots from node `from` to node `to` with `--cluster reshard` (keys migrate
   * with them); resolves when the cli is done.
   */
  reshard(from: number, to: number, slots: number): Promise<void>;
  /** Waits until every running node reports `cluster_state:ok` (or `fail`, if asked). */
  waitForState(state: "ok" | "fail", timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their temp dirs. Idempotent. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const CLUSTER_READY_MS = 30_000;

/**
 * The hash slot of `key` (CRC16-XMODEM of the key, or of its `{hash tag}`, mod 16384), as the
 * cluster computes it; lets a test pick keys by slot without asking the server. The library's own
 * implementation, which the cluster provider groups batches with.
 */
export { keySlot } from "../src/slots.ts";

/** Starts a cluster of `kind` (or returns a handle on the one REDIS_CLUSTER_NODES names). */
export async function startCluster(
  kind: ServerKind,
  options: ClusterOptions = {},
): Promise<TestCluster> {
  const external = process.env[kind === "redis" ? "REDIS_CLUSTER_NODES" : "VALKEY_CLUSTER_NODES"];
  if (external) return await externalCluster(kind, external);
  const masters = options.masters ?? 3;
  const nodes: TestServer[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      // The cluster bus gets its own free port: the default (port + 10000) may be taken.
      const busPort = await freePort();
      nodes.push(
        await startServer(kind, {
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--cluster-port",
            String(busPort),
            // A cluster with a failed master still serves the other masters' slots.
            "--cluster-require-full-coverage",
            "no",
            ...(options.password === undefined ? [] : ["--masterauth", options.password]),
          ],
          password: options.password,
        }),
      );
    }
    const addresses = nodes.map((node) => `${node.host}:${node.port}`);
    await nodes[0].cli(
      "--cluster",
      "create",
      ...addresses,
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    );
    const cluster = new SpawnedCluster(kind, nodes);
    await cluster.waitForState("ok");
    return cluster;
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()));
    throw error;
  }
}

class SpawnedCluster implements TestCluster {
  readonly kind: ServerKind;
  readonly nodes: readonly TestServer[];
  readonly seeds: string;
  readonly external: boolean;
  #stopped: Promise<void> | undefined;

  constructor(kind: ServerKind, nodes: TestServer[], external = false) {
    this.kind = kind;
    this.nodes = nodes;
    this.seeds = nodes.map((node) => `${node.host}:${node.port}`).join(",");
    this.external = external;
  }

  cli(...args: string[]): Promise<string> {
    return this.nodes[0].cli("-c", ...args);
  }

  async nodeId(index: number): Promise<string> {
    return await this.nodes[index].cli("CLUSTER", "MYID");
  }

  async nodeOf(key: string): Promise<number> {
    const slot = Number(await this.nodes[0].cli("CLUSTER", "KEYSLOT", key));
    const owner = (await this.slotOwners())[slot];
    if (owner === -1) {
      throw new Error(`harness: no master serves slot ${slot} of ${JSON.stringify(key)}`);
    }
    return owner;
  }

  async slotOwners(): Promise<number[]> {
    const owners: number[] = new Array(16384).fill(-1);
    const alive = this.nodes.find((node) => node.external || node.pid !== undefined)!;
    const shards = await alive.cli("CLUSTER", "NODES");
    for (const line of shards.split("\n")) {
      const fields = line.trim().split(" ");
      if (!fields[2]?.includes("master")) continue;
      const port = Number(fields[1].split("@")[0].split(":").pop());
      const index = this.nodes.findIndex((node) => node.port === port);
      for (const range of fields.slice(8)) {
        if (range.startsWith("[")) continue; // a slot being migrated
        const [low, high = low] = range.split("-").map(Number);
        for (let slot = low; slot <= high; slot++) owners[slot] = index;
      }
    }
    return owners;
  }

  async reshard(from: number, to: number, slots: number): Promise<void> {
    if (this.external) throw new Error("harness: reshard() needs a cluster the harness started");
    const [fromId, toId] = await Promise.all([this.nodeId(from), this.nodeId(to)]);
    await this.nodes[0].cli(
      "--cluster",
      "reshard",
      `${this.nodes[0].host}:${this.nodes[0].port}`,
      "--cluster-from",
      fromId,
      "--cluster-to",
      toId,
      "--cluster-slots",
      String(slots),
      "--cluster-yes",
      "--cluster-pipeline",
      "100",
    );
  }

  async waitForState(state: "ok" | "fail", timeoutMs = CLUSTER_READY_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const states = await Promise.all(
        this.nodes.filter((node) => node.external || node.pid !== undefined).map(async (node) => {
          try {
            const info = await node.cli("CLUSTER", "INFO");
            return info.match(/cluster_state:(\w+)/)?.[1] ?? "?";
          } catch {
            return "down";
          }
        }),
      );
      last = states.join(",");
      if (states.every((s) => s === state)) return;
      await delay(100);
    }
    throw new Error(`harness: cluster not ${state} after ${timeoutMs} ms (states: ${last})`);
  }

  stop(): Promise<void> {
    this.#stopped ??= Promise.all(this.nodes.map((node) => node.stop())).then(() => {});
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

async function externalCluster(kind: ServerKind, seeds: string): Promise<TestCluster> {
  const env = kind === "redis" ? "REDIS_URL" : "VALKEY_URL";
  const saved = process.env[env];
  const nodes: TestServer[] = [];
  try {
    for (const seed of seeds.split(",").map((s) => s.trim()).filter(Boolean)) {
      process.env[env] = `redis://${seed}`;
      nodes.push(await startServer(kind));
    }
  } finally {
    if (saved === undefined) delete process.env[env];
    else process.env[env] = saved;
  }
  return new SpawnedCluster(kind, nodes, true);
}
