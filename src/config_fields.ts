/**
 * The option fields of `RedisConfig` / `ValkeyConfig`: `RedisConfigOptions`, the defaults, the
 * per-field checks with the accepted form each error message names, cluster mode's rules and the
 * host form. Shared by the config classes (src/config.ts), which check explicit options, and the
 * environment reader (src/config_env.ts), which checks parsed variables, so that both refuse the
 * same values with the same messages.
 *
 * @module
 */

import { CacheConfigError } from "./errors.ts";
import { DEFAULT_MAX_VALUE_BYTES, MAX_TTL_SECONDS } from "./values.ts";

/**
 * Options of `new RedisConfig(options)` / `new ValkeyConfig(options)`. Every field is optional;
 * an explicit field wins over the matching part of `url`, which wins over the default.
 *
 * @example Building a config from options
 * ```ts
 * import { RedisConfig, type RedisConfigOptions } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const options: RedisConfigOptions = { host: "10.0.0.5", port: 6380, ttl: null };
 * const config = new RedisConfig(options);
 * assert.equal(config.port, 6380);
 * assert.equal(config.ttl, null);
 * ```
 */
export interface RedisConfigOptions {
  /**
   * Server host name or IP address.
   *
   * @default {"localhost"}
   */
  host?: string;
  /**
   * Server TCP port, an integer from 1 to 65535.
   *
   * @default {6379}
   */
  port?: number;
  /**
   * Database index, an integer >= 0.
   *
   * @default {0}
   */
  db?: number;
  /**
   * `"cluster"` to use Redis Cluster / Valkey Cluster (the client library's `Cluster` class and
   * the hash-tagged key layout); giving `clusterNodes` implies it. In cluster mode without
   * `clusterNodes`, `host:port` is the one seed.
   *
   * @default {"cluster" when clusterNodes is set, else "standalone"}
   */
  mode?: "standalone" | "cluster";
  /**
   * Seed nodes of a cluster, `host:port` each, as an array or one comma-separated string
   * (`"10.0.0.1:7000,10.0.0.2:7000"`; IPv6 as `[::1]:7000`). Any reachable master or replica
   * will do: the client discovers the others. Setting it selects cluster mode.
   *
   * @default {undefined}
   */
  clusterNodes?: string | readonly string[];
  /**
   * Cluster mode: how many buckets (hash tags) each tenant is split into, an integer from 1 to
   * 1024. With 1, a tenant lives in one slot; more spread one big tenant over several masters, at
   * the cost of one script call per bucket for its clears and one MGET per bucket for a batch.
   *
   * @default {1}
   */
  clusterTenantBuckets?: number;
  /**
   * Cluster mode: how many buckets the global scope is split into, an integer from 1 to 1024, so
   * that global entries spread over the masters instead of pinning one.
   *
   * @default {16}
   */
  clusterGlobalBuckets?: number;
  /**
   * ACL user name (Redis 6+ / Valkey); leave unset for the default user.
   *
   * @default {undefined}
   */
  username?: string;
  /**
   * Password (AUTH). Never shown by `toString()`, `JSON.stringify` or inspect.
   *
   * @default {undefined}
   */
  password?: string;
  /**
   * Upper bound on the number of connections a provider opens, an integer >= 1.
   *
   * @default {50}
   */
  maxConnections?: number;
  /**
   * Whether a command that timed out is retried once.
   *
   * @default {true}
   */
  retryOnTimeout?: boolean;
  /**
   * Seconds a connect or a command may take (fractions allowed, e.g. `0.5`); finite and > 0.
   *
   * @default {4}
   */
  timeout?: number;
  /**
   * Default entry TTL in seconds (a positive finite number, fractions allowed, at most
   * 9,007,199,254,740 s, about 285,000 years: longer would overflow the servers' 64-bit
   * millisecond expiry); `null` stores entries without expiry.
   *
   * @default {3600}
   */
  ttl?: number | null;
  /**
   * Prefix of every key this library writes, used exactly as given.
   *
   * @default {"cache:"}
   */
  prefix?: string;
  /**
   * Connect over TLS (`rediss://` in `url` sets it).
   *
   * @default {false}
   */
  tls?: boolean;
  /**
   * Path to a PEM file of the certificate authority that signed the server's certificate (only
   * used with `tls`); unset uses the runtime's trusted roots.
   *
   * @default {undefined}
   */
  tlsCa?: string;
  /**
   * The largest value, in UTF-8 bytes of its JSON, that a write accepts (an integer >= 1); a
   * larger one is a `CacheSerializationError` and nothing is sent. A provider's `maxValueBytes`
   * option wins over it.
   *
   * @default {67108864 (64 MiB)}
   */
  maxValueBytes?: number;
  /**
   * Whether each target (the server; each master in cluster mode) has a circuit breaker: after a
   * timeout or `circuitBreakerThreshold` connection faults in a row, its calls resolve at once as
   * misses until it answers a PING again. A provider's `circuitBreaker` option wins over it.
   *
   * @default {true}
   */
  circuitBreaker?: boolean;
  /**
   * Connection faults in a row that open a circuit breaker (an integer >= 1).
   *
   * @default {3}
   */
  circuitBreakerThreshold?: number;
  /**
   * Seconds between the PINGs that probe a target whose breaker is open (above 0, at most 60).
   *
   * @default {0.1}
   */
  circuitBreakerProbeInterval?: number;
  /**
   * Whether the providers keep a near cache: hot entries served from process memory, kept
   * coherent by the server's invalidations (CLIENT TRACKING). A provider's `nearCache` option
   * wins over it. Read from `CACHE_NEAR_CACHE` (no `REDIS_` / `VALKEY_` prefix).
   *
   * @default {false}
   */
  nearCache?: boolean;
  /**
   * The most entries a near cache holds (an integer >= 1); the least recently used go beyond it.
   * Read from `CACHE_NEAR_CACHE_MAX_ENTRIES`.
   *
   * @default {10000}
   */
  nearCacheMaxEntries?: number;
  /**
   * The most bytes of value JSON text (UTF-8) a near cache holds (an integer >= 1); the least
   * recently used go beyond it. Read from `CACHE_NEAR_CACHE_MAX_BYTES`.
   *
   * @default {67108864 (64 MiB)}
   */
  nearCacheMaxBytes?: number;
  /**
   * Seconds (above 0, at most 60): the longest a near cache may serve a value after it changed
   * on the server when its invalidation stream is cut (a dropped or hung subscriber connection).
   * Read from `CACHE_NEAR_CACHE_MAX_STALENESS`.
   *
   * @default {1}
   */
  nearCacheMaxStaleness?: number;
  /**
   * Connection URL, `redis://[user[:password]@]host[:port][/db]`; `rediss://` means TLS
   * (`valkey://` and `valkeys://` are accepted as aliases). User and password are
   * percent-decoded. The URL defines host, port (6379 when absent), db (0 when absent), username,
   * password and tls, unless the matching explicit option is set.
   *
   * @default {undefined}
   */
  url?: string;
}

