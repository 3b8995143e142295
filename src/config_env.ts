/**
 * Reading settings from the environment: `REDIS_*` / `VALKEY_*` variables (integers and numbers
 * with a trailing `# comment`, booleans as words, `none` TTLs), connection URLs
 * (`REDIS_URL`, `rediss://`, percent-decoded credentials), the `VALKEY_*` -> `REDIS_*` fallback,
 * the near cache's `CACHE_NEAR_CACHE*` variables (unprefixed, the same for both backends), and
 * the backend selection (`CACHE_BACKEND`, `ENABLE_CACHE`, `hasValkeyEnv`). It turns strings
 * into typed option values and leaves the defaults to the config classes (src/config.ts), so an
 * option given in code and one read from a variable go through the same checks
 * (src/config_fields.ts).
 *
 * @module
 */

import {
  checkField,
  DEFAULTS,
  EXPECTED,
  type FieldName,
  invalid,
  MAX_BUCKETS,
  type RedisConfigOptions,
  showRaw,
} from "./config_fields.ts";
import { CacheConfigError } from "./errors.ts";
import { type EnvRecord, readEnv } from "./runtime.ts";
import { MAX_TTL_SECONDS } from "./values.ts";

/** Fields a connection URL defines, with the parsed values. */
export interface UrlParts {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
}

/** The fields a connection URL defines (and so overrides when the option is unset). */
export const URL_FIELDS: ReadonlySet<FieldName> = new Set<FieldName>([
  "host",
  "port",
  "db",
  "username",
  "password",
  "tls",
]);

/**
 * The fields read from one variable without a `REDIS_` / `VALKEY_` prefix: a setting of the
 * process rather than of one server, so `RedisConfig.fromEnv` and `ValkeyConfig.fromEnv` read
 * the same variable.
 */
type SharedField =
  | "nearCache"
  | "nearCacheMaxEntries"
  | "nearCacheMaxBytes"
  | "nearCacheMaxStaleness";

/** Environment variable of each shared field. */
const SHARED_ENV: Readonly<Record<SharedField, string>> = {
  nearCache: "CACHE_NEAR_CACHE",
  nearCacheMaxEntries: "CACHE_NEAR_CACHE_MAX_ENTRIES",
  nearCacheMaxBytes: "CACHE_NEAR_CACHE_MAX_BYTES",
  nearCacheMaxStaleness: "CACHE_NEAR_CACHE_MAX_STALENESS",
};

/** Environment variable suffix of each other field (`REDIS_<suffix>`, `VALKEY_<suffix>`). */
const ENV_SUFFIX: Readonly<Record<Exclude<FieldName, SharedField>, string>> = {
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

/** The fields read from `<prefix>_<suffix>` variables. */
const FIELDS = Object.keys(ENV_SUFFIX) as Exclude<FieldName, SharedField>[];
const SHARED_FIELDS = Object.keys(SHARED_ENV) as SharedField[];

const URL_SCHEMES: Readonly<Record<string, boolean>> = {
  "redis:": false,
  "rediss:": true,
  "valkey:": false,
  "valkeys:": true,
};
const URL_FORM = "redis://[user[:password]@]host[:port][/db] (rediss:// for TLS)";
const COMMENT_NOTE =
  'surrounding spaces and a trailing "# comment" are allowed, e.g. "6380 # replica"';
const BOOLEAN_FORM = "true/false, 1/0, yes/no or on/off (any case)";
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
    case "circuitBreakerThreshold":
    case "nearCacheMaxEntries":
    case "nearCacheMaxBytes": {
      const text = stripComment(raw);
      const value = INTEGER.test(text) ? Number(text.replaceAll("_", "")) : NaN;
      return checkField(field, value, name, shown);
    }
    case "timeout":
    case "circuitBreakerProbeInterval":
    case "nearCacheMaxStaleness": {
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
    case "circuitBreaker":
    case "nearCache": {
      const value = parseBooleanWord(raw);
      if (value === undefined) throw invalid(name, shown, BOOLEAN_FORM);
      return value;
    }
  }
}

/** The number fields whose errors also explain the accepted comment syntax. */
const NUMBER_FIELDS: ReadonlySet<FieldName> = new Set<FieldName>([
  "port",
  "db",
  "maxConnections",
  "maxValueBytes",
  "timeout",
  "circuitBreakerThreshold",
  "circuitBreakerProbeInterval",
  "nearCacheMaxEntries",
  "nearCacheMaxBytes",
  "nearCacheMaxStaleness",
]);

/** Wraps `parseEnvField` so number errors also explain the accepted comment syntax. */
function readEnvField(field: FieldName, name: string, raw: string): unknown {
  try {
    return parseEnvField(field, name, raw);
  } catch (error) {
    if (error instanceof CacheConfigError && NUMBER_FIELDS.has(field)) {
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
export function parseConnectionUrl(raw: unknown, label: string): UrlParts {
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
 * `<P>_<X>`, then `<P>_URL`'s part, for each prefix `P` in turn; the near cache's fields come
 * from their one unprefixed `CACHE_NEAR_CACHE*` variable whatever the prefixes. Unset fields
 * stay `undefined` (the constructor fills the defaults).
 */
export function resolveEnv(env: EnvRecord, prefixes: readonly string[]): RedisConfigOptions {
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
  for (const field of SHARED_FIELDS) {
    const name = SHARED_ENV[field];
    const raw = env[name];
    if (raw !== undefined && raw !== "") options[field] = readEnvField(field, name, raw);
  }
  return options as RedisConfigOptions;
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
