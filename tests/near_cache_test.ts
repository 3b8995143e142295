/**
 * The near cache's core (src/near_cache.ts) and its invalidation subscriber (src/tracking.ts),
 * against real servers of both kinds: LRU bounds, fresh copies, expiry, validity, the placeholder
 * race, foreign writes by bare clients, a killed subscriber, a hung server, and a randomized
 * checker that no read returns a version older than one written well before it began.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ClientConstructor, ProtocolClient } from "../src/client_types.ts";
import { NearCache, utf8Length } from "../src/near_cache.ts";
import { trackedPrefixes, TrackingSubscriber } from "../src/tracking.ts";
import { startServer, type TestServer } from "./harness.ts";
import { KINDS, sleep } from "./_helpers.ts";
import type { ServerKind } from "./harness.ts";

const PREFIX = "cache:";
const PREFIXES = trackedPrefixes(PREFIX, [""], false);
const key = (id: string | number) => `${PREFIX}:${id}`;

/** A cache that is valid until `until` on a hand-driven clock. */
function manualCache(
  settings: { maxEntries?: number; maxBytes?: number; maxLocalTtlMs?: number } = {},
) {
  const clock = { t: 1000 };
  const cache = new NearCache({
    maxEntries: settings.maxEntries ?? 100,
    maxBytes: settings.maxBytes ?? 1 << 20,
    maxLocalTtlMs: settings.maxLocalTtlMs,
    now: () => clock.t,
  });
  cache.validate(Infinity);
  return { cache, clock };
}

function fill(cache: NearCache, k: string, text: string, pttl = -1): boolean {
  return cache.install(cache.begin(k), text, pttl);
}

async function library(kind: ServerKind): Promise<ClientConstructor> {
  const module = kind === "redis" ? await import("ioredis") : await import("iovalkey");
  return module.Redis as unknown as ClientConstructor;
}

/** A bare client of the kind's library (not this library): the foreign writer. */
async function bareClient(server: TestServer): Promise<BareClient> {
  const Client = await library(server.kind);
  const client = new Client({ host: server.host, port: server.port, lazyConnect: true });
  await client.connect();
  return client as unknown as BareClient;
}

interface BareClient extends ProtocolClient {
  set(key: string, value: string, ...args: (string | number)[]): Promise<unknown>;
}

interface Rig {
  cache: NearCache;
  subscriber: TrackingSubscriber;
  reader: BareClient;
  invalidations: { keys: string[] | null; at: number }[];
  states: [boolean, string][];
  [Symbol.asyncDispose](): Promise<void>;
}

/** A near cache kept by a subscriber on `server`, armed, and a data connection to read through. */
async function rig(server: TestServer, maxStalenessMs = 1000): Promise<Rig> {
  const cache = new NearCache({ maxEntries: 10_000, maxBytes: 1 << 24 });
  const invalidations: Rig["invalidations"] = [];
  const states: Rig["states"] = [];
  const subscriber = new TrackingSubscriber({
    Client: await library(server.kind),
    clientOptions: { host: server.host, port: server.port, connectTimeout: 1000 },
    prefixes: PREFIXES,
    maxStalenessMs,
    nearCache: cache,
    onState: (armed, reason) => states.push([armed, reason]),
    onInvalidation: (keys) => invalidations.push({ keys, at: performance.now() }),
  });
  subscriber.start();
  assert.equal(await subscriber.whenArmed(5000), true);
  const reader = await bareClient(server);
  return {
    cache,
    subscriber,
    reader,
    invalidations,
    states,
    async [Symbol.asyncDispose]() {
      reader.disconnect();
      await subscriber.close();
    },
  };
}

/** Waits until `condition` holds (polling every ms), failing after `timeoutMs`; returns the ms. */
async function until(condition: () => boolean, timeoutMs = 2000): Promise<number> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeoutMs) assert.fail(`not within ${timeoutMs} ms`);
    await sleep(1);
  }
  return performance.now() - start;
}

