/**
 * Faults under a background load of concurrent facade calls, against redis-server and
 * valkey-server: the server killed and restarted, frozen (SIGSTOP), its scripts and data flushed,
 * and out of memory (noeviction and allkeys-lru). Every case measures the calls made during the
 * fault, the worst latency, the calls that did not resolve within the timeout + 100 ms (must be
 * 0), the calls that threw and the unhandled rejections (must be 0), the client's in-process
 * queue (must not grow with the fault's duration) and the time until hits resume; it prints them
 * on one `FIGURES ...` line.
 *
 * `CACHE_SOAK=1` (`deno task soak`) stretches the outages (20 s down, 30 s frozen) to show that
 * the queue bound does not depend on how long a fault lasts.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  cacheClearCompany,
  cacheGet,
  cacheGetMany,
  type CacheLogger,
  cacheSet,
  closeCache,
  setCache,
} from "../mod.ts";
import { SCRIPT_NAMES } from "../src/scripts.ts";
import { startServer, type TestServer } from "./harness.ts";
import { collectingLogger, configFor, KINDS, luaSha, sleep } from "./_helpers.ts";
import { countUnhandledRejections, type Load, startLoad } from "./_load.ts";

const SOAK = process.env.CACHE_SOAK === "1";
/** The cache timeout of these tests, in seconds: short, so faults cost little test time. */
const TIMEOUT_S = 0.5;
/** A call must resolve within the timeout + 100 ms. */
const DEADLINE_MS = TIMEOUT_S * 1000 + 100;
const CONCURRENCY = 24;
/** How long the server stays down before the restart. */
const DOWN_MS = SOAK ? 20_000 : 3000;
/** How long the server stays frozen. */
const PAUSE_MS = SOAK ? 30_000 : 5000;
/**
 * The most commands the client may hold in process at any moment: one per worker in flight plus
 * the connection's own (ready check, script loads). Without `socketTimeout` a frozen server makes
 * this grow by one per worker per timeout, about 10x this bound in 5 s.
 */
const QUEUE_BOUND = CONCURRENCY + 16;
/** Hits must be back within this long after the server is back. */
const RESUME_BOUND_MS = 2000;

/** Installs the facade on `server` with the short timeout. */
async function useFacade(server: TestServer, logger: CacheLogger): Promise<void> {
  assert.equal(
    await setCache({
      provider: server.kind,
      config: configFor(server),
      timeout: TIMEOUT_S,
      logger,
    }),
    true,
  );
}

/** Polls set + get of fresh probe entries until one round trip works; the ms it took. */
async function timeToHit(limitMs = 10_000): Promise<number> {
  const started = Date.now();
  for (let i = 0; Date.now() - started < limitMs; i++) {
    const input = { probe: i, at: started };
    if (await cacheSet(input, i) && await cacheGet(input) === i) return Date.now() - started;
    await sleep(10);
  }
  return Infinity;
}

/** `true` when every script of `lua/` is loaded on the server. */
async function scriptsLoaded(
  server: TestServer,
  names: readonly string[] = SCRIPT_NAMES,
): Promise<boolean> {
  const shas = await Promise.all(names.map((name) => luaSha(name)));
  const reply = await server.cli("SCRIPT", "EXISTS", ...shas);
  return reply.split("\n").every((line) => line.trim() === "1");
}

/** One line of figures, `key=value` pairs in a fixed order, for the notes. */
function figures(fields: Record<string, string | number>): void {
  console.log(
    `FIGURES ${Object.entries(fields).map(([key, value]) => `${key}=${value}`).join(" ")}`,
  );
}

/** Asserts the bounds every fault shares and returns the fault window's figures. */
function checkWindow(load: Load, from: number, to: number, unhandled: number) {
  const all = load.window();
  const during = load.window(from, to);
  assert.equal(all.unresolved, 0, `calls not resolved within ${DEADLINE_MS} ms`);
  assert.equal(all.rejected, 0, "calls that threw");
  assert.equal(unhandled, 0, "unhandled rejections");
  assert.ok(during.calls > 0, "the load made calls during the fault");
  return { all, during };
}

