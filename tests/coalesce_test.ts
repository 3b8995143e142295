/**
 * Tick coalescing on a single server (src/coalesce.ts): concurrent `get` calls share one MGET,
 * concurrent `set` calls to one scope and TTL share one set_and_register call, and whatever was
 * called in one tick still runs on the server in the order it was called.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { entryKey, hashInput, registryKey } from "../src/keys.ts";
import { startServer, type TestServer } from "./harness.ts";
import { type AnyCache, cacheFor, commandCalls, KINDS, sleep } from "./_helpers.ts";

const PREFIX = "cache:";

async function connected(server: TestServer): Promise<AnyCache> {
  const cache = cacheFor(server);
  assert.equal(await cache.connect(), true);
  await server.cli("CONFIG", "RESETSTAT");
  return cache;
}

for (const kind of KINDS) {
  describe(`${kind} coalescing`, () => {
    it("100 concurrent gets are a GET and one MGET, each caller gets its own value or miss", async () => {
      await using server = await startServer(kind, { own: true });
      const cache = await connected(server);
      try {
        const inputs = Array.from({ length: 100 }, (_, i) => ({ q: "user", id: i }));
        // Every third entry exists; the others are misses.
        await cache.setMany(
          inputs.filter((_, i) => i % 3 === 0).map((input) => [input, { id: input.id }] as const),
        );
        await server.cli("CONFIG", "RESETSTAT");
        const values = await Promise.all(inputs.map((input) => cache.get(input)));
        assert.deepEqual(values, inputs.map((input, i) => i % 3 === 0 ? { id: input.id } : null));
        // The first call of the tick goes out at once; the 99 made after it share one MGET.
        assert.equal(await commandCalls(server, "get"), 1);
        assert.equal(await commandCalls(server, "mget"), 1);
        // A lone call is a plain GET, as before.
        assert.deepEqual(await cache.get(inputs[0]), { id: 0 });
        assert.equal(await commandCalls(server, "get"), 2);
        assert.equal(await commandCalls(server, "mget"), 1);
      } finally {
        await cache.close();
      }
    });

    it("100 concurrent sets are two script calls; every entry is stored and registered", async () => {
      await using server = await startServer(kind, { own: true });
      const cache = await connected(server);
      try {
        const inputs = Array.from({ length: 100 }, (_, i) => ({ q: "user", id: i }));
        const stored = await Promise.all(inputs.map((input) => cache.set(input, input.id)));
        assert.deepEqual(stored, inputs.map(() => true));
        // The first at once, the 99 after it in one call.
        assert.equal(await commandCalls(server, "evalsha"), 2);
        const members = (await server.cli("SMEMBERS", registryKey(PREFIX))).split("\n").sort();
        assert.deepEqual(
          members,
          inputs.map((input) => entryKey(PREFIX, "", hashInput(input))).sort(),
        );
        assert.deepEqual(await cache.getMany(inputs), inputs.map((input) => input.id));
        assert.equal(await cache.clearGlobal(), 100);
      } finally {
        await cache.close();
      }
    });

    it("sets of one tick to different scopes and TTLs keep their own registry and TTL", async () => {
      await using server = await startServer(kind, { own: true });
      const cache = await connected(server);
      try {
        const results = await Promise.all([
          cache.set("a", 1, { companyId: "acme", ttl: 100 }),
          cache.set("b", 2, { companyId: "acme", ttl: 100 }),
          cache.set("b2", 2, { companyId: "acme", ttl: 100 }),
          cache.set("c", 3, { companyId: "globex", ttl: 100 }),
          cache.set("d", 4, { companyId: "acme", ttl: null }),
          cache.set("e", 5, { ttl: 2000 }),
        ]);
        assert.deepEqual(results, [true, true, true, true, true, true]);
        // a goes out at once; b and b2 share a call; c (another tenant), d (another TTL) and e
        // (global) have their own.
        assert.equal(await commandCalls(server, "evalsha"), 5);
        const key = (input: string, companyId?: string) =>
          entryKey(PREFIX, "", hashInput(input), companyId);
        const ttl = async (k: string) => Number(await server.cli("PTTL", k));
        assert.ok((await ttl(key("a", "acme"))) > 99_000);
        assert.ok((await ttl(key("a", "acme"))) <= 100_000);
        assert.equal(await ttl(key("d", "acme")), -1);
        assert.ok((await ttl(key("e"))) > 1_999_000);
        assert.equal(await cache.clearCompany("globex"), 1);
        assert.equal(await cache.clearCompany("acme"), 4);
        assert.equal(await cache.get("e"), 5);
      } finally {
        await cache.close();
      }
    });

    it("calls of one tick run in call order: set then delete, set then set, set then get", async () => {
      await using server = await startServer(kind, { own: true });
      const cache = await connected(server);
      try {
        // Not awaited in between: all in one tick, as fire-and-forget code issues them.
        const [, deleted] = await Promise.all([cache.set("k", 1), cache.delete("k")]);
        assert.equal(deleted, true);
        assert.equal(await cache.exists("k"), false);

        await Promise.all([cache.set("k", 1), cache.set("k", 2)]);
        assert.equal(await cache.get("k"), 2);

        const [, read, , reread] = await Promise.all([
          cache.set("k", 3),
          cache.get("k"),
          cache.set("k", 4, { ttl: 50 }),
          cache.get("k"),
        ]);
        assert.equal(read, 3);
        assert.equal(reread, 4);

        const [, cleared, after] = await Promise.all([
          cache.set("x", 1, { companyId: "acme" }),
          cache.clearCompany("acme"),
          cache.get("x", { companyId: "acme" }),
        ]);
        assert.equal(cleared, 1);
        assert.equal(after, null);
      } finally {
        await cache.close();
      }
    });

    it("a batch of a tick fails as a whole into misses and false, and works again after", async () => {
      await using server = await startServer(kind, { own: true });
      const cache = await connected(server);
      try {
        const tick = () =>
          Promise.all([
            Promise.all(Array.from({ length: 10 }, (_, i) => cache.get({ i }))),
            Promise.all(Array.from({ length: 10 }, (_, i) => cache.set({ i }, i))),
          ]);
        await server.kill();
        const [gets, sets] = await tick();
        assert.deepEqual(gets, Array(10).fill(null));
        assert.deepEqual(sets, Array(10).fill(false));
        await server.restart();
        const deadline = Date.now() + 5000;
        while (!(await cache.healthCheck()) && Date.now() < deadline) await sleep(50);
        await tick(); // stores the values
        const [again] = await tick();
        assert.deepEqual(again, Array.from({ length: 10 }, (_, i) => i));
      } finally {
        await cache.close();
      }
    });
  });
}