/** The defaults of section 3 of the spec. */
export const DEFAULTS = {
  host: "localhost",
  port: 6379,
  db: 0,
  clusterTenantBuckets: 1,
  clusterGlobalBuckets: 16,
  maxConnections: 50,
  retryOnTimeout: true,
  timeout: 4,
  ttl: 3600,
  prefix: "cache:",
  tls: false,
  maxValueBytes: DEFAULT_MAX_VALUE_BYTES,
  circuitBreaker: true,
  circuitBreakerThreshold: 3,
  circuitBreakerProbeInterval: 0.1,
  nearCache: false,
  nearCacheMaxEntries: 10_000,
  nearCacheMaxBytes: 64 * 1024 * 1024,
  nearCacheMaxStaleness: 1,
} as const;

/** The config fields (every option except `url`). */
export type FieldName = Exclude<keyof RedisConfigOptions, "url" | "mode">;
/** The most buckets a cluster scope may be split into. */
export const MAX_BUCKETS = 1024;
/** The accepted form of each field, as error messages name it. */
export const EXPECTED: Readonly<Record<FieldName, string>> = {
  host: 'a non-empty host name or IP address (IPv6 bare or in brackets: "::1" or "[::1]")',
  port: "an integer from 1 to 65535",
  db: "an integer >= 0 (the database index)",
  clusterNodes: 'a comma-separated list of host:port seeds, e.g. "10.0.0.1:7000,10.0.0.2:7000"',
  clusterTenantBuckets: `an integer from 1 to ${MAX_BUCKETS}`,
  clusterGlobalBuckets: `an integer from 1 to ${MAX_BUCKETS}`,
  username: "a string",
  password: "a string",
  maxConnections: "an integer >= 1",
  retryOnTimeout: "a boolean",
  timeout: "a positive finite number of seconds (fractions allowed, e.g. 0.5)",
  ttl:
    `a positive finite number of seconds (fractions allowed) up to ${MAX_TTL_SECONDS}, or null for no expiry`,
  prefix: "a string",
  tls: "a boolean",
  tlsCa: "a non-empty path to a CA certificate file",
  maxValueBytes: "an integer >= 1 (bytes)",
  circuitBreaker: "a boolean",
  circuitBreakerThreshold: "an integer >= 1",
  circuitBreakerProbeInterval: "a number of seconds above 0 and at most 60 (e.g. 0.1)",
  nearCache: "a boolean",
  nearCacheMaxEntries: "an integer >= 1 (entries)",
  nearCacheMaxBytes: "an integer >= 1 (bytes)",
  nearCacheMaxStaleness: "a number of seconds above 0 and at most 60 (e.g. 1)",
};

