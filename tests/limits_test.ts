/**
 * Size limits on hostile input: a value over `maxValueBytes` (default 64 MiB, also
 * `REDIS_MAX_VALUE_BYTES` / `VALKEY_MAX_VALUE_BYTES`) and a key input over `maxKeyInputBytes`
 * (default 1 MiB of canonical JSON) are typed errors thrown before anything is sent: the server's
 * INFO commandstats does not move.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CacheInputError,
  CacheSerializationError,
  cacheSet,
  closeCache,
  MemoryCache,
  RedisConfig,
  setCache,
} from "../mod.ts";
import { startServer, type TestServer } from "./harness.ts";
import { cacheFor, KINDS, quietLogger } from "./_helpers.ts";

const MiB = 1024 * 1024;

/** Calls per command from INFO commandstats, without the INFO calls the check itself makes. */
async function commandStats(server: TestServer): Promise<Record<string, number>> {
  const info = await server.cli("INFO", "commandstats");
  const stats: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    // The test's own probes and the connection set-up of any client (the harness's, on an
    // existing server others' too) are not what "nothing sent" is about.
    if (!/^(info|client\|.*|dbsize|select|ping|hello)$/.test(match[1])) {
      stats[match[1]] = Number(match[2]);
    }
  }
  return stats;
}

/** A string key input whose canonical JSON (`"..."`) is exactly `bytes` long. */
function inputOfBytes(bytes: number): string {
  return "k".repeat(bytes - 2);
}

for (const kind of KINDS) {
  describe(`${kind} size limits`, () => {
    afterEach(async () => {
      await closeCache();
    });

    it("a key input over maxKeyInputBytes is a CacheInputError for every call, nothing sent", async () => {
      await using server = await startServer(kind);
      const cache = cacheFor(server, { maxKeyInputBytes: 1024 });
      assert.equal(await cache.connect(), true);
      try {
        const before = await commandStats(server);
        const big = { blob: "x".repeat(2000) };
        const calls: [string, () => Promise<unknown>][] = [
          ["get", () => cache.get(big)],
          ["set", () => cache.set(big, 1)],
          ["delete", () => cache.delete(big, { companyId: "acme" })],
          ["exists", () => cache.exists(big)],
          ["getMany", () => cache.getMany(["ok", big])],
          ["setMany", () => cache.setMany([["ok", 1], [big, 2]])],
        ];
        for (const [label, call] of calls) {
          await assert.rejects(
            call,
            (error: Error) =>
              error instanceof CacheInputError && /maxKeyInputBytes/.test(error.message) &&
              /2\d{3} bytes/.test(error.message),
            label,
          );
        }
        assert.deepEqual(await commandStats(server), before, "no command reached the server");
        assert.equal(await server.cli("DBSIZE"), "0");
        assert.equal(await cache.set(inputOfBytes(1024), 1), true, "exactly the limit fits");
      } finally {
        await cache.close();
      }
    });

    it("the default key limit is 1 MiB of canonical JSON", async () => {
      await using server = await startServer(kind);
      const cache = cacheFor(server);
      assert.equal(await cache.connect(), true);
      try {
        assert.equal(await cache.set(inputOfBytes(MiB), "fits"), true);
        assert.equal(await cache.get(inputOfBytes(MiB)), "fits");
        const before = await commandStats(server);
        await assert.rejects(() => cache.get(inputOfBytes(MiB + 1)), CacheInputError);
        // Non-ASCII text is escaped to \uXXXX, so the limit counts its canonical form.
        await assert.rejects(() => cache.set("é".repeat(Math.ceil(MiB / 6)), 1), CacheInputError);
        assert.deepEqual(await commandStats(server), before);
      } finally {
        await cache.close();
      }
    });

    it("a value over the limit is a CacheSerializationError naming it, nothing sent", async () => {
      await using server = await startServer(kind);
      const cache = cacheFor(server);
      const small = cacheFor(server, { maxValueBytes: 4096 });
      assert.equal(await cache.connect(), true);
      assert.equal(await small.connect(), true);
      try {
        const before = await commandStats(server);
        // The default: 64 MiB of JSON; a 64 MiB string is 2 bytes over once quoted.
        const huge = "v".repeat(64 * MiB);
        await assert.rejects(
          () => cache.set("huge", huge),
          (error: Error) =>
            error instanceof CacheSerializationError && /67108864/.test(error.message),
        );
        await assert.rejects(() => small.set("k", "x".repeat(5000)), /4096/);
        await assert.rejects(
          () => small.setMany([["a", 1], ["b", "x".repeat(5000)]]),
          CacheSerializationError,
        );
        assert.deepEqual(await commandStats(server), before, "no command reached the server");
        assert.equal(await server.cli("DBSIZE"), "0");
        assert.equal(await small.set("k", "x".repeat(4000)), true);
      } finally {
        await cache.close();
        await small.close();
      }
    });

    it("the value limit comes from the environment too", async () => {
      await using server = await startServer(kind);
      const prefix = kind === "redis" ? "REDIS" : "VALKEY";
      const env = {
        CACHE_BACKEND: kind,
        [`${prefix}_HOST`]: server.host,
        [`${prefix}_PORT`]: String(server.port),
        [`${prefix}_DB`]: String(server.db),
        [`${prefix}_MAX_VALUE_BYTES`]: "1000 # bytes",
      };
      assert.equal(await setCache({ env, logger: quietLogger() }), true);
      const before = await commandStats(server);
      await assert.rejects(() => cacheSet("k", "x".repeat(1000)), /1000 bytes/);
      assert.deepEqual(await commandStats(server), before);
      assert.equal(await cacheSet("k", "x".repeat(900)), true);
    });
  });
}

describe("size limits without a server", () => {
  it("MemoryCache applies both limits, and the config validates its own", async () => {
    const cache = new MemoryCache({ maxKeyInputBytes: 100, maxValueBytes: 100 });
    await assert.rejects(() => cache.set("k".repeat(200), 1), CacheInputError);
    await assert.rejects(() => cache.set("k", "v".repeat(200)), CacheSerializationError);
    assert.equal(await cache.set("k", "v"), true);
    assert.equal(new RedisConfig().maxValueBytes, 64 * MiB);
    assert.equal(RedisConfig.fromEnv({ REDIS_MAX_VALUE_BYTES: "2048" }).maxValueBytes, 2048);
    assert.throws(() => RedisConfig.fromEnv({ REDIS_MAX_VALUE_BYTES: "0" }), /MAX_VALUE_BYTES/);
  });
});
