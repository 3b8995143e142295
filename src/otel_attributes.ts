/**
 * What OpenTelemetry records carry: the attributes of a provider (`db.system.name`,
 * `db.namespace`, `server.address`, `server.port`, `cache.name`) from what it tells about itself
 * (`OtelTarget`), those of a circuit breaker's target, and the low-cardinality `error.type` of a
 * fault.
 *
 * @module
 */

import type * as Api from "@opentelemetry/api";
import { CircuitOpenError } from "./circuit_breaker.ts";
import type { RedisConfig } from "./config.ts";
import type { CacheStats } from "./stats.ts";

/** The attributes of a record, as `@opentelemetry/api` types them. */
export type Attributes = Api.Attributes;

/** `error.type` when nothing better names the fault, as the conventions spell it. */
export const OTHER = "_OTHER";

/** What a provider tells the recorder about itself, once the API has loaded. */
export interface OtelTarget {
  /** `db.system.name`: `redis` (RedisCache), `valkey` (ValkeyCache) or `memory` (MemoryCache). */
  system: "redis" | "valkey" | "memory";
  /** Where it connects (`server.*`, `db.namespace`); none for MemoryCache. */
  config?: RedisConfig;
  /** The cache's name (`cache.name`, left out when empty). */
  name: string;
  /** The provider's counters as `stats()` gives them (open breakers, the near cache). */
  stats(): CacheStats;
}

/**
 * The `error.type` of a fault: the server's error prefix for a reply error (`OOM`, `NOPERM`,
 * `WRONGTYPE`, ...), `timeout`, `circuit_open` (refused at once by an open breaker), a system
 * error code (`ECONNREFUSED`, `ECONNRESET`, ...), `connection_closed`, else `_OTHER`: a few
 * values, so the attribute stays low-cardinality.
 *
 * @param error What the call failed with.
 */
export function errorType(error: unknown): string {
  if (error instanceof CircuitOpenError) return "circuit_open";
  if (!(error instanceof Error)) return OTHER;
  const message = error.message ?? "";
  if (error.name === "ReplyError") return /^[A-Z][A-Z_]*(?=\s|$)/.exec(message)?.[0] ?? OTHER;
  if (/timed out/i.test(message)) return "timeout";
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && /^E[A-Z0-9_]+$/.test(code)) return code;
  if (
    /connection is closed|connection closed|not connected|no connection|isn't writeable/i.test(
      message,
    )
  ) {
    return "connection_closed";
  }
  return OTHER;
}

/** The attributes every record of a provider carries. */
export function baseAttributes(target: OtelTarget): Attributes {
  const attrs: Attributes = { "db.system.name": target.system };
  const config = target.config;
  if (config !== undefined) {
    // In cluster mode: the first seed node, and database 0 (the only one a cluster has).
    const seed = config.mode === "cluster" ? splitTarget(config.clusterNodes[0] ?? "") : undefined;
    attrs["db.namespace"] = String(config.mode === "cluster" ? 0 : config.db);
    attrs["server.address"] = seed?.host ?? config.host;
    attrs["server.port"] = seed?.port ?? config.port;
  }
  if (target.name !== "") attrs["cache.name"] = target.name;
  return Object.freeze(attrs);
}

/** `host:port` (or `[v6]:port`) split; `undefined` when it has no port. */
function splitTarget(target: string): { host: string; port: number } | undefined {
  const match = /^\[?(.*?)\]?:(\d+)$/.exec(target);
  return match ? { host: match[1], port: Number(match[2]) } : undefined;
}

/** The base attributes with `server.*` naming a breaker's target. */
export function targetAttributes(base: Attributes, target: string): Attributes {
  const split = splitTarget(target);
  if (split === undefined) return base;
  return Object.freeze({ ...base, "server.address": split.host, "server.port": split.port });
}
