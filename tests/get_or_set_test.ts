/**
 * getOrSet against real servers (and MemoryCache): single-flight in one process, one compute()
 * for 20 callers in 4 processes, writes refused across a clear, stale-while-revalidate, compute()
 * errors, lock time-outs, a killed server, and what goes over the wire.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  cacheGetOrSet,
  CacheInputError,
  CacheSerializationError,
  type CacheStats,
  closeCache,
  MemoryCache,
  setCache,
} from "../mod.ts";
import { entryKey, hashInput } from "../src/keys.ts";
import { lockKey } from "../src/layout.ts";
import { startServer, type TestServer } from "./harness.ts";
import {
  type AnyCache,
  cacheFor,
  collectingLogger,
  commandCalls,
  KINDS,
  runWorkerFile,
  sleep,
} from "./_helpers.ts";

/** A promise and the function that resolves it. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => open = resolve);
  return { promise, open };
}

/** Polls `check` every 20 ms until it holds or `ms` passed; returns whether it held. */
async function eventually(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(20);
  }
  return await check();
}

interface WorkerSpec {
  kind: "redis" | "valkey";
  url: string;
  callers: number;
  input: unknown;
  companyId: string;
  readyKey: string;
  goKey: string;
  counterKey: string;
  computeMs: number;
}

interface WorkerOutput {
  pid: number;
  results: { computedBy: number; n: number }[];
  stats: CacheStats;
}

/**
 * Spawns tests/get_or_set_worker in a separate process: `deno run` on the .ts under Deno, `node`
 * on the compiled .js under Node.
 */
function runWorker(spec: WorkerSpec): Promise<WorkerOutput> {
  return runWorkerFile<WorkerOutput>("get_or_set_worker", "GET_OR_SET_WORKER", spec);
}

describe("MemoryCache getOrSet", () => {
  it("runs compute() once for 20 concurrent callers and serves copies", async () => {
    const cache = new MemoryCache();
    let calls = 0;
    const compute = async () => {
      calls++;
      await sleep(30);
      return { rows: [1, 2] };
    };
    const values = await Promise.all(
      Array.from({ length: 20 }, () => cache.getOrSet("q", compute, { companyId: "acme" })),
    );
    assert.equal(calls, 1);
    for (const value of values) assert.deepEqual(value, { rows: [1, 2] });
    values[0].rows.push(3);
    assert.deepEqual(values[1], { rows: [1, 2] }, "each caller gets its own copy");
    assert.deepEqual(await cache.get("q", { companyId: "acme" }), { rows: [1, 2] });
    assert.deepEqual(await cache.getOrSet("q", compute, { companyId: "acme" }), { rows: [1, 2] });
    assert.equal(calls, 1);
    const stats = cache.stats();
    assert.equal(stats.misses, 20);
    assert.equal(stats.sets, 1);
  });

  for (
    const [label, companyId, clear] of [
      ["clearCompany", "acme", (c: MemoryCache) => c.clearCompany("acme")],
      ["clearGlobal", undefined, (c: MemoryCache) => c.clearGlobal()],
      ["clearAll", "newcomer", (c: MemoryCache) => c.clearAll()],
    ] as const
  ) {
    it(`does not store a value computed across ${label}`, async () => {
      const cache = new MemoryCache();
      const started = gate();
      const release = gate();
      const pending = cache.getOrSet("report", async () => {
        started.open();
        await release.promise;
        return "before";
      }, { companyId });
      await started.promise;
      await clear(cache);
      release.open();
      assert.equal(await pending, "before");
      assert.equal(await cache.get("report", { companyId }), null);
      assert.equal(await cache.getOrSet("report", () => "after", { companyId }), "after");
      assert.equal(await cache.get("report", { companyId }), "after");
      assert.equal(cache.stats().discardedSets, 1);
    });
  }

  it("serves a stale value while one refresh runs", async () => {
    const cache = new MemoryCache();
    const options = { ttl: 0.05, staleWhileRevalidate: 30 };
    await cache.getOrSet("s", () => "v1", options);
    await sleep(80);
    const release = gate();
    let calls = 0;
    const compute = async () => {
      calls++;
      await release.promise;
      return "v2";
    };
    const stale = await Promise.all(
      Array.from({ length: 5 }, () => cache.getOrSet("s", compute, options)),
    );
    assert.deepEqual(stale, ["v1", "v1", "v1", "v1", "v1"]);
    assert.equal(calls, 1);
    release.open();
    assert.ok(await eventually(async () => (await cache.get("s")) === "v2"));
    assert.equal(await cache.getOrSet("s", compute, options), "v2");
    assert.equal(calls, 1);
    assert.equal(cache.stats().staleHits, 5);
  });

  it("passes compute() errors on and stores nothing", async () => {
    const cache = new MemoryCache();
    const boom = new Error("boom");
    await assert.rejects(() => cache.getOrSet("k", () => Promise.reject(boom)), (e) => e === boom);
    assert.equal(await cache.exists("k"), false);
    assert.equal(await cache.getOrSet("k", () => 1), 1);
  });
});

