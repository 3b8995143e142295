/**
 * The near cache through the providers (`nearCache` option), against real servers of both kinds:
 * hits served from memory (nothing reaches the server), copies, reads after this process's own
 * writes and clears, changes by foreign clients and by other processes, a killed subscriber, a
 * server restart, a network partition through a pausable proxy, the memory bounds, stats and
 * events, a randomized checker with several reader processes, and a cluster's reshard.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import process from "node:process";
import { type CacheEvent, RedisCache, RedisConfig, ValkeyCache, ValkeyConfig } from "../mod.ts";
import type { ClientConstructor, ProtocolClient } from "../src/client_types.ts";
import { hashInput } from "../src/keys.ts";
import { startServer, type TestServer } from "./harness.ts";
import { startCluster, type TestCluster } from "./cluster_harness.ts";
import {
  type AnyCache,
  cacheFor,
  collectingLogger,
  commandCalls,
  KINDS,
  runWorkerFile,
  sleep,
} from "./_helpers.ts";
import type { ServerKind } from "./harness.ts";
import type { WorkerSpec } from "./near_cache_worker.ts";

/** The global entry key of `input` in the facade's layout (prefix `cache:`, name ""). */
const globalKey = (input: unknown) => `cache::${hashInput(input)}`;

async function library(kind: ServerKind): Promise<ClientConstructor> {
  const module = kind === "redis" ? await import("ioredis") : await import("iovalkey");
  return module.Redis as unknown as ClientConstructor;
}

interface BareClient extends ProtocolClient {
  set(key: string, value: string, ...args: (string | number)[]): Promise<unknown>;
  del(...keys: string[]): Promise<number>;
  pexpire(key: string, ms: number): Promise<number>;
  flushall(): Promise<unknown>;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
}

/** A bare client of the kind's library (not this library): the foreign writer. */
async function bareClient(server: { kind: ServerKind; host: string; port: number }) {
  const Client = await library(server.kind);
  const client = new Client({ host: server.host, port: server.port, lazyConnect: true });
  await client.connect();
  return client as unknown as BareClient;
}

/** Waits until `condition` holds (polling every ms), failing after `timeoutMs`; returns the ms. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 3000) {
  const start = performance.now();
  while (!(await condition())) {
    if (performance.now() - start > timeoutMs) assert.fail(`not within ${timeoutMs} ms`);
    await sleep(1);
  }
  return performance.now() - start;
}

/**
 * Reads `input` until a read is served from the near cache (after this process's write, a read
 * installs once the server's invalidation of that write has come back).
 */
async function untilLocal(cache: AnyCache, input: unknown, companyId?: string): Promise<void> {
  await until(async () => {
    const hits = cache.stats().nearCache!.hits;
    await cache.get(input, { companyId });
    return cache.stats().nearCache!.hits > hits;
  });
}

/** A connected provider with the near cache on, tracking armed. */
async function nearCacheFor(
  server: TestServer,
  options: Parameters<typeof cacheFor>[1] = {},
): Promise<AnyCache> {
  const cache = cacheFor(server, { nearCache: true, ...options });
  assert.equal(await cache.connect(), true);
  await until(() => cache.stats().nearCache?.armed === true);
  return cache;
}

/** GETs and script calls the server has run (what a read that reached it costs). */
async function serverReads(server: TestServer): Promise<number> {
  return (await commandCalls(server, "get")) + (await commandCalls(server, "evalsha")) +
    (await commandCalls(server, "mget")) + (await commandCalls(server, "exists"));
}

/**
 * A TCP proxy in front of `server` whose traffic can be held in both directions (a network
 * partition: nothing is lost, nothing arrives until it heals).
 */