describe("near cache (module)", () => {
  it("holds at most maxEntries, dropping the least recently used", () => {
    const { cache } = manualCache({ maxEntries: 3 });
    for (const k of ["a", "b", "c"]) assert.equal(fill(cache, k, `"${k}"`), true);
    assert.equal(cache.get("a"), "a"); // a is now the most recent
    fill(cache, "d", '"d"');
    assert.equal(cache.size, 3);
    assert.equal(cache.has("b"), false);
    assert.deepEqual(["a", "c", "d"].map((k) => cache.get(k)), ["a", "c", "d"]);
    assert.equal(cache.counters.evictions, 1);
  });

  it("keeps keys hit often through a stream of new entries, and drops the others oldest first", () => {
    // A hit moves an entry to most recently used only when it is not already among the newest
    // quarter (src/near_cache.ts): hot keys must still never reach the LRU end.
    const { cache } = manualCache({ maxEntries: 100 });
    const hot = ["h1", "h2", "h3"];
    for (const k of hot) fill(cache, k, `"${k}"`);
    for (let i = 0; i < 5000; i++) {
      fill(cache, `cold${i}`, String(i));
      for (const k of hot) assert.equal(cache.get(k), k, `${k} after ${i} inserts`);
      assert.ok(cache.size <= 100);
    }
    // The cold entries held are exactly the newest ones.
    const held = Array.from({ length: 5000 }, (_, i) => i).filter((i) => cache.has(`cold${i}`));
    assert.equal(held.length, 97);
    assert.deepEqual(held, Array.from({ length: 97 }, (_, i) => 5000 - 97 + i));
  });

  it("holds at most maxBytes of UTF-8 JSON text, and refuses a text larger than that", () => {
    const { cache } = manualCache({ maxBytes: 100 });
    const text = JSON.stringify("x".repeat(38)); // 40 bytes
    fill(cache, "a", text);
    fill(cache, "b", text);
    assert.equal(cache.bytes, 80);
    fill(cache, "c", text);
    assert.equal(cache.bytes, 80);
    assert.equal(cache.has("a"), false);
    assert.equal(fill(cache, "big", JSON.stringify("y".repeat(200))), false);
    assert.equal(cache.has("b") && cache.has("c"), true);
    assert.equal(utf8Length('"é€😀"'), 2 + 2 + 3 + 4);
    // Replacing an entry replaces its bytes.
    fill(cache, "b", '"s"');
    assert.equal(cache.bytes, 43);
  });

  it("hands each hit its own copy", () => {
    const { cache } = manualCache();
    fill(cache, "a", '{"list": [1, 2], "n": {"x": 1}}');
    const first = cache.get<{ list: number[]; n: { x: number } }>("a")!;
    first.list.push(3);
    first.n.x = 99;
    assert.deepEqual(cache.get("a"), { list: [1, 2], n: { x: 1 } });
    // Every later hit copies the parsed master: mutating one copy reaches no other.
    const second = cache.get<{ list: number[] }>("a")!;
    second.list.length = 0;
    assert.deepEqual(cache.get("a"), { list: [1, 2], n: { x: 1 } });
    assert.equal(cache.counters.hits, 4);
    // The text form of an entry already parsed is the same JSON.
    assert.deepEqual(JSON.parse(cache.getText("a")!), { list: [1, 2], n: { x: 1 } });
  });

  it("copies a __proto__ key as an own property, as JSON.parse reads it", () => {
    const { cache } = manualCache();
    const text = '{"__proto__": {"admin": true}, "a": 1}';
    fill(cache, "a", text);
    for (let i = 0; i < 3; i++) {
      const hit = cache.get<Record<string, unknown>>("a")!;
      assert.equal(Object.getPrototypeOf(hit), Object.prototype, `hit ${i}`);
      assert.equal((hit as { admin?: unknown }).admin, undefined);
      assert.deepEqual(Object.keys(hit), ["__proto__", "a"]);
      assert.deepEqual(hit, JSON.parse(text));
    }
  });

  it("serves a value nested too deep to copy by recursion (a foreign writer's)", () => {
    const { cache } = manualCache({ maxBytes: 1 << 22 });
    const depth = 200_000;
    fill(cache, "deep", "[".repeat(depth) + "]".repeat(depth));
    for (let i = 0; i < 2; i++) {
      let node = cache.get<unknown[]>("deep");
      let levels = 0;
      while (Array.isArray(node) && node.length > 0) {
        node = node[0] as unknown[];
        levels++;
      }
      assert.equal(levels, depth - 1, `hit ${i}`);
    }
  });

  it("never keeps an entry past its server TTL or the local cap", () => {
    const { cache, clock } = manualCache({ maxLocalTtlMs: 10_000 });
    const token = cache.begin("a");
    clock.t += 30; // the reply comes 30 ms later with PTTL 100: counted from the read's start
    assert.equal(cache.install(token, "1", 100), true);
    clock.t += 69;
    assert.equal(cache.get("a"), 1);
    clock.t += 1;
    assert.equal(cache.get("a"), undefined);
    // No expiry on the server: the local cap alone.
    fill(cache, "b", "2", -1);
    clock.t += 9_999;
    assert.equal(cache.get("b"), 2);
    clock.t += 1;
    assert.equal(cache.get("b"), undefined);
    // Gone on the server, or a miss: nothing installed.
    assert.equal(fill(cache, "c", "3", -2), false);
    assert.equal(cache.install(cache.begin("c"), null, -2), false);
  });

  it("installs a key this process wrote only after the server's invalidation of the write", () => {
    const { cache, clock } = manualCache();
    cache.expectEcho("d");
    assert.equal(fill(cache, "d", "4"), false);
    cache.invalidate("d"); // the echo
    assert.equal(fill(cache, "d", "4"), true);
    // No echo within echoWaitMs (default 1000): it installs again.
    cache.expectEcho("e");
    clock.t += 999;
    assert.equal(fill(cache, "e", "5"), false);
    clock.t += 1;
    assert.equal(fill(cache, "e", "5"), true);
    // A flush forgets what was awaited.
    cache.expectEcho("f");
    cache.flush();
    cache.validate(Infinity);
    assert.equal(fill(cache, "f", "6"), true);
  });

  it("serves only while valid, and drops everything once validity lapses", () => {
    const { cache, clock } = manualCache();
    cache.invalidateAll();
    assert.equal(fill(cache, "a", "1"), false); // not valid: a dead token
    cache.validate(clock.t + 100);
    fill(cache, "a", "1");
    clock.t += 99;
    assert.equal(cache.get("a"), 1);
    const token = cache.begin("b");
    clock.t += 1;
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.size, 0);
    // A later validation does not bring back what was held before the lapse.
    cache.validate(clock.t + 100);
    assert.equal(cache.install(token, "2", -1), false);
    assert.equal(cache.get("a"), undefined);
  });

  it("refuses the reply of a read whose key was invalidated or flushed while in flight", () => {
    const { cache } = manualCache();
    const voided = cache.begin("a");
    const other = cache.begin("b");
    const twin = cache.begin("a");
    cache.invalidate("a");
    assert.equal(cache.install(voided, "1", -1), false);
    assert.equal(cache.install(twin, "1", -1), false);
    assert.equal(cache.install(other, "2", -1), true);
    const afterInvalidation = cache.begin("a");
    assert.equal(cache.install(afterInvalidation, "3", -1), true);
    const flushed = cache.begin("c");
    cache.flush();
    assert.equal(cache.install(flushed, "4", -1), false);
    assert.equal(cache.size, 0);
    // A write of this process voids the reads in flight too, and drops what was held.
    fill(cache, "e", "5");
    const beforeWrite = cache.begin("e");
    cache.written("e");
    assert.equal(cache.install(beforeWrite, "0", -1), false);
    assert.equal(cache.get("e"), undefined);
    const counters = cache.counters;
    assert.equal(counters.invalidations, 1); // "a" held nothing when invalidated; "e" did
    assert.equal(counters.flushes, 1);
  });

  it("tracks the entry prefixes and nothing under the registry, tag, generation or lock keys", () => {
    assert.deepEqual(trackedPrefixes("p:", ["", "tenant", "tenant:x"], false), [
      "p::",
      "p:tenant:",
    ]);
    const prefixes = trackedPrefixes("cache:", ["", "users"], false);
    for (
      const other of ["registry:global", "tag:global:ab", "tags:global", "generation:all", "lock:x"]
    ) {
      assert.equal(prefixes.some((prefix) => `cache:${other}`.startsWith(prefix)), false);
    }
  });
});

