/**
 * The facade: setCache from the environment, second-call and disabled semantics, lazy set-up,
 * provider selection, and every cache* function against both servers.
 */

import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  cacheClearAll,
  cacheClearCompany,
  cacheClearGlobal,
  CacheConfigError,
  cacheDelete,
  cacheExists,
  cacheGet,
  cacheGetMany,
  CacheInputError,
  cachePruneRegistries,
  cacheSet,
  cacheSetMany,
  closeCache,
  getCache,
  getCacheClient,
  MemoryCache,
  RedisCache,
  setCache,
  ValkeyCache,
} from "../mod.ts";
import { freePort, startServer, type TestServer } from "./harness.ts";
import { hidePackages, KINDS, quietLogger, runProcess, runtimeEnv, sleep } from "./_helpers.ts";

function envFor(server: TestServer): Record<string, string> {
  const prefix = server.kind === "redis" ? "REDIS" : "VALKEY";
  return {
    [`${prefix}_HOST`]: server.host,
    [`${prefix}_PORT`]: String(server.port),
    [`${prefix}_DB`]: String(server.db),
  };
}

describe("facade without a server", () => {
  afterEach(async () => {
    await closeCache();
  });

  it("ENABLE_CACHE=false disables caching: setCache false, every call a miss", async () => {
    assert.equal(await setCache({ env: { ENABLE_CACHE: "false" } }), false);
    assert.equal(getCache(), null);
    assert.equal(await cacheSet("k", 1), false);
    assert.equal(await cacheGet("k"), null);
    assert.equal(await cacheClearAll(), 0);
  });

  it("an unknown CACHE_BACKEND is a CacheConfigError naming the allowed values", async () => {
    await assert.rejects(
      () => setCache({ env: { CACHE_BACKEND: "memcached" } }),
      (error: Error) => error instanceof CacheConfigError && /CACHE_BACKEND/.test(error.message),
    );
    await assert.rejects(() => setCache({ env: { REDIS_PORT: "abc" } }), /REDIS_PORT/);
  });

  it("installs the memory provider and keeps it on a second call", async () => {
    assert.equal(await setCache({ env: { CACHE_BACKEND: "memory" } }), true);
    const first = getCache();
    assert.ok(first instanceof MemoryCache);
    assert.equal(await setCache({ provider: "redis" }), true);
    assert.equal(getCache(), first, "the second call keeps the installed cache");
    assert.equal(getCacheClient(), null);
    await closeCache();
    assert.equal(getCache(), null);
  });

  it("unreachable server: setCache false fast, misses, then alive when the server starts", async () => {
    const port = await freePort();
    const started = Date.now();
    const ok = await setCache({
      env: { REDIS_HOST: "127.0.0.1", REDIS_PORT: String(port), REDIS_TIMEOUT: "1" },
      logger: quietLogger(),
    });
    assert.equal(ok, false);
    assert.ok(Date.now() - started < 1500);
    assert.ok(getCache() instanceof RedisCache, "installed, reconnecting in the background");
    assert.equal(await cacheGet("k"), null);
    assert.equal(await cacheSet("k", 1), false);
    const server = await startServer("redis", { own: true, port });
    try {
      let stored = false;
      for (let i = 0; i < 60 && !stored; i++) {
        await sleep(100);
        stored = await cacheSet("k", "alive");
      }
      assert.equal(await cacheGet("k"), "alive");
    } finally {
      await closeCache();
      await server.stop();
    }
  });

  it("bad input throws a typed error from the facade too", async () => {
    await setCache({ provider: "memory" });
    await assert.rejects(() => cacheSet(undefined, 1), CacheInputError);
    await assert.rejects(() => cacheGet("k", { companyId: "" }), CacheInputError);
  });
});

