/**
 * RedisCache and ValkeyCache against real servers: storage layout, scripts, tenants, clears,
 * faults and recovery. Every case runs against redis-server and valkey-server.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CacheInputError, CacheSerializationError } from "../mod.ts";
import { entryKey, hashInput } from "../src/keys.ts";
import { startServer, type TestServer } from "./harness.ts";
import {
  type AnyCache,
  cacheFor,
  collectingLogger,
  commandCalls,
  KINDS,
  luaSha,
  sleep,
} from "./_helpers.ts";

const NASTY_TENANTS = ["a:b", "*", "a*", "{tag}", "with space", "日本語😀", "x?[y]\\", "0"];

for (const kind of KINDS) {
  describe(`${kind} provider`, () => {
    let server: TestServer;
    let cache: AnyCache;

    before(async () => {
      server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server.stop();
    });
    beforeEach(async () => {
      await server.cli("FLUSHALL");
      await server.cli("SCRIPT", "FLUSH");
      await server.cli("CONFIG", "RESETSTAT");
      cache = cacheFor(server);
      assert.equal(await cache.connect(), true);
    });
    afterEach(async () => {
      await cache.close();
    });

    it("misses, then stores JSON text a redis-cli GET shows, then hits", async () => {
      assert.equal(await cache.get({ q: 1 }), null);
      assert.equal(await cache.set({ q: 1 }, { rows: [1, "two", null], ok: true }), true);
      const key = entryKey("cache:", "", hashInput({ q: 1 }));
      assert.equal(await server.cli("GET", key), '{"rows":[1,"two",null],"ok":true}');
      assert.deepEqual(await cache.get({ q: 1 }), { rows: [1, "two", null], ok: true });
      assert.equal(await server.cli("SISMEMBER", "cache:registry:global", key), "1");
    });

    it("reads values written by the Python original", async () => {
      const key = entryKey("cache:", "", hashInput("py"), "acme");
      await server.cli("SET", key, '{"a": 1, "b": [true, null]}');
      assert.deepEqual(await cache.get("py", { companyId: "acme" }), { a: 1, b: [true, null] });
    });

    it("applies the default TTL, a fractional TTL as PX, and null as no expiry", async () => {
      await cache.set("default", 1);
      await cache.set("fraction", 1, { ttl: 1.5 });
      await cache.set("forever", 1, { ttl: null });
      const ttl = (input: string) => server.cli("PTTL", entryKey("cache:", "", hashInput(input)));
      const defaultTtl = Number(await ttl("default"));
      assert.ok(defaultTtl > 3_590_000 && defaultTtl <= 3_600_000, `PTTL ${defaultTtl}`);
      const fraction = Number(await ttl("fraction"));
      assert.ok(fraction > 1000 && fraction <= 1500, `PTTL ${fraction}`);
      assert.equal(await ttl("forever"), "-1");
      await cache.set("short", "x", { ttl: 0.05 });
      await sleep(120);
      assert.equal(await cache.get("short"), null);
    });

    it("rejects bad input with a typed error and writes nothing", async () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const cases: [string, () => Promise<unknown>, typeof CacheInputError][] = [
        ["undefined input", () => cache.set(undefined, 1), CacheInputError],
        ["function input", () => cache.set(() => 1, 1), CacheInputError],
        ["NaN input", () => cache.set(NaN, 1), CacheInputError],
        ["BigInt value", () => cache.set("k", 1n), CacheSerializationError],
        ["circular value", () => cache.set("k", circular), CacheSerializationError],
        ["Infinity value", () => cache.set("k", { n: Infinity }), CacheSerializationError],
        ["undefined value", () => cache.set("k", undefined), CacheSerializationError],
        ["symbol value", () => cache.set("k", Symbol("s")), CacheSerializationError],
        ["empty companyId", () => cache.set("k", 1, { companyId: "" }), CacheInputError],
        // deno-lint-ignore no-explicit-any
        ["null companyId", () => cache.set("k", 1, { companyId: null as any }), CacheInputError],
        ["zero ttl", () => cache.set("k", 1, { ttl: 0 }), CacheInputError],
        ["negative ttl", () => cache.set("k", 1, { ttl: -5 }), CacheInputError],
        ["NaN ttl", () => cache.set("k", 1, { ttl: NaN }), CacheInputError],
        ["Infinity ttl", () => cache.set("k", 1, { ttl: Infinity }), CacheInputError],
        ["bad batch", () => cache.setMany([["ok", 1], ["bad", 2n]]), CacheSerializationError],
        ["bad get input", () => cache.get(Symbol("s")), CacheInputError],
      ];
      for (const [label, call, type] of cases) {
        await assert.rejects(call, type, label);
      }
      assert.equal(await server.cli("DBSIZE"), "0");
    });

    it("rejects a value over maxValueBytes, naming the limit", async () => {
      const small = cacheFor(server, { maxValueBytes: 1024 });
      await small.connect();
      await assert.rejects(
        () => small.set("big", "x".repeat(2000)),
        (error: Error) => error instanceof CacheSerializationError && /1024/.test(error.message),
      );
      assert.equal(await small.set("fits", "x".repeat(500)), true);
      await small.close();
      assert.equal(await server.cli("DBSIZE"), "2"); // the entry and its registry
    });

    it("keeps tenants apart whatever their ids hold", async () => {
      for (const tenant of NASTY_TENANTS) {
        assert.equal(await cache.set("report", { tenant }, { companyId: tenant }), true);
      }
      await cache.set("report", { tenant: "global" });
      for (const tenant of NASTY_TENANTS) {
        assert.deepEqual(await cache.get("report", { companyId: tenant }), { tenant });
      }
      assert.equal(await cache.clearCompany("a*"), 1);
      assert.equal(await cache.clearCompany("*"), 1);
      assert.equal(await cache.get("report", { companyId: "a*" }), null);
      for (const tenant of NASTY_TENANTS.filter((t) => t !== "a*" && t !== "*")) {
        assert.deepEqual(await cache.get("report", { companyId: tenant }), { tenant }, tenant);
      }
      assert.deepEqual(await cache.get("report"), { tenant: "global" });
      assert.deepEqual(await cache.get("report", { companyId: 0 }), { tenant: "0" });
    });

    it("deletes an entry and unregisters it", async () => {
      await cache.set("k", 1, { companyId: "acme" });
      assert.equal(await cache.exists("k", { companyId: "acme" }), true);
      assert.equal(await cache.delete("k", { companyId: "acme" }), true);
      assert.equal(await cache.delete("k", { companyId: "acme" }), false);
      assert.equal(await cache.exists("k", { companyId: "acme" }), false);
      assert.equal(await server.cli("EXISTS", "cache:registry:tenant:acme"), "0");
    });

    it("getMany and setMany keep input order and scope", async () => {
      assert.equal(await cache.setMany([["a", 1], ["b", { two: 2 }]], { companyId: "t1" }), true);
      assert.deepEqual(await cache.getMany(["b", "missing", "a"], { companyId: "t1" }), [
        { two: 2 },
        null,
        1,
      ]);
      assert.deepEqual(await cache.getMany(["a", "b"]), [null, null]);
      assert.deepEqual(await cache.getMany([]), []);
      assert.equal(await server.cli("SCARD", "cache:registry:tenant:t1"), "2");
      const entries: [string, number][] = Array.from({ length: 2500 }, (_, i) => [`k${i}`, i]);
      assert.equal(await cache.setMany(entries, { companyId: "big" }), true);
      assert.equal(await server.cli("SCARD", "cache:registry:tenant:big"), "2500");
    });

    it("counts what each clear deletes and leaves other scopes and foreign keys alone", async () => {
      await cache.setMany([["a", 1], ["b", 2]], { companyId: "acme" });
      await cache.set("a", 1, { companyId: "globex" });
      await cache.setMany([["g1", 1], ["g2", 2], ["g3", 3]]);
      await server.cli("SET", "other:app:key", "keep");
      await server.cli("SADD", "other:registry:global", "other:app:key");
      // A foreign key slipped into one of our registries is never deleted by a clear.
      await server.cli("SADD", "cache:registry:tenant:acme", "other:app:key");
      assert.equal(await cache.clearCompany("acme"), 2);
      assert.equal(await cache.clearCompany("acme"), 0);
      assert.equal(await cache.get("a", { companyId: "globex" }), 1);
      assert.equal(await cache.clearGlobal(), 3);
      assert.equal(await cache.get("a", { companyId: "globex" }), 1);
      await cache.set("g", 1);
      assert.equal(await cache.clearAll(), 2);
      assert.equal(await server.cli("GET", "other:app:key"), "keep");
      assert.equal(await server.cli("SCARD", "other:registry:global"), "1");
      assert.equal(await server.cli("DBSIZE"), "2");
    });

    it("clearAll also clears registries the Python original wrote", async () => {
      const key = "cache:tenant:py:legacy:abc";
      await server.cli("SET", key, '"v"');
      await server.cli("SADD", "cache:registry:tenant:py", key);
      await server.cli("SET", "cache:registry:not-a-set", "x");
      assert.equal(await cache.clearAll(), 1);
      assert.equal(await server.cli("EXISTS", key), "0");
      assert.equal(await server.cli("GET", "cache:registry:not-a-set"), "x");
    });

    it("escapes glob characters of the prefix when scanning for registries", async () => {
      const star = cacheFor(server, { configOptions: { prefix: "c*:" } });
      await star.connect();
      await star.set("k", 1);
      await cache.set("k", 1); // prefix "cache:" matches the unescaped glob "c*:registry:*"
      assert.equal(await star.clearAll(), 1);
      assert.equal(await cache.get("k"), 1);
      await star.close();
    });

    it("runs scripts by EVALSHA only, with the SHA-1 of each lua/ file loaded", async () => {
      await cache.set("k", 1, { companyId: "acme" });
      await cache.delete("k", { companyId: "acme" });
      await cache.clearGlobal();
      await cache.pruneRegistries();
      for (const name of ["set_and_register", "delete_and_unregister", "clear_registry"]) {
        assert.equal(await server.cli("SCRIPT", "EXISTS", await luaSha(name)), "1", name);
      }
      assert.ok(await commandCalls(server, "evalsha") >= 3);
      assert.equal(await commandCalls(server, "eval"), 0);
    });

    it("recovers from SCRIPT FLUSH by reloading and retrying once", async () => {
      await server.cli("SCRIPT", "FLUSH");
      assert.equal(await cache.set("after-flush", 1, { companyId: "acme" }), true);
      assert.equal(await cache.get("after-flush", { companyId: "acme" }), 1);
      await server.cli("SCRIPT", "FLUSH");
      assert.equal(await cache.clearCompany("acme"), 1);
      assert.equal(await commandCalls(server, "eval"), 0);
    });

    it("clears a 100,000-key tenant in bounded batches", async () => {
      const batch = 5000;
      for (let start = 0; start < 100_000; start += batch) {
        const entries: [number, number][] = [];
        for (let i = start; i < start + batch; i++) entries.push([i, i]);
        assert.equal(await cache.setMany(entries, { companyId: "huge" }), true);
      }
      await cache.set("keep", 1, { companyId: "small" });
      assert.equal(await server.cli("SCARD", "cache:registry:tenant:huge"), "100000");
      const before = await commandCalls(server, "evalsha");
      assert.equal(await cache.clearCompany("huge"), 100_000);
      const calls = (await commandCalls(server, "evalsha")) - before;
      assert.ok(calls >= 100, `cleared in ${calls} script calls; expected batches of 1000`);
      assert.equal(await server.cli("DBSIZE"), "2");
      assert.equal(await cache.get("keep", { companyId: "small" }), 1);
    });

    it("prunes expired registry members by sampling on write and by pruneRegistries", async () => {
      const entries: [number, number][] = Array.from({ length: 200 }, (_, i) => [i, i]);
      await cache.setMany(entries, { companyId: "t", ttl: 0.05 });
      await sleep(120);
      assert.equal(await server.cli("SCARD", "cache:registry:tenant:t"), "200");
      for (let i = 0; i < 100; i++) await cache.set(`live${i}`, i, { companyId: "t" });
      const afterSampling = Number(await server.cli("SCARD", "cache:registry:tenant:t"));
      assert.ok(afterSampling < 300, `sampling pruned nothing: ${afterSampling} members`);
      assert.equal(await cache.pruneRegistries(), afterSampling - 100);
      assert.equal(await server.cli("SCARD", "cache:registry:tenant:t"), "100");
    });

    it("keeps a registry within a small factor of its live entries under expiring writes", async () => {
      // 40 rounds of 200 new keys, alternately one setMany and 200 concurrent sets (coalesced
      // into one script call); each round, the keys of five rounds back expire (deleted behind
      // the library's back, as expiry does, so the count of live keys is exact): 8,000 written,
      // 1,000 live at the end.
      const registry = "cache:registry:tenant:stream";
      const raw = cache.client as unknown as { del(...keys: string[]): Promise<number> };
      const rounds: number[][] = [];
      let n = 0;
      for (let round = 0; round < 40; round++) {
        const inputs = Array.from({ length: 200 }, () => n++);
        rounds.push(inputs);
        const options = { companyId: "stream" };
        if (round % 2 === 0) {
          assert.equal(await cache.setMany(inputs.map((i) => [i, i] as const), options), true);
        } else {
          await Promise.all(inputs.map((i) => cache.set(i, i, options)));
        }
        const expired = rounds[round - 5];
        if (expired) {
          await raw.del(...expired.map((i) => entryKey("cache:", "", hashInput(i), "stream")));
        }
      }
      const members = Number(await server.cli("SCARD", registry));
      assert.equal(members - (await cache.pruneRegistries()), 1000);
      // Sampling 2 members per member added keeps at most about half of them dead; without it
      // the registry would hold all 8,000.
      assert.ok(members <= 3000, `registry holds ${members} members for 1,000 live entries`);
      // Replacing keys that are registered cannot grow the registry: no sample is taken.
      const sampled = await commandCalls(server, "srandmember");
      for (const i of rounds[39].slice(0, 10)) await cache.set(i, -i, { companyId: "stream" });
      assert.equal(await commandCalls(server, "srandmember"), sampled);
      assert.equal(await cache.clearCompany("stream"), 1000);
    });

    it("a named cache keys its entries <prefix><name>:<hash>, apart from other names", async () => {
      const named = cacheFor(server, { name: "users" });
      assert.equal(await named.connect(), true);
      try {
        assert.equal(await named.set({ id: 1 }, "global"), true);
        assert.equal(await named.set({ id: 1 }, "acme", { companyId: "acme" }), true);
        const hash = hashInput({ id: 1 });
        assert.equal(await server.cli("GET", entryKey("cache:", "users", hash)), '"global"');
        assert.equal(await server.cli("GET", `cache:tenant:acme:users:${hash}`), '"acme"');
        assert.equal(await cache.get({ id: 1 }), null, "the unnamed cache has its own keys");
        assert.equal(await named.clearCompany("acme"), 1);
        assert.equal(await named.get({ id: 1 }, { companyId: "acme" }), null);
        assert.equal(await named.get({ id: 1 }), "global");
      } finally {
        await named.close();
      }
    });

    it("bounds the connections it opens by poolSize and maxConnections", async () => {
      const countClients = async () =>
        (await server.cli("CLIENT", "LIST")).split("\n").filter((l) => !/cmd=client/.test(l))
          .length;
      const baseline = await countClients();
      const pooled = cacheFor(server, { poolSize: 4 });
      await pooled.connect();
      assert.equal(await countClients(), baseline + 4);
      await Promise.all(Array.from({ length: 20 }, (_, i) => pooled.set(i, i)));
      assert.deepEqual(await Promise.all([0, 5, 19].map((i) => pooled.get(i))), [0, 5, 19]);
      await pooled.close();
      const capped = cacheFor(server, { poolSize: 8, configOptions: { maxConnections: 2 } });
      await capped.connect();
      assert.equal(await countClients(), baseline + 2);
      await capped.close();
    });

    it("answers the health check", async () => {
      assert.equal(await cache.healthCheck(), true);
    });
  });

  describe(`${kind} provider under faults`, () => {
    it("degrades to misses while the server is down and recovers when it returns", async () => {
      const server = await startServer(kind, { own: true });
      const logger = collectingLogger();
      const cache = cacheFor(server, { timeout: 1, logger });
      try {
        assert.equal(await cache.connect(), true);
        await cache.set("k", "before", { companyId: "acme" });
        await server.kill();
        const started = Date.now();
        const results = await Promise.all([
          cache.get("k", { companyId: "acme" }),
          cache.set("k2", 1),
          cache.delete("k"),
          cache.exists("k"),
          cache.getMany(["k"]),
          cache.clearCompany("acme"),
          cache.clearAll(),
          cache.healthCheck(),
        ]);
        assert.deepEqual(results, [null, false, false, false, [null], 0, 0, false]);
        assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
        assert.ok(
          logger.lines.length >= 1 && logger.lines.length <= 10,
          `${logger.lines.length} lines`,
        );
        await server.restart();
        let value: unknown = null;
        for (let i = 0; i < 50 && value === null; i++) {
          await sleep(100);
          if (await cache.set("k3", "after")) value = await cache.get("k3");
        }
        assert.equal(value, "after");
        assert.equal(await cache.healthCheck(), true);
      } finally {
        await cache.close();
        await server.stop();
      }
    });

    it("connect resolves false for an unreachable server and logs without the password", async () => {
      const server = await startServer(kind, { own: true, password: "s3cret-pw" });
      await server.kill();
      const logger = collectingLogger();
      const cache = cacheFor(server, { timeout: 1, logger });
      try {
        const started = Date.now();
        assert.equal(await cache.connect(), false);
        assert.ok(Date.now() - started < 1500);
        assert.equal(await cache.get("k"), null);
        assert.equal(await cache.set("k", 1), false);
        assert.ok(logger.lines.length >= 1);
        for (const line of logger.lines) assert.ok(!line.includes("s3cret-pw"), line);
        await server.restart();
        let ok = false;
        for (let i = 0; i < 50 && !ok; i++) {
          await sleep(100);
          ok = await cache.set("k", 1);
        }
        assert.equal(ok, true, "the cache came alive when the server did");
        assert.equal(await cache.get("k"), 1);
      } finally {
        await cache.close();
        await server.stop();
      }
    });

    it("a hung server (SIGSTOP) costs at most the timeout", async () => {
      const server = await startServer(kind, { own: true });
      const cache = cacheFor(server, { timeout: 0.5 });
      try {
        await cache.connect();
        await cache.set("k", 1);
        server.pause();
        const started = Date.now();
        assert.deepEqual(await Promise.all([cache.get("k"), cache.set("k", 2)]), [null, false]);
        const took = Date.now() - started;
        assert.ok(took >= 400 && took < 1200, `took ${took} ms`);
        server.resume();
        // The stalled connection was reset; it reconnects in the background. The timed-out
        // write was already on the wire: the server may apply it when it wakes, as with any
        // Redis client. Either value is a hit, within 2 s of the server's return.
        const resumed = Date.now();
        let value: unknown = null;
        while (value === null && Date.now() - resumed < 2000) {
          value = await cache.get("k");
          if (value === null) await sleep(20);
        }
        assert.ok(
          [1, 2].includes(value as number),
          `read ${value} after ${Date.now() - resumed} ms`,
        );
        assert.equal(await cache.set("k", 3), true);
        assert.equal(await cache.get("k"), 3);
      } finally {
        server.resume();
        await cache.close();
        await server.stop();
      }
    });
  });
}