/** The one shape of every "Invalid ..." error: what, the value got, the form accepted. */
export function invalid(label: string, shown: string, expected: string): CacheConfigError {
  return new CacheConfigError(`Invalid ${label}: got ${shown}; expected ${expected}.`);
}

/** A short, safe rendering of an option value for an error message. */
export function showOption(field: FieldName, value: unknown): string {
  if (field === "password") return `a ${value === null ? "null" : typeof value} (value hidden)`;
  if (typeof value === "string") return showRaw(value);
  if (Array.isArray(value)) return showRaw(JSON.stringify(value));
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === null) return "null";
  return `a value of type ${typeof value}`;
}

/** An environment value, quoted and cut to a readable length. */
export function showRaw(raw: string): string {
  return JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw);
}

/**
 * Checks an already-typed value of `field`; `label` and `shown` name it in the error.
 * Returns the value unchanged.
 */
export function checkField(
  field: FieldName,
  value: unknown,
  label: string,
  shown: string,
): unknown {
  const fail = () => invalid(label, shown, EXPECTED[field]);
  switch (field) {
    case "clusterNodes":
      return parseSeeds(value, fail);
    case "clusterTenantBuckets":
    case "clusterGlobalBuckets":
      if (
        !Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > MAX_BUCKETS
      ) {
        throw fail();
      }
      return value;
    case "host":
      return parseHost(value, fail);
    case "tlsCa":
      if (typeof value !== "string" || value.trim() === "") throw fail();
      return value;
    case "username":
    case "password":
    case "prefix":
      if (typeof value !== "string") throw fail();
      return value;
    case "port":
      if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > 65535) {
        throw fail();
      }
      return value;
    case "db":
      if (!Number.isSafeInteger(value) || (value as number) < 0) throw fail();
      return value;
    case "maxConnections":
    case "maxValueBytes":
    case "circuitBreakerThreshold":
    case "nearCacheMaxEntries":
    case "nearCacheMaxBytes":
      if (!Number.isSafeInteger(value) || (value as number) < 1) throw fail();
      return value;
    case "circuitBreakerProbeInterval":
    case "nearCacheMaxStaleness":
      if (typeof value !== "number" || !(value > 0 && value <= 60)) throw fail();
      return value;
    case "timeout":
      if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw fail();
      return value;
    case "ttl":
      if (value === null) return value;
      // Over the maximum, every write would fail on the server (PX overflows 64-bit ms).
      if (
        typeof value !== "number" || !Number.isFinite(value) || value <= 0 ||
        value > MAX_TTL_SECONDS
      ) {
        throw fail();
      }
      return value;
    case "retryOnTimeout":
    case "tls":
    case "circuitBreaker":
    case "nearCache":
      if (typeof value !== "boolean") throw fail();
      return value;
  }
}

