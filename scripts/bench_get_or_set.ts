/**
 * Latency of getOrSet next to get and a bare client GET, on a redis-server the harness starts:
 * sequential awaited calls, interleaved in rounds so machine load hits every variant alike.
 *
 * - `ioredis GET`: the client alone.
 * - `get`: `RedisCache.get` (what `cacheGet` calls).
 * - `getOrSet hit`: a fresh entry without staleWhileRevalidate (one GET).
 * - `getOrSet hit (swr)`: a fresh entry read with staleWhileRevalidate (one script call).
 * - `stale serve`: reads of a stale entry while its refresh is held open.
 *
 * Usage: `deno run -A scripts/bench_get_or_set.ts [calls per round, default 2000]`
 *
 * @module
 */

import { RedisCache, RedisConfig } from "../mod.ts";
import { startServer } from "../tests/harness.ts";
import { percentile } from "./bench_figures.ts";

interface Commands {
  get(key: string): Promise<string | null>;
}

const calls = Number(Deno.args[0] ?? 2000);
const rounds = 5;

async function time(samples: number[], call: () => Promise<unknown>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await call();
    samples.push(performance.now() - start);
  }
}

function report(label: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b);
  const us = (ms: number) => `${(ms * 1000).toFixed(0).padStart(6)} µs`;
  console.log(
    `${label.padEnd(22)} p50 ${us(percentile(sorted, 0.5))}  p99 ${
      us(percentile(sorted, 0.99))
    }  (${sorted.length} calls)`,
  );
}

await using server = await startServer("redis");
const cache = new RedisCache({ config: new RedisConfig({ url: server.url }) });
if (!(await cache.connect())) throw new Error("cannot connect");
const client = cache.client as unknown as Commands;

await cache.set("hot", { rows: [1, 2, 3] }, { ttl: 600 });
await cache.getOrSet("swr-fresh", () => ({ rows: [1, 2, 3] }), {
  ttl: 600,
  staleWhileRevalidate: 60,
});
const rawKey = (await server.cli("KEYS", "cache::*")).split("\n")[0];

const variants: [string, () => Promise<unknown>][] = [
  ["ioredis GET", () => client.get(rawKey)],
  ["get", () => cache.get("hot")],
  ["getOrSet hit", () => cache.getOrSet("hot", () => ({ rows: [] }))],
  [
    "getOrSet hit (swr)",
    () => cache.getOrSet("swr-fresh", () => ({ rows: [] }), { ttl: 600, staleWhileRevalidate: 60 }),
  ],
];
const samples = new Map(variants.map(([label]) => [label, [] as number[]]));
for (const [, call] of variants) await time([], call, 500); // warm-up
for (let round = 0; round < rounds; round++) {
  for (const [label, call] of variants) await time(samples.get(label)!, call, calls);
}
for (const [label] of variants) report(label, samples.get(label)!);

// Stale serve: a 50 ms TTL, then 50 reads while the refresh is held open.
const options = { ttl: 0.05, staleWhileRevalidate: 60 };
await cache.getOrSet("stale", () => "v1", options);
await new Promise((resolve) => setTimeout(resolve, 100));
let release!: () => void;
const gate = new Promise<void>((resolve) => release = resolve);
let refreshes = 0;
const stale: number[] = [];
await time(stale, async () => {
  const value = await cache.getOrSet("stale", async () => {
    refreshes++;
    await gate;
    return "v2";
  }, options);
  if (value !== "v1") throw new Error(`expected the stale value, got ${value}`);
}, 50);
release();
// Let the refresh store before closing, so it does not fail on a closed connection.
for (let i = 0; i < 100 && (await cache.get("stale")) !== "v2"; i++) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}
report("stale serve", stale);
console.log(`refreshes started during the 50 stale reads: ${refreshes}`);
console.log("cache.stats():", JSON.stringify(cache.stats().operations.getOrSet));
await cache.close();
