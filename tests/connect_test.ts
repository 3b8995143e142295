/**
 * Setting up and tearing down connections as a service does, against real servers:
 * - a database the server does not have (REDIS_DB, a URL's /db) fails the connect, and no
 *   command ever runs on another database, also when a reconnect's SELECT is refused;
 * - `closeCache()` while `setCache()` is still connecting closes that connection too: afterwards
 *   no cache is installed and no connection is open, and the process can exit.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { cacheGet, cacheSet, closeCache, getCache, setCache } from "../mod.ts";
import { startServer, type TestServer } from "./harness.ts";
import { cacheFor, collectingLogger, KINDS, runProcess, sleep, workerArgs } from "./_helpers.ts";

/** The environment of a service configured by URL for `server`'s kind. */
function urlEnv(server: TestServer, path: string): Record<string, string> {
  return server.kind === "redis"
    ? { CACHE_BACKEND: "redis", REDIS_URL: `${server.url}${path}` }
    : { CACHE_BACKEND: "valkey", VALKEY_URL: `${server.url}${path}` };
}

/** How many keys database `db` of `server` holds. */
async function keysIn(server: TestServer, db: number): Promise<number> {
  return Number(await server.cli("-n", String(db), "DBSIZE"));
}

/** The clients connected to `server`, not counting the redis-cli asking. */
async function connectedClients(server: TestServer): Promise<number> {
  const info = await server.cli("INFO", "clients");
  return Number(/connected_clients:(\d+)/.exec(info)![1]) - 1;
}

afterEach(async () => {
  await closeCache();
});

for (const kind of KINDS) {
  const upper = kind === "redis" ? "REDIS" : "VALKEY";

  describe(`${kind}: a database the server does not have`, () => {
    it(`a URL's /16 on a 16-database server: setCache false, nothing lands in database 0`, async () => {
      await using server = await startServer(kind, { own: true });
      const logger = collectingLogger();
      assert.equal(await setCache({ env: urlEnv(server, "/16"), logger }), false);
      const writes = await Promise.all(
        Array.from({ length: 20 }, (_, i) => cacheSet(`k${i}`, i, { companyId: "acme" })),
      );
      assert.deepEqual(new Set(writes), new Set([false]), "every write is refused");
      assert.equal(await cacheGet("k0", { companyId: "acme" }), null);
      assert.equal(await keysIn(server, 0), 0, "no entry and no registry in database 0");
      const line = logger.lines.find((l) => l.includes("database"));
      assert.ok(line, `a log line names the database problem: ${logger.lines.join(" | ")}`);
      assert.match(line, new RegExp(`${upper}_DB`), "it names the variable to fix");
      assert.match(line, /out of range/, "and carries the server's words");
    });

    it(`${upper}_DB=16 through the variables: the same`, async () => {
      await using server = await startServer(kind, { own: true });
      const env = {
        CACHE_BACKEND: kind,
        [`${upper}_HOST`]: server.host,
        [`${upper}_PORT`]: String(server.port),
        [`${upper}_DB`]: "16",
      };
      assert.equal(await setCache({ env, logger: collectingLogger() }), false);
      assert.equal(await cacheSet("x", 1), false);
      assert.equal(await keysIn(server, 0), 0);
    });

    it("a provider's connect() resolves false; its calls are misses and write nothing", async () => {
      await using server = await startServer(kind, { own: true, args: ["--databases", "4"] });
      const cache = cacheFor(server, { configOptions: { db: 5 } });
      try {
        assert.equal(await cache.connect(), false);
        assert.equal(await cache.set("x", 1), false);
        assert.equal(await cache.setMany([["a", 1], ["b", 2]]), false);
        assert.equal(await cache.get("x"), null);
        assert.equal(await cache.clearAll(), 0);
        for (const db of [0, 1, 2, 3]) assert.equal(await keysIn(server, db), 0, `db ${db}`);
      } finally {
        await cache.close();
      }
    });

    it("a reconnect whose SELECT is refused serves misses, never database 0", async () => {
      const first = await startServer(kind, { own: true });
      const port = first.port;
      const cache = cacheFor(first, { configOptions: { db: 3 } });
      try {
        assert.equal(await cache.connect(), true);
        assert.equal(await cache.set("before", 1, { companyId: "acme" }), true);
        assert.equal(await keysIn(first, 3), 2, "the entry and its registry in database 3");
        await first.stop();
        // The same address, now with only 2 databases: the client's SELECT 3 is refused.
        await using second = await startServer(kind, {
          own: true,
          port,
          args: ["--databases", "2"],
        });
        const deadline = Date.now() + 3_000;
        let writes = 0;
        while (Date.now() < deadline) {
          assert.equal(await cache.set(`k${writes++}`, 1, { companyId: "acme" }), false);
          assert.equal(await cache.get("before", { companyId: "acme" }), null);
          await sleep(5);
        }
        assert.ok(writes > 20, `kept calling through the reconnects (${writes} writes)`);
        assert.equal(await keysIn(second, 0), 0, "nothing ran on database 0");
        assert.equal(await keysIn(second, 1), 0);
      } finally {
        await cache.close();
      }
    });
  });

  describe(`${kind}: closeCache() while setCache() is connecting`, () => {
    it("a server that answers: the pending setCache resolves false, nothing installed or open", async () => {
      await using server = await startServer(kind, { own: true });
      const pending = setCache({ env: urlEnv(server, "/0"), logger: collectingLogger() });
      await closeCache();
      assert.equal(await pending, false);
      assert.equal(getCache(), null);
      await sleep(200); // a connection opened late would show up here
      assert.equal(getCache(), null, "no provider installed afterwards");
      assert.equal(await connectedClients(server), 0, "no connection left open");
      assert.equal(await keysIn(server, 0), 0);
    });

    it("a hung server (SIGSTOP): closeCache resolves at once; after SIGCONT no connection appears", async () => {
      await using server = await startServer(kind, { own: true });
      server.pause();
      try {
        const pending = setCache({ env: urlEnv(server, "/0"), logger: collectingLogger() });
        await sleep(50);
        const started = performance.now();
        await closeCache();
        const closeMs = performance.now() - started;
        assert.equal(await pending, false);
        assert.ok(closeMs < 1_000, `closeCache took ${closeMs.toFixed(0)} ms`);
      } finally {
        server.resume();
      }
      await sleep(300);
      assert.equal(getCache(), null);
      assert.equal(await connectedClients(server), 0, "no connection left open");
    });

    it("a process that calls closeCache() right after setCache() exits on its own", async () => {
      await using server = await startServer(kind, { own: true });
      const run = await runProcess(workerArgs("close_worker"), {
        env: { ...process.env, ...urlEnv(server, "/0") },
        timeoutMs: 15_000,
      });
      assert.equal(run.code, 0, `exit code ${run.code}: ${run.stderr}`);
      assert.match(run.stdout, /setCache=false installed=false/);
      assert.ok(run.elapsedMs < 10_000, `exited after ${run.elapsedMs} ms`);
    });
  });
}
