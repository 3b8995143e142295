/**
 * The largest TTL: the servers add the current time in milliseconds to PX and refuse a sum over
 * 2^63 − 1, so a TTL past that used to be accepted and then fail on every write (while setCache
 * returned true). Every provider, the facade and the config refuse a TTL over MAX_TTL_SECONDS up
 * front, naming the maximum, and the maximum itself works on both real servers.
 */

import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type CacheBackend,
  CacheConfigError,
  CacheInputError,
  cacheSet,
  closeCache,
  MemoryCache,
  RedisCache,
  RedisConfig,
  setCache,
  ValkeyCache,
  ValkeyConfig,
} from "../mod.ts";
import { entryKey, hashInput } from "../src/keys.ts";
import { MAX_TTL_SECONDS } from "../src/values.ts";
import { startServer, type TestServer } from "./harness.ts";
import { cacheFor, configFor, KINDS, quietLogger } from "./_helpers.ts";

type Kind = (typeof KINDS)[number] | "memory";
const BACKENDS: readonly Kind[] = [...KINDS, "memory"];

/** TTLs the servers cannot take, in seconds. */
const TOO_LARGE = [MAX_TTL_SECONDS + 1, MAX_TTL_SECONDS + 0.5, 9.3e15, 1e16, Number.MAX_VALUE];
const NAMES_MAXIMUM = /maximum is 9007199254740 seconds/;

/** Asserts `call` rejects with `type` and a message that states the maximum. */
async function rejectsNamingMaximum(
  call: () => Promise<unknown>,
  type: typeof CacheInputError | typeof CacheConfigError,
  label: string,
  maximum: RegExp = NAMES_MAXIMUM,
): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof type, `${label}: expected ${type.name}, got ${error}`);
    assert.match(error.message, maximum, label);
    return true;
  }, label);
}

describe("MAX_TTL_SECONDS", () => {
  it("is 2^53 − 1 ms in whole seconds, far inside the servers' 64-bit ms expiry", () => {
    assert.equal(MAX_TTL_SECONDS, 9_007_199_254_740);
    assert.ok(Number.isSafeInteger(MAX_TTL_SECONDS * 1000));
    // The server adds now (ms) to PX: the sum must stay under 2^63 − 1 for any plausible clock.
    const nowMs = BigInt(Date.now());
    assert.ok(BigInt(MAX_TTL_SECONDS * 1000) + nowMs * 1000n < 2n ** 63n - 1n);
  });
});

describe("TTL maximum in the config", () => {
  it("a RedisConfig / ValkeyConfig ttl over the maximum is a CacheConfigError naming it", () => {
    for (const Config of [RedisConfig, ValkeyConfig]) {
      for (const ttl of TOO_LARGE) {
        assert.throws(() => new Config({ ttl }), (error: unknown) => {
          assert.ok(error instanceof CacheConfigError, `${Config.name} ${ttl}: got ${error}`);
          assert.match(error.message, /ttl/);
          assert.match(error.message, /up to 9007199254740/);
          return true;
        });
      }
      assert.equal(new Config({ ttl: MAX_TTL_SECONDS }).ttl, MAX_TTL_SECONDS);
    }
  });

  it("REDIS_CACHE_TTL / VALKEY_CACHE_TTL over the maximum is a CacheConfigError naming it", () => {
    for (const raw of ["1e16", "9007199254741", "9_007_199_254_740.5", "1e400"]) {
      for (
        const [name, read] of [
          ["REDIS_CACHE_TTL", (env: Record<string, string>) => RedisConfig.fromEnv(env)],
          ["VALKEY_CACHE_TTL", (env: Record<string, string>) => ValkeyConfig.fromEnv(env)],
        ] as const
      ) {
        assert.throws(() => read({ [name]: raw }), (error: unknown) => {
          assert.ok(error instanceof CacheConfigError, `${name}=${raw}: got ${error}`);
          assert.match(error.message, new RegExp(name));
          assert.match(error.message, /up to 9007199254740/);
          return true;
        });
      }
    }
    assert.equal(RedisConfig.fromEnv({ REDIS_CACHE_TTL: "9007199254740" }).ttl, MAX_TTL_SECONDS);
    assert.equal(
      ValkeyConfig.fromEnv({ VALKEY_CACHE_TTL: "9_007_199_254_740 # the maximum" }).ttl,
      MAX_TTL_SECONDS,
    );
  });
});