for (const kind of KINDS) {
  describe(`${kind} faults under load`, () => {
    afterEach(async () => {
      await closeCache();
    });

    it(`SIGKILL mid-load, restart ${DOWN_MS / 1000} s later on the same port`, async () => {
      await using server = await startServer(kind, { own: true });
      const logger = collectingLogger();
      await useFacade(server, logger);
      const unhandled = countUnhandledRejections();
      const load = startLoad({ concurrency: CONCURRENCY, deadlineMs: DEADLINE_MS });
      try {
        await sleep(500);
        const faultStart = Date.now();
        await server.kill();
        await sleep(DOWN_MS);
        await server.restart();
        const restarted = Date.now();
        const resumeMs = await timeToHit();
        const resumed = Date.now();
        await sleep(500);
        await load.stop();
        const { all, during } = checkWindow(load, faultStart, restarted, unhandled.count);
        const after = load.window(resumed);
        const firstHalf = load.maxQueue(faultStart, faultStart + DOWN_MS / 2);
        const secondHalf = load.maxQueue(faultStart + DOWN_MS / 2, restarted);
        figures({
          fault: "kill",
          kind,
          downMs: DOWN_MS,
          calls: during.calls,
          worstMs: during.worstMs,
          maxLoopLagMs: load.maxLag(),
          unresolved: all.unresolved,
          rejected: all.rejected,
          unhandled: unhandled.count,
          maxQueue: load.maxQueue(faultStart, restarted),
          maxQueueFirstHalf: firstHalf,
          maxQueueSecondHalf: secondHalf,
          resumeMs,
          hitsAfter: after.hits,
          failedWritesAfter: after.failedWrites,
          logLines: logger.lines.length,
          totalCalls: all.calls,
        });
        assert.ok(resumeMs <= RESUME_BOUND_MS, `hits resumed after ${resumeMs} ms`);
        assert.ok(await scriptsLoaded(server), "the scripts were loaded again");
        assert.ok(after.hits > 0, "hits after the restart");
        assert.equal(after.failedWrites, 0, "writes after the restart all succeed");
        assert.ok(load.maxQueue(faultStart, restarted) <= QUEUE_BOUND, "queue bounded");
        assert.ok(logger.lines.length <= 20, `${logger.lines.length} log lines`);
      } finally {
        unhandled.stop();
        await load.stop();
      }
    });

    it(`SIGSTOP for ${PAUSE_MS / 1000} s, then SIGCONT`, async () => {
      await using server = await startServer(kind, { own: true });
      const logger = collectingLogger();
      await useFacade(server, logger);
      const unhandled = countUnhandledRejections();
      const load = startLoad({ concurrency: CONCURRENCY, deadlineMs: DEADLINE_MS });
      try {
        await sleep(500);
        const faultStart = Date.now();
        server.pause();
        await sleep(PAUSE_MS);
        server.resume();
        const resumedServer = Date.now();
        const resumeMs = await timeToHit();
        const resumed = Date.now();
        await sleep(500);
        await load.stop();
        const { all, during } = checkWindow(load, faultStart, resumedServer, unhandled.count);
        const after = load.window(resumed);
        const firstHalf = load.maxQueue(faultStart, faultStart + PAUSE_MS / 2);
        const secondHalf = load.maxQueue(faultStart + PAUSE_MS / 2, resumedServer);
        figures({
          fault: "sigstop",
          kind,
          pauseMs: PAUSE_MS,
          calls: during.calls,
          worstMs: during.worstMs,
          maxLoopLagMs: load.maxLag(),
          unresolved: all.unresolved,
          rejected: all.rejected,
          unhandled: unhandled.count,
          maxQueue: load.maxQueue(faultStart, resumedServer),
          maxQueueFirstHalf: firstHalf,
          maxQueueSecondHalf: secondHalf,
          resumeMs,
          hitsAfter: after.hits,
          failedWritesAfter: after.failedWrites,
          logLines: logger.lines.length,
          totalCalls: all.calls,
        });
        assert.ok(resumeMs <= RESUME_BOUND_MS, `hits resumed after ${resumeMs} ms`);
        assert.ok(await scriptsLoaded(server));
        assert.ok(after.hits > 0, "hits after the server woke up");
        assert.equal(after.failedWrites, 0, "writes after the fault all succeed");
        assert.ok(load.maxQueue(faultStart, resumedServer) <= QUEUE_BOUND, "queue bounded");
        assert.ok(secondHalf <= QUEUE_BOUND, "the queue does not grow with the pause");
        assert.ok(logger.lines.length <= 20, `${logger.lines.length} log lines`);
      } finally {
        server.resume();
        unhandled.stop();
        await load.stop();
      }
    });

    it("SCRIPT FLUSH and FLUSHALL during load: no error reaches a caller", async () => {
      await using server = await startServer(kind, { own: true });
      const logger = collectingLogger();
      await useFacade(server, logger);
      await server.cli("CONFIG", "RESETSTAT");
      const unhandled = countUnhandledRejections();
      const load = startLoad({ concurrency: CONCURRENCY, deadlineMs: DEADLINE_MS });
      try {
        await sleep(300);
        const faultStart = Date.now();
        for (let i = 0; i < 10; i++) {
          await server.cli(...(i % 2 === 0 ? ["SCRIPT", "FLUSH"] : ["FLUSHALL"]));
          await sleep(150);
        }
        const faultEnd = Date.now();
        await sleep(300);
        await load.stop();
        const { all, during } = checkWindow(load, faultStart, faultEnd, unhandled.count);
        const errorstats = await server.cli("INFO", "errorstats");
        const noscript = Number(errorstats.match(/errorstat_NOSCRIPT:count=(\d+)/)?.[1] ?? 0);
        figures({
          fault: "flush",
          kind,
          calls: during.calls,
          worstMs: during.worstMs,
          maxLoopLagMs: load.maxLag(),
          unresolved: all.unresolved,
          rejected: all.rejected,
          unhandled: unhandled.count,
          failedWrites: all.failedWrites,
          noscriptRetried: noscript,
          logLines: logger.lines.length,
          totalCalls: all.calls,
        });
        assert.ok(noscript > 0, "the flushes hit calls in flight (NOSCRIPT replies)");
        assert.equal(all.failedWrites, 0, "every write succeeded");
        assert.deepEqual(logger.lines, [], "nothing was a fault");
        assert.ok(await scriptsLoaded(server, ["set_and_register", "delete_and_unregister"]));
      } finally {
        unhandled.stop();
        await load.stop();
      }
    });

    it("maxmemory with noeviction: writes resolve false with one clear log line", async () => {
      await using server = await startServer(kind, {
        own: true,
        args: ["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"],
      });
      const logger = collectingLogger();
      await useFacade(server, logger);
      const unhandled = countUnhandledRejections();
      const big = "x".repeat(50_000);
      let stored = 0;
      while (await cacheSet({ fill: stored }, big, { companyId: "fill" })) {
        stored++;
        assert.ok(stored < 1000, "maxmemory never refused a write");
      }
      const load = startLoad({ concurrency: CONCURRENCY, deadlineMs: DEADLINE_MS });
      let failedWrites = 0;
      try {
        const faultStart = Date.now();
        await sleep(1500);
        const faultEnd = Date.now();
        assert.equal(await cacheGet({ fill: 0 }, { companyId: "fill" }), big, "reads still hit");
        await load.stop();
        const { all, during } = checkWindow(load, faultStart, faultEnd, unhandled.count);
        failedWrites = during.failedWrites;
        figures({
          fault: "oom-noeviction",
          kind,
          stored,
          calls: during.calls,
          worstMs: during.worstMs,
          maxLoopLagMs: load.maxLag(),
          unresolved: all.unresolved,
          rejected: all.rejected,
          unhandled: unhandled.count,
          failedWrites,
          logLines: logger.lines.length,
        });
        assert.ok(failedWrites > 0, "writes were refused");
        assert.equal(logger.lines.length, 1, `one log line, got ${logger.lines.join("\n")}`);
        assert.match(logger.lines[0], /out of memory/);
        assert.match(logger.lines[0], /maxmemory/);
        // Clearing frees memory, and writes work again.
        assert.equal(await cacheClearCompany("fill"), stored);
        assert.equal(await cacheSet("after", 1), true);
      } finally {
        unhandled.stop();
        await load.stop();
      }
    });

    // Under allkeys-* policies Redis may evict any key, a registry too: its LRU clock has a
    // one-second resolution, so a registry written as often as its entries is no safer than
    // they are. The entries of that scope that survive are then unregistered, and a clear cannot
    // reach them (they expire by TTL). volatile-* policies never evict a registry (it has no
    // TTL) and evict the entries, which do: the README recommends volatile-lru.
    for (const policy of ["allkeys-lru", "volatile-lru"]) {
      it(`maxmemory with ${policy}: evicted keys are misses, clears remove what is registered`, async () => {
        await using server = await startServer(kind, {
          own: true,
          args: ["--maxmemory", "8mb", "--maxmemory-policy", policy],
        });
        const logger = collectingLogger();
        await useFacade(server, logger);
        const unhandled = countUnhandledRejections();
        const load = startLoad({ concurrency: CONCURRENCY, deadlineMs: DEADLINE_MS });
        const big = "y".repeat(50_000);
        const count = 400; // 20 MB of values into 8 MB
        const faultStart = Date.now();
        try {
          for (let i = 0; i < count; i++) {
            assert.equal(await cacheSet({ lru: i }, big, { companyId: "lru" }), true);
          }
          const faultEnd = Date.now();
          await load.stop();
          const { all, during } = checkWindow(load, faultStart, faultEnd, unhandled.count);
          // Lift the limit so the checks' own replies (MB of values) evict nothing more.
          await server.cli("CONFIG", "SET", "maxmemory", "0");
          const values = await cacheGetMany(
            Array.from({ length: count }, (_, i) => ({ lru: i })),
            { companyId: "lru" },
          );
          const kept = values.filter((v) => v !== null).length;
          assert.ok(values.every((v) => v === null || v === big), "a hit is the stored value");
          const live = await tenantKeys(server, "lru");
          const registry = new Set(
            (await server.cli("SMEMBERS", "cache:registry:tenant:lru")).split("\n"),
          );
          const unregistered = live.filter((key) => !registry.has(key)).length;
          const cleared = await cacheClearCompany("lru");
          const leaked = (await tenantKeys(server, "lru")).length;
          figures({
            fault: `oom-${policy}`,
            kind,
            written: count,
            evicted: count - kept,
            kept,
            calls: during.calls,
            worstMs: during.worstMs,
            maxLoopLagMs: load.maxLag(),
            unresolved: all.unresolved,
            rejected: all.rejected,
            unhandled: unhandled.count,
            unregistered,
            cleared,
            leaked,
            logLines: logger.lines.length,
          });
          assert.ok(kept > 0 && kept < count, `${kept} of ${count} kept: some were evicted`);
          assert.equal(live.length, kept, "every key that reads as a hit exists");
          assert.equal(cleared, kept - unregistered, "the clear deleted every registered key");
          assert.equal(leaked, unregistered, "only keys of an evicted registry are left");
          if (policy.startsWith("volatile")) {
            assert.equal(unregistered, 0, "no registry was evicted");
            assert.equal(leaked, 0, "nothing of the tenant is left");
          }
          assert.deepEqual(logger.lines, [], "eviction is not a fault");
        } finally {
          unhandled.stop();
          await load.stop();
        }
      });
    }
  });
}

/** Every entry key of one tenant on the server (SCAN by the CLI; the tenant id is plain). */
async function tenantKeys(server: TestServer, tenant: string): Promise<string[]> {
  const out = await server.cli("--scan", "--pattern", `cache:tenant:${tenant}:*`);
  return out === "" ? [] : out.split("\n");
}
