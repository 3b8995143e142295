/**
 * Connection settings for the Redis and Valkey providers, from options or from the environment
 * (`REDIS_*`, `VALKEY_*`, `REDIS_URL` / `VALKEY_URL`), and the backend selection
 * (`CACHE_BACKEND`, `ENABLE_CACHE`).
 *
 * Every malformed value is a `CacheConfigError` that names the option or variable, the value it
 * got (never a password) and the form it accepts.
 *
 * @module
 */

import { CacheConfigError } from "./errors.ts";
import { type EnvRecord, readEnv } from "./runtime.ts";
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
const DEFAULTS = {
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
} as const;

/** The config fields (every option except `url`). */
type FieldName = Exclude<keyof RedisConfigOptions, "url" | "mode">;

/** Fields a connection URL defines, with the parsed values. */
interface UrlParts {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
}

const URL_FIELDS: ReadonlySet<FieldName> = new Set<FieldName>([
  "host",
  "port",
  "db",
  "username",
  "password",
  "tls",
]);

/** Environment variable suffix of each field (`REDIS_<suffix>`, `VALKEY_<suffix>`). */
const ENV_SUFFIX: Readonly<Record<FieldName, string>> = {
  host: "HOST",
  port: "PORT",
  db: "DB",
  clusterNodes: "CLUSTER_NODES",
  clusterTenantBuckets: "CLUSTER_TENANT_BUCKETS",
  clusterGlobalBuckets: "CLUSTER_GLOBAL_BUCKETS",
  username: "USERNAME",
  password: "PASSWORD",
  maxConnections: "MAX_CONNECTIONS",
  retryOnTimeout: "RETRY_ON_TIMEOUT",
  timeout: "TIMEOUT",
  ttl: "CACHE_TTL",
  prefix: "PREFIX",
  tls: "TLS",
  tlsCa: "TLS_CA",
  maxValueBytes: "MAX_VALUE_BYTES",
  circuitBreaker: "CIRCUIT_BREAKER",
  circuitBreakerThreshold: "CIRCUIT_BREAKER_THRESHOLD",
  circuitBreakerProbeInterval: "CIRCUIT_BREAKER_PROBE_INTERVAL",
};

const FIELDS = Object.keys(ENV_SUFFIX) as FieldName[];

const URL_SCHEMES: Readonly<Record<string, boolean>> = {
  "redis:": false,
  "rediss:": true,
  "valkey:": false,
  "valkeys:": true,
};

/** The most buckets a cluster scope may be split into. */
const MAX_BUCKETS = 1024;

const URL_FORM = "redis://[user[:password]@]host[:port][/db] (rediss:// for TLS)";
const COMMENT_NOTE =
  'surrounding spaces and a trailing "# comment" are allowed, e.g. "6380 # replica"';
const BOOLEAN_FORM = "true/false, 1/0, yes/no or on/off (any case)";
const HIDDEN = "***";

const EXPECTED: Readonly<Record<FieldName, string>> = {
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
};

function invalid(label: string, shown: string, expected: string): CacheConfigError {
  return new CacheConfigError(`Invalid ${label}: got ${shown}; expected ${expected}.`);
}

/** A short, safe rendering of an option value for an error message. */
function showOption(field: FieldName, value: unknown): string {
  if (field === "password") return `a ${value === null ? "null" : typeof value} (value hidden)`;
  if (typeof value === "string") return showRaw(value);
  if (Array.isArray(value)) return showRaw(JSON.stringify(value));
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === null) return "null";
  return `a value of type ${typeof value}`;
}

/** An environment value, quoted and cut to a readable length. */
function showRaw(raw: string): string {
  return JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw);
}

/**
 * Checks an already-typed value of `field`; `label` and `shown` name it in the error.
 * Returns the value unchanged.
 */
