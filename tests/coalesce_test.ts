/**
 * Tick coalescing on a single server (src/coalesce.ts): concurrent `get` calls share one MGET,
 * concurrent `set` calls to one scope and TTL share one set_and_register call, and whatever was
 * called in one tick still runs on the server in the order it was called. Then the coalescer with
 * lanes (a cluster's: per slot and master) against a stand-in sender.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Coalescer } from "../src/coalesce.ts";
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

/**
 * The coalescer with lanes (a cluster's, src/coalesce.ts), against a stand-in sender: slots 1 and
 * 2 are served by master "a", slot 3 by "b"; a key's slot is its first character.
 */
describe("coalescing per slot and master (lanes)", () => {
  interface Sent {
    lane: number;
    what: string;
    settle(value?: unknown): void;
  }

  function setup() {
    const sent: Sent[] = [];
    let together = 0;
    let inTogether = false;
    const ticks: (() => void)[] = [];
    const deferred = <T>(what: string, value: (reply: unknown) => T): Promise<T> =>
      new Promise((resolve) => {
        assert.ok(inTogether, `${what} is sent inside together()`);
        sent.push({ lane: together, what, settle: (reply) => resolve(value(reply)) });
      });
    const coalescer = new Coalescer({
      get: (key) => deferred(`GET ${key}`, () => `v:${key}`),
      mget: (keys) => deferred(`MGET ${keys.join(" ")}`, () => keys.map((key) => `v:${key}`)),
      endOfTick: (flush) => ticks.push(flush),
      lanes: {
        groupOf: (key) => Number(key[0]),
        laneOf: (group) => group === 3 ? "b" : "a",
        together: (send) => {
          together++;
          inTogether = true;
          try {
            send();
          } finally {
            inTogether = false;
          }
        },
      },
      write: (registry, keys) => deferred(`WRITE ${registry} ${keys.join(" ")}`, () => true),
    });
    const endTick = () => {
      for (const flush of ticks.splice(0)) flush();
    };
    return { coalescer, sent, endTick, whats: () => sent.map((s) => s.what) };
  }

  it("a tick's calls go out after its microtasks, one command per slot, together", async () => {
    const { coalescer, sent, whats } = setup();
    const reads = ["1a", "1b", "2a", "3a", "1c"].map((key) => coalescer.read(key));
    assert.deepEqual(whats(), [], "nothing goes out before the tick's microtasks have run");
    await Promise.resolve();
    assert.deepEqual(whats().sort(), ["GET 2a", "GET 3a", "MGET 1a 1b 1c"]);
    assert.equal(new Set(sent.map((s) => s.lane)).size, 1, "in one together()");
    for (const s of sent) s.settle();
    assert.deepEqual(await Promise.all(reads), ["v:1a", "v:1b", "v:2a", "v:3a", "v:1c"]);
  });

  it("a busy master's slots take the calls made meanwhile and go out when it answers", async () => {
    const { coalescer, sent, endTick, whats } = setup();
    const first = coalescer.read("1a");
    await Promise.resolve();
    assert.deepEqual(whats(), ["GET 1a"]);
    // Master a is busy: its calls wait; master b's go at the end of the tick.
    const later = [
      coalescer.read("1b"),
      coalescer.write("r2", "2x", "t", 1000),
      coalescer.read("3b"),
      coalescer.write("r2", "2y", "t", 1000),
      coalescer.read("1c"),
    ];
    await Promise.resolve();
    assert.deepEqual(whats(), ["GET 1a"], "with a command in flight, the end of the tick");
    endTick();
    assert.deepEqual(whats(), ["GET 1a", "GET 3b"]);
    sent[0].settle();
    assert.equal(await first, "v:1a");
    endTick();
    assert.deepEqual(whats().slice(2).sort(), ["MGET 1b 1c", "WRITE r2 2x 2y"]);
    assert.equal(sent[2].lane, sent[3].lane, "master a's in one together()");
    for (const s of sent.slice(1)) s.settle();
    assert.deepEqual(await Promise.all(later), ["v:1b", true, "v:3b", true, "v:1c"]);
  });

  it("keeps each key's calls in order and flush() sends a busy master's too", async () => {
    const { coalescer, sent, whats } = setup();
    const first = coalescer.read("1z");
    await Promise.resolve();
    // In flight: GET 1z. Then, on master a: a write, a read and a write of 1k, a read of 1m.
    const calls = [
      coalescer.write("r1", "1k", "t", 1000),
      coalescer.read("1k"),
      coalescer.write("r1", "1k", "t", 1000),
      coalescer.read("1m"),
    ];
    coalescer.flush();
    // The read of 1k may not join a batch before the first write; the second write may not join
    // the first; the read of 1m joins the open read batch.
    assert.deepEqual(whats(), ["GET 1z", "WRITE r1 1k", "MGET 1k 1m", "WRITE r1 1k"]);
    for (const s of sent) s.settle();
    assert.equal(await first, "v:1z");
    assert.deepEqual(await Promise.all(calls), [true, "v:1k", true, "v:1m"]);
  });
});
