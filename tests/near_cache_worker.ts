/**
 * A separate process for the multi-process near-cache tests of tests/near_cache_provider_test.ts.
 * Spawned as `deno run` on this file under Deno, as `node` on its compiled `.js` under Node;
 * configured by the JSON in the NEAR_CACHE_WORKER environment variable.
 *
 * - `read`: a provider with the near cache reads `inputs` at random until `durationMs` have
 *   passed since the test set `goKey`, yielding to the event loop after each read (as a server
 *   handling requests does, with a PING round trip every 20 reads), and prints every read: its start (epoch milliseconds, sub-ms
 *   precision), the input's index, the `version` field of the value (-1 for a miss), and when
 *   the last PING whose reply it had read was sent.
 * - `clear`: a provider (near cache off) clears `companyId` and prints the count.
 */

import process from "node:process";
import { setImmediate } from "node:timers";
import { RedisCache, RedisConfig, ValkeyCache, ValkeyConfig } from "../mod.ts";

/** What a worker is told to do (the JSON in NEAR_CACHE_WORKER); the test builds it. */
export interface WorkerSpec {
  kind: "redis" | "valkey";
  url: string;
  mode: "read" | "clear";
  inputs?: string[];
  durationMs?: number;
  maxStaleness?: number;
  readyKey?: string;
  goKey?: string;
  companyId?: string;
}

interface Commands {
  incr(key: string): Promise<number>;
  get(key: string): Promise<string | null>;
  ping(): Promise<string>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.timeOrigin + performance.now();

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.NEAR_CACHE_WORKER ?? "") as WorkerSpec;
  const logger = { warn: (line: string) => console.error(line) };
  const nearCache = spec.mode === "read" ? { maxStaleness: spec.maxStaleness ?? 1 } : false;
  const cache = spec.kind === "redis"
    ? new RedisCache({ config: new RedisConfig({ url: spec.url }), logger, nearCache })
    : new ValkeyCache({ config: new ValkeyConfig({ url: spec.url }), logger, nearCache });
  if (!(await cache.connect())) throw new Error(`worker ${process.pid}: cannot connect`);
  if (spec.mode === "clear") {
    console.log(JSON.stringify({ cleared: await cache.clearCompany(spec.companyId!) }));
    await cache.close();
    return;
  }
  const client = cache.client as unknown as Commands;
  while (!cache.stats().nearCache?.armed) await sleep(5);
  await client.incr(spec.readyKey!);
  while ((await client.get(spec.goKey!)) === null) await sleep(2);
  const inputs = spec.inputs!;
  const reads: number[] = [];
  const end = now() + spec.durationMs!;
  // When the last PING whose reply has come back was sent: the server had sent this process every
  // invalidation of a write it ran before that PING, and the event loop read the PONG after them.
  let polledAt = now();
  for (let n = 1; now() < end; n++) {
    const index = Math.floor(Math.random() * inputs.length);
    const startedAt = now();
    const value = await cache.get<{ version: number }>(inputs[index]);
    reads.push(startedAt, index, value?.version ?? -1, polledAt);
    // Yield as a request handler does, and every 20 reads wait for a round trip to the server. A
    // loop of setImmediate alone can keep Deno's event loop from reading its sockets for tens of
    // milliseconds (measured: invalidations then arrive in bursts after 13-31 ms gaps).
    if (n % 20 === 0) {
      const sentAt = now();
      await client.ping();
      polledAt = sentAt;
    } else await new Promise((resolve) => setImmediate(resolve));
  }
  console.log(JSON.stringify({ reads, near: cache.stats().nearCache }));
  await cache.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
