/**
 * The second process of the bench row "near cache: N-key tenant clear seen by another process"
 * (scripts/bench.ts): a provider with the near cache on that holds a whole tenant's entries, and
 * reports what the tenant clear made by another process does to it.
 *
 * Spawned as `deno run` on this file under Deno, as `node` on its compiled `.js` under Node
 * (`deno task bench:node`), configured by the JSON in the BENCH_NEAR_WORKER environment variable.
 * It:
 * 1. reads the tenant's `count` entries through getMany (batches of 1,000), so its near cache
 *    holds them all, and prints `{"ready": ...}` with how many it holds;
 * 2. counts every invalidation message its tracking subscriber receives: the client library's
 *    `Redis.prototype.emit` is wrapped to see the `messageBuffer` events of the
 *    `__redis__:invalidate` channel (the library's own listener still gets every one). The bytes
 *    are those of each message as RESP2 puts it on the wire (`*3`, `message`, the channel, then
 *    the array of keys), computed from what arrived;
 * 3. optionally (`blockMs`) waits for `go` on stdin and then keeps its event loop busy, so the
 *    server has to buffer the clear's invalidations for it;
 * 4. timestamps the first and the last `near-invalidation` eviction (epoch milliseconds with
 *    sub-millisecond precision, the same clock as the parent's), and prints `{"result": ...}` once
 *    every entry is gone and no message came for `settleMs`, or after `timeoutMs`; then it stays
 *    connected for `holdMs`, so the parent can check its subscriber's connection is still there.
 *
 * @module
 */

import process from "node:process";
import { createInterface } from "node:readline";
import { RedisCache, RedisConfig, ValkeyCache, ValkeyConfig } from "../mod.ts";

interface WorkerSpec {
  kind: "redis" | "valkey";
  url: string;
  /** The cache name of the provider (the parent seeded the entries under it). */
  name: string;
  companyId: string;
  /** How many entries the parent seeded: inputs `{ q: "near-clear", i }` for i < count. */
  count: number;
  settleMs?: number;
  timeoutMs?: number;
  /** How long to stay connected after printing the result. */
  holdMs?: number;
  /** The near cache's `maxStaleness`, seconds (default 1). */
  maxStaleness?: number;
  /**
   * After `ready`, wait for a `go` line on stdin, then keep the event loop busy for this long
   * (milliseconds; 0: do not wait for `go`), as a process stuck in a long computation would: its
   * subscriber reads nothing meanwhile and the server buffers every invalidation for it.
   */
  blockMs?: number;
}

/** The part of `Redis.prototype` wrapped to count the subscriber's messages. */
interface Emitter {
  emit(event: string | symbol, ...args: unknown[]): boolean;
}

