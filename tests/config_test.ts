import assert from "node:assert/strict";
import { type AddressInfo, createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { backendCandidates } from "../src/backend_choice.ts";
import {
  type BackendName,
  hasValkeyEnv,
  readBackendSettings,
  RedisConfig,
  urlHost,
  ValkeyConfig,
} from "../src/config.ts";
import { CacheConfigError, CacheInputError } from "../src/errors.ts";
import { cacheGet, cacheSet } from "../src/facade.ts";
import { closeCache, setCache } from "../src/global_cache.ts";
import { entryKey, hashInput } from "../src/keys.ts";
import { MemoryCache } from "../src/memory.ts";
import { type NearCacheOptions, resolveNearCache } from "../src/provider_options.ts";
import { RedisCache } from "../src/redis.ts";
import type { EnvRecord } from "../src/runtime.ts";
import { ValkeyCache } from "../src/valkey.ts";
import { collectingLogger, hasIpv6Loopback, KINDS, sleep } from "./_helpers.ts";
import { freePort, startServer, type TestServer } from "./harness.ts";

/** `Deno.inspect` on Deno; under Node (the npm build's run) only `util.inspect` is checked. */
const denoInspect = (globalThis as {
  Deno?: { inspect(value: unknown, options?: { depth?: number }): string };
}).Deno?.inspect;

const DEFAULTS = {
  host: "localhost",
  port: 6379,
  db: 0,
  username: undefined,
  password: undefined,
  maxConnections: 50,
  retryOnTimeout: true,
  timeout: 4,
  ttl: 3600,
  prefix: "cache:",
  tls: false,
  tlsCa: undefined,
  maxValueBytes: 64 * 1024 * 1024,
  circuitBreaker: true,
  circuitBreakerThreshold: 3,
  circuitBreakerProbeInterval: 0.1,
  nearCache: false,
  nearCacheMaxEntries: 10_000,
  nearCacheMaxBytes: 64 * 1024 * 1024,
  nearCacheMaxStaleness: 1,
};

/** Every field of a config, password included (read through the getter). */
function fields(config: RedisConfig): Record<string, unknown> {
  return {
    host: config.host,
    port: config.port,
    db: config.db,
    username: config.username,
    password: config.password,
    maxConnections: config.maxConnections,
    retryOnTimeout: config.retryOnTimeout,
    timeout: config.timeout,
    ttl: config.ttl,
    prefix: config.prefix,
    tls: config.tls,
    tlsCa: config.tlsCa,
    maxValueBytes: config.maxValueBytes,
    circuitBreaker: config.circuitBreaker,
    circuitBreakerThreshold: config.circuitBreakerThreshold,
    circuitBreakerProbeInterval: config.circuitBreakerProbeInterval,
    nearCache: config.nearCache,
    nearCacheMaxEntries: config.nearCacheMaxEntries,
    nearCacheMaxBytes: config.nearCacheMaxBytes,
    nearCacheMaxStaleness: config.nearCacheMaxStaleness,
  };
}

/** One variable per field, with its raw value and the value it must produce. */
const VARIABLES: { suffix: string; field: keyof typeof DEFAULTS; raw: string; value: unknown }[] = [
  { suffix: "HOST", field: "host", raw: "cache.internal", value: "cache.internal" },
  { suffix: "PORT", field: "port", raw: "6380", value: 6380 },
  { suffix: "DB", field: "db", raw: "5", value: 5 },
  { suffix: "USERNAME", field: "username", raw: "app", value: "app" },
  { suffix: "PASSWORD", field: "password", raw: "s3cret#x ", value: "s3cret#x " },
  { suffix: "MAX_CONNECTIONS", field: "maxConnections", raw: "10", value: 10 },
  { suffix: "RETRY_ON_TIMEOUT", field: "retryOnTimeout", raw: "false", value: false },
  { suffix: "TIMEOUT", field: "timeout", raw: "2.5", value: 2.5 },
  { suffix: "CACHE_TTL", field: "ttl", raw: "60", value: 60 },
  { suffix: "PREFIX", field: "prefix", raw: "app:", value: "app:" },
  { suffix: "TLS", field: "tls", raw: "true", value: true },
  { suffix: "TLS_CA", field: "tlsCa", raw: "/etc/ssl/ca.pem", value: "/etc/ssl/ca.pem" },
  { suffix: "MAX_VALUE_BYTES", field: "maxValueBytes", raw: "1048576 # 1 MiB", value: 1048576 },
  { suffix: "CIRCUIT_BREAKER", field: "circuitBreaker", raw: "off", value: false },
  { suffix: "CIRCUIT_BREAKER_THRESHOLD", field: "circuitBreakerThreshold", raw: "5 # x", value: 5 },
  {
    suffix: "CIRCUIT_BREAKER_PROBE_INTERVAL",
    field: "circuitBreakerProbeInterval",
    raw: "0.25",
    value: 0.25,
  },
];

/** A second value per field, to tell which variable won. */
const OTHER: Record<string, string> = {
  HOST: "other.internal",
  PORT: "7000",
  DB: "9",
  USERNAME: "other",
  PASSWORD: "other-pw",
  MAX_CONNECTIONS: "3",
  RETRY_ON_TIMEOUT: "true",
  TIMEOUT: "9",
  CACHE_TTL: "90",
  PREFIX: "other:",
  TLS: "false",
  TLS_CA: "/other/ca.pem",
  MAX_VALUE_BYTES: "4096",
  CIRCUIT_BREAKER: "yes",
  CIRCUIT_BREAKER_THRESHOLD: "7",
  CIRCUIT_BREAKER_PROBE_INTERVAL: "2",
};

/** Malformed values per variable suffix. */
const MALFORMED: Record<string, string[]> = {
  HOST: ["   "],
  PORT: ["abc", "0", "65536", "63.5", "1e3", "-1", "6379 6380", "# only a comment"],
  DB: ["abc", "-1", "1.5", "zero"],
  MAX_CONNECTIONS: ["abc", "0", "-5", "2.5"],
  RETRY_ON_TIMEOUT: ["maybe", "2", "ture", "y"],
  TIMEOUT: ["abc", "0", "-1", "inf", "NaN", "1e400"],
  CACHE_TTL: ["abc", "0", "-10", "never", "Infinity", "1e400"],
  TLS: ["maybe", "enabled", "t"],
  TLS_CA: ["  "],
  MAX_VALUE_BYTES: ["abc", "0", "-1", "1.5", "64MiB"],
  CIRCUIT_BREAKER: ["maybe", "2"],
  CIRCUIT_BREAKER_THRESHOLD: ["abc", "0", "1.5"],
  CIRCUIT_BREAKER_PROBE_INTERVAL: ["abc", "0", "-1", "61", "100ms"],
};

/**
 * The near cache's variables: one name each, without a REDIS_ / VALKEY_ prefix, read alike by
 * RedisConfig.fromEnv and ValkeyConfig.fromEnv.
 */
const NEAR_CACHE_VARIABLES: {
  name: string;
  field: keyof typeof DEFAULTS;
  raw: string;
  value: unknown;
  malformed: string[];
}[] = [
  {
    name: "CACHE_NEAR_CACHE",
    field: "nearCache",
    raw: "Yes # hot reads",
    value: true,
    malformed: ["maybe", "2", "enabled"],
  },
  {
    name: "CACHE_NEAR_CACHE_MAX_ENTRIES",
    field: "nearCacheMaxEntries",
    raw: "500 # hot keys",
    value: 500,
    malformed: ["abc", "0", "-1", "1.5", "10k", "1e3", "# only a comment"],
  },
  {
    name: "CACHE_NEAR_CACHE_MAX_BYTES",
    field: "nearCacheMaxBytes",
    raw: " 1_048_576 ",
    value: 1048576,
    malformed: ["abc", "0", "-5", "2.5", "64MiB"],
  },
  {
    name: "CACHE_NEAR_CACHE_MAX_STALENESS",
    field: "nearCacheMaxStaleness",
    raw: "0.25 # seconds",
    value: 0.25,
    malformed: ["abc", "0", "-1", "60.5", "1s", "NaN", "inf"],
  },
];

/** A test value in a test name: strings quoted, numbers as written (`NaN`, `Infinity`). */
function showValue(value: unknown): string {
  return typeof value === "string" || Array.isArray(value) ? JSON.stringify(value) : String(value);
}

/**
 * A TCP listener on 127.0.0.1 that counts (and drops) the connections it accepts: a provider
 * pointed at it proves that a refused option sent nothing.
 */
async function countingListener(): Promise<
  { readonly port: number; readonly accepted: number } & AsyncDisposable
> {
  let accepted = 0;
  const server = createServer((socket) => {
    accepted++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    get accepted() {
      return accepted;
    },
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function assertConfigError(fn: () => unknown, ...fragments: string[]): CacheConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CacheConfigError, `expected a CacheConfigError, got ${caught}`);
  for (const fragment of fragments) {
    assert.ok(
      caught.message.includes(fragment),
      `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(fragment)}`,
    );
  }
  return caught;
}

describe("RedisConfig defaults", () => {
  it("new RedisConfig() has the defaults of the spec", () => {
    assert.deepEqual(fields(new RedisConfig()), DEFAULTS);
    assert.deepEqual(fields(new RedisConfig({})), DEFAULTS);
  });

  it("fromEnv({}) has the defaults", () => {
    assert.deepEqual(fields(RedisConfig.fromEnv({})), DEFAULTS);
    assert.deepEqual(fields(ValkeyConfig.fromEnv({})), DEFAULTS);
  });

  it("ignores unrelated variables", () => {
    const env = { PATH: "/usr/bin", HOST: "x", PORT: "abc", REDIS: "1", VALKEY: "1" };
    assert.deepEqual(fields(RedisConfig.fromEnv(env)), DEFAULTS);
    assert.deepEqual(fields(ValkeyConfig.fromEnv(env)), DEFAULTS);
  });

  it("empty variables count as unset", () => {
    const env: EnvRecord = { REDIS_URL: "", VALKEY_URL: "" };
    for (const { suffix } of VARIABLES) {
      env[`REDIS_${suffix}`] = "";
      env[`VALKEY_${suffix}`] = "";
    }
    for (const { name } of NEAR_CACHE_VARIABLES) env[name] = "";
    assert.deepEqual(fields(RedisConfig.fromEnv(env)), DEFAULTS);
    assert.deepEqual(fields(ValkeyConfig.fromEnv(env)), DEFAULTS);
  });

  it("undefined options fall back to the defaults", () => {
    assert.deepEqual(fields(new RedisConfig({ host: undefined, ttl: undefined })), DEFAULTS);
  });
});

describe("RedisConfig options", () => {
  it("takes every option", () => {
    const options = {
      host: "10.0.0.5",
      port: 6380,
      db: 2,
      username: "app",
      password: "pw",
      maxConnections: 7,
      retryOnTimeout: false,
      timeout: 0.25,
      ttl: 1.5,
      prefix: "",
      tls: true,
      tlsCa: "/ca.pem",
      maxValueBytes: 1024,
      circuitBreaker: false,
      circuitBreakerThreshold: 9,
      circuitBreakerProbeInterval: 0.5,
      nearCache: true,
      nearCacheMaxEntries: 100,
      nearCacheMaxBytes: 4096,
      nearCacheMaxStaleness: 0.25,
    };
    assert.deepEqual(fields(new RedisConfig(options)), options);
  });

  it("ttl null means no expiry", () => {
    assert.equal(new RedisConfig({ ttl: null }).ttl, null);
  });

  it("url fills the fields the options do not set", () => {
    const config = new RedisConfig({
      url: "rediss://u:p@h.example:6390/4",
      port: 7000,
      tls: false,
    });
    assert.equal(config.host, "h.example");
    assert.equal(config.port, 7000);
    assert.equal(config.db, 4);
    assert.equal(config.username, "u");
    assert.equal(config.password, "p");
    assert.equal(config.tls, false);
  });

  const bad: [string, unknown][] = [
    ["host", ""],
    ["host", 5],
    ["port", 0],
    ["port", 65536],
    ["port", 6379.5],
    ["port", "6379"],
    ["port", NaN],
    ["db", -1],
    ["db", 1.5],
    ["username", 1],
    ["password", 1],
    ["maxConnections", 0],
    ["maxConnections", 2.5],
    ["retryOnTimeout", "yes"],
    ["timeout", 0],
    ["timeout", -1],
    ["timeout", Infinity],
    ["timeout", NaN],
    ["ttl", 0],
    ["ttl", -5],
    ["ttl", Infinity],
    ["ttl", NaN],
    ["ttl", "60"],
    ["prefix", 5],
    ["prefix", null],
    ["tls", 1],
    ["tlsCa", ""],
    ["maxValueBytes", 0],
    ["maxValueBytes", 1.5],
    ["maxValueBytes", "1024"],
    ["nearCache", "true"],
    ["nearCache", 1],
    ["nearCacheMaxEntries", 0],
    ["nearCacheMaxEntries", 2.5],
    ["nearCacheMaxEntries", "100"],
    ["nearCacheMaxBytes", 0],
    ["nearCacheMaxBytes", -1],
    ["nearCacheMaxBytes", Infinity],
    ["nearCacheMaxStaleness", 0],
    ["nearCacheMaxStaleness", 60.5],
    ["nearCacheMaxStaleness", NaN],
    ["nearCacheMaxStaleness", "1"],
  ];
  for (const [option, value] of bad) {
    it(`rejects ${option} = ${String(value)} naming the option`, () => {
      assertConfigError(() => new RedisConfig({ [option]: value }), `"${option}"`, "expected");
    });
  }

  it("names the accepted values", () => {
    assertConfigError(() => new RedisConfig({ port: 0 }), "port", "1 to 65535");
    assertConfigError(() => new RedisConfig({ ttl: 0 }), "ttl", "null");
  });

  it("rejects a non-object options argument", () => {
    assertConfigError(() => new RedisConfig(null as unknown as undefined), "options");
    assertConfigError(() => new RedisConfig("redis://h" as unknown as undefined), "options");
  });

  it("never shows a bad password option in the message", () => {
    const error = assertConfigError(
      () => new RedisConfig({ password: ["hunter2"] as unknown as string }),
      "password",
    );
    assert.ok(!error.message.includes("hunter2"));
  });
});

describe("RedisConfig.fromEnv", () => {
  for (const { suffix, field, raw, value } of VARIABLES) {
    it(`reads REDIS_${suffix}`, () => {
      const config = RedisConfig.fromEnv({ [`REDIS_${suffix}`]: raw });
      assert.deepEqual(fields(config), { ...DEFAULTS, [field]: value });
    });
  }

  it("ignores VALKEY_* variables", () => {
    const config = RedisConfig.fromEnv({ VALKEY_HOST: "v", VALKEY_URL: "redis://v:1/1" });
    assert.deepEqual(fields(config), DEFAULTS);
  });

  it("trims the host and the CA path", () => {
    const config = RedisConfig.fromEnv({ REDIS_HOST: " h ", REDIS_TLS_CA: " /ca.pem\n" });
    assert.equal(config.host, "h");
    assert.equal(config.tlsCa, "/ca.pem");
  });

  it("keeps the prefix, user name and password exactly", () => {
    const config = RedisConfig.fromEnv({
      REDIS_PREFIX: " p # x:",
      REDIS_USERNAME: " u ",
      REDIS_PASSWORD: " pw # not a comment ",
    });
    assert.equal(config.prefix, " p # x:");
    assert.equal(config.username, " u ");
    assert.equal(config.password, " pw # not a comment ");
  });

  it("returns a RedisConfig", () => {
    const config = RedisConfig.fromEnv({});
    assert.ok(config instanceof RedisConfig);
    assert.ok(!(config instanceof ValkeyConfig));
  });
});

describe("integers and numbers from the environment", () => {
  const cases: [string, number][] = [
    ["6380 # replica", 6380],
    ["6380#replica", 6380],
    ["  6380  ", 6380],
    ["\t6380\n", 6380],
    ["+6380", 6380],
    ["6_380", 6380],
    ["06380", 6380],
  ];
  for (const [raw, value] of cases) {
    it(`REDIS_PORT=${JSON.stringify(raw)} reads ${value}`, () => {
      assert.equal(RedisConfig.fromEnv({ REDIS_PORT: raw }).port, value);
    });
  }

  it("accepts comments on every integer variable", () => {
    const config = RedisConfig.fromEnv({
      REDIS_DB: "3 # reports",
      REDIS_MAX_CONNECTIONS: " 20   # pool ",
      REDIS_TIMEOUT: "1.5 # seconds",
      REDIS_CACHE_TTL: "120 # two minutes",
    });
    assert.equal(config.db, 3);
    assert.equal(config.maxConnections, 20);
    assert.equal(config.timeout, 1.5);
    assert.equal(config.ttl, 120);
  });

  it("reads fractional and exponent timeouts and TTLs", () => {
    assert.equal(RedisConfig.fromEnv({ REDIS_TIMEOUT: "0.5" }).timeout, 0.5);
    assert.equal(RedisConfig.fromEnv({ REDIS_TIMEOUT: ".25" }).timeout, 0.25);
    assert.equal(RedisConfig.fromEnv({ REDIS_TIMEOUT: "1e1" }).timeout, 10);
    assert.equal(RedisConfig.fromEnv({ REDIS_CACHE_TTL: "0.5" }).ttl, 0.5);
  });

  for (const raw of ["none", "None", "NONE", "null", "Null", " null ", "none # forever"]) {
    it(`REDIS_CACHE_TTL=${JSON.stringify(raw)} means no expiry`, () => {
      assert.equal(RedisConfig.fromEnv({ REDIS_CACHE_TTL: raw }).ttl, null);
      assert.equal(ValkeyConfig.fromEnv({ VALKEY_CACHE_TTL: raw }).ttl, null);
    });
  }
});

describe("booleans from the environment", () => {
  const spellings: [string, boolean][] = [];
  for (
    const [word, value] of [
      ["true", true],
      ["false", false],
      ["1", true],
      ["0", false],
      ["yes", true],
      ["no", false],
      ["on", true],
      ["off", false],
    ] as const
  ) {
    spellings.push([word, value], [word.toUpperCase(), value]);
    spellings.push([word[0].toUpperCase() + word.slice(1), value], [` ${word} `, value]);
  }
  spellings.push(["tRuE", true], ["fAlSe", false], ["yes # comment", true]);

  for (const [raw, value] of spellings) {
    it(`${JSON.stringify(raw)} reads ${value}`, () => {
      assert.equal(RedisConfig.fromEnv({ REDIS_TLS: raw }).tls, value);
      assert.equal(RedisConfig.fromEnv({ REDIS_RETRY_ON_TIMEOUT: raw }).retryOnTimeout, value);
      assert.equal(ValkeyConfig.fromEnv({ VALKEY_TLS: raw }).tls, value);
      assert.equal(RedisConfig.fromEnv({ CACHE_NEAR_CACHE: raw }).nearCache, value);
      assert.equal(ValkeyConfig.fromEnv({ CACHE_NEAR_CACHE: raw }).nearCache, value);
      assert.equal(readBackendSettings({ ENABLE_CACHE: raw }).enabled, value);
    });
  }
});

describe("malformed variables", () => {
  for (const prefix of ["REDIS", "VALKEY"]) {
    const read = prefix === "REDIS" ? RedisConfig.fromEnv : ValkeyConfig.fromEnv;
    for (const [suffix, values] of Object.entries(MALFORMED)) {
      for (const raw of values) {
        const name = `${prefix}_${suffix}`;
        it(`${name}=${JSON.stringify(raw)} throws naming ${name}`, () => {
          const error = assertConfigError(() => read({ [name]: raw }), name, "expected");
          assert.ok(error.message.includes(JSON.stringify(raw)), "the message shows the value");
        });
      }
    }
  }

  it("integer errors explain the accepted form", () => {
    assertConfigError(
      () => RedisConfig.fromEnv({ REDIS_PORT: "abc" }),
      "REDIS_PORT",
      '"abc"',
      "integer",
      "1 to 65535",
      "# comment",
    );
    assertConfigError(() => RedisConfig.fromEnv({ REDIS_DB: "x" }), "REDIS_DB", ">= 0");
  });

  it("boolean errors list the accepted words", () => {
    assertConfigError(
      () => RedisConfig.fromEnv({ REDIS_TLS: "maybe" }),
      "REDIS_TLS",
      "true/false",
      "yes/no",
      "on/off",
    );
  });

  it("TTL errors mention none/null", () => {
    assertConfigError(
      () => RedisConfig.fromEnv({ REDIS_CACHE_TTL: "0" }),
      "REDIS_CACHE_TTL",
      "none",
    );
  });

  it("names the VALKEY_* variable that was read, and the REDIS_* one on fallback", () => {
    assertConfigError(
      () => ValkeyConfig.fromEnv({ VALKEY_PORT: "x", REDIS_PORT: "1" }),
      "VALKEY_PORT",
    );
    const error = assertConfigError(() => ValkeyConfig.fromEnv({ REDIS_PORT: "x" }), "REDIS_PORT");
    assert.ok(!error.message.includes("VALKEY_PORT"));
  });

  it("does not read a malformed REDIS_* variable that a VALKEY_* one overrides", () => {
    assert.equal(ValkeyConfig.fromEnv({ VALKEY_PORT: "6390", REDIS_PORT: "x" }).port, 6390);
  });

  it("never prints the password in an error", () => {
    const env = {
      REDIS_PASSWORD: "hunter2",
      REDIS_URL: "redis://:hunter2@h:6379/1",
      REDIS_PORT: "abc",
    };
    const error = assertConfigError(() => RedisConfig.fromEnv(env), "REDIS_PORT");
    assert.ok(!error.message.includes("hunter2"));
  });
});

describe("connection URLs", () => {
  it("parses every part of redis://", () => {
    const config = RedisConfig.fromEnv({ REDIS_URL: "redis://app:pw@cache.internal:6380/3" });
    assert.deepEqual(fields(config), {
      ...DEFAULTS,
      host: "cache.internal",
      port: 6380,
      db: 3,
      username: "app",
      password: "pw",
    });
  });

  it("rediss:// turns TLS on, redis:// keeps it off", () => {
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: "rediss://h" }).tls, true);
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: "redis://h" }).tls, false);
    assert.equal(new RedisConfig({ url: "REDISS://h" }).tls, true);
  });

  it("accepts valkey:// and valkeys://", () => {
    assert.equal(new RedisConfig({ url: "valkey://h:1/2" }).tls, false);
    assert.equal(new RedisConfig({ url: "valkeys://h:1/2" }).tls, true);
  });

  it("percent-decodes the user name and password", () => {
    const config = new RedisConfig({ url: "redis://us%40er:p%40ss%3Aw%2Fo%23rd%25@h" });
    assert.equal(config.username, "us@er");
    assert.equal(config.password, "p@ss:w/o#rd%");
  });

  it("reads a password without a user name, and a user name without a password", () => {
    const withPassword = new RedisConfig({ url: "redis://:pw@h" });
    assert.equal(withPassword.username, undefined);
    assert.equal(withPassword.password, "pw");
    const withUser = new RedisConfig({ url: "redis://app@h" });
    assert.equal(withUser.username, "app");
    assert.equal(withUser.password, undefined);
  });

  it("defaults port 6379 and db 0, and accepts a trailing slash", () => {
    for (const url of ["redis://h", "redis://h/", "redis://h:6379/0"]) {
      const config = new RedisConfig({ url });
      assert.equal(config.host, "h");
      assert.equal(config.port, 6379);
      assert.equal(config.db, 0);
    }
  });

  it("reads IPv4 and IPv6 hosts", () => {
    assert.equal(new RedisConfig({ url: "redis://127.0.0.1:6380" }).host, "127.0.0.1");
    const v6 = new RedisConfig({ url: "redis://[::1]:6380/1" });
    assert.equal(v6.host, "::1");
    assert.equal(v6.port, 6380);
    assert.equal(String(v6), "RedisConfig(redis://[::1]:6380/1)");
  });

  it("trims surrounding spaces", () => {
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: "  redis://h:6390  " }).port, 6390);
  });

  const badUrls = [
    "not a url",
    "localhost:6379",
    "http://h:6379",
    "redis://h:99999",
    "redis://h/abc",
    "redis://h/1/2",
    "redis://h/-1",
    "redis://:%zz@h",
  ];
  for (const url of badUrls) {
    it(`rejects ${JSON.stringify(url)} naming the variable and the form`, () => {
      assertConfigError(() => RedisConfig.fromEnv({ REDIS_URL: url }), "REDIS_URL");
      assertConfigError(() => ValkeyConfig.fromEnv({ VALKEY_URL: url }), "VALKEY_URL");
      assertConfigError(() => new RedisConfig({ url }), "url");
    });
  }

  it("never prints the URL's password in an error", () => {
    for (const url of ["redis://:hunter2@h:99999", "http://:hunter2@h", "redis://:hunter2@h/x"]) {
      const error = assertConfigError(() => RedisConfig.fromEnv({ REDIS_URL: url }), "REDIS_URL");
      assert.ok(!error.message.includes("hunter2"), error.message);
    }
  });
});