describe("cacheGetOrSet facade", () => {
  afterEach(async () => {
    await closeCache();
  });

  it("with caching disabled, returns compute()'s value every time", async () => {
    assert.equal(await setCache({ env: { ENABLE_CACHE: "false" } }), false);
    let calls = 0;
    assert.equal(await cacheGetOrSet("k", () => ++calls), 1);
    assert.equal(await cacheGetOrSet("k", () => ++calls), 2);
    await assert.rejects(() => cacheGetOrSet("k", 5 as unknown as () => number), CacheInputError);
  });

  it("computes once and then hits on the installed cache", async () => {
    await setCache({ provider: "memory" });
    let calls = 0;
    const compute = () => ({ n: ++calls });
    assert.deepEqual(await cacheGetOrSet({ q: 1 }, compute, { companyId: 3 }), { n: 1 });
    assert.deepEqual(await cacheGetOrSet({ q: 1 }, compute, { companyId: 3 }), { n: 1 });
    assert.deepEqual(await cacheGetOrSet({ q: 1 }, compute), { n: 2 }, "global is another scope");
  });
});

for (const kind of KINDS) {
  describe(`${kind} getOrSet`, () => {
    let server: TestServer;
    let cache: AnyCache;
    const tenantKey = (input: unknown, companyId?: string) =>
      entryKey("cache:", "", hashInput(input), companyId);

    before(async () => {
      server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server.stop();
    });
    beforeEach(async () => {
      await server.cli("FLUSHALL");
      cache = cacheFor(server);
      assert.equal(await cache.connect(), true);
    });
    afterEach(async () => {
      await cache.close();
    });

    it("runs compute() once for 20 concurrent callers, stores and registers the value", async () => {
      let calls = 0;
      const compute = async () => {
        calls++;
        await sleep(100);
        return { total: 42 };
      };
      const values = await Promise.all(
        Array.from(
          { length: 20 },
          () => cache.getOrSet({ r: 1 }, compute, { companyId: "acme", ttl: 60 }),
        ),
      );
      assert.equal(calls, 1);
      for (const value of values) assert.deepEqual(value, { total: 42 });
      const key = tenantKey({ r: 1 }, "acme");
      assert.equal(await server.cli("GET", key), '{"total":42}', "plain JSON, no envelope");
      assert.equal(await server.cli("SISMEMBER", "cache:registry:tenant:acme", key), "1");
      const pttl = Number(await server.cli("PTTL", key));
      assert.ok(pttl > 55_000 && pttl <= 60_000, `PTTL ${pttl}`);
      assert.equal(await server.cli("EXISTS", lockKey("cache:", key)), "0", "lock released");
      assert.deepEqual(await cache.getOrSet({ r: 1 }, compute, { companyId: "acme" }), {
        total: 42,
      });
      assert.equal(calls, 1);
    });

    it("a hit is one GET; a miss adds two script calls", async () => {
      await cache.getOrSet("hot", () => 1);
      await server.cli("CONFIG", "RESETSTAT");
      assert.equal(await cache.getOrSet("hot", () => 2), 1);
      assert.equal(await commandCalls(server, "get"), 1);
      assert.equal(await commandCalls(server, "evalsha"), 0);
      await server.cli("CONFIG", "RESETSTAT");
      assert.equal(await cache.getOrSet("cold", () => 3), 3);
      // (commandstats also counts the commands the scripts run, so only EVALSHA is checked.)
      assert.equal(await commandCalls(server, "evalsha"), 2);
      assert.equal(await commandCalls(server, "eval"), 0);
    });

    it("4 processes × 5 concurrent callers on one key run compute() once", async () => {
      const spec: WorkerSpec = {
        kind,
        url: server.url,
        callers: 5,
        input: { stampede: true },
        companyId: "acme",
        readyKey: "test:ready",
        goKey: "test:go",
        counterKey: "test:computes",
        computeMs: 200,
      };
      const workers = Array.from({ length: 4 }, () => runWorker(spec));
      const allReady = await eventually(
        async () => (await server.cli("GET", "test:ready")) === "4",
        60_000,
      );
      if (!allReady) await Promise.race(workers); // surfaces a worker's crash
      assert.ok(allReady, "all 4 workers connected");
      await server.cli("SET", "test:go", "1");
      const outputs = await Promise.all(workers);
      assert.equal(await server.cli("GET", "test:computes"), "1", "compute() ran once");
      const results = outputs.flatMap((output) => output.results);
      assert.equal(results.length, 20);
      for (const result of results) assert.deepEqual(result, results[0]);
      assert.equal(results[0].n, 1);
      const total = (field: "hits" | "misses" | "lockWaits") =>
        outputs.reduce((sum, output) => sum + output.stats[field], 0);
      assert.equal(total("misses"), 5, "the computing process's 5 callers shared compute()");
      assert.equal(total("hits"), 15, "the other 15 got the stored value");
      console.log(
        `[stampede ${kind}] compute() calls: 1 of 20 callers in 4 processes; lock waits: ${
          total("lockWaits")
        }`,
      );
    });

    for (
      const [label, companyId, clear] of [
        ["clearCompany", "acme", (c: AnyCache) => c.clearCompany("acme")],
        ["clearGlobal", undefined, (c: AnyCache) => c.clearGlobal()],
        ["clearAll (tenant without a registry)", "newcomer", (c: AnyCache) => c.clearAll()],
      ] as const
    ) {
      it(`returns but does not store a value whose compute() was paused across ${label}`, async () => {
        // The scope has entries to clear, except the tenant that clearAll must reach by its epoch.
        if (companyId !== "newcomer") await cache.set("other", 1, { companyId });
        await cache.set("elsewhere", 1, { companyId: "bystander" });
        const started = gate();
        const release = gate();
        const pending = cache.getOrSet("report", async () => {
          started.open();
          await release.promise;
          return "computed before the clear";
        }, { companyId });
        await started.promise;
        await clear(cache);
        release.open();
        assert.equal(await pending, "computed before the clear", "the caller still gets it");
        const key = tenantKey("report", companyId);
        assert.equal(await server.cli("EXISTS", key), "0", "not stored");
        assert.equal(await server.cli("EXISTS", lockKey("cache:", key)), "0", "lock released");
        assert.equal(cache.stats().discardedSets, 1);
        assert.equal(
          await cache.getOrSet("report", () => "computed after the clear", { companyId }),
          "computed after the clear",
        );
        assert.equal(await cache.get("report", { companyId }), "computed after the clear");
      });
    }

    it("a clear of another scope does not discard a paused compute()", async () => {
      const started = gate();
      const release = gate();
      const pending = cache.getOrSet("report", async () => {
        started.open();
        await release.promise;
        return "acme's";
      }, { companyId: "acme" });
      await started.promise;
      await cache.set("x", 1, { companyId: "globex" });
      assert.equal(await cache.clearCompany("globex"), 1);
      await cache.clearGlobal();
      release.open();
      assert.equal(await pending, "acme's");
      assert.equal(await cache.get("report", { companyId: "acme" }), "acme's");
    });

    it("clears made without getOrSet leave no generation counters behind", async () => {
      await cache.set("k", 1, { companyId: "acme" });
      await cache.clearCompany("acme");
      await cache.clearAll();
      assert.equal(await server.cli("DBSIZE"), "0");
      await cache.getOrSet("k", () => 1, { companyId: "acme" });
      assert.ok(Number(await server.cli("EXISTS", "cache:generation:tenant:acme")) === 1);
      const ttl = Number(await server.cli("PTTL", "cache:generation:all"));
      assert.ok(ttl > 0, "counters expire when no getOrSet reads them any more");
    });

    it("staleWhileRevalidate serves the stale value at once while one refresh runs", async () => {
      const options = { ttl: 0.2, staleWhileRevalidate: 30, companyId: "acme" };
      assert.equal(await cache.getOrSet("swr", () => "v1", options), "v1");
      const key = tenantKey("swr", "acme");
      const pttl = Number(await server.cli("PTTL", key));
      assert.ok(pttl > 29_000 && pttl <= 30_200, `stored for ttl + staleWhileRevalidate: ${pttl}`);
      assert.equal(await server.cli("GET", key), '"v1"', "plain JSON, no envelope");
      await sleep(300);
      const release = gate();
      let calls = 0;
      const compute = async () => {
        calls++;
        await release.promise;
        return "v2";
      };
      const stale = await Promise.all(
        Array.from({ length: 10 }, () => cache.getOrSet("swr", compute, options)),
      );
      // compute() is still blocked: the callers got the stale value without waiting for it.
      assert.deepEqual(stale, Array(10).fill("v1"));
      assert.equal(calls, 1, "one refresh");
      assert.equal(await server.cli("EXISTS", lockKey("cache:", key)), "1", "refresh holds lock");
      assert.equal(await cache.getOrSet("swr", compute, options), "v1");
      assert.equal(calls, 1);
      release.open();
      assert.ok(await eventually(async () => (await cache.get("swr", options)) === "v2"));
      assert.equal(await cache.getOrSet("swr", compute, options), "v2");
      assert.equal(calls, 1);
      assert.ok(
        await eventually(async () => (await server.cli("EXISTS", lockKey("cache:", key))) === "0"),
      );
      const stats = cache.stats();
      assert.equal(stats.staleHits, 11);
      assert.equal(stats.sets, 2);
    });

    it("a failed refresh is logged and the stale value keeps being served", async () => {
      const logger = collectingLogger();
      const logged = cacheFor(server, { logger });
      await logged.connect();
      try {
        const options = { ttl: 0.1, staleWhileRevalidate: 30 };
        await logged.getOrSet("swr", () => "v1", options);
        await sleep(200);
        let calls = 0;
        const failing = async () => {
          calls++;
          throw new Error("backend down");
        };
        assert.equal(await logged.getOrSet("swr", failing, options), "v1");
        assert.ok(await eventually(() => logger.lines.some((l) => /refresh/i.test(l))));
        assert.match(logger.lines.find((l) => /refresh/i.test(l))!, /backend down/);
        const lock = lockKey("cache:", tenantKey("swr"));
        assert.ok(await eventually(async () => (await server.cli("EXISTS", lock)) === "0"));
        assert.equal(await logged.getOrSet("swr", failing, options), "v1");
        assert.ok(await eventually(() => calls === 2), "the next stale read retries the refresh");
        assert.equal(await server.cli("GET", tenantKey("swr")), '"v1"');
        assert.ok(await eventually(() => logged.stats().errors >= 1));
      } finally {
        await logged.close();
      }
    });

    it("compute() throwing: the error reaches every caller, nothing is stored, lock released", async () => {
      const boom = new Error("boom");
      let calls = 0;
      const failing = async () => {
        calls++;
        await sleep(50);
        throw boom;
      };
      const outcomes = await Promise.allSettled(
        Array.from({ length: 5 }, () => cache.getOrSet("k", failing, { companyId: "acme" })),
      );
      assert.equal(calls, 1);
      for (const outcome of outcomes) {
        assert.equal(outcome.status, "rejected");
        assert.equal((outcome as PromiseRejectedResult).reason, boom);
      }
      const key = tenantKey("k", "acme");
      assert.equal(await server.cli("EXISTS", key), "0");
      assert.equal(await server.cli("EXISTS", lockKey("cache:", key)), "0");
      assert.equal(await cache.getOrSet("k", () => "ok", { companyId: "acme" }), "ok");
    });

    it("a value JSON cannot carry is a CacheSerializationError and releases the lock", async () => {
      await assert.rejects(() => cache.getOrSet("k", () => 1n), CacheSerializationError);
      assert.equal(await server.cli("EXISTS", lockKey("cache:", tenantKey("k"))), "0");
      assert.equal(await server.cli("EXISTS", tenantKey("k")), "0");
    });

    it("rejects bad options with a CacheInputError and writes nothing", async () => {
      const cases: [string, () => Promise<unknown>][] = [
        ["compute", () => cache.getOrSet("k", "x" as unknown as () => string)],
        ["lockTimeout 0", () => cache.getOrSet("k", () => 1, { lockTimeout: 0 })],
        ["lockTimeout NaN", () => cache.getOrSet("k", () => 1, { lockTimeout: NaN })],
        ["swr negative", () => cache.getOrSet("k", () => 1, { staleWhileRevalidate: -1 })],
        ["swr Infinity", () => cache.getOrSet("k", () => 1, { staleWhileRevalidate: Infinity })],
        ["ttl 0", () => cache.getOrSet("k", () => 1, { ttl: 0 })],
        ["companyId", () => cache.getOrSet("k", () => 1, { companyId: "" })],
        ["input", () => cache.getOrSet(undefined, () => 1)],
      ];
      for (const [label, call] of cases) await assert.rejects(call, CacheInputError, label);
      assert.equal(await server.cli("DBSIZE"), "0");
    });

    it("a lock that is never released: the caller computes after lockTimeout", async () => {
      const key = tenantKey("locked", "acme");
      const lock = lockKey("cache:", key);
      await server.cli("SET", lock, "someone-else"); // no expiry: its holder died badly
      const started = Date.now();
      const value = await cache.getOrSet("locked", () => "mine", {
        companyId: "acme",
        lockTimeout: 0.3,
      });
      assert.equal(value, "mine");
      assert.ok(Date.now() - started >= 250, "waited for the lock first");
      assert.equal(await server.cli("GET", key), '"mine"');
      assert.equal(await server.cli("GET", lock), "someone-else", "a foreign lock is left alone");
      assert.equal(cache.stats().lockWaits, 1);
    });

    it("a waiter takes over when the lock expires, and takes a value stored meanwhile", async () => {
      const key = tenantKey("k");
      const lock = lockKey("cache:", key);
      await server.cli("SET", lock, "other", "PX", "300");
      const started = Date.now();
      assert.equal(await cache.getOrSet("k", () => "mine"), "mine");
      assert.ok(Date.now() - started < 5_000, "did not wait for the whole 10 s lockTimeout");
      assert.equal(await server.cli("EXISTS", lock), "0");

      const other = tenantKey("k2");
      await server.cli("SET", lockKey("cache:", other), "other");
      setTimeout(() => server.cli("SET", other, '"theirs"').catch(() => {}), 150);
      let calls = 0;
      assert.equal(await cache.getOrSet("k2", () => ++calls), "theirs");
      assert.equal(calls, 0, "the value the lock holder stored was used");
    });

    it("server killed: compute()'s value is still returned, then caching resumes", async () => {
      const logger = collectingLogger();
      const local = cacheFor(server, { logger, timeout: 1 });
      await local.connect();
      try {
        await server.kill();
        const started = Date.now();
        assert.equal(await local.getOrSet("k", () => "computed"), "computed");
        assert.equal(
          await local.getOrSet("k", () => "again", { staleWhileRevalidate: 5 }),
          "again",
        );
        assert.ok(Date.now() - started < 5_000);
        assert.ok(logger.lines.length >= 1, "the fault was logged");
        assert.ok(local.stats().errors >= 2);
        await server.restart();
        assert.ok(await eventually(async () => await local.set("probe", 1)));
        assert.equal(await local.getOrSet("k", () => "stored"), "stored");
        assert.equal(await server.cli("GET", tenantKey("k")), '"stored"');
      } finally {
        await local.close();
      }
    });
  });
}