const CHANNEL = "__redis__:invalidate";
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The byte length of `$<n>\r\n<bytes>\r\n`, a RESP2 bulk string of `n` bytes. */
const bulk = (n: number) => 1 + String(n).length + 2 + n + 2;

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_NEAR_WORKER ?? "") as WorkerSpec;
  const settleMs = spec.settleMs ?? 500;
  const timeoutMs = spec.timeoutMs ?? 60_000;

  // Count the subscriber's messages: every client of the library's module goes through this emit.
  const module = spec.kind === "redis" ? await import("ioredis") : await import("iovalkey");
  const proto = (module as unknown as { Redis: { prototype: Emitter } }).Redis.prototype;
  const emit = proto.emit;
  const traffic = { messages: 0, keys: 0, bytes: 0, maxKeysPerMessage: 0, flushMessages: 0 };
  let lastMessageAt = 0;
  proto.emit = function (this: Emitter, event: string | symbol, ...args: unknown[]): boolean {
    if (event === "messageBuffer" && String(args[0]) === CHANNEL) {
      const payload = args[1];
      traffic.messages++;
      lastMessageAt = now();
      let bytes = 4 + bulk(7) + bulk(CHANNEL.length); // *3, "message", the channel
      if (Array.isArray(payload)) {
        bytes += 1 + String(payload.length).length + 2;
        for (const key of payload) bytes += bulk((key as Uint8Array).length);
        traffic.keys += payload.length;
        traffic.maxKeysPerMessage = Math.max(traffic.maxKeysPerMessage, payload.length);
      } else if (payload === null || payload === undefined) {
        bytes += 5; // a null array: *-1
        traffic.flushMessages++;
      } else {
        bytes += bulk((payload as Uint8Array).length);
        traffic.keys++;
        traffic.maxKeysPerMessage = Math.max(traffic.maxKeysPerMessage, 1);
      }
      traffic.bytes += bytes;
    }
    return emit.call(this, event, ...args);
  };

  let evicted = 0;
  let firstEvictionAt = 0;
  let lastEvictionAt = 0;
  let evictionEvents = 0;
  const onEvent = (event: { type: string; count?: number }) => {
    if (event.type !== "near-invalidation") return;
    const at = now();
    if (evicted === 0) firstEvictionAt = at;
    evicted += event.count ?? 1;
    evictionEvents++;
    lastEvictionAt = at;
  };
  const nearCache = {
    maxEntries: spec.count * 2,
    maxBytes: 512 * 1024 * 1024,
    maxStaleness: spec.maxStaleness ?? 1,
  };
  const options = { name: spec.name, nearCache, onEvent };
  const cache = spec.kind === "redis"
    ? new RedisCache({ ...options, config: new RedisConfig({ url: spec.url }) })
    : new ValkeyCache({ ...options, config: new ValkeyConfig({ url: spec.url }) });
  if (!(await cache.connect())) throw new Error(`worker ${process.pid}: cannot connect`);
  while (!cache.stats().nearCache?.armed) await sleep(5);

  // Hold the whole tenant in the near cache. A value is installed once its PTTL is back (read
  // after it, off the caller's path), and not at all when an invalidation of the seeding writes
  // reaches the read in flight: read again (the held ones are local hits) until all are held.
  const readStart = now();
  for (let pass = 0; pass < 50 && cache.stats().nearCache!.entries < spec.count; pass++) {
    for (let start = 0; start < spec.count; start += 1000) {
      const inputs = [];
      for (let i = start; i < Math.min(spec.count, start + 1000); i++) {
        inputs.push({ q: "near-clear", i });
      }
      const values = await cache.getMany(inputs, { companyId: spec.companyId });
      if (values.some((value) => value === null)) throw new Error("worker: an entry is missing");
    }
    await sleep(20);
  }
  const held = cache.stats().nearCache!;
  const readMs = now() - readStart;
  const before = { ...traffic };
  const cpuBefore = process.cpuUsage();
  console.log(JSON.stringify({ ready: { entries: held.entries, bytes: held.bytes, readMs } }));
  if (spec.blockMs) {
    for await (const line of createInterface({ input: process.stdin })) {
      if (line === "go") break;
    }
    const until = performance.now() + spec.blockMs;
    while (performance.now() < until) {
      // Busy: no socket is read, no timer fires.
    }
  }

  const deadline = now() + timeoutMs;
  for (;;) {
    await sleep(20);
    const t = now();
    const quiet = t - Math.max(lastMessageAt, lastEvictionAt) >= settleMs;
    if ((evicted >= held.entries && quiet) || t > deadline) break;
  }
  const cpu = process.cpuUsage(cpuBefore);
  const stats = cache.stats().nearCache!;
  const result = {
    held: held.entries,
    evicted,
    evictionEvents,
    firstEvictionAt,
    lastEvictionAt,
    messages: traffic.messages - before.messages,
    keys: traffic.keys - before.keys,
    bytes: traffic.bytes - before.bytes,
    maxKeysPerMessage: traffic.maxKeysPerMessage,
    flushMessages: traffic.flushMessages - before.flushMessages,
    flushes: stats.flushes - held.flushes,
    entriesLeft: stats.entries,
    armed: stats.armed,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  console.log(JSON.stringify({ result }));
  // Connected a while longer, for the parent to find the subscriber's connection still there.
  await sleep(spec.holdMs ?? 1000);
  await cache.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