const SEED = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:,\[\]]+))(?::(\d+))?$/;

/**
 * Parses cluster seeds (`"h1:7000,h2:7001"` or `["h1:7000", ...]`) into normalized `host:port`
 * strings (port 6379 when absent, IPv6 in brackets); `fail` builds the error.
 */
function parseSeeds(value: unknown, fail: () => CacheConfigError): readonly string[] {
  const items = typeof value === "string"
    ? value.split(",")
    : Array.isArray(value) && value.every((item) => typeof item === "string")
    ? value as string[]
    : undefined;
  if (items === undefined) throw fail();
  const seeds: string[] = [];
  for (const item of items) {
    const text = item.trim();
    if (text === "" && typeof value === "string") continue; // "a:1, b:2," has a trailing comma
    const match = SEED.exec(text);
    if (!match) throw fail();
    const port = match[3] === undefined ? DEFAULTS.port : Number(match[3]);
    if (port < 1 || port > 65535) throw fail();
    seeds.push(match[1] === undefined ? `${match[2]}:${port}` : `[${match[1]}]:${port}`);
  }
  if (seeds.length === 0) throw fail();
  return Object.freeze(seeds);
}

/**
 * Resolves the mode: `"cluster"` when asked for or when seeds are given. Cluster mode needs
 * database 0 (a cluster has no other) and a prefix without braces (a brace in the prefix would
 * become the hash tag of every key and put the whole cache in one slot).
 */
export function clusterMode(
  mode: unknown,
  seeds: readonly string[] | undefined,
  db: number,
  prefix: unknown,
): "standalone" | "cluster" {
  if (mode !== undefined && mode !== "standalone" && mode !== "cluster") {
    throw invalid('option "mode"', showOption("prefix", mode), '"standalone" or "cluster"');
  }
  if (mode === "standalone" && seeds !== undefined) {
    throw new CacheConfigError(
      'Invalid option "mode": "standalone" was given together with cluster seeds ' +
        "(clusterNodes or REDIS_CLUSTER_NODES); drop one of them.",
    );
  }
  if (mode !== "cluster" && seeds === undefined) return "standalone";
  if (db !== 0) {
    throw new CacheConfigError(
      `Invalid database ${db} for cluster mode: a Redis / Valkey cluster serves database 0 ` +
        "only; remove REDIS_DB / the URL's /db path, or use a standalone server.",
    );
  }
  if (typeof prefix === "string" && /[{}]/.test(prefix)) {
    throw new CacheConfigError(
      `Invalid prefix ${showRaw(prefix)} for cluster mode: it must not hold "{" or "}", which ` +
        "would become the hash tag of every key; choose a prefix without braces (REDIS_PREFIX).",
    );
  }
  return "cluster";
}
/** An IPv6 address in brackets, as a URL writes it (`[::1]`, `[fe80::1%eth0]`). */
const BRACKETED_IPV6 = /^\[([0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[^\s\[\]]+)?)\]$/;

/**
 * Checks a host and returns it as the client libraries take it: an IPv6 address written in
 * brackets as in a URL (`[::1]`, what `REDIS_HOST` often holds when copied from one) loses its
 * brackets, since ioredis / iovalkey would resolve `[::1]` as a host name and fail with
 * ENOTFOUND. Any other bracket is a typo and refused.
 */
function parseHost(value: unknown, fail: () => CacheConfigError): string {
  if (typeof value !== "string" || value.trim() === "") throw fail();
  const bracketed = BRACKETED_IPV6.exec(value);
  if (bracketed) return bracketed[1];
  if (/[\[\]]/.test(value)) throw fail();
  return value;
}

/**
 * A host as it appears in a URL or a `host:port` pair: an IPv6 address in brackets, exactly
 * once (config hosts never hold brackets, see `parseHost`). Used wherever an address is shown:
 * `RedisConfig#toString`, the providers' log lines and the admin CLI.
 *
 * @param host A config's host.
 * @returns The host, bracketed when it is an IPv6 address.
 */
export function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