for (const kind of BACKENDS) {
  describe(`${kind} TTL maximum`, () => {
    let server: TestServer | undefined;
    let cache: CacheBackend;
    /** PTTL of the entry of `input` in ms; undefined for the memory provider. */
    let pttl: (input: unknown) => Promise<number | undefined>;
    /** Stored keys besides getOrSet's generation counters. */
    let size: () => Promise<number>;
    /** setCache options that reach this backend. */
    let facadeOptions: (extra?: Record<string, unknown>) => Record<string, unknown>;
    /** The environment that selects this backend. */
    let envFor: (ttl: string) => Record<string, string>;

    before(async () => {
      if (kind === "memory") {
        cache = new MemoryCache();
        pttl = () => Promise.resolve(undefined);
        size = () => cache.clearAll();
        facadeOptions = (extra = {}) => ({ provider: "memory", ...extra });
        envFor = (ttl) => ({ CACHE_BACKEND: "memory", REDIS_CACHE_TTL: ttl });
        return;
      }
      const started = await startServer(kind);
      server = started;
      cache = cacheFor(started);
      assert.equal(await cache.connect(), true);
      pttl = async (input) =>
        Number(await started.cli("PTTL", entryKey("cache:", "", hashInput(input))));
      size = async () => {
        const keys = (await started.cli("KEYS", "*")).split("\n").filter(Boolean);
        return keys.filter((key) => !key.startsWith("cache:generation:")).length;
      };
      facadeOptions = (extra = {}) => ({
        provider: kind,
        config: configFor(started),
        logger: quietLogger(),
        ...extra,
      });
      const prefix = kind === "redis" ? "REDIS" : "VALKEY";
      envFor = (ttl) => ({
        CACHE_BACKEND: kind,
        [`${prefix}_HOST`]: started.host,
        [`${prefix}_PORT`]: String(started.port),
        [`${prefix}_DB`]: String(started.db),
        [`${prefix}_CACHE_TTL`]: ttl,
      });
    });
    after(async () => {
      await cache?.close();
      await server?.stop();
    });
    afterEach(async () => {
      await closeCache();
      await cache.clearAll();
      if (server) await server.cli("FLUSHDB");
    });

    /** Asserts the entry of `input` expires MAX_TTL_SECONDS from now (a minute of slack). */
    async function expiresAtTheMaximum(input: unknown): Promise<void> {
      const ms = await pttl(input);
      if (ms === undefined) return;
      const max = MAX_TTL_SECONDS * 1000;
      assert.ok(ms <= max && ms > max - 60_000, `PTTL of ${JSON.stringify(input)}: ${ms}`);
    }

    it("the maximum TTL itself is stored by set, setMany and getOrSet", async () => {
      assert.equal(await cache.set("set", "v", { ttl: MAX_TTL_SECONDS }), true);
      assert.equal(await cache.get("set"), "v");
      await expiresAtTheMaximum("set");
      assert.equal(
        await cache.setMany([["many1", 1], ["many2", 2]], { ttl: MAX_TTL_SECONDS }),
        true,
      );
      assert.deepEqual(await cache.getMany(["many1", "many2"]), [1, 2]);
      await expiresAtTheMaximum("many2");
      assert.equal(await cache.getOrSet("computed", () => "c", { ttl: MAX_TTL_SECONDS }), "c");
      assert.equal(await cache.get("computed"), "c");
      await expiresAtTheMaximum("computed");
    });

    it("a TTL over the maximum is a CacheInputError naming it; nothing is written", async () => {
      for (const ttl of TOO_LARGE) {
        await rejectsNamingMaximum(() => cache.set("k", 1, { ttl }), CacheInputError, `set ${ttl}`);
        await rejectsNamingMaximum(
          () => cache.setMany([["a", 1], ["b", 2]], { ttl }),
          CacheInputError,
          `setMany ${ttl}`,
        );
        await rejectsNamingMaximum(
          () => cache.getOrSet("k", () => 1, { ttl }),
          CacheInputError,
          `getOrSet ${ttl}`,
        );
      }
      assert.equal(await size(), 0, "nothing written");
    });

    it("getOrSet: ttl + staleWhileRevalidate over the maximum is a CacheInputError", async () => {
      let computed = 0;
      for (const staleWhileRevalidate of [1e16, MAX_TTL_SECONDS]) {
        await rejectsNamingMaximum(
          () => cache.getOrSet("k", () => ++computed, { ttl: 60, staleWhileRevalidate }),
          CacheInputError,
          `staleWhileRevalidate ${staleWhileRevalidate}`,
          /at most 9007199254740 seconds/,
        );
      }
      assert.equal(computed, 0, "refused before compute()");
      assert.equal(await size(), 0, "nothing written");
      // Up to the maximum in all is stored.
      const options = { ttl: 60, staleWhileRevalidate: MAX_TTL_SECONDS - 60 };
      assert.equal(await cache.getOrSet("k", () => "v", options), "v");
      assert.equal(await cache.get("k"), "v");
    });

    it("a default TTL over the maximum is refused by the provider and by setCache", async () => {
      for (const ttl of TOO_LARGE) {
        assert.throws(
          () => {
            if (kind === "memory") return new MemoryCache({ ttl });
            const config = configFor(server!);
            return kind === "redis"
              ? new RedisCache({ config, ttl })
              : new ValkeyCache({ config: config as ValkeyConfig, ttl });
          },
          (error: unknown) => error instanceof CacheInputError && NAMES_MAXIMUM.test(error.message),
          `provider ttl ${ttl}`,
        );
        await rejectsNamingMaximum(
          () => setCache(facadeOptions({ ttl })),
          CacheInputError,
          `setCache ttl ${ttl}`,
        );
      }
      // The default TTL at the maximum works, through the provider and the facade.
      assert.equal(await setCache(facadeOptions({ ttl: MAX_TTL_SECONDS })), true);
      assert.equal(await cacheSet("facade", 1), true);
      await expiresAtTheMaximum("facade");
    });

    it("REDIS_CACHE_TTL / VALKEY_CACHE_TTL over the maximum makes setCache a CacheConfigError", async () => {
      for (const raw of ["1e16", "9007199254741"]) {
        await rejectsNamingMaximum(
          () => setCache({ env: envFor(raw), logger: quietLogger() }),
          CacheConfigError,
          `CACHE_TTL=${raw}`,
          /up to 9007199254740/,
        );
      }
      assert.equal(await size(), 0);
      assert.equal(
        await setCache({ env: envFor(String(MAX_TTL_SECONDS)), logger: quietLogger() }),
        true,
      );
      assert.equal(await cacheSet("from env", 1), true);
      await expiresAtTheMaximum("from env");
    });
  });
}
