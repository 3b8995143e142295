/**
 * Misuse behaves the same in every provider (MemoryCache, and RedisCache / ValkeyCache against
 * real servers), so a unit test written against MemoryCache predicts production:
 * - the batch calls take any iterable (an array, a Map of input to value, a Set, a generator);
 *   anything else, or a setMany entry that is not a pair, is a CacheInputError and writes nothing;
 * - after close(), every call is a miss / false / 0 (getOrSet returns compute()'s value
 *   unstored), and bad input is still a CacheInputError.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  cacheGetMany,
  CacheInputError,
  cacheSetMany,
  closeCache,
  MemoryCache,
  setCache,
} from "../mod.ts";
import { startServer, type TestServer } from "./harness.ts";
import { type AnyCache, cacheFor, KINDS } from "./_helpers.ts";

for (const kind of ["memory", ...KINDS] as const) {
  describe(`${kind}: the same answer to misuse as every provider`, () => {
    let server: TestServer | undefined;
    let cache: MemoryCache | AnyCache;

    before(async () => {
      if (kind !== "memory") server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server?.stop();
    });
    beforeEach(async () => {
      if (server) {
        await server.cli("FLUSHALL");
        cache = cacheFor(server);
      } else cache = new MemoryCache({ logger: { warn: () => {} } });
      assert.equal(await cache.connect(), true);
    });
    afterEach(async () => {
      await cache.close();
    });

    /** Entries stored, as the server (or the memory provider) reports them. */
    async function stored(): Promise<number> {
      if (server) return Number(await server.cli("DBSIZE"));
      const values = await cache.getMany(["a", "b", "c", "d"], { companyId: "acme" });
      return values.filter((value) => value !== null).length;
    }

    it("setMany takes a Map, getMany a Set or a generator", async () => {
      const opts = { companyId: "acme" };
      assert.equal(
        await cache.setMany(new Map<unknown, unknown>([["a", 1], ["b", 2]]), opts),
        true,
      );
      assert.deepEqual(await cache.getMany(new Set(["a", "b", "x"]), opts), [1, 2, null]);
      function* inputs() {
        yield "b";
        yield "a";
      }
      assert.deepEqual(await cache.getMany(inputs(), opts), [2, 1]);
    });

    it("a non-iterable, a string, or an entry that is not a pair is a CacheInputError", async () => {
      const opts = { companyId: "acme" };
      const bad: [string, () => Promise<unknown>][] = [
        ["getMany(string)", () => cache.getMany("ab" as unknown as string[], opts)],
        ["getMany(number)", () => cache.getMany(42 as unknown as string[], opts)],
        ["getMany(null)", () => cache.getMany(null as unknown as string[], opts)],
        ["getMany(object)", () => cache.getMany({ a: 1 } as unknown as string[], opts)],
        ["setMany(object)", () => cache.setMany({ a: 1 } as unknown as [string, number][], opts)],
        ["setMany(string)", () => cache.setMany("ab" as unknown as [string, number][], opts)],
        [
          "setMany with a lone input",
          () => cache.setMany([["c", 3], ["d"]] as unknown as [string, number][], opts),
        ],
      ];
      for (const [what, call] of bad) {
        await assert.rejects(call, CacheInputError, what);
      }
      assert.equal(await stored(), 0, "nothing written, not even the valid entry before the bad");
    });

    it("after close(): misses, false and 0; getOrSet computes; bad input still throws", async () => {
      assert.equal(await cache.set("a", 1, { companyId: "acme" }), true);
      await cache.close();
      const opts = { companyId: "acme" };
      assert.equal(await cache.get("a", opts), null);
      assert.equal(await cache.set("b", 2, opts), false);
      assert.equal(await cache.setMany([["c", 3]], opts), false);
      assert.deepEqual(await cache.getMany(["a", "b"], opts), [null, null]);
      assert.equal(await cache.exists("a", opts), false);
      assert.equal(await cache.delete("a", opts), false);
      assert.equal(await cache.clearCompany("acme"), 0);
      assert.equal(await cache.clearAll(), 0);
      assert.equal(await cache.getOrSet("d", () => "computed", opts), "computed");
      assert.equal(await cache.healthCheck(), false);
      assert.equal(await cache.connect(), false, "a closed cache stays closed");
      await assert.rejects(() => cache.get(undefined, opts), CacheInputError);
      await assert.rejects(() => cache.set("e", 1, { companyId: "" }), CacheInputError);
      if (server) {
        assert.equal(await server.cli("EXISTS", "cache:registry:tenant:acme"), "1");
        assert.equal(Number(await server.cli("DBSIZE")), 2, "only what was written before close");
      }
    });
  });
}

describe("facade batch calls take iterables and refuse the rest", () => {
  afterEach(async () => {
    await closeCache();
  });

  it("cacheSetMany(Map) / cacheGetMany(Set); cacheGetMany(42) is a CacheInputError", async () => {
    assert.equal(await setCache({ provider: "memory", env: {} }), true);
    assert.equal(await cacheSetMany(new Map([["a", 1], ["b", 2]])), true);
    assert.deepEqual(await cacheGetMany(new Set(["a", "b"])), [1, 2]);
    await assert.rejects(() => cacheGetMany(42 as unknown as string[]), CacheInputError);
  });

  it("with caching disabled, a non-array is still a CacheInputError, not a TypeError", async () => {
    assert.equal(await setCache({ env: { ENABLE_CACHE: "false" } }), false);
    await assert.rejects(() => cacheGetMany(42 as unknown as string[]), CacheInputError);
    assert.deepEqual(await cacheGetMany(new Set(["a"])), [null]);
  });
});
