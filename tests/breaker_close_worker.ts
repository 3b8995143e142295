/**
 * A separate process for tests/circuit_breaker_test.ts: connects a cache with its circuit breaker
 * on (to a single server, or to a cluster), says `connected` on stderr, waits for the test to
 * freeze the server (or one master) and create the go file, sends calls that wait on the frozen
 * server, closes the cache while they wait, goes on for a while (long enough for probes to run),
 * prints one JSON line and then does nothing more: the process exits only if `close()` left no
 * connection, timer or probe behind, however long the server stays frozen.
 *
 * Configured by the JSON in the BREAKER_CLOSE_WORKER environment variable ({@link WorkerSpec}).
 */

import { existsSync } from "node:fs";
import process from "node:process";
import { RedisCache, RedisConfig, ValkeyCache, ValkeyConfig } from "../mod.ts";

/** What the test tells the worker. */
export interface WorkerSpec {
  kind: "redis" | "valkey";
  /** A single server's URL, or `undefined` for a cluster. */
  url?: string;
  /** A cluster's seeds (`host:port,...`). */
  clusterNodes?: string;
  /** The file whose creation says the server is frozen. */
  goFile: string;
  /** Tenants to read (some of them served by the frozen server). */
  tenants: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BREAKER_CLOSE_WORKER ?? "") as WorkerSpec;
  const settings = spec.url === undefined ? { clusterNodes: spec.clusterNodes } : { url: spec.url };
  const options = { logger: { warn: () => {} }, timeout: 1, circuitBreaker: true };
  const cache = spec.kind === "redis"
    ? new RedisCache({ ...options, config: new RedisConfig(settings) })
    : new ValkeyCache({ ...options, config: new ValkeyConfig(settings) });
  if (!(await cache.connect())) throw new Error("worker: cannot connect");
  for (const tenant of spec.tenants) await cache.set("v", tenant, { companyId: tenant });
  console.error("connected");
  const deadline = Date.now() + 60_000;
  while (!existsSync(spec.goFile)) {
    if (Date.now() > deadline) throw new Error("worker: no go file");
    await sleep(10);
  }
  // Three rounds, so a master's breaker sees more faults than its threshold when they fail.
  const calls = [0, 1, 2].flatMap(() =>
    spec.tenants.map((tenant) => cache.get("v", { companyId: tenant }))
  );
  // Well within the timeout: the calls on the frozen server still wait, its breaker is closed.
  await sleep(200);
  const opensBefore = cache.stats().circuitOpens;
  const started = Date.now();
  await cache.close();
  const closeMs = Date.now() - started;
  // The application goes on: a breaker opened by the calls the closing failed would probe now.
  await sleep(500);
  const opensAfterClose = cache.stats().circuitOpens - opensBefore;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    Promise.all(calls).then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 3_000)),
  ]);
  clearTimeout(timer);
  console.log(JSON.stringify({ closeMs, settled, opensAfterClose }));
}

await main();
