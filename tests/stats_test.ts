/**
 * Stats and events: the latency histogram's percentiles, counters of every provider, the
 * `onEvent` hook of setCache and providers, `subscribe`, and listeners that throw.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type CacheEvent,
  cacheGet,
  cacheGetOrSet,
  cacheSet,
  cacheStats,
  closeCache,
  MemoryCache,
  setCache,
} from "../mod.ts";
import { Histogram, Metrics } from "../src/stats.ts";
import { entryKey, hashInput } from "../src/keys.ts";
import { lockKey } from "../src/layout.ts";
import { freePort, startServer, type TestServer } from "./harness.ts";
import { type AnyCache, cacheFor, collectingLogger, KINDS, sleep } from "./_helpers.ts";

/** The events a listener saw, without their timings. */
function shapes(events: CacheEvent[]): string[] {
  return events.map((e) => [e.type, e.operation, e.companyId ?? "-", e.count ?? "-"].join(" "));
}

describe("latency histogram", () => {
  it("reports percentiles within one bucket (about 9 %) of the exact ones", () => {
    const histogram = new Histogram("op");
    // 1..1000 ms, shuffled so order does not matter.
    const samples = Array.from({ length: 1000 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    for (const ms of samples) histogram.record(ms);
    const stats = histogram.snapshot();
    assert.equal(stats.calls, 1000);
    for (const [got, exact] of [[stats.p50, 500], [stats.p95, 950], [stats.p99, 990]]) {
      assert.ok(Math.abs(got - exact) / exact < 0.09, `${got} vs ${exact}`);
    }
    assert.equal(stats.max, 1000);
  });

  it("is exact for a single sample, zero with none, and holds sub-microsecond and huge ones", () => {
    const histogram = new Histogram("op");
    assert.deepEqual(histogram.snapshot(), { calls: 0, p50: 0, p95: 0, p99: 0, max: 0 });
    histogram.record(3.25);
    assert.equal(histogram.snapshot().p50, 3.25);
    histogram.record(0.0001);
    histogram.record(10_000_000);
    const stats = histogram.snapshot();
    assert.equal(stats.calls, 3);
    assert.equal(stats.max, 10_000_000);
    assert.equal(stats.p99, 10_000_000);
  });

  it("percentiles move with the load: a slow tail raises p99, not p50", () => {
    const histogram = new Histogram("op");
    for (let i = 0; i < 970; i++) histogram.record(1);
    const before = histogram.snapshot();
    for (let i = 0; i < 30; i++) histogram.record(200);
    const afterTail = histogram.snapshot();
    assert.equal(afterTail.p50, before.p50);
    assert.ok(before.p99 < 1.1);
    assert.ok(afterTail.p99 > 180, `p99 ${afterTail.p99}`);
  });
});

describe("event listeners", () => {
  it("a throwing or rejecting listener never breaks a call; unsubscribe stops delivery", async () => {
    const logger = collectingLogger();
    const seen: string[] = [];
    const cache = new MemoryCache({
      logger,
      onEvent: () => {
        throw new Error("listener bug");
      },
    });
    cache.subscribe(() => Promise.reject(new Error("async listener bug")));
    const unsubscribe = cache.subscribe((event) => seen.push(event.type));
    assert.equal(await cache.set("k", 1), true);
    assert.equal(await cache.get("k"), 1);
    assert.equal(await cache.getOrSet("k2", () => 2), 2);
    await sleep(10); // the async listener's rejection settles
    assert.deepEqual(seen, ["set", "hit", "set", "miss"]);
    assert.match(logger.lines.join("\n"), /listener/);
    unsubscribe();
    await cache.get("k");
    assert.equal(seen.length, 4);
    assert.throws(() => cache.subscribe("nope" as unknown as () => void), TypeError);
  });

  it("Metrics builds no event while nobody listens, and counts all the same", () => {
    const metrics = new Metrics();
    assert.equal(metrics.listening, false);
    const op = metrics.operation("get");
    metrics.lookup(op, true, performance.now());
    metrics.lookup(op, false, performance.now());
    const stats = metrics.snapshot();
    assert.equal(stats.hits, 1);
    assert.equal(stats.misses, 1);
    assert.equal(stats.operations.get.calls, 2);
  });
});

describe("MemoryCache stats and events", () => {
  it("counts hits, misses, sets, clears and reports each event with its tenant and key", async () => {
    const events: CacheEvent[] = [];
    const cache = new MemoryCache({ onEvent: (event) => events.push(event) });
    await cache.get("a", { companyId: "acme" });
    await cache.set("a", 1, { companyId: "acme" });
    await cache.get("a", { companyId: "acme" });
    await cache.getMany(["a", "b"], { companyId: "acme" });
    await cache.setMany([["x", 1], ["y", 2]]);
    assert.equal(await cache.clearCompany("acme"), 1);
    assert.equal(await cache.clearAll(), 2);
    assert.deepEqual(shapes(events), [
      "miss get acme -",
      "set set acme -",
      "hit get acme -",
      "hit getMany acme -",
      "miss getMany acme -",
      "set setMany - 2",
      "clear clearCompany acme 1",
      "clear clearAll - 2",
    ]);
    assert.equal(events[0].key, entryKey("cache:", "", hashInput("a"), "acme"));
    assert.ok(events.every((e) => typeof e.ms === "number" && e.ms >= 0));
    assert.equal("key" in events[5], false, "no key on a batch event");
    const stats = cache.stats();
    assert.equal(stats.hits, 2);
    assert.equal(stats.misses, 2);
    assert.equal(stats.sets, 3);
    assert.equal(stats.clears, 2);
    assert.equal(stats.errors, 0);
    assert.equal(stats.operations.get.calls, 2);
    assert.equal(stats.operations.getMany.calls, 1);
    assert.equal(stats.operations.clearAll.calls, 1);
  });
});

describe("facade stats and onEvent", () => {
  afterEach(async () => {
    await closeCache();
  });

  it("setCache({ onEvent }) receives the installed cache's events; stats restart with setCache", async () => {
    const events: CacheEvent[] = [];
    await setCache({ provider: "memory", onEvent: (event) => events.push(event) });
    await cacheGet("k");
    await cacheSet("k", 1);
    await cacheGetOrSet("k", () => 2);
    await cacheGetOrSet("k2", async () => {
      await sleep(40);
      return 3;
    });
    assert.deepEqual(shapes(events), [
      "miss get - -",
      "set set - -",
      "hit getOrSet - -",
      "set getOrSet - -",
      "miss getOrSet - -",
    ]);
    const stats = cacheStats();
    assert.equal(stats.hits, 1);
    assert.equal(stats.misses, 2);
    assert.equal(stats.sets, 2);
    assert.equal(stats.operations.getOrSet.calls, 2);
    assert.ok(stats.operations.getOrSet.max >= 35, "the slow compute() shows in the max");
    assert.ok(stats.operations.get.p50 < stats.operations.getOrSet.max);
    await closeCache();
    assert.equal(cacheStats().hits, 0, "no cache: all zero");
    await setCache({ provider: "memory" });
    assert.equal(cacheStats().misses, 0, "a new setCache starts from zero");
  });
});

for (const kind of KINDS) {
  describe(`${kind} stats and events`, () => {
    let server: TestServer;
    let cache: AnyCache;
    let events: CacheEvent[];

    before(async () => {
      server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server.stop();
    });
    beforeEach(async () => {
      await server.cli("FLUSHALL");
      events = [];
      cache = cacheFor(server, { onEvent: (event) => events.push(event) });
      assert.equal(await cache.connect(), true);
    });
    afterEach(async () => {
      await cache.close();
    });

    it("counts every operation and sends hit, miss, set and clear events", async () => {
      await cache.get("a", { companyId: "acme" });
      await cache.set("a", 1, { companyId: "acme" });
      await cache.get("a", { companyId: "acme" });
      await cache.getMany(["a", "b"], { companyId: "acme" });
      await cache.setMany([["x", 1], ["y", 2]]);
      await cache.exists("x");
      await cache.delete("x");
      await cache.getOrSet("g", () => "v", { companyId: "acme" });
      await cache.getOrSet("g", () => "v", { companyId: "acme" });
      assert.equal(await cache.clearCompany("acme"), 2);
      assert.equal(await cache.clearGlobal(), 1);
      assert.equal(await cache.clearAll(), 0);
      await cache.pruneRegistries();
      assert.deepEqual(shapes(events), [
        "miss get acme -",
        "set set acme -",
        "hit get acme -",
        "hit getMany acme -",
        "miss getMany acme -",
        "set setMany - 2",
        "set getOrSet acme -",
        "miss getOrSet acme -",
        "hit getOrSet acme -",
        "clear clearCompany acme 2",
        "clear clearGlobal - 1",
        "clear clearAll - 0",
      ]);
      const stats = cache.stats();
      assert.equal(stats.hits, 3);
      assert.equal(stats.misses, 3);
      assert.equal(stats.sets, 4);
      assert.equal(stats.clears, 3);
      assert.equal(stats.errors, 0);
      for (
        const op of [
          "get",
          "set",
          "getMany",
          "setMany",
          "exists",
          "delete",
          "getOrSet",
          "clearCompany",
          "clearGlobal",
          "clearAll",
          "prune",
        ]
      ) {
        const latency = stats.operations[op];
        assert.ok(latency, op);
        assert.ok(latency.p50 > 0 && latency.p50 <= latency.p95, op);
        assert.ok(latency.p95 <= latency.p99 && latency.p99 <= latency.max, op);
      }
      assert.equal(stats.operations.get.calls, 2);
    });

    it("a server fault is an error event and counted; a throwing listener is harmless", async () => {
      const faults: CacheEvent[] = [];
      const dead = cacheFor(server, {
        configOptions: { port: await freePort() },
        timeout: 1,
        onEvent: (event) => {
          faults.push(event);
          throw new Error("listener bug");
        },
      });
      assert.equal(await dead.connect(), false);
      try {
        assert.equal(await dead.get("k", { companyId: "acme" }), null);
        assert.equal(await dead.set("k", 1), false);
        assert.equal(await dead.clearCompany("acme"), 0);
        assert.equal(await dead.getOrSet("k", () => "computed"), "computed");
        assert.deepEqual(shapes(faults), [
          "error get acme -",
          "error set - -",
          // Three connection faults in a row (refused connects and calls) opened the breaker:
          // later calls are refused at once, and still counted as errors.
          "circuit-open circuit - -",
          "error clearCompany acme -",
          "error getOrSet - -",
          "miss getOrSet - -",
        ]);
        const stats = dead.stats();
        assert.equal(stats.errors, 4);
        assert.equal(stats.hits, 0);
        assert.equal(stats.operations.get.calls, 1);
      } finally {
        await dead.close();
      }
    });

    it("counts lock waits and values discarded across a clear", async () => {
      const lock = lockKey("cache:", entryKey("cache:", "", hashInput("k")));
      await server.cli("SET", lock, "someone-else", "PX", "200");
      assert.equal(await cache.getOrSet("k", () => 1), 1);
      let release!: () => void;
      let started!: () => void;
      const gate = new Promise<void>((resolve) => release = resolve);
      const running = new Promise<void>((resolve) => started = resolve);
      const pending = cache.getOrSet("d", async () => {
        started();
        await gate;
        return 2;
      });
      await running;
      await cache.clearGlobal();
      release();
      assert.equal(await pending, 2);
      const stats = cache.stats();
      assert.equal(stats.lockWaits, 1);
      assert.equal(stats.discardedSets, 1);
      assert.equal(stats.sets, 1);
    });
  });
}