for (const kind of KINDS) {
  describe(`${kind} near cache tracking`, () => {
    it("a read in flight when a foreign SET's invalidation arrives is not installed", async () => {
      await using server = await startServer(kind, { own: true });
      await using r = await rig(server);
      await server.cli("SET", key(1), '"old"');
      const token = r.cache.begin(key(1));
      const old = await r.reader.get(key(1));
      await server.cli("SET", key(1), '"new"');
      await until(() => r.invalidations.some((m) => m.keys?.includes(key(1))));
      assert.equal(r.cache.install(token, old, -1), false);
      assert.equal(r.cache.has(key(1)), false);
      // A FLUSHALL voids every read in flight.
      const second = r.cache.begin(key(2));
      await server.cli("FLUSHALL");
      await until(() => r.invalidations.some((m) => m.keys === null));
      assert.equal(r.cache.install(second, '"x"', -1), false);
    });

    it("SET, DEL, EXPIRE, expiry and FLUSHALL by a bare client evict within a few ms", async () => {
      await using server = await startServer(kind, { own: true });
      await using r = await rig(server);
      const writer = await bareClient(server);
      try {
        const delays: number[] = [];
        const messagesFor = (k: string) =>
          r.invalidations.filter((m) => m.keys?.includes(k)).length;
        const evicted = async (id: number, change: () => Promise<unknown>) => {
          const seen = messagesFor(key(id));
          await writer.set(key(id), `{"v": ${id}}`);
          // The write's own invalidation comes on the subscriber's connection and may arrive
          // after a read that follows it; such a read is (rightly) not installed. Wait for it.
          await until(() => messagesFor(key(id)) > seen);
          assert.deepEqual(await readThrough(r.reader, r.cache, [key(id)]), [`{"v": ${id}}`]);
          assert.deepEqual(r.cache.get(key(id)), { v: id });
          const start = performance.now();
          await change();
          await until(() => !r.cache.has(key(id)));
          delays.push(performance.now() - start);
        };
        await evicted(1, () => writer.set(key(1), '"changed"'));
        await evicted(2, () => (writer as unknown as Del).del(key(2)));
        await evicted(3, () => (writer as unknown as Del).unlink(key(3)));
        await evicted(4, () => (writer as unknown as Del).expire(key(4), 100));
        await evicted(5, () => (writer as unknown as Del).flushall());
        for (const delay of delays) assert.ok(delay < 200, `evicted after ${delay} ms`);
        // Registries are not tracked: no message for them.
        const before = r.invalidations.length;
        await writer.set(`${PREFIX}registry:global`, "x");
        await writer.set(key("marker"), "1");
        await until(() => r.invalidations.some((m) => m.keys?.includes(key("marker"))));
        assert.equal(r.invalidations.length, before + 1);
        // A key written with a TTL: the local copy dies with it.
        const seen6 = messagesFor(key(6));
        await writer.set(key(6), "6", "PX", 150);
        await until(() => messagesFor(key(6)) > seen6);
        await readThrough(r.reader, r.cache, [key(6)]);
        assert.equal(r.cache.has(key(6)), true);
        await sleep(160);
        assert.equal(r.cache.has(key(6)), false);
      } finally {
        writer.disconnect();
      }
    });

    it("CLIENT KILL TYPE pubsub empties the near cache, then tracking is re-armed", async () => {
      await using server = await startServer(kind, { own: true });
      await using r = await rig(server);
      await server.cli("SET", key(1), "1");
      await readThrough(r.reader, r.cache, [key(1)]);
      assert.equal(r.cache.has(key(1)), true);
      const flushes = r.cache.counters.flushes;
      const firstId = (await server.cli("CLIENT", "LIST", "TYPE", "pubsub")).match(/id=(\d+)/)![1];
      await server.cli("CLIENT", "KILL", "TYPE", "pubsub");
      await until(() => !r.subscriber.armed);
      assert.equal(r.cache.has(key(1)), false);
      assert.equal(r.cache.valid, false);
      assert.ok(r.cache.counters.flushes > flushes);
      // Bypassed: nothing is installed until re-armed.
      assert.equal(r.cache.install(r.cache.begin(key(1)), "1", -1), false);
      assert.equal(await r.subscriber.whenArmed(5000), true);
      const secondId = (await server.cli("CLIENT", "LIST", "TYPE", "pubsub")).match(/id=(\d+)/)![1];
      assert.notEqual(secondId, firstId);
      assert.deepEqual(r.states.map(([armed]) => armed), [true, false, true]);
      // Tracking works on the new connection.
      await readThrough(r.reader, r.cache, [key(1)]);
      assert.equal(r.cache.has(key(1)), true);
      await server.cli("SET", key(1), "2");
      await until(() => !r.cache.has(key(1)));
    });

    it("a hung server: the cache is bypassed within maxStaleness, and re-armed after", async () => {
      await using server = await startServer(kind, { own: true });
      await using r = await rig(server, 300);
      await server.cli("SET", key(1), "1");
      await readThrough(r.reader, r.cache, [key(1)]);
      assert.equal(r.cache.has(key(1)), true);
      // Answered heartbeats keep it valid well past maxStaleness.
      await sleep(500);
      assert.equal(r.cache.has(key(1)), true);
      server.pause();
      const pausedAt = performance.now();
      try {
        // Validity lapses on its own (no timer needed): by maxStaleness after the last PONG's PING.
        await until(() => !r.cache.valid, 1000);
        assert.ok(performance.now() - pausedAt <= 300 + 100, "bypassed within maxStaleness");
        assert.equal(r.cache.get(key(1)), undefined);
      } finally {
        server.resume();
      }
      await until(() => r.states.length > 1, 2000);
      assert.deepEqual(r.states[1], [false, "heartbeat unanswered"]);
      assert.equal(await r.subscriber.whenArmed(5000), true);
      assert.equal(r.cache.has(key(1)), false);
      await readThrough(r.reader, r.cache, [key(1)]);
      assert.equal(r.cache.has(key(1)), true);
    });

    it("randomized: no read returns a version older than one written > 5 ms before it", async () => {
      await using server = await startServer(kind, { own: true });
      await using r = await rig(server);
      const writer = await bareClient(server);
      const KEYS = 20;
      const DURATION_MS = 1500;
      // Per key: the versions whose write completed, with when.
      const written: { version: number; at: number }[][] = Array.from({ length: KEYS }, () => []);
      for (let i = 0; i < KEYS; i++) {
        await writer.set(key(i), "0");
        written[i].push({ version: 0, at: performance.now() });
      }
      let stop = false;
      let version = 0;
      let violations = 0;
      let reads = 0;
      let served = 0;
      const writing = (async () => {
        while (!stop) {
          const i = Math.floor(Math.random() * KEYS);
          const v = ++version;
          await writer.set(key(i), String(v));
          written[i].push({ version: v, at: performance.now() });
          // Bursts and pauses, so entries live long enough in the cache to be hit.
          if (Math.random() < 0.5) await sleep(Math.random() * 3);
        }
      })();
      const reading = async () => {
        while (!stop) {
          const i = Math.floor(Math.random() * KEYS);
          const began = performance.now();
          let text: string | null | undefined = r.cache.getText(key(i));
          if (text === undefined) [text] = await readThrough(r.reader, r.cache, [key(i)]);
          else served++;
          reads++;
          const seen = Number(text);
          // The newest version whose write completed more than 5 ms before this read began.
          const floor = written[i].findLast((w) => w.at < began - 5)?.version ?? 0;
          if (seen < floor) violations++;
          if (reads % 50 === 0) await sleep(0);
        }
      };
      const readers = [reading(), reading(), reading(), reading()];
      await sleep(DURATION_MS);
      stop = true;
      await Promise.all([writing, ...readers]);
      writer.disconnect();
      assert.equal(violations, 0, `${violations} stale reads of ${reads}`);
      assert.ok(served > 100, `only ${served} of ${reads} reads served from memory`);
      assert.ok(version > 100, `only ${version} writes`);
    });

    it("invalidation delay of a foreign write (printed)", async () => {
      await using server = await startServer(kind, { own: true });
      await using r = await rig(server);
      const writer = await bareClient(server);
      try {
        const delays: number[] = [];
        for (let n = 0; n < 300; n++) {
          const k = key(n % 10);
          const seen = r.invalidations.length;
          const start = performance.now();
          await writer.set(k, String(n));
          while (!r.invalidations.slice(seen).some((m) => m.keys?.includes(k))) {
            await new Promise((resolve) => setImmediate(resolve));
          }
          delays.push(
            r.invalidations.find((m, at) => at >= seen && m.keys?.includes(k))!.at - start,
          );
        }
        delays.sort((a, b) => a - b);
        const at = (q: number) =>
          delays[Math.min(delays.length - 1, Math.floor(q * delays.length))];
        console.log(
          `${kind}: SET sent -> invalidation delivered: p50 ${at(0.5).toFixed(3)} ms, ` +
            `p99 ${at(0.99).toFixed(3)} ms, max ${delays.at(-1)!.toFixed(3)} ms`,
        );
        assert.ok(at(0.5) < 50);
      } finally {
        writer.disconnect();
      }
    });
  });
}