/** Fails instead of hanging: `promise`, or a rejection naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  return Promise.race([promise, hang]).finally(() => clearTimeout(timer));
}

for (const kind of ["memory", ...KINDS] as const) {
  describe(`${kind} getOrSet: re-entrant calls and joiners that wait too long`, () => {
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
        assert.equal(await cache.connect(), true);
      } else cache = new MemoryCache();
    });
    afterEach(async () => {
      await cache.close();
    });

    for (const staleWhileRevalidate of [0, 30]) {
      it(`a getOrSet of the same key inside its own compute() returns (swr ${staleWhileRevalidate})`, async () => {
        const options = { companyId: "acme", staleWhileRevalidate };
        const value = await within(
          cache.getOrSet("nested", async () => {
            const inner = await cache.getOrSet("nested", () => 1, options);
            return inner + 1;
          }, options),
          5_000,
          "the nested getOrSet",
        );
        assert.equal(value, 2);
        assert.equal(await cache.get("nested", { companyId: "acme" }), 2, "the outer value stored");
        // Nested twice, through another key: still no wait on itself.
        const deep = await within(
          cache.getOrSet(
            "a",
            () => cache.getOrSet("b", () => cache.getOrSet("a", () => "inner-a", options), options),
            options,
          ),
          5_000,
          "a -> b -> a",
        );
        assert.equal(deep, "inner-a");
      });
    }

    it("a joiner gives up after lockTimeout on a compute() that never settles, and computes", async () => {
      const options = { companyId: "acme", lockTimeout: 0.3 };
      const stuck = cache.getOrSet("slow", () => new Promise<string>(() => {}), options);
      stuck.catch(() => {});
      await sleep(20);
      const value = await within(
        cache.getOrSet("slow", () => "joiner's own", options),
        5_000,
        "the joiner",
      );
      assert.equal(value, "joiner's own");
      assert.equal(await cache.get("slow", { companyId: "acme" }), "joiner's own", "and stores it");
      // Later callers hit what the joiner stored instead of waiting on the stuck flow again.
      assert.equal(
        await within(cache.getOrSet("slow", () => "x", options), 200, "a hit"),
        "joiner's own",
      );
      assert.ok(cache.stats().lockWaits >= 1, "the wait is counted as a lock wait");
    });
  });
}