describe("explicit variables beat the URL", () => {
  it("for every part of the URL", () => {
    const config = RedisConfig.fromEnv({
      REDIS_URL: "rediss://u:p@url-host:6390/5",
      REDIS_HOST: "var-host",
      REDIS_PORT: "6391",
      REDIS_DB: "6",
      REDIS_USERNAME: "var-user",
      REDIS_PASSWORD: "var-pw",
      REDIS_TLS: "false",
    });
    assert.deepEqual(fields(config), {
      ...DEFAULTS,
      host: "var-host",
      port: 6391,
      db: 6,
      username: "var-user",
      password: "var-pw",
      tls: false,
    });
  });

  it("field by field", () => {
    const url = "redis://u:p@url-host:6390/5";
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: url, REDIS_PORT: "7000" }).host, "url-host");
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: url, REDIS_PORT: "7000" }).port, 7000);
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: url, REDIS_PASSWORD: "x" }).password, "x");
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: url, REDIS_PASSWORD: "x" }).username, "u");
    assert.equal(RedisConfig.fromEnv({ REDIS_URL: "redis://h", REDIS_TLS: "on" }).tls, true);
  });

  it("fields the URL does not carry come from their variables", () => {
    const config = RedisConfig.fromEnv({ REDIS_URL: "redis://h", REDIS_CACHE_TTL: "5" });
    assert.equal(config.ttl, 5);
    assert.equal(config.maxConnections, 50);
  });
});