function checkField(field: FieldName, value: unknown, label: string, shown: string): unknown {
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
      if (!Number.isSafeInteger(value) || (value as number) < 1) throw fail();
      return value;
    case "circuitBreakerProbeInterval":
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
function clusterMode(
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

/** Drops a trailing `# comment` and surrounding spaces, as the Python original does. */
function stripComment(raw: string): string {
  const hash = raw.indexOf("#");
  return (hash === -1 ? raw : raw.slice(0, hash)).trim();
}

const INTEGER = /^[+-]?\d+(_\d+)*$/;
const NUMBER = /^[+-]?(\d+(_\d+)*(\.(\d+(_\d+)*)?)?|\.\d+(_\d+)*)([eE][+-]?\d+)?$/;
const TRUE_WORDS = new Set(["true", "1", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off"]);

/** Parses a boolean environment value; `undefined` when it is not one of the accepted words. */
function parseBooleanWord(raw: string): boolean | undefined {
  const word = stripComment(raw).toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return undefined;
}

/** Parses and checks one environment variable holding `field`. */
function parseEnvField(field: FieldName, name: string, raw: string): unknown {
  // Never echo a password; every other value is shown so the user can spot the typo.
  const shown = field === "password" ? "(value hidden)" : showRaw(raw);
  switch (field) {
    case "clusterNodes":
      return checkField(field, stripComment(raw), name, shown);
    case "clusterTenantBuckets":
    case "clusterGlobalBuckets": {
      const text = stripComment(raw);
      const value = INTEGER.test(text) ? Number(text.replaceAll("_", "")) : NaN;
      if (!Number.isSafeInteger(value) || value < 1 || value > MAX_BUCKETS) {
        throw invalid(name, shown, `${EXPECTED[field]} (${COMMENT_NOTE})`);
      }
      return value;
    }
    case "host":
    case "tlsCa":
      return checkField(field, raw.trim(), name, shown);
    case "username":
    case "password":
    case "prefix":
      return raw;
    case "port":
    case "db":
    case "maxConnections":
    case "maxValueBytes":
    case "circuitBreakerThreshold": {
      const text = stripComment(raw);
      const value = INTEGER.test(text) ? Number(text.replaceAll("_", "")) : NaN;
      return checkField(field, value, name, shown);
    }
    case "timeout":
    case "circuitBreakerProbeInterval": {
      const text = stripComment(raw);
      const value = NUMBER.test(text) ? Number(text.replaceAll("_", "")) : NaN;
      return checkField(field, value, name, shown);
    }
    case "ttl": {
      const text = stripComment(raw);
      const lower = text.toLowerCase();
      if (lower === "none" || lower === "null") return null;
      const value = NUMBER.test(text) ? Number(text.replaceAll("_", "")) : NaN;
      if (!Number.isFinite(value) || value <= 0 || value > MAX_TTL_SECONDS) {
        throw invalid(
          name,
          shown,
          `a positive number of seconds up to ${MAX_TTL_SECONDS} (fractions allowed, e.g. ` +
            '3600), or "none" / "null" for no expiry',
        );
      }
      return value;
    }
    case "retryOnTimeout":
    case "tls":
    case "circuitBreaker": {
      const value = parseBooleanWord(raw);
      if (value === undefined) throw invalid(name, shown, BOOLEAN_FORM);
      return value;
    }
  }
}

/** Wraps `parseEnvField` so integer errors also explain the accepted comment syntax. */
function readEnvField(field: FieldName, name: string, raw: string): unknown {
  try {
    return parseEnvField(field, name, raw);
  } catch (error) {
    if (
      error instanceof CacheConfigError &&
      (field === "port" || field === "db" || field === "maxConnections" ||
        field === "maxValueBytes" || field === "timeout" || field === "circuitBreakerThreshold" ||
        field === "circuitBreakerProbeInterval")
    ) {
      throw new CacheConfigError(`${error.message.slice(0, -1)} (${COMMENT_NOTE}).`);
    }
    throw error;
  }
}

/** Decodes a percent-encoded URL user or password; `label` names the source in errors. */
function decodeUrlPart(text: string, what: string, label: string): string | undefined {
  if (text === "") return undefined;
  try {
    return decodeURIComponent(text);
  } catch {
    throw new CacheConfigError(
      `Invalid ${label}: its ${what} is not valid percent-encoding (value hidden); encode ` +
        'special characters as %XX, e.g. "@" as %40.',
    );
  }
}

/**
 * Parses a connection URL. The message of every error names `label` and never holds the URL
 * itself (it may carry a password).
 */
function parseConnectionUrl(raw: unknown, label: string): UrlParts {
  if (typeof raw !== "string") {
    throw invalid(label, `a value of type ${typeof raw}`, `a string of the form ${URL_FORM}`);
  }
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new CacheConfigError(
      `Invalid ${label}: not a valid URL (value hidden, it may hold a password); expected ` +
        `${URL_FORM}.`,
    );
  }
  const tls = URL_SCHEMES[url.protocol];
  if (tls === undefined) {
    throw new CacheConfigError(
      `Invalid ${label}: unsupported scheme ${
        JSON.stringify(url.protocol)
      }; expected ${URL_FORM} ` +
        "(valkey:// and valkeys:// are accepted too).",
    );
  }
  let host = url.hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "") host = DEFAULTS.host;
  const port = url.port === "" ? DEFAULTS.port : Number(url.port);
  checkField("port", port, `${label} port`, JSON.stringify(url.port));
  const path = url.pathname.replace(/^\//, "");
  const db = path === "" ? DEFAULTS.db : INTEGER.test(path) ? Number(path) : NaN;
  checkField("db", db, `${label} database path`, JSON.stringify(url.pathname));
  return {
    host,
    port,
    db,
    username: decodeUrlPart(url.username, "user name", label),
    password: decodeUrlPart(url.password, "password", label),
    tls,
  };
}

/**
 * Resolves every field from the environment. For each field, the lookup order is
 * `<P>_<X>`, then `<P>_URL`'s part, for each prefix `P` in turn; unset fields stay `undefined`
 * (the constructor fills the defaults).
 */
function resolveEnv(env: EnvRecord, prefixes: readonly string[]): RedisConfigOptions {
  const urls = new Map<string, UrlParts | null>();
  const urlOf = (prefix: string): UrlParts | null => {
    if (!urls.has(prefix)) {
      const name = `${prefix}_URL`;
      const raw = env[name];
      urls.set(prefix, raw === undefined || raw === "" ? null : parseConnectionUrl(raw, name));
    }
    return urls.get(prefix)!;
  };
  const options: Record<string, unknown> = {};
  fields: for (const field of FIELDS) {
    for (const prefix of prefixes) {
      const name = `${prefix}_${ENV_SUFFIX[field]}`;
      const raw = env[name];
      if (raw !== undefined && raw !== "") {
        options[field] = readEnvField(field, name, raw);
        continue fields;
      }
      if (URL_FIELDS.has(field)) {
        const parts = urlOf(prefix);
        if (parts) {
          // A URL describes the whole endpoint: a URL without a password means "no password",
          // so credentials of another prefix never leak to this server.
          options[field] = parts[field as keyof UrlParts];
          continue fields;
        }
      }
    }
  }
  return options as RedisConfigOptions;
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

/**
 * Where and how to reach a Redis server, with the defaults of the original library. Validated on
 * construction; every field is readonly. The password is kept out of `toString()`, `JSON.stringify` and
 * inspection (shown as `***`).
 *
 * @example Defaults, a URL and a hidden password
 * ```ts
 * import { RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const config = new RedisConfig({ url: "rediss://app:s%40cret@db.example.com:6380/2" });
 * assert.equal(config.host, "db.example.com");
 * assert.equal(config.tls, true);
 * assert.equal(config.password, "s@cret");
 * assert.equal(config.ttl, 3600);
 * assert.ok(!JSON.stringify(config).includes("s@cret"));
 * ```
 *
 * @example Cluster mode from seeds
 * ```ts
 * import { RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const config = RedisConfig.fromEnv({ REDIS_CLUSTER_NODES: "10.0.0.1:7000,10.0.0.2:7000" });
 * assert.equal(config.mode, "cluster");
 * assert.deepEqual(config.clusterNodes, ["10.0.0.1:7000", "10.0.0.2:7000"]);
 * assert.equal(config.clusterGlobalBuckets, 16);
 * ```
 */
export class RedisConfig {
  /** Server host name or IP address. */
  readonly host: string;
  /** Server TCP port. */
  readonly port: number;
  /** Database index. */
  readonly db: number;
  /** `"cluster"` for Redis Cluster / Valkey Cluster, else `"standalone"`. */
  readonly mode: "standalone" | "cluster";
  /** Cluster seeds as `host:port` (in cluster mode; `[host:port]` when none was given). */
  readonly clusterNodes: readonly string[];
  /** Cluster mode: buckets per tenant. */
  readonly clusterTenantBuckets: number;
  /** Cluster mode: buckets of the global scope. */
  readonly clusterGlobalBuckets: number;
  /** ACL user name, or `undefined` for the default user. */
  readonly username: string | undefined;
  /** Upper bound on the number of connections a provider opens. */
  readonly maxConnections: number;
  /** Whether a command that timed out is retried once. */
  readonly retryOnTimeout: boolean;
  /** Seconds a connect or a command may take. */
  readonly timeout: number;
  /** Default entry TTL in seconds; `null` means no expiry. */
  readonly ttl: number | null;
  /** Prefix of every key this library writes. */
  readonly prefix: string;
  /** Whether to connect over TLS. */
  readonly tls: boolean;
  /** Path to a CA certificate file for TLS, or `undefined`. */
  readonly tlsCa: string | undefined;
  /** The largest value, in UTF-8 bytes of its JSON, that a write accepts. */
  readonly maxValueBytes: number;
  /** Whether each target has a circuit breaker. */
  readonly circuitBreaker: boolean;
  /** Connection faults in a row that open a circuit breaker. */
  readonly circuitBreakerThreshold: number;
  /** Seconds between the PINGs that probe an open breaker's target. */
  readonly circuitBreakerProbeInterval: number;
  readonly #password: string | undefined;

  /**
   * Builds and validates a config.
   *
   * @param options Explicit settings; each wins over the matching part of `options.url`, which
   * wins over the default. See `RedisConfigOptions`.
   * @throws {CacheConfigError} When an option is malformed (the message names the option and the
   * accepted values).
   */
  constructor(options: RedisConfigOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw invalid(
        "RedisConfig options",
        `a value of type ${options === null ? "null" : typeof options}`,
        "an object such as { host, port, db, ttl }",
      );
    }
    const url = options.url === undefined ? undefined : parseConnectionUrl(options.url, "url");
    const pick = <F extends FieldName>(field: F, fallback: unknown): unknown => {
      const value = options[field];
      if (value !== undefined) {
        return checkField(field, value, `option "${field}"`, showOption(field, value));
      }
      if (url && URL_FIELDS.has(field)) return url[field as keyof UrlParts];
      return fallback;
    };
    this.host = pick("host", DEFAULTS.host) as string;
    this.port = pick("port", DEFAULTS.port) as number;
    this.db = pick("db", DEFAULTS.db) as number;
    const seeds = pick("clusterNodes", undefined) as readonly string[] | undefined;
    this.mode = clusterMode(options.mode, seeds, this.db, pick("prefix", DEFAULTS.prefix));
    this.clusterNodes = this.mode === "cluster"
      ? seeds ?? Object.freeze([`${urlHost(this.host)}:${this.port}`])
      : Object.freeze([]);
    this.clusterTenantBuckets = pick(
      "clusterTenantBuckets",
      DEFAULTS.clusterTenantBuckets,
    ) as number;
    this.clusterGlobalBuckets = pick(
      "clusterGlobalBuckets",
      DEFAULTS.clusterGlobalBuckets,
    ) as number;
    this.username = pick("username", undefined) as string | undefined;
    this.#password = pick("password", undefined) as string | undefined;
    this.maxConnections = pick("maxConnections", DEFAULTS.maxConnections) as number;
    this.retryOnTimeout = pick("retryOnTimeout", DEFAULTS.retryOnTimeout) as boolean;
    this.timeout = pick("timeout", DEFAULTS.timeout) as number;
    this.ttl = pick("ttl", DEFAULTS.ttl) as number | null;
    this.prefix = pick("prefix", DEFAULTS.prefix) as string;
    this.tls = pick("tls", DEFAULTS.tls) as boolean;
    this.tlsCa = pick("tlsCa", undefined) as string | undefined;
    this.maxValueBytes = pick("maxValueBytes", DEFAULTS.maxValueBytes) as number;
    this.circuitBreaker = pick("circuitBreaker", DEFAULTS.circuitBreaker) as boolean;
    this.circuitBreakerThreshold = pick(
      "circuitBreakerThreshold",
      DEFAULTS.circuitBreakerThreshold,
    ) as number;
    this.circuitBreakerProbeInterval = pick(
      "circuitBreakerProbeInterval",
      DEFAULTS.circuitBreakerProbeInterval,
    ) as number;
  }

  /**
   * The password, or `undefined`. A getter over a private field, so it never shows up when the
   * config is enumerated, spread, serialized or inspected.
   *
   * @example Reading the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = new RedisConfig({ password: "hunter2" });
   * assert.equal(config.password, "hunter2");
   * assert.ok(!Object.keys(config).includes("password"));
   * ```
   */
  get password(): string | undefined {
    return this.#password;
  }

  /**
   * Reads the config from `REDIS_*` variables and `REDIS_URL`. An explicit variable wins over the
   * URL's part, which wins over the default; empty variables count as unset. Integers may carry
   * surrounding spaces and a trailing `# comment`; booleans accept true/false, 1/0, yes/no,
   * on/off in any case; `REDIS_CACHE_TTL` accepts `none` / `null` for no expiry.
   *
   * Variables: `REDIS_HOST`, `REDIS_PORT`, `REDIS_DB`, `REDIS_USERNAME`, `REDIS_PASSWORD`,
   * `REDIS_MAX_CONNECTIONS`, `REDIS_RETRY_ON_TIMEOUT`, `REDIS_TIMEOUT`, `REDIS_CACHE_TTL`,
   * `REDIS_PREFIX`, `REDIS_TLS`, `REDIS_TLS_CA`, `REDIS_MAX_VALUE_BYTES`, `REDIS_URL`, and the
   * circuit breaker's `REDIS_CIRCUIT_BREAKER` (true), `REDIS_CIRCUIT_BREAKER_THRESHOLD` (3),
   * `REDIS_CIRCUIT_BREAKER_PROBE_INTERVAL` (seconds, 0.1).
   * Cluster mode: `REDIS_CLUSTER_NODES` (comma-separated `host:port` seeds; setting it selects
   * cluster mode), `REDIS_CLUSTER_TENANT_BUCKETS` (1), `REDIS_CLUSTER_GLOBAL_BUCKETS` (16).
   *
   * @example Reading an explicit environment
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = RedisConfig.fromEnv({
   *   REDIS_URL: "redis://cache.internal:6380/1",
   *   REDIS_PORT: "6381 # replica",
   *   REDIS_CACHE_TTL: "none",
   * });
   * assert.equal(config.host, "cache.internal");
   * assert.equal(config.port, 6381);
   * assert.equal(config.db, 1);
   * assert.equal(config.ttl, null);
   * ```
   *
   * @param env The variables to read; defaults to the process environment.
   * @returns The validated config.
   * @throws {CacheConfigError} When a variable is malformed (the message names it).
   */
  static fromEnv(env: EnvRecord = readEnv()): RedisConfig {
    return new RedisConfig(resolveEnv(env, ["REDIS"]));
  }

  /**
   * A plain view of the config for `JSON.stringify`, with the password replaced by `"***"` when
   * one is set.
   *
   * @example Serializing without the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const json = JSON.parse(JSON.stringify(new RedisConfig({ password: "hunter2" })));
   * assert.equal(json.password, "***");
   * assert.equal(json.port, 6379);
   * ```
   *
   * @returns Every field (the cluster fields in cluster mode only); `password` is `"***"` or
   * `undefined`.
   */
  toJSON(): Omit<RedisConfigOptions, "url"> {
    return {
      host: this.host,
      port: this.port,
      db: this.db,
      ...(this.mode === "cluster"
        ? {
          mode: this.mode,
          clusterNodes: [...this.clusterNodes],
          clusterTenantBuckets: this.clusterTenantBuckets,
          clusterGlobalBuckets: this.clusterGlobalBuckets,
        }
        : {}),
      username: this.username,
      password: this.#password === undefined ? undefined : HIDDEN,
      maxConnections: this.maxConnections,
      retryOnTimeout: this.retryOnTimeout,
      timeout: this.timeout,
      ttl: this.ttl,
      prefix: this.prefix,
      tls: this.tls,
      tlsCa: this.tlsCa,
      maxValueBytes: this.maxValueBytes,
      circuitBreaker: this.circuitBreaker,
      circuitBreakerThreshold: this.circuitBreakerThreshold,
      circuitBreakerProbeInterval: this.circuitBreakerProbeInterval,
    };
  }

  /**
   * A one-line description, the endpoint as a URL with the password shown as `***`.
   *
   * @example Describing a config
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = new RedisConfig({ username: "app", password: "hunter2", db: 2 });
   * assert.equal(String(config), "RedisConfig(redis://app:***@localhost:6379/2)");
   * ```
   *
   * @returns `RedisConfig(redis://[user[:***]@]host:port/db)` (`ValkeyConfig(...)` for a
   * `ValkeyConfig`, `rediss://` with TLS).
   */
  toString(): string {
    const user = this.username === undefined ? "" : encodeURIComponent(this.username);
    const auth = this.#password === undefined ? (user ? `${user}@` : "") : `${user}:${HIDDEN}@`;
    const scheme = this.tls ? "rediss" : "redis";
    if (this.mode === "cluster") {
      return `${this.#className()}(${scheme}://${auth}${this.clusterNodes.join(",")} cluster)`;
    }
    return `${this.#className()}(${scheme}://${auth}${urlHost(this.host)}:${this.port}/${this.db})`;
  }

  /**
   * Deno's inspect hook (`console.log`, `Deno.inspect`): the redacted view of `toJSON()`.
   *
   * @example Inspecting without the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const shown = Deno.inspect(new RedisConfig({ password: "hunter2" }));
   * assert.ok(shown.includes("***"));
   * assert.ok(!shown.includes("hunter2"));
   * ```
   *
   * @param inspect The runtime's inspect function.
   * @param options The inspect options, passed through.
   * @returns The class name followed by the inspected redacted view.
   */
  [Symbol.for("Deno.customInspect")](
    inspect: (value: unknown, options?: unknown) => string,
    options?: unknown,
  ): string {
    return `${this.#className()} ${inspect(this.toJSON(), options)}`;
  }

  /**
   * Node's inspect hook (`console.log`, `util.inspect`): the redacted view of `toJSON()`.
   *
   * @example Inspecting without the password
   * ```ts
   * import { RedisConfig } from "@core-lib/cache";
   * import { inspect } from "node:util";
   * import assert from "node:assert/strict";
   *
   * assert.ok(!inspect(new RedisConfig({ password: "hunter2" })).includes("hunter2"));
   * ```
   *
   * @param _depth The current depth (unused).
   * @param options The inspect options, passed through.
   * @param inspect The runtime's inspect function (Node >= 16.14).
   * @returns The class name followed by the inspected redacted view.
   */
  [Symbol.for("nodejs.util.inspect.custom")](
    _depth?: number,
    options?: unknown,
    inspect?: (value: unknown, options?: unknown) => string,
  ): string {
    const view = inspect ? inspect(this.toJSON(), options) : JSON.stringify(this.toJSON());
    return `${this.#className()} ${view}`;
  }

  #className(): string {
    return this instanceof ValkeyConfig ? "ValkeyConfig" : "RedisConfig";
  }
}

/**
 * Where and how to reach a Valkey server: the same fields and defaults as `RedisConfig`, read
 * from `VALKEY_*` variables with a fallback to their `REDIS_*` twins.
 *
 * @example Falling back to REDIS_* variables
 * ```ts
 * import { ValkeyConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const config = ValkeyConfig.fromEnv({ VALKEY_HOST: "valkey.internal", REDIS_DB: "3" });
 * assert.ok(config instanceof ValkeyConfig);
 * assert.equal(config.host, "valkey.internal");
 * assert.equal(config.db, 3);
 * ```
 */
export class ValkeyConfig extends RedisConfig {
  /**
   * Reads the config from the environment. For each field the lookup order is `VALKEY_<X>`, then
   * `VALKEY_URL`'s part, then `REDIS_<X>`, then `REDIS_URL`'s part, then the default; parsing
   * follows `RedisConfig.fromEnv`, and errors name the variable actually read. A URL describes
   * its whole endpoint: host, port, db, user, password and TLS come from it (port 6379 and db 0
   * when it omits them) unless the same prefix's explicit variable is set.
   *
   * @example Reading VALKEY_URL
   * ```ts
   * import { ValkeyConfig } from "@core-lib/cache";
   * import assert from "node:assert/strict";
   *
   * const config = ValkeyConfig.fromEnv({
   *   VALKEY_URL: "valkeys://:p%23ss@valkey.internal:6390",
   *   REDIS_PREFIX: "app:",
   * });
   * assert.equal(config.port, 6390);
   * assert.equal(config.tls, true);
   * assert.equal(config.password, "p#ss");
   * assert.equal(config.prefix, "app:");
   * ```
   *
   * @param env The variables to read; defaults to the process environment.
   * @returns The validated config.
   * @throws {CacheConfigError} When a variable is malformed (the message names it).
   */
  static override fromEnv(env: EnvRecord = readEnv()): ValkeyConfig {
    return new ValkeyConfig(resolveEnv(env, ["VALKEY", "REDIS"]));
  }
}

/**
 * The backend `setCache()` installs: `auto` picks Valkey when `VALKEY_*` variables are set, else
 * Redis.
 *
 * @example Naming a backend
 * ```ts
 * import type { BackendName } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const backend: BackendName = "valkey";
 * assert.equal(backend, "valkey");
 * ```
 */
export type BackendName = "redis" | "valkey" | "memory" | "auto";

const BACKENDS: readonly BackendName[] = ["redis", "valkey", "memory", "auto"];

/**
 * Reads `CACHE_BACKEND` (default `auto`; trimmed, any case) and `ENABLE_CACHE` (a boolean,
 * default `true`). Empty variables count as unset.
 *
 * @example Reading the backend selection
 * ```ts
 * import { readBackendSettings } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(readBackendSettings({ CACHE_BACKEND: " Valkey ", ENABLE_CACHE: "no" }), {
 *   backend: "valkey",
 *   enabled: false,
 *   explicit: true,
 * });
 * assert.deepEqual(readBackendSettings({}), { backend: "auto", enabled: true, explicit: false });
 * ```
 *
 * @param env The variables to read; defaults to the process environment.
 * @returns The backend, whether caching is enabled, and whether `CACHE_BACKEND` was set.
 * @throws {CacheConfigError} When `CACHE_BACKEND` or `ENABLE_CACHE` is malformed.
 */
export function readBackendSettings(
  env: EnvRecord = readEnv(),
): { backend: BackendName; enabled: boolean; explicit: boolean } {
  const rawBackend = env.CACHE_BACKEND;
  const explicit = rawBackend !== undefined && rawBackend !== "";
  let backend: BackendName = "auto";
  if (explicit) {
    const name = rawBackend.trim().toLowerCase();
    if (!(BACKENDS as readonly string[]).includes(name)) {
      throw invalid("CACHE_BACKEND", showRaw(rawBackend), `one of ${BACKENDS.join(", ")}`);
    }
    backend = name as BackendName;
  }
  let enabled = true;
  const rawEnabled = env.ENABLE_CACHE;
  if (rawEnabled !== undefined && rawEnabled !== "") {
    const value = parseBooleanWord(rawEnabled);
    if (value === undefined) throw invalid("ENABLE_CACHE", showRaw(rawEnabled), BOOLEAN_FORM);
    enabled = value;
  }
  return { backend, enabled, explicit };
}

/**
 * Whether any `VALKEY_*` variable this library reads (`VALKEY_URL`, `VALKEY_HOST`,
 * `VALKEY_PORT`, ...) is set to a non-empty value: what makes `auto` pick Valkey.
 *
 * @example Detecting a Valkey setup
 * ```ts
 * import { hasValkeyEnv } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * assert.equal(hasValkeyEnv({ VALKEY_HOST: "valkey.internal" }), true);
 * assert.equal(hasValkeyEnv({ VALKEY_HOST: "", REDIS_HOST: "redis.internal" }), false);
 * ```
 *
 * @param env The variables to look at.
 * @returns `true` when a `VALKEY_*` setting is present.
 */
export function hasValkeyEnv(env: EnvRecord): boolean {
  return VALKEY_NAMES.some((name) => {
    const value = env[name];
    return value !== undefined && value !== "";
  });
}

const VALKEY_NAMES: readonly string[] = [
  "VALKEY_URL",
  ...FIELDS.map((field) => `VALKEY_${ENV_SUFFIX[field]}`),
];