async function pausableProxy(server: TestServer) {
  let paused = false;
  const held: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const relay = (from: Socket, to: Socket) => {
    from.on("data", (chunk) => {
      if (paused) held.push(() => to.write(chunk));
      else to.write(chunk);
    });
    from.on("close", () => to.destroy());
    from.on("error", () => to.destroy());
  };
  const proxy: Server = createServer((client) => {
    const upstream = new (client.constructor as typeof Socket)();
    upstream.connect(server.port, server.host);
    sockets.add(client).add(upstream);
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const port = (proxy.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    pause: () => paused = true,
    heal: () => {
      paused = false;
      for (const send of held.splice(0)) send();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

/** Spawns tests/near_cache_worker (`deno run` on the .ts under Deno, `node` on its .js). */
function runWorker<T>(spec: WorkerSpec): Promise<T> {
  return runWorkerFile<T>("near_cache_worker", "NEAR_CACHE_WORKER", spec, WORKER_TIMEOUT_MS);
}

/** Reader processes of the randomized checker (with the writer and the server: about 2 cores). */
const READERS = Number(process.env.NC_READERS ?? 2);
/**
 * How long before a reader's last PING a write must have completed for the reader never to see
 * the value it replaced afterwards. The server sends a write's invalidation before the writer sees
 * its reply (measured: a bare subscriber in the writer's process got it 0.01-0.12 ms before), and
 * a PING sent after that reply is answered after the invalidation was sent. Reads are judged
 * against that PING, not against when they began: a process descheduled for 35 ms (seen on this
 * shared 2-core VM) cannot have handled what arrived meanwhile, a case the near cache bounds by
 * maxStaleness (the partition test).
 */
const TOLERANCE_MS = 5;
const WORKER_TIMEOUT_MS = 30_000;

for (const kind of KINDS) {
  describe(`${kind} near cache (provider)`, () => {
    let server: TestServer;
    let bare: BareClient;
    let cache: AnyCache | undefined;

    before(async () => {
      server = await startServer(kind, { own: true });
      bare = await bareClient(server);
    });
    after(async () => {
      bare?.disconnect();
      await server?.stop();
    });
    beforeEach(async () => {
      await server.cli("FLUSHALL");
      await server.cli("CONFIG", "RESETSTAT");
    });
    afterEach(async () => {
      await cache?.close();
      cache = undefined;
    });

    it("is off by default: every get reaches the server and stats have no nearCache", async () => {
      cache = cacheFor(server);
      assert.equal(await cache.connect(), true);
      await cache.set("k", 1);
      for (let i = 0; i < 5; i++) assert.equal(await cache.get("k"), 1);
      assert.equal(await commandCalls(server, "get"), 5);
      assert.equal(cache.stats().nearCache, undefined);
      // No tracking client: only this provider's data connection is there.
      assert.doesNotMatch(await server.cli("CLIENT", "LIST"), /flags=\S*t/);
    });

    it("serves a hot get, getMany, exists and getOrSet from memory, each hit a copy", async () => {
      cache = await nearCacheFor(server);
      await cache.set("k", { rows: [1, 2] });
      // A read right after this process's write goes to the server until the write's echo.
      assert.deepEqual(await cache.get("k"), { rows: [1, 2] });
      await untilLocal(cache, "k");
      const nearHits = cache.stats().nearCache!.hits;
      const hits = cache.stats().hits;
      const before = await serverReads(server);
      const first = await cache.get<{ rows: number[] }>("k");
      first!.rows.push(3);
      assert.deepEqual(await cache.get("k"), { rows: [1, 2] });
      assert.deepEqual(await cache.getMany(["k", "k"]), [{ rows: [1, 2] }, { rows: [1, 2] }]);
      assert.equal(await cache.exists("k"), true);
      let computed = 0;
      assert.deepEqual(await cache.getOrSet("k", () => ++computed), { rows: [1, 2] });
      assert.equal(computed, 0);
      assert.equal(await serverReads(server), before, "no read reached the server");
      const near = cache.stats().nearCache!;
      assert.equal(near.hits - nearHits, 6);
      assert.equal(near.entries, 1);
      assert.equal(near.armed, true);
      // Five of them are lookups in `hits` too (exists is not).
      assert.equal(cache.stats().hits - hits, 5, "near hits count as hits");
    });

    it("a get after this process's set, delete, clear or tag invalidation resolved sees it", async () => {
      cache = await nearCacheFor(server);
      for (let i = 0; i < 100; i++) {
        await cache.set("k", i, { companyId: "t", tags: ["x"] });
        assert.equal(await cache.get("k", { companyId: "t" }), i);
        assert.equal(await cache.get("k", { companyId: "t" }), i);
        switch (i % 5) {
          case 0:
            await cache.delete("k", { companyId: "t" });
            break;
          case 1:
            await cache.clearCompany("t");
            break;
          case 2:
            await cache.clearAll();
            break;
          case 3:
            await cache.invalidateTags(["x"], { companyId: "t" });
            break;
          case 4:
            await cache.set("k", -i, { companyId: "t" });
            assert.equal(await cache.get("k", { companyId: "t" }), -i);
            continue;
        }
        assert.equal(await cache.get("k", { companyId: "t" }), null, `step ${i}`);
      }
      // Concurrent: a read in flight when this process's write resolves is not installed.
      await cache.set("c", 0);
      for (let i = 1; i < 50; i++) {
        const read = cache.get("c");
        await cache.set("c", i);
        await read;
        assert.equal(await cache.get("c"), i);
      }
    });

    it("a tenant or global clear drops only that scope's local entries", async () => {
      cache = await nearCacheFor(server);
      await cache.set("k", "a", { companyId: "a" });
      await cache.set("k", "a:b", { companyId: "a:b" });
      await cache.set("k", "global");
      for (const companyId of ["a", "a:b", undefined]) await untilLocal(cache, "k", companyId);
      assert.equal(cache.stats().nearCache!.entries, 3);
      await cache.clearCompany("a");
      // Its invalidation has not necessarily arrived: the clear dropped it locally.
      assert.equal(await cache.get("k", { companyId: "a" }), null);
      const before = await serverReads(server);
      assert.equal(await cache.get("k", { companyId: "a:b" }), "a:b");
      assert.equal(await cache.get("k"), "global");
      assert.equal(await serverReads(server), before, "the other scopes are still local");
    });

    it("changes by a bare client evict: SET, DEL, UNLINK, EXPIRE, a Python-style write, FLUSHALL", async () => {
      cache = await nearCacheFor(server);
      const key = globalKey("k");
      const warm = async (value: unknown) => {
        await until(async () => JSON.stringify(await cache!.get("k")) === JSON.stringify(value));
        // Installed: served without the server now.
        const before = await serverReads(server);
        assert.deepEqual(await cache!.get("k"), value);
        assert.equal(await serverReads(server), before);
      };
      await bare.set(key, '{"version": 1}'); // as Python's json.dumps writes it
      await warm({ version: 1 });
      await bare.set(key, '{"version": 2}');
      await warm({ version: 2 });
      await bare.del(key);
      await until(async () => (await cache!.get("k")) === null);
      await bare.set(key, "3");
      await warm(3);
      await bare.call("UNLINK", key);
      await until(async () => (await cache!.get("k")) === null);
      await bare.set(key, "4");
      await warm(4);
      await bare.pexpire(key, 1);
      await until(async () => (await cache!.get("k")) === null);
      await bare.set(key, "5");
      await warm(5);
      await bare.flushall();
      await until(async () => (await cache!.get("k")) === null);
      assert.ok(cache.stats().nearCache!.flushes >= 1);
    });

    it("the Python original's write (SET EX + SADD) and tenant clear (SMEMBERS + DEL) evict", async () => {
      cache = await nearCacheFor(server);
      await cache.set("report", { version: 1 }, { companyId: "acme" });
      await cache.set("other", "kept", { companyId: "acme" });
      assert.deepEqual(await cache.get("report", { companyId: "acme" }), { version: 1 });
      assert.equal(await cache.get("other", { companyId: "acme" }), "kept");
      const key = `cache:tenant:acme::${hashInput("report")}`;
      const registry = "cache:registry:tenant:acme";
      // The original's cache_set: two commands, its json.dumps spacing.
      await server.cli("SET", key, '{"version": 2}', "EX", "60");
      await server.cli("SADD", registry, key);
      await until(async () =>
        (await cache!.get<{ version: number }>("report", { companyId: "acme" }))?.version === 2
      );
      // The original's cache_clear_company: SMEMBERS, then DEL of the members and the registry.
      const members = (await server.cli("SMEMBERS", registry)).split("\n");
      assert.equal(members.length, 2);
      await server.cli("DEL", ...members, registry);
      await until(async () => (await cache!.get("other", { companyId: "acme" })) === null);
      assert.equal(await cache.get("report", { companyId: "acme" }), null);
    });

    it("a local copy never outlives the entry's TTL on the server", async () => {
      cache = await nearCacheFor(server);
      // Lazy expiry only (no active expiry cycle): the server sends no invalidation at expiry.
      await server.cli("DEBUG", "SET-ACTIVE-EXPIRE", "0").catch(() => "");
      try {
        await cache.set("short", "v", { ttl: 0.3 });
        const started = performance.now();
        // Installed once the read's PTTL is back (it follows the GET).
        await untilLocal(cache, "short");
        assert.equal(cache.stats().nearCache!.entries, 1);
        while (performance.now() - started < 250) {
          assert.equal(await cache.get("short"), "v");
          await sleep(10);
        }
        await sleep(100);
        assert.equal(await cache.get("short"), null);

        // A key held before (here: evicted by a foreign write that gave it a short TTL) is read
        // with its PTTL in the same command; a getMany reads values, then their PTTLs.
        await cache.set("again", "v1", { ttl: 60 });
        await cache.set("many", "m", { ttl: 0.3 });
        await untilLocal(cache, "again");
        await bare.set(globalKey("again"), JSON.stringify("v2"), "PX", 300);
        await until(async () => (await cache!.get("again")) === "v2");
        const rewritten = performance.now();
        await untilLocal(cache, "again");
        await until(async () => {
          const hits = cache!.stats().nearCache!.hits;
          assert.deepEqual(await cache!.getMany(["many"]), ["m"]);
          return cache!.stats().nearCache!.hits > hits;
        });
        while (performance.now() - rewritten < 200) {
          assert.equal(await cache.get("again"), "v2");
          await sleep(10);
        }
        await sleep(150);
        assert.equal(await cache.get("again"), null);
        assert.deepEqual(await cache.getMany(["many"]), [null]);
      } finally {
        await server.cli("DEBUG", "SET-ACTIVE-EXPIRE", "1").catch(() => "");
      }
    });

    it("an entry a foreign writer left as non-JSON text reads as a miss, logged", async () => {
      const logger = collectingLogger();
      cache = await nearCacheFor(server, { logger });
      await bare.set(globalKey("garbled"), "{not json");
      await bare.set(globalKey("fine"), JSON.stringify({ ok: true }));
      // The first read comes from the server, the later ones from the near cache once it holds
      // the text: every one is a miss, none throws, and the entry next to it is unharmed.
      for (let i = 0; i < 20; i++) {
        assert.equal(await cache.get("garbled"), null);
        assert.deepEqual(await cache.get("fine"), { ok: true });
        await sleep(2);
      }
      assert.ok(cache.stats().nearCache!.hits > 0);
      assert.ok(
        logger.lines.some((line) => /does not hold JSON/.test(line)),
        logger.lines.join("\n"),
      );
    });

    it("a miss of an absent key costs one GET, as with the near cache off", async () => {
      cache = await nearCacheFor(server);
      await server.cli("CONFIG", "RESETSTAT");
      for (let i = 0; i < 20; i++) assert.equal(await cache.get(`absent${i}`), null);
      assert.equal(await commandCalls(server, "get"), 20);
      assert.equal(await commandCalls(server, "evalsha"), 0);
      assert.equal(await commandCalls(server, "pttl"), 0);
      // A value found costs one PTTL after it (off the caller's path), then serves locally. (The
      // foreign SET's own invalidation may void the first read's install: then it is read again.)
      await bare.set(globalKey("found"), JSON.stringify("f"));
      await server.cli("CONFIG", "RESETSTAT");
      assert.equal(await cache.get("found"), "f");
      await untilLocal(cache, "found");
      const gets = await commandCalls(server, "get");
      assert.ok(gets >= 1 && gets <= 3, `${gets} GETs`);
      assert.equal(await commandCalls(server, "pttl"), gets);
      assert.equal(await commandCalls(server, "evalsha"), 0);
    });

    it("a tenant clear from another process evicts that tenant here, no other", async () => {
      cache = await nearCacheFor(server);
      for (let i = 0; i < 50; i++) {
        await cache.set(`k${i}`, i, { companyId: "gone" });
        await cache.set(`k${i}`, i, { companyId: "kept" });
      }
      for (let i = 0; i < 50; i++) {
        await untilLocal(cache, `k${i}`, "gone");
        await untilLocal(cache, `k${i}`, "kept");
      }
      assert.equal(cache.stats().nearCache!.entries, 100);
      const { cleared } = await runWorker<{ cleared: number }>({
        kind,
        url: server.url,
        mode: "clear",
        companyId: "gone",
      });
      assert.equal(cleared, 50);
      await until(() => cache!.stats().nearCache!.entries === 50);
      const before = await serverReads(server);
      for (let i = 0; i < 50; i++) {
        assert.equal(await cache.get(`k${i}`, { companyId: "kept" }), i);
      }
      assert.equal(await serverReads(server), before);
      for (let i = 0; i < 50; i++) {
        assert.equal(await cache.get(`k${i}`, { companyId: "gone" }), null);
      }
    });

    it("CLIENT KILL TYPE pubsub empties it and bypasses it until tracking is re-armed", async () => {
      const events: CacheEvent[] = [];
      cache = await nearCacheFor(server, { onEvent: (event) => events.push(event) });
      await cache.set("k", 1);
      await untilLocal(cache, "k");
      assert.equal(cache.stats().nearCache!.entries, 1);
      await server.cli("CLIENT", "KILL", "TYPE", "pubsub");
      await until(() => cache!.stats().nearCache!.entries === 0);
      // While it is lost, a foreign write is still seen (read from the server).
      await bare.set(globalKey("k"), "2");
      assert.equal(await cache.get("k"), 2);
      await until(() => cache!.stats().nearCache!.armed);
      await until(async () => {
        const before = await serverReads(server);
        return (await cache!.get("k")) === 2 && (await serverReads(server)) === before;
      });
      assert.ok(events.some((event) => event.type === "near-flush"));
    });

    it("a server restart empties it, and it is re-armed with fresh values", async () => {
      const own = await startServer(kind, { own: true });
      try {
        const local = await nearCacheFor(own, { timeout: 1 });
        try {
          await local.set("k", "before");
          await untilLocal(local, "k");
          await own.kill();
          await until(() => local.stats().nearCache!.entries === 0);
          assert.equal(local.stats().nearCache!.armed, false);
          await own.restart();
          const writer = await bareClient(own);
          await writer.set(globalKey("k"), '"after"');
          writer.disconnect();
          await until(() => local.stats().nearCache!.armed, 10_000);
          await until(async () => (await local.get("k")) === "after", 5000);
          assert.equal(await local.get("k"), "after");
        } finally {
          await local.close();
        }
      } finally {
        await own.stop();
      }
    });

    it("a network partition: no value is served more than maxStaleness after it changed", async () => {
      const proxy = await pausableProxy(server);
      const maxStaleness = 0.4;
      const local = cacheFor(server, {
        configOptions: { url: proxy.url },
        nearCache: { maxStaleness },
        timeout: 0.2,
      });
      try {
        assert.equal(await local.connect(), true);
        await until(() => local.stats().nearCache?.armed === true);
        await local.set("k", { version: 1 });
        await untilLocal(local, "k");
        proxy.pause();
        // Another client keeps writing (version 2, 3, ...) while this process is cut off.
        const written: { version: number; at: number }[] = [];
        let writing = true;
        const writer = (async () => {
          for (let version = 2; writing; version++) {
            await bare.set(globalKey("k"), JSON.stringify({ version }));
            written.push({ version, at: performance.now() });
            await sleep(20);
          }
        })();
        let servedOld = 0;
        let late = 0;
        const start = performance.now();
        while (performance.now() - start < 3 * maxStaleness * 1000) {
          const readAt = performance.now();
          const value = await local.get<{ version: number }>("k");
          if (value !== null) {
            // The first write that replaced the version read: it may be served only within
            // maxStaleness of it (20 ms of slack for the timer that notices the silence).
            const replaced = written.find((write) => write.version > value.version);
            if (replaced && readAt - replaced.at > maxStaleness * 1000 + 20) late++;
            if (value.version === 1) servedOld++;
          }
          await sleep(5);
        }
        writing = false;
        await writer;
        assert.equal(late, 0, "a value was served more than maxStaleness after it changed");
        assert.ok(servedOld > 0, "the cut-off process served its copy while within maxStaleness");
        proxy.heal();
        const last = written.at(-1)!.version;
        await until(
          async () => (await local.get<{ version: number }>("k"))?.version === last,
          10_000,
        );
      } finally {
        await local.close();
        await proxy.close();
      }
    });

    it("holds at most maxEntries and maxBytes, least recently used out first", async () => {
      const events: CacheEvent[] = [];
      cache = await nearCacheFor(server, {
        nearCache: { maxEntries: 10, maxBytes: 1000 },
        onEvent: (event) => events.push(event),
      });
      for (let i = 0; i < 30; i++) await cache.set(i, i);
      // The server's invalidations of these writes reach this process too: let them arrive
      // before the reads that install (one arriving after would evict what a read installed).
      await sleep(100);
      for (let i = 0; i < 30; i++) await cache.get(i);
      // Each is installed once its PTTL is back (read after the value, off the caller's path).
      await until(() => cache!.stats().nearCache!.evictions === 20);
      let near = cache.stats().nearCache!;
      assert.equal(near.entries, 10);
      assert.ok(events.filter((event) => event.type === "near-eviction").length >= 20);
      // The most recent ten are local, the first ones are not.
      const before = await serverReads(server);
      for (let i = 20; i < 30; i++) assert.equal(await cache.get(i), i);
      assert.equal(await serverReads(server), before);
      await cache.set("big", "x".repeat(400));
      await cache.set("big2", "y".repeat(400));
      await cache.set("big3", "z".repeat(400));
      await sleep(100);
      for (const input of ["big", "big2"]) await cache.get(input);
      await untilLocal(cache, "big3");
      near = cache.stats().nearCache!;
      assert.ok(near.bytes <= 1000, `${near.bytes} bytes held`);
      assert.ok(near.bytes >= 400, `${near.bytes} bytes held`);
      assert.equal(await cache.get("big3"), "z".repeat(400));
    });

    it("randomized: reader processes never read a version replaced > 5 ms before their last PING", async () => {
      const inputs = Array.from({ length: 8 }, (_, i) => `item${i}`);
      for (const [i, input] of inputs.entries()) {
        await bare.set(globalKey(input), JSON.stringify({ version: 0, i }));
      }
      const readyKey = `nc-test:ready:${Date.now()}`;
      const goKey = `nc-test:go:${Date.now()}`;
      const durationMs = 2500;
      const readers = Array.from({ length: READERS }, () =>
        runWorker<{ reads: number[] }>({
          kind,
          url: server.url,
          mode: "read",
          inputs,
          durationMs,
          readyKey,
          goKey,
          maxStaleness: 1,
        }));
      await until(async () => Number(await server.cli("GET", readyKey)) === READERS, 30_000);
      await server.cli("SET", goKey, "1");
      // The foreign writer: version n of a random input, each write's completion noted.
      const writes: { index: number; version: number; doneAt: number }[] = [];
      const end = performance.timeOrigin + performance.now() + durationMs;
      for (let version = 1; performance.timeOrigin + performance.now() < end; version++) {
        const index = Math.floor(Math.random() * inputs.length);
        await bare.set(globalKey(inputs[index]), JSON.stringify({ version, i: index }));
        writes.push({ index, version, doneAt: performance.timeOrigin + performance.now() });
        // About one write per 7 ms: each input is rewritten every 60 ms or so, well over the
        // tolerance, so a reply installed after its invalidation would stay stale across polls.
        await sleep(4 + Math.random() * 4);
      }
      let reads = 0;
      let stale = 0;
      let worst = 0;
      for (const { reads: flat } of await Promise.all(readers)) {
        for (let r = 0; r < flat.length; r += 4) {
          const [startedAt, index, version, polledAt] = flat.slice(r, r + 4);
          reads++;
          // The newest version of this input whose write had completed TOLERANCE_MS before the
          // reader's last PING was sent.
          let newest = 0;
          for (const write of writes) {
            if (write.index === index && write.doneAt < polledAt - TOLERANCE_MS) {
              newest = Math.max(newest, write.version);
            }
          }
          if (version < newest) {
            stale++;
            const overtaken = writes.find((w) => w.index === index && w.version > version)!;
            worst = Math.max(worst, startedAt - overtaken.doneAt);
          }
        }
      }
      console.log(
        `FIGURES near-cache-checker kind=${kind} readers=${READERS} reads=${reads} ` +
          `writes=${writes.length} stale=${stale} worst=${worst.toFixed(1)}ms`,
      );
      assert.ok(reads > 300, `only ${reads} reads`);
      assert.equal(stale, 0);
    });
  });

  describe(`${kind} near cache on a cluster`, () => {
    let cluster: TestCluster;
    before(async () => {
      cluster = await startCluster(kind);
    });
    after(async () => {
      await cluster?.stop();
    });

    it("tracks every master, and a reshard empties it and re-arms on the new layout", async () => {
      const logger = collectingLogger();
      const settings = { clusterNodes: cluster.seeds };
      const cache = kind === "redis"
        ? new RedisCache({ logger, nearCache: true, config: new RedisConfig(settings) })
        : new ValkeyCache({ logger, nearCache: true, config: new ValkeyConfig(settings) });
      const writers = await Promise.all(cluster.nodes.map((node) => bareClient(node)));
      try {
        assert.equal(await cache.connect(), true);
        await until(() => cache.stats().nearCache?.armed === true, 10_000);
        // One tracking subscriber on every master.
        for (const node of cluster.nodes) {
          assert.match(await node.cli("CLIENT", "LIST", "TYPE", "pubsub"), /flags=\S*t/);
        }
        // Entries on every master; each read twice is local the second time.
        const inputs = Array.from({ length: 60 }, (_, i) => `c${i}`);
        for (const input of inputs) {
          await cache.set(input, 1, { companyId: input });
          assert.equal(await cache.get(input, { companyId: input }), 1);
        }
        const keys = inputs.map((input) => `cache:tenant:{${input}}::${hashInput(input)}`);
        const owners = await Promise.all(keys.map((key) => cluster.nodeOf(key)));
        assert.equal(new Set(owners).size, cluster.nodes.length, "keys on every master");
        // A foreign write on each master evicts.
        for (const [i, key] of keys.entries()) {
          await writers[owners[i]].set(key, "2");
        }
        for (const input of inputs) {
          await until(async () => (await cache.get(input, { companyId: input })) === 2);
        }
        const flushes = cache.stats().nearCache!.flushes;
        await cluster.reshard(0, 1, 100);
        // The cluster client's next slot refresh sees the new layout: emptied, then re-armed.
        await until(async () => {
          await cache.get(inputs[0], { companyId: inputs[0] });
          return cache.stats().nearCache!.flushes > flushes;
        }, 20_000);
        await until(() => cache.stats().nearCache!.armed, 10_000);
        for (const input of inputs) assert.equal(await cache.get(input, { companyId: input }), 2);
        await until(async () => {
          const hits = cache.stats().nearCache!.hits;
          await cache.get(inputs[1], { companyId: inputs[1] });
          return cache.stats().nearCache!.hits > hits;
        });
      } finally {
        for (const writer of writers) writer.disconnect();
        await cache.close();
      }
      assert.deepEqual(logger.lines.filter((line) => !/Near cache: tracking/.test(line)), []);
    });
  });
}