describe("ValkeyConfig.fromEnv", () => {
  it("returns a ValkeyConfig", () => {
    const config: ValkeyConfig = ValkeyConfig.fromEnv({});
    assert.ok(config instanceof ValkeyConfig);
    assert.ok(config instanceof RedisConfig);
    assert.match(String(config), /^ValkeyConfig\(/);
  });

  for (const { suffix, field, raw, value } of VARIABLES) {
    it(`reads VALKEY_${suffix}`, () => {
      const config = ValkeyConfig.fromEnv({ [`VALKEY_${suffix}`]: raw });
      assert.deepEqual(fields(config), { ...DEFAULTS, [field]: value });
    });

    it(`falls back from VALKEY_${suffix} to REDIS_${suffix}`, () => {
      const config = ValkeyConfig.fromEnv({ [`REDIS_${suffix}`]: raw });
      assert.deepEqual(fields(config), { ...DEFAULTS, [field]: value });
    });

    it(`prefers VALKEY_${suffix} over REDIS_${suffix}`, () => {
      const config = ValkeyConfig.fromEnv({
        [`VALKEY_${suffix}`]: raw,
        [`REDIS_${suffix}`]: OTHER[suffix],
      });
      assert.deepEqual(fields(config), { ...DEFAULTS, [field]: value });
    });
  }

  it("looks up VALKEY_<X>, VALKEY_URL, REDIS_<X>, REDIS_URL, then the default", () => {
    const redisUrl = "redis://r-user:r-pw@r-host:6001/1";
    const valkeyUrl = "redis://v-user:v-pw@v-host:6002/2";
    // REDIS_URL alone.
    assert.equal(ValkeyConfig.fromEnv({ REDIS_URL: redisUrl }).host, "r-host");
    // REDIS_<X> beats REDIS_URL.
    assert.equal(ValkeyConfig.fromEnv({ REDIS_URL: redisUrl, REDIS_HOST: "rh" }).host, "rh");
    // VALKEY_URL beats REDIS_<X>.
    const env = {
      REDIS_URL: redisUrl,
      REDIS_HOST: "rh",
      REDIS_PORT: "6003",
      VALKEY_URL: valkeyUrl,
    };
    const fromUrl = ValkeyConfig.fromEnv(env);
    assert.equal(fromUrl.host, "v-host");
    assert.equal(fromUrl.port, 6002);
    assert.equal(fromUrl.db, 2);
    assert.equal(fromUrl.username, "v-user");
    assert.equal(fromUrl.password, "v-pw");
    // VALKEY_<X> beats VALKEY_URL.
    assert.equal(ValkeyConfig.fromEnv({ ...env, VALKEY_HOST: "vh" }).host, "vh");
    assert.equal(ValkeyConfig.fromEnv({ ...env, VALKEY_HOST: "vh" }).port, 6002);
  });

  it("a VALKEY_URL describes its whole endpoint", () => {
    const config = ValkeyConfig.fromEnv({
      VALKEY_URL: "redis://v-host",
      REDIS_URL: "rediss://r-user:r-pw@r-host:6001/1",
      REDIS_PORT: "6003",
      REDIS_PASSWORD: "redis-only",
    });
    assert.equal(config.host, "v-host");
    assert.equal(config.port, 6379);
    assert.equal(config.db, 0);
    assert.equal(config.username, undefined);
    assert.equal(config.password, undefined);
    assert.equal(config.tls, false);
  });

  it("fields no URL carries still fall back to REDIS_*", () => {
    const config = ValkeyConfig.fromEnv({
      VALKEY_URL: "redis://v-host",
      REDIS_PREFIX: "shared:",
      REDIS_CACHE_TTL: "none",
      REDIS_MAX_CONNECTIONS: "8",
    });
    assert.equal(config.prefix, "shared:");
    assert.equal(config.ttl, null);
    assert.equal(config.maxConnections, 8);
  });

  it("empty VALKEY_* variables fall back to REDIS_*", () => {
    const config = ValkeyConfig.fromEnv({ VALKEY_HOST: "", VALKEY_URL: "", REDIS_HOST: "r" });
    assert.equal(config.host, "r");
  });
});

describe("the near cache's CACHE_NEAR_CACHE* variables", () => {
  for (const { name, field, raw, value } of NEAR_CACHE_VARIABLES) {
    it(`RedisConfig.fromEnv and ValkeyConfig.fromEnv both read ${name}`, () => {
      assert.deepEqual(fields(RedisConfig.fromEnv({ [name]: raw })), {
        ...DEFAULTS,
        [field]: value,
      });
      const valkey = ValkeyConfig.fromEnv({ [name]: raw });
      assert.ok(valkey instanceof ValkeyConfig);
      assert.deepEqual(fields(valkey), { ...DEFAULTS, [field]: value });
    });
  }

  it("reads all four together, and the defaults when none is set", () => {
    const env = Object.fromEntries(NEAR_CACHE_VARIABLES.map(({ name, raw }) => [name, raw]));
    const expected = Object.fromEntries(
      NEAR_CACHE_VARIABLES.map(({ field, value }) => [field, value]),
    );
    for (const read of [RedisConfig.fromEnv, ValkeyConfig.fromEnv]) {
      assert.deepEqual(fields(read(env)), { ...DEFAULTS, ...expected });
      const config = read({});
      assert.equal(config.nearCache, false);
      assert.equal(config.nearCacheMaxEntries, 10000);
      assert.equal(config.nearCacheMaxBytes, 67108864);
      assert.equal(config.nearCacheMaxStaleness, 1);
    }
    assert.deepEqual(
      JSON.parse(JSON.stringify(RedisConfig.fromEnv(env))),
      JSON.parse(JSON.stringify(new RedisConfig(expected))),
    );
  });

  it("has no REDIS_ / VALKEY_ twin, and does not make auto pick Valkey", () => {
    const env: EnvRecord = {};
    for (const { name, raw } of NEAR_CACHE_VARIABLES) {
      const suffix = name.replace(/^CACHE_/, "");
      env[`REDIS_${suffix}`] = raw;
      env[`VALKEY_${suffix}`] = raw;
      env[`REDIS_${name}`] = raw;
      env[`VALKEY_${name}`] = raw;
    }
    assert.deepEqual(fields(RedisConfig.fromEnv(env)), DEFAULTS);
    assert.deepEqual(fields(ValkeyConfig.fromEnv(env)), DEFAULTS);
    assert.equal(hasValkeyEnv({ CACHE_NEAR_CACHE: "true" }), false);
    assert.deepEqual(
      backendCandidates({ CACHE_NEAR_CACHE: "true" }).map(({ kind, config }) => [
        kind,
        config.nearCache,
      ]),
      [["redis", true], ["valkey", true]],
    );
  });

  for (const { name, malformed } of NEAR_CACHE_VARIABLES) {
    for (const raw of malformed) {
      it(`${name}=${JSON.stringify(raw)} throws naming ${name}, for Redis and Valkey`, () => {
        for (const read of [RedisConfig.fromEnv, ValkeyConfig.fromEnv]) {
          const error = assertConfigError(() => read({ [name]: raw }), name, "expected");
          assert.ok(error.message.includes(JSON.stringify(raw)), "the message shows the value");
        }
      });
    }
  }

  it("errors say what to write", () => {
    assertConfigError(
      () => RedisConfig.fromEnv({ CACHE_NEAR_CACHE: "maybe" }),
      "CACHE_NEAR_CACHE",
      "true/false",
      "yes/no",
    );
    assertConfigError(
      () => RedisConfig.fromEnv({ CACHE_NEAR_CACHE_MAX_ENTRIES: "ten" }),
      "CACHE_NEAR_CACHE_MAX_ENTRIES",
      "integer >= 1",
      "# comment",
    );
    assertConfigError(
      () => ValkeyConfig.fromEnv({ CACHE_NEAR_CACHE_MAX_BYTES: "64MiB" }),
      "CACHE_NEAR_CACHE_MAX_BYTES",
      "integer >= 1",
      "# comment",
    );
    assertConfigError(
      () => RedisConfig.fromEnv({ CACHE_NEAR_CACHE_MAX_STALENESS: "61" }),
      "CACHE_NEAR_CACHE_MAX_STALENESS",
      "above 0 and at most 60",
      "# comment",
    );
  });

  it("a malformed setting is refused even while CACHE_NEAR_CACHE is off", () => {
    assertConfigError(
      () => RedisConfig.fromEnv({ CACHE_NEAR_CACHE: "false", CACHE_NEAR_CACHE_MAX_ENTRIES: "0" }),
      "CACHE_NEAR_CACHE_MAX_ENTRIES",
    );
  });

  it("reads 60 seconds, the longest staleness", () => {
    assert.equal(
      RedisConfig.fromEnv({ CACHE_NEAR_CACHE_MAX_STALENESS: "60" }).nearCacheMaxStaleness,
      60,
    );
  });
});

describe("resolveNearCache (the nearCache option against the config)", () => {
  const OFF = new RedisConfig();
  const ON = new RedisConfig({ nearCache: true });
  const DEFAULT_SETTINGS = { maxEntries: 10000, maxBytes: 67108864, maxStalenessMs: 1000 };

  it("undefined follows the config: off by default, the config's settings when on", () => {
    assert.equal(resolveNearCache(OFF, undefined), null);
    assert.deepEqual(resolveNearCache(ON, undefined), DEFAULT_SETTINGS);
    const env = RedisConfig.fromEnv({
      CACHE_NEAR_CACHE: "on",
      CACHE_NEAR_CACHE_MAX_ENTRIES: "50",
      CACHE_NEAR_CACHE_MAX_BYTES: "2048",
      CACHE_NEAR_CACHE_MAX_STALENESS: "0.5",
    });
    assert.deepEqual(resolveNearCache(env, undefined), {
      maxEntries: 50,
      maxBytes: 2048,
      maxStalenessMs: 500,
    });
  });

  it("true or {} turns it on with the config's settings", () => {
    assert.deepEqual(resolveNearCache(OFF, true), DEFAULT_SETTINGS);
    assert.deepEqual(resolveNearCache(OFF, {}), DEFAULT_SETTINGS);
    const config = new RedisConfig({ nearCacheMaxEntries: 7, nearCacheMaxStaleness: 2 });
    assert.deepEqual(resolveNearCache(config, true), {
      maxEntries: 7,
      maxBytes: 67108864,
      maxStalenessMs: 2000,
    });
  });

  it("an object's settings win over the config's, the rest come from the config", () => {
    const config = new RedisConfig({ nearCacheMaxEntries: 7, nearCacheMaxBytes: 4096 });
    assert.deepEqual(resolveNearCache(config, { maxEntries: 3 }), {
      maxEntries: 3,
      maxBytes: 4096,
      maxStalenessMs: 1000,
    });
    assert.deepEqual(
      resolveNearCache(config, { maxEntries: 1, maxBytes: 1, maxStaleness: 60 }),
      { maxEntries: 1, maxBytes: 1, maxStalenessMs: 60000 },
    );
    assert.deepEqual(resolveNearCache(OFF, { maxStaleness: 0.25 }), {
      ...DEFAULT_SETTINGS,
      maxStalenessMs: 250,
    });
  });

  it("false turns it off even when the config has it on", () => {
    assert.equal(resolveNearCache(ON, false), null);
    assert.equal(resolveNearCache(RedisConfig.fromEnv({ CACHE_NEAR_CACHE: "1" }), false), null);
  });

  it("rounds maxStaleness to whole milliseconds, at least 1", () => {
    const ms = (maxStaleness: number) => resolveNearCache(OFF, { maxStaleness })?.maxStalenessMs;
    assert.equal(ms(0.0001), 1);
    assert.equal(ms(0.0004), 1);
    assert.equal(ms(0.0015), 2);
    assert.equal(ms(1.2344), 1234);
  });

  const bad: [unknown, RegExp][] = [
    ["yes", /^Invalid nearCache "yes": pass true, false or \{ maxEntries\?/],
    [1, /^Invalid nearCache 1:/],
    [null, /^Invalid nearCache null:/],
    [[], /^Invalid nearCache \(an array\):/],
    [() => true, /^Invalid nearCache \(a value of type function\):/],
    [{ maxEntries: 0 }, /^Invalid nearCache\.maxEntries 0: pass a whole number of at least 1/],
    [{ maxEntries: 2.5 }, /^Invalid nearCache\.maxEntries 2\.5:/],
    [{ maxEntries: "100" }, /^Invalid nearCache\.maxEntries "100":/],
    [{ maxEntries: null }, /^Invalid nearCache\.maxEntries null:/],
    [{ maxBytes: 0 }, /^Invalid nearCache\.maxBytes 0:/],
    [{ maxBytes: -1 }, /^Invalid nearCache\.maxBytes -1:/],
    [{ maxBytes: Number.NaN }, /^Invalid nearCache\.maxBytes NaN:/],
    [{ maxBytes: Infinity }, /^Invalid nearCache\.maxBytes Infinity:/],
    [{ maxStaleness: 0 }, /^Invalid nearCache\.maxStaleness 0: pass a number of seconds above 0/],
    [{ maxStaleness: -1 }, /^Invalid nearCache\.maxStaleness -1:/],
    [{ maxStaleness: 61 }, /^Invalid nearCache\.maxStaleness 61:.*at most 60/],
    [{ maxStaleness: Number.NaN }, /^Invalid nearCache\.maxStaleness NaN:/],
    [{ maxStaleness: Infinity }, /^Invalid nearCache\.maxStaleness Infinity:/],
    [{ maxStaleness: "1" }, /^Invalid nearCache\.maxStaleness "1":/],
  ];
  for (const [option, pattern] of bad) {
    const shown = typeof option === "function"
      ? "a function"
      : typeof option === "object" && option !== null && !Array.isArray(option)
      ? `{ ${Object.entries(option).map(([k, v]) => `${k}: ${showValue(v)}`).join(", ")} }`
      : showValue(option);
    it(`nearCache ${shown} is a CacheInputError naming the setting`, () => {
      for (const config of [OFF, ON]) {
        assert.throws(
          () => resolveNearCache(config, option as NearCacheOptions),
          (error: unknown) =>
            error instanceof CacheInputError && pattern.test(error.message) ||
            assert.fail(`${error}`),
        );
      }
    });
  }

  for (const kind of KINDS) {
    const Cache = kind === "redis" ? RedisCache : ValkeyCache;
    const Config = kind === "redis" ? RedisConfig : ValkeyConfig;
    const className = kind === "redis" ? "RedisCache" : "ValkeyCache";

    it(`new ${className}({ nearCache }) takes good values and refuses bad ones before any I/O`, async () => {
      await using listener = await countingListener();
      const config = new Config({ host: "127.0.0.1", port: listener.port, timeout: 1 });
      for (const nearCache of [undefined, true, false, {}, { maxEntries: 5, maxStaleness: 0.5 }]) {
        const cache = new Cache({ config: config as ValkeyConfig, nearCache });
        await cache.close();
      }
      for (const [option] of bad) {
        assert.throws(
          () =>
            new Cache({ config: config as ValkeyConfig, nearCache: option as NearCacheOptions }),
          CacheInputError,
        );
      }
      // The environment's settings resolve as the option's would: a malformed one fails fromEnv.
      assert.throws(() => Config.fromEnv({ CACHE_NEAR_CACHE_MAX_BYTES: "0" }), CacheConfigError);
      await sleep(20);
      assert.equal(listener.accepted, 0, "nothing connected");
    });

    it(`setCache({ provider: "${kind}", nearCache }) refuses a bad value before any I/O`, async () => {
      await using listener = await countingListener();
      const env = {
        [`${kind.toUpperCase()}_HOST`]: "127.0.0.1",
        [`${kind.toUpperCase()}_PORT`]: String(listener.port),
        [`${kind.toUpperCase()}_TIMEOUT`]: "1",
      };
      try {
        await assert.rejects(
          setCache({ provider: kind, env, nearCache: { maxEntries: 0 } }),
          (error: unknown) =>
            error instanceof CacheInputError && /nearCache\.maxEntries/.test(error.message),
        );
        await assert.rejects(
          setCache({ provider: kind, env, nearCache: "on" as unknown as boolean }),
          CacheInputError,
        );
      } finally {
        await closeCache();
      }
      await sleep(20);
      assert.equal(listener.accepted, 0, "nothing connected");
    });
  }

  it('MemoryCache and setCache({ provider: "memory" }) accept the option and ignore it', async () => {
    for (const nearCache of [true, false, { maxEntries: 5, maxBytes: 100, maxStaleness: 0.5 }]) {
      const cache = new MemoryCache({ nearCache });
      await cache.set("k", { v: 1 });
      assert.deepEqual(await cache.get("k"), { v: 1 });
      await cache.close();
      try {
        assert.equal(
          await setCache({ provider: "memory", env: { CACHE_NEAR_CACHE: "true" }, nearCache }),
          true,
        );
        await cacheSet("k", "v");
        assert.equal(await cacheGet("k"), "v");
      } finally {
        await closeCache();
      }
    }
  });
});

describe("the password stays hidden", () => {
  const configs = (): [string, RedisConfig][] => [
    ["option", new RedisConfig({ username: "app", password: "hunter2" })],
    ["url", new RedisConfig({ url: "rediss://app:hunter2@h:6380/1" })],
    ["env", RedisConfig.fromEnv({ REDIS_PASSWORD: "hunter2" })],
    ["env url", RedisConfig.fromEnv({ REDIS_URL: "redis://:hunter%32@h" })],
    ["valkey", ValkeyConfig.fromEnv({ VALKEY_PASSWORD: "hunter2" })],
  ];

  for (const [label, config] of configs()) {
    it(`from ${label}: kept, but not in String, JSON or inspect`, () => {
      assert.equal(config.password, "hunter2");
      assert.ok(!String(config).includes("hunter2"), String(config));
      assert.ok(!`${config}`.includes("hunter2"));
      assert.ok(!config.toString().includes("hunter2"));
      const json = JSON.stringify(config);
      assert.ok(!json.includes("hunter2"), json);
      assert.equal(JSON.parse(json).password, "***");
      assert.ok(!JSON.stringify({ nested: [config] }).includes("hunter2"));
      if (denoInspect) {
        const denoView = denoInspect(config);
        assert.ok(!denoView.includes("hunter2"), denoView);
        assert.ok(denoView.includes("***"));
        assert.ok(!denoInspect({ nested: config }, { depth: 10 }).includes("hunter2"));
      }
      const nodeView = inspect(config);
      assert.ok(!nodeView.includes("hunter2"), nodeView);
      assert.ok(nodeView.includes("***"));
      assert.ok(!inspect(config, { showHidden: true, depth: 10 }).includes("hunter2"));
      assert.ok(!inspect({ nested: config }).includes("hunter2"));
      assert.ok(!Object.keys(config).includes("password"));
      assert.ok(!JSON.stringify({ ...config }).includes("hunter2"));
      assert.ok(!Object.values(config).includes("hunter2"));
    });
  }

  it("the views show the other fields", () => {
    const config = new RedisConfig({ host: "h.example", password: "hunter2", db: 2 });
    assert.equal(String(config), "RedisConfig(redis://:***@h.example:6379/2)");
    if (denoInspect) {
      assert.match(denoInspect(config), /^RedisConfig \{/);
      assert.match(denoInspect(config), /h\.example/);
    }
    assert.match(inspect(config), /^RedisConfig \{/);
    assert.deepEqual(JSON.parse(JSON.stringify(config)), {
      host: "h.example",
      port: 6379,
      db: 2,
      password: "***",
      maxConnections: 50,
      retryOnTimeout: true,
      timeout: 4,
      ttl: 3600,
      prefix: "cache:",
      tls: false,
      maxValueBytes: 67108864,
      circuitBreaker: true,
      circuitBreakerThreshold: 3,
      circuitBreakerProbeInterval: 0.1,
      nearCache: false,
      nearCacheMaxEntries: 10000,
      nearCacheMaxBytes: 67108864,
      nearCacheMaxStaleness: 1,
    });
  });

  it("shows no password marker when none is set", () => {
    const config = new RedisConfig({ username: "app", tls: true });
    assert.equal(String(config), "RedisConfig(rediss://app@localhost:6379/0)");
    assert.equal(config.toJSON().password, undefined);
    assert.equal(String(new RedisConfig()), "RedisConfig(redis://localhost:6379/0)");
  });
});

describe("readBackendSettings", () => {
  it("defaults to auto, enabled, not explicit", () => {
    assert.deepEqual(readBackendSettings({}), { backend: "auto", enabled: true, explicit: false });
    assert.deepEqual(readBackendSettings({ CACHE_BACKEND: "", ENABLE_CACHE: "" }), {
      backend: "auto",
      enabled: true,
      explicit: false,
    });
  });

  const names: BackendName[] = ["redis", "valkey", "memory", "auto"];
  for (const name of names) {
    for (const raw of [name, name.toUpperCase(), ` ${name}\n`]) {
      it(`CACHE_BACKEND=${JSON.stringify(raw)} selects ${name}`, () => {
        assert.deepEqual(readBackendSettings({ CACHE_BACKEND: raw }), {
          backend: name,
          enabled: true,
          explicit: true,
        });
      });
    }
  }

  for (const raw of ["memcached", "redis-cluster", "  ", "valkey,redis"]) {
    it(`CACHE_BACKEND=${JSON.stringify(raw)} throws naming the allowed values`, () => {
      assertConfigError(
        () => readBackendSettings({ CACHE_BACKEND: raw }),
        "CACHE_BACKEND",
        "redis",
        "valkey",
        "memory",
        "auto",
      );
    });
  }

  it("ENABLE_CACHE=false disables caching", () => {
    assert.equal(readBackendSettings({ ENABLE_CACHE: "false" }).enabled, false);
    assert.equal(
      readBackendSettings({ ENABLE_CACHE: "FALSE", CACHE_BACKEND: "redis" }).enabled,
      false,
    );
  });

  for (const raw of ["maybe", "disabled", "2"]) {
    it(`ENABLE_CACHE=${JSON.stringify(raw)} throws naming ENABLE_CACHE`, () => {
      assertConfigError(
        () => readBackendSettings({ ENABLE_CACHE: raw }),
        "ENABLE_CACHE",
        JSON.stringify(raw),
        "true/false",
      );
    });
  }
});

describe("hasValkeyEnv", () => {
  it("is false without VALKEY_* settings", () => {
    assert.equal(hasValkeyEnv({}), false);
    assert.equal(hasValkeyEnv({ REDIS_HOST: "h", REDIS_URL: "redis://h" }), false);
    assert.equal(hasValkeyEnv({ VALKEY_HOST: "", VALKEY_URL: "" }), false);
  });

  it("is true for VALKEY_URL and each VALKEY_<X>", () => {
    assert.equal(hasValkeyEnv({ VALKEY_URL: "redis://h" }), true);
    for (const { suffix, raw } of VARIABLES) {
      assert.equal(hasValkeyEnv({ [`VALKEY_${suffix}`]: raw }), true, `VALKEY_${suffix}`);
    }
  });

  it("ignores VALKEY_* names this library does not read", () => {
    assert.equal(hasValkeyEnv({ VALKEY_EXTRA_FLAGS: "--save ''" }), false);
  });
});

describe("IPv6 hosts", () => {
  it("REDIS_HOST / VALKEY_HOST and the host option take an IPv6 address bare or in brackets", () => {
    for (const host of ["::1", "[::1]", " [::1] "]) {
      assert.equal(RedisConfig.fromEnv({ REDIS_HOST: host }).host, "::1", host);
      assert.equal(ValkeyConfig.fromEnv({ VALKEY_HOST: host }).host, "::1", host);
      assert.equal(ValkeyConfig.fromEnv({ REDIS_HOST: host }).host, "::1", host);
    }
    assert.equal(new RedisConfig({ host: "[::1]" }).host, "::1");
    assert.equal(new RedisConfig({ host: "[fe80::1%eth0]" }).host, "fe80::1%eth0");
    assert.equal(new RedisConfig({ host: "[::ffff:127.0.0.1]" }).host, "::ffff:127.0.0.1");
    assert.equal(new RedisConfig({ host: "2001:db8::5" }).host, "2001:db8::5");
  });

  it("shows an IPv6 host in brackets exactly once", () => {
    const expected = "RedisConfig(redis://[::1]:6390/2)";
    assert.equal(
      String(RedisConfig.fromEnv({ REDIS_HOST: "[::1]", REDIS_PORT: "6390", REDIS_DB: "2" })),
      expected,
    );
    assert.equal(String(new RedisConfig({ host: "::1", port: 6390, db: 2 })), expected);
    assert.equal(String(new RedisConfig({ url: "redis://[::1]:6390/2" })), expected);
    assert.equal(
      String(ValkeyConfig.fromEnv({ VALKEY_HOST: "[::1]" })),
      "ValkeyConfig(redis://[::1]:6379/0)",
    );
    // Cluster mode without seeds: the host and port are the one seed.
    assert.deepEqual(new RedisConfig({ host: "[::1]", mode: "cluster" }).clusterNodes, [
      "[::1]:6379",
    ]);
    assert.equal(urlHost("::1"), "[::1]");
    assert.equal(urlHost("10.0.0.5"), "10.0.0.5");
    assert.equal(urlHost("cache.internal"), "cache.internal");
  });

  for (const host of ["[::1", "::1]", "[cache.internal]", "[10.0.0.5]", "[]", "[[::1]]"]) {
    it(`rejects the host ${JSON.stringify(host)} naming the variable and the form`, () => {
      assertConfigError(() => RedisConfig.fromEnv({ REDIS_HOST: host }), "REDIS_HOST", "[::1]");
      assertConfigError(() => ValkeyConfig.fromEnv({ VALKEY_HOST: host }), "VALKEY_HOST");
      assertConfigError(() => new RedisConfig({ host }), `"host"`);
    });
  }
});

describe("backendCandidates (the choice setCache() and the admin CLI share)", () => {
  const view = (env: EnvRecord, options?: Parameters<typeof backendCandidates>[1]) =>
    backendCandidates(env, options).map(({ kind, config }) => ({
      kind,
      config: String(config),
    }));

  it("auto with VALKEY_* set: Valkey first, then ioredis, both where VALKEY_* points", () => {
    const env = { VALKEY_HOST: "127.0.0.1", VALKEY_PORT: "7001", REDIS_PORT: "7002" };
    const candidates = backendCandidates(env);
    assert.deepEqual(candidates.map((c) => c.kind), ["valkey", "redis"]);
    for (const { config } of candidates) {
      assert.ok(config instanceof ValkeyConfig);
      assert.equal(config.host, "127.0.0.1");
      assert.equal(config.port, 7001);
    }
    assert.deepEqual(view({ ...env, CACHE_BACKEND: "auto" }), view(env));
  });

  it("auto without VALKEY_*: Redis first, then iovalkey, both where REDIS_* points", () => {
    const candidates = backendCandidates({ REDIS_HOST: "[::1]", REDIS_PORT: "7002" });
    assert.deepEqual(candidates.map((c) => c.kind), ["redis", "valkey"]);
    assert.ok(!(candidates[0].config instanceof ValkeyConfig));
    assert.ok(candidates[1].config instanceof ValkeyConfig);
    for (const { config } of candidates) {
      assert.equal(config.host, "::1");
      assert.equal(config.port, 7002);
    }
  });

  it("an explicit provider is the only candidate and reads its own variables", () => {
    const env = { VALKEY_PORT: "7001", REDIS_PORT: "7002" };
    assert.deepEqual(view({ ...env, CACHE_BACKEND: "redis" }), [
      { kind: "redis", config: "RedisConfig(redis://localhost:7002/0)" },
    ]);
    assert.deepEqual(view(env, { provider: "redis" }), view({ ...env, CACHE_BACKEND: "redis" }));
    assert.deepEqual(view(env, { provider: "valkey" }), [
      { kind: "valkey", config: "ValkeyConfig(redis://localhost:7001/0)" },
    ]);
    // The option wins over CACHE_BACKEND, as setCache({ provider }) does.
    assert.deepEqual(
      view({ ...env, CACHE_BACKEND: "valkey" }, { provider: "memory" }).map((c) => c.kind),
      ["memory"],
    );
  });

  it("a config given by the caller is every candidate's", () => {
    const config = new RedisConfig({ port: 7003 });
    for (const provider of ["auto", "redis", "valkey"] as const) {
      for (const candidate of backendCandidates({ VALKEY_PORT: "7001" }, { provider, config })) {
        assert.equal(candidate.config, config, provider);
      }
    }
  });

  it("rejects an unknown provider and a malformed variable", () => {
    assertConfigError(
      () => backendCandidates({}, { provider: "mongo" as BackendName }),
      'Invalid provider "mongo"',
    );
    assertConfigError(() => backendCandidates({ CACHE_BACKEND: "mongo" }), "CACHE_BACKEND");
    assertConfigError(() => backendCandidates({ VALKEY_PORT: "abc" }), "VALKEY_PORT");
  });
});

const IPV6 = await hasIpv6Loopback();

for (const kind of KINDS) {
  describe(
    `${kind} server on the IPv6 loopback`,
    { skip: !IPV6 && "no IPv6 loopback here" },
    () => {
      let server: TestServer;
      const Cache = kind === "redis" ? RedisCache : ValkeyCache;
      const Config = kind === "redis" ? RedisConfig : ValkeyConfig;
      const prefix = kind === "redis" ? "REDIS" : "VALKEY";

      before(async () => {
        // Appended after the harness's own `--bind 127.0.0.1`: the last bind wins.
        server = await startServer(kind, { args: ["--bind", "127.0.0.1", "::1"] });
      });
      after(async () => {
        await server?.stop();
      });

      it("is reached through [::1] in the host variable, the host option and the URL", async (t) => {
        if (server.external) return t.skip("needs a server the harness starts on ::1");
        const configs = [
          Config.fromEnv({ [`${prefix}_HOST`]: "[::1]", [`${prefix}_PORT`]: String(server.port) }),
          Config.fromEnv({ [`${prefix}_HOST`]: "::1", [`${prefix}_PORT`]: String(server.port) }),
          new Config({ host: "[::1]", port: server.port }),
          Config.fromEnv({ [`${prefix}_URL`]: `redis://[::1]:${server.port}/0` }),
        ];
        for (const [index, config] of configs.entries()) {
          const logger = collectingLogger();
          const cache = new Cache({ config: config as ValkeyConfig, logger });
          try {
            assert.equal(await cache.connect(), true, `${config}: ${logger.lines.join("\n")}`);
            assert.equal(await cache.set(`v6-${index}`, index), true);
            assert.equal(await cache.get(`v6-${index}`), index);
          } finally {
            await cache.close();
          }
          assert.deepEqual(logger.lines, []);
        }
        assert.equal(await server.cli("GET", entryKey("cache:", "", hashInput("v6-3"))), "3");
      });

      it("names [::1]:port (brackets once) when it cannot connect there", async () => {
        const port = await freePort();
        const logger = collectingLogger();
        const cache = new Cache({
          config: Config.fromEnv({
            [`${prefix}_HOST`]: "[::1]",
            [`${prefix}_PORT`]: String(port),
            [`${prefix}_TIMEOUT`]: "1",
          }) as ValkeyConfig,
          logger,
        });
        try {
          assert.equal(await cache.connect(), false);
        } finally {
          await cache.close();
        }
        const text = logger.lines.join("\n");
        assert.ok(text.includes(`[::1]:${port}/0`), text);
        assert.ok(!text.includes("[["), text);
        assert.ok(!text.includes("ENOTFOUND"), text);
      });
    },
  );
}