for (const kind of KINDS) {
  describe(`${kind} facade`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(kind, { own: true });
    });
    after(async () => {
      await closeCache();
      await server.stop();
    });
    afterEach(async () => {
      await closeCache();
      await server.cli("FLUSHALL");
    });

    it("auto picks this server's provider from the environment and serves every call", async () => {
      assert.equal(await setCache({ env: envFor(server), logger: quietLogger() }), true);
      assert.ok(getCache() instanceof (kind === "redis" ? RedisCache : ValkeyCache));
      const client = getCacheClient() as { ping(): Promise<string> };
      assert.equal(await client.ping(), "PONG");
      assert.equal(await cacheGet({ q: 1 }, { companyId: "acme" }), null);
      assert.equal(await cacheSet({ q: 1 }, { v: 1 }, { companyId: "acme" }), true);
      assert.deepEqual(await cacheGet({ q: 1 }, { companyId: "acme" }), { v: 1 });
      assert.equal(await cacheExists({ q: 1 }, { companyId: "acme" }), true);
      assert.equal(await cacheExists({ q: 1 }), false);
      assert.equal(await cacheSetMany([["a", 1], ["b", 2]]), true);
      assert.deepEqual(await cacheGetMany(["a", "x", "b"]), [1, null, 2]);
      assert.equal(await cacheDelete("a"), true);
      assert.equal(await cacheClearGlobal(), 1);
      await cacheSet("t", 1, { companyId: "other", ttl: 0.01 });
      await sleep(30);
      assert.equal(await cachePruneRegistries(), 1);
      assert.equal(await cacheClearCompany("acme"), 1);
      await cacheSet("x", 1);
      await cacheSet("x", 1, { companyId: "z" });
      assert.equal(await cacheClearAll(), 2);
      assert.match(
        await server.cli("KEYS", "cache:*"),
        /^$/,
        "nothing of this library's is left",
      );
    });

    it("the facade's keys look like the original's: cache::<hash>", async () => {
      await setCache({ env: envFor(server), logger: quietLogger() });
      await cacheSet("abc", 1);
      assert.equal(
        await server.cli(
          "EXISTS",
          "cache::6cc43f858fbb763301637b5af970e2a46b46f461f27e5a0f41e009c59b827b25",
        ),
        "1",
      );
    });

    it("a facade call before setCache sets up from the process environment once", async () => {
      // REDIS_URL / VALKEY_URL (the test mode against existing servers) would pick the server.
      const names = [...Object.keys(envFor(server)), "REDIS_URL", "VALKEY_URL"];
      const saved = names.map((name) => process.env[name]);
      delete process.env.REDIS_URL;
      delete process.env.VALKEY_URL;
      Object.assign(process.env, envFor(server));
      try {
        const connections = async () =>
          (await server.cli("CLIENT", "LIST")).split("\n").filter((l) => !/cmd=client/.test(l))
            .length;
        const before = await connections();
        // 20 first calls at once: one setup, one provider, one connection, every call served.
        const stored = await Promise.all(
          Array.from({ length: 20 }, (_, i) => cacheSet(`lazy${i}`, i)),
        );
        assert.deepEqual(stored, Array(20).fill(true));
        const installed = getCache();
        assert.ok(installed instanceof (kind === "redis" ? RedisCache : ValkeyCache));
        assert.equal(await cacheGet("lazy7"), 7);
        assert.equal(getCache(), installed);
        assert.equal(await connections(), before + 1);
      } finally {
        names.forEach((name, i) => {
          if (saved[i] === undefined) delete process.env[name];
          else process.env[name] = saved[i];
        });
      }
    });
  });
}

describe("no client package can be loaded", () => {
  /** Runs tests/no_client_worker with `packages` hidden and `env`; returns what it printed. */
  async function setCacheWithout(
    packages: string[],
    env: Record<string, string>,
  ): Promise<{ dependency?: boolean; message?: string; connected?: boolean }> {
    const dir = await mkdtemp(join(tmpdir(), "cache-no-client-"));
    try {
      const isDeno = "Deno" in globalThis;
      const file = fileURLToPath(
        new URL(`./no_client_worker.${isDeno ? "ts" : "js"}`, import.meta.url),
      );
      const hide = await hidePackages(dir, packages);
      const args = isDeno
        ? ["run", ...hide, "--allow-env", "--allow-read", "--allow-net=127.0.0.1", file]
        : [...hide, file];
      const run = await runProcess(args, { env: { ...runtimeEnv(), ...env }, timeoutMs: 30_000 });
      const line = run.stdout.trim().split("\n").pop() ?? "";
      assert.ok(line.startsWith("{"), `worker output: ${run.stdout}${run.stderr}`);
      return JSON.parse(line);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it("REDIS_HOST only: the error names ioredis, the client of the server configured", async () => {
    const result = await setCacheWithout(["ioredis", "iovalkey"], {
      REDIS_HOST: "127.0.0.1",
      REDIS_PORT: String(await freePort()),
    });
    assert.equal(result.dependency, true, JSON.stringify(result));
    assert.match(result.message!, /install ioredis \(npm install ioredis\)/);
  });

  it("VALKEY_HOST: the error names iovalkey first", async () => {
    const result = await setCacheWithout(["ioredis", "iovalkey"], {
      VALKEY_HOST: "127.0.0.1",
      VALKEY_PORT: String(await freePort()),
    });
    assert.equal(result.dependency, true, JSON.stringify(result));
    assert.match(result.message!, /install iovalkey \(npm install iovalkey\)/);
  });
});
