/**
 * A separate process for the multi-process stampede test of tests/get_or_set_test.ts. Spawned as
 * `deno run` on this file under Deno, as `node` on its compiled `.js` under Node; configured by
 * the JSON in the GET_OR_SET_WORKER environment variable.
 *
 * It connects, announces itself (INCR of `readyKey`), waits until the test sets `goKey`, then
 * fires `callers` concurrent getOrSet calls on the same key. compute() counts itself on the
 * server (INCR of `counterKey`) and is slow (`computeMs`). Prints one JSON line: the values the
 * callers got and the provider's stats.
 */

import process from "node:process";
import { RedisCache, RedisConfig, ValkeyCache, ValkeyConfig } from "../mod.ts";

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

interface Commands {
  incr(key: string): Promise<number>;
  get(key: string): Promise<string | null>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.GET_OR_SET_WORKER ?? "") as WorkerSpec;
  const logger = { warn: (line: string) => console.error(line) };
  const cache = spec.kind === "redis"
    ? new RedisCache({ config: new RedisConfig({ url: spec.url }), logger })
    : new ValkeyCache({ config: new ValkeyConfig({ url: spec.url }), logger });
  if (!(await cache.connect())) throw new Error(`worker ${process.pid}: cannot connect`);
  const client = cache.client as unknown as Commands;
  await client.incr(spec.readyKey);
  const deadline = Date.now() + 60_000;
  while ((await client.get(spec.goKey)) === null) {
    if (Date.now() > deadline) throw new Error(`worker ${process.pid}: no go signal`);
    await sleep(2);
  }
  const compute = async () => {
    const n = await client.incr(spec.counterKey);
    await sleep(spec.computeMs);
    return { computedBy: process.pid, n };
  };
  const results = await Promise.all(
    Array.from(
      { length: spec.callers },
      () => cache.getOrSet(spec.input, compute, { companyId: spec.companyId, ttl: 60 }),
    ),
  );
  console.log(JSON.stringify({ pid: process.pid, results, stats: cache.stats() }));
  await cache.close();
}

main().catch((error) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
