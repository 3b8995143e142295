/**
 * The client libraries as this library drives them: the commands of an ioredis / iovalkey `Redis`
 * client and of their `Cluster` client, and the constructors of both. Kept structural so the two
 * libraries stay optional peer dependencies (nothing here imports them).
 *
 * @module
 */

import type { ScriptClient } from "./scripts.ts";

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
  /** PTTL. */
  pttl(key: string): Promise<number>;
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