interface Del {
  del(key: string): Promise<number>;
  unlink(key: string): Promise<number>;
  expire(key: string, seconds: number): Promise<number>;
  flushall(): Promise<string>;
}

/**
 * The read a provider does through the near cache (src/near_tier.ts), with a bare client here:
 * reads `keys` on `client` for the near cache: each key's GET and PTTL in one pipeline (one round
 * trip, no MULTI), installing each reply whose token no invalidation voided.
 *
 * @returns The values' texts in key order (`null`: absent).
 */
async function readThrough(
  client: ProtocolClient,
  nearCache: NearCache,
  keys: readonly string[],
): Promise<(string | null)[]> {
  const tokens = keys.map((key) => nearCache.begin(key));
  const pipeline = (client as unknown as { pipeline(): Pipeline }).pipeline();
  for (const key of keys) pipeline.get(key).pttl(key);
  let replies: [Error | null, unknown][];
  try {
    replies = await pipeline.exec();
  } catch (error) {
    for (const token of tokens) nearCache.abandon(token);
    throw error;
  }
  return keys.map((_, i) => {
    const [getError, text] = replies[2 * i];
    const [pttlError, pttl] = replies[2 * i + 1];
    if (getError || pttlError) {
      nearCache.abandon(tokens[i]);
      if (getError) {
        for (const token of tokens) nearCache.abandon(token);
        throw getError;
      }
      return text as string | null;
    }
    nearCache.install(tokens[i], text as string | null, Number(pttl));
    return text as string | null;
  });
}

interface Pipeline {
  get(key: string): Pipeline;
  pttl(key: string): Pipeline;
  exec(): Promise<[Error | null, unknown][]>;
}
