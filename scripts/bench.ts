/**
 * The benchmark: the library's calls against the bare ioredis / iovalkey calls, in one run, on
 * the same connection, interleaved A B A B (call by call for one caller, in short slices for
 * callers in flight) over several rounds so drift (CPU frequency, GC, other processes) hits both
 * sides alike. Ratios are library / bare, per round; the table shows their median and spread
 * (min–max over the rounds).
 *
 * Usage:
 *   deno task bench [--quick] [--json FILE] [--rounds N] [--duration MS] [--only redis|valkey]
 *   deno task bench:node [same flags]   (the same file, compiled into the npm build, under Node)
 *   deno task bench --filter cluster    (only the cluster rows)
 *   deno task bench --filter tag        (only the tag rows: a tagged set, a big tag invalidated)
 *   deno task bench --filter otel       (only get hit with OpenTelemetry metrics on vs off)
 *
 * Starts its own redis-server and valkey-server on free loopback ports (tests/harness.ts), or
 * uses REDIS_URL / VALKEY_URL. Uses only `node:` modules so it runs unchanged under Node.
 *
 * "Bare" is the library's own client (`getCacheClient()`), so both sides run on one connection
 * with the same settings (auto-pipelining, timeouts). The bare side sends ready-made key and value
 * strings; the library side also canonicalizes and hashes the input, serializes or parses the
 * JSON value and, for writes, registers the key in its scope in the same script call.
 *
 * @module
 */

import { writeFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  cacheClearCompany,
  cacheGet,
  cacheGetMany,
  cacheInvalidateTags,
  cacheSet,
  cacheSetMany,
  closeCache,
  getCacheClient,
  RedisCache,
  RedisConfig,
  setCache,
  ValkeyCache,
  ValkeyConfig,
} from "../mod.ts";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { entryKey, hashInput } from "../src/keys.ts";
import { ClusterLayout } from "../src/layout.ts";
import { type ServerKind, startServer, type TestServer } from "../tests/harness.ts";
import { startCluster } from "../tests/cluster_harness.ts";

/** The commands the bench sends directly, as ioredis and iovalkey define them. */
interface BareClient {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, mode: "EX", seconds: number): Promise<unknown>;
  mget(...keys: string[]): Promise<(string | null)[]>;
  pipeline(): {
    set(key: string, value: string, mode: "EX", s: number): unknown;
    exec(): Promise<unknown>;
  };
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  info(section: string): Promise<string>;
  quit(): Promise<unknown>;
}

/** One side of a comparison: an operation a worker calls in a loop. */
type Op = () => Promise<unknown>;

interface Sample {
  /** Operations per second over the side's run. */
  opsPerSec: number;
  /** Latency of each operation, milliseconds. */
  latencies: number[];
}

interface Figure {
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

interface Row {
  server: string;
  name: string;
  bare?: Figure;
  lib: Figure;
  ratio?: { median: number; min: number; max: number };
  target?: number;
  note?: string;
}

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    markdown: { type: "boolean", default: false },
    rounds: { type: "string" },
    duration: { type: "string" },
    only: { type: "string" },
    filter: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (flags.help) {
  console.log(
    "Usage: bench [--quick] [--json FILE] [--rounds N] [--duration MS] [--only redis|valkey] [--filter REGEX] [--markdown]",
  );
  process.exit(0);
}

const ROUNDS = Number(flags.rounds ?? (flags.quick ? 3 : 6));
/** How long each side runs per round, milliseconds. */
const DURATION = Number(flags.duration ?? (flags.quick ? 80 : 200));
const CLEAR_KEYS = flags.quick ? 20_000 : 100_000;
const CONCURRENCY = 100;
const TTL = 3600;
const KINDS: ServerKind[] = flags.only ? [flags.only as ServerKind] : ["redis", "valkey"];

const rows: Row[] = [];
/** `--filter REGEX`: only the rows (or groups: "pool", "clear") whose name matches. */
const FILTER = flags.filter ? new RegExp(flags.filter, "i") : undefined;
const selected = (name: string) => !FILTER || FILTER.test(name);

// ---------------------------------------------------------------------------------------------
// Measuring

/** Runs `op` on `workers` concurrent loops for `ms`; per-op latencies and the overall rate. */
async function run(op: Op, workers: number, ms: number): Promise<Sample> {
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + ms;
  let count = 0;
  const loop = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= deadline) return;
      await op();
      latencies.push(performance.now() - t0);
      count++;
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
  return { opsPerSec: count / ((performance.now() - start) / 1000), latencies };
}

/** How many slices each side's share of a round is cut into when callers run concurrently. */
const SLICES = 4;

/**
 * One round of `ops`, each for about `ms`, interleaved so that drift within the round (CPU
 * frequency, a neighbour's load, GC) hits every side alike:
 * - one worker: call by call (A B A B ...), each side's rate being its calls over the time spent
 *   in them;
 * - more workers: in SLICES slices per side (A B A B ...), each slice drained before the next, a
 *   side's rate being its calls over the time of its slices.
 */
async function runInterleaved(ops: Op[], workers: number, ms: number): Promise<Sample[]> {
  const latencies = ops.map(() => [] as number[]);
  const spent = ops.map(() => 0);
  if (workers === 1) {
    const deadline = performance.now() + ms * ops.length;
    while (performance.now() < deadline) {
      for (let i = 0; i < ops.length; i++) {
        const t0 = performance.now();
        await ops[i]();
        const took = performance.now() - t0;
        latencies[i].push(took);
        spent[i] += took;
      }
    }
  } else {
    for (let slice = 0; slice < SLICES; slice++) {
      for (let i = 0; i < ops.length; i++) {
        const t0 = performance.now();
        const sample = await run(ops[i], workers, ms / SLICES);
        spent[i] += performance.now() - t0;
        // A loop, not push(...): a slice of callers in flight holds tens of thousands of samples.
        for (const latency of sample.latencies) latencies[i].push(latency);
      }
    }
  }
  return ops.map((_, i) => ({
    opsPerSec: latencies[i].length / (spent[i] / 1000),
    latencies: latencies[i],
  }));
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function figure(samples: Sample[]): Figure {
  const all = samples.flatMap((s) => s.latencies).sort((a, b) => a - b);
  return {
    opsPerSec: median(samples.map((s) => s.opsPerSec)),
    p50Us: percentile(all, 0.5) * 1000,
    p99Us: percentile(all, 0.99) * 1000,
  };
}

/**
 * Compares `lib` with `bare`: a warm-up of each, then ROUNDS rounds interleaved (runInterleaved;
 * odd rounds start with the library), and a row with the median ratio of the rates and its spread.
 */
async function compare(
  server: string,
  name: string,
  sides: { bare: Op; lib: Op },
  options: {
    workers?: number;
    target?: number;
    /** Text for the row, or a function run after the measurement that gives it. */
    note?: string | (() => Promise<string>);
  } = {},
): Promise<void> {
  if (!selected(name)) return;
  const workers = options.workers ?? 1;
  await run(sides.bare, workers, DURATION / 2);
  await run(sides.lib, workers, DURATION / 2);
  const bare: Sample[] = [];
  const lib: Sample[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let b: Sample, l: Sample;
    if (round % 2 === 0) {
      [b, l] = await runInterleaved([sides.bare, sides.lib], workers, DURATION);
    } else {
      [l, b] = await runInterleaved([sides.lib, sides.bare], workers, DURATION);
    }
    bare.push(b);
    lib.push(l);
    ratios.push(l.opsPerSec / b.opsPerSec);
  }
  const row: Row = {
    server,
    name,
    bare: figure(bare),
    lib: figure(lib),
    ratio: { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) },
    target: options.target,
    note: typeof options.note === "function" ? await options.note() : options.note,
  };
  rows.push(row);
  printRow(row);
}

/**
 * The server's own time per call since the last CONFIG RESETSTAT (INFO commandstats): a bare SET
 * against the library's EVALSHA, which includes the SET and SADD it runs.
 */
async function serverCost(client: BareClient): Promise<string> {
  const stats = await client.info("commandstats");
  const usec = (command: string) =>
    Number(stats.match(new RegExp(`cmdstat_${command}:.*?usec_per_call=([\\d.]+)`))?.[1]);
  return `server µs/call: SET ${fmt(usec("set"), 2)}, EVALSHA ${fmt(usec("evalsha"), 2)}`;
}

/** Several library variants against one bare baseline, interleaved round-robin. */
async function compareVariants(
  server: string,
  group: string,
  bare: Op,
  variants: { name: string; op: Op; note?: string }[],
  workers: number,
): Promise<void> {
  if (!selected(group)) return;
  const sides = [{ name: "bare", op: bare }, ...variants];
  for (const side of sides) await run(side.op, workers, DURATION / 2);
  const samples = sides.map(() => [] as Sample[]);
  const ratios = variants.map(() => [] as number[]);
  for (let round = 0; round < ROUNDS; round++) {
    const order = sides.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    const measured = await runInterleaved(order.map((i) => sides[i].op), workers, DURATION);
    const rates: number[] = [];
    order.forEach((i, at) => {
      samples[i].push(measured[at]);
      rates[i] = measured[at].opsPerSec;
    });
    variants.forEach((_, v) => ratios[v].push(rates[v + 1] / rates[0]));
  }
  const bareFigure = figure(samples[0]);
  variants.forEach((variant, v) => {
    const row: Row = {
      server,
      name: `${group}: ${variant.name}`,
      bare: bareFigure,
      lib: figure(samples[v + 1]),
      ratio: {
        median: median(ratios[v]),
        min: Math.min(...ratios[v]),
        max: Math.max(...ratios[v]),
      },
      note: variant.note,
    };
    rows.push(row);
    printRow(row);
  });
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "-";

function printHeader(): void {
  console.log(
    [
      "server".padEnd(14),
      "row".padEnd(40),
      "bare ops/s".padStart(11),
      "lib ops/s".padStart(11),
      "bare p50/p99 µs".padStart(17),
      "lib p50/p99 µs".padStart(17),
      "ratio med [min–max]".padStart(22),
      "target",
    ].join(" "),
  );
}

function printRow(row: Row): void {
  const lat = (f?: Figure) => f ? `${fmt(f.p50Us)}/${fmt(f.p99Us)}` : "-";
  const ratio = row.ratio
    ? `${fmt(row.ratio.median, 2)} [${fmt(row.ratio.min, 2)}–${fmt(row.ratio.max, 2)}]`
    : "-";
  const target = row.target === undefined
    ? (row.note ?? "")
    : `≥ ${row.target.toFixed(2)} ${row.ratio!.median >= row.target ? "ok" : "MISSED"}${
      row.note ? ` (${row.note})` : ""
    }`;
  console.log(
    [
      row.server.padEnd(14),
      row.name.padEnd(40),
      (row.bare ? fmt(row.bare.opsPerSec) : "-").padStart(11),
      fmt(row.lib.opsPerSec).padStart(11),
      lat(row.bare).padStart(17),
      lat(row.lib).padStart(17),
      ratio.padStart(22),
      target,
    ].join(" "),
  );
}

/** The table docs/performance.md shows: `deno task bench --markdown`. */
function printMarkdown(hashing: HashingFigures): void {
  const lines = [
    "",
    "| server | row | bare ops/s | library ops/s | library / bare, median [min–max] | target |",
    "|---|---|--:|--:|--:|---|",
  ];
  for (const row of rows) {
    const ratio = row.ratio
      ? `${fmt(row.ratio.median, 2)} [${fmt(row.ratio.min, 2)}–${fmt(row.ratio.max, 2)}]`
      : "";
    const target = row.target === undefined
      ? (row.note ?? "")
      : `≥ ${row.target.toFixed(2)} ${row.ratio!.median >= row.target ? "met" : "**missed**"}${
        row.note ? ` (${row.note})` : ""
      }`;
    lines.push(
      `| ${row.server} | ${row.name} | ${row.bare ? fmt(row.bare.opsPerSec) : ""} | ${
        fmt(row.lib.opsPerSec)
      } | ${ratio} | ${target} |`,
    );
  }
  lines.push(
    "",
    `Key hashing (canonical JSON + SHA-256): small object ${
      fmt(hashing.smallColdUs, 2)
    } µs per key cold, ${fmt(hashing.smallHotUs, 2)} µs hot (memoized digest); ${
      fmt(hashing.largeBytes / 1024, 1)
    } KB object ${fmt(hashing.largeColdUs, 2)} µs.`,
  );
  console.log(lines.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The rows

/** The client library's own class, for bare clients with settings of their own. */
async function clientClass(
  kind: ServerKind,
): Promise<new (options: Record<string, unknown>) => BareClient> {
  const module = kind === "redis" ? await import("ioredis") : await import("iovalkey");
  return (module as unknown as { Redis: new (options: Record<string, unknown>) => BareClient })
    .Redis;
}

/** A JSON value whose text is about `bytes` long. */
function valueOfSize(bytes: number): { id: number; tags: string[]; body: string } {
  const base = { id: 1, tags: ["a", "b"], body: "" };
  const overhead = JSON.stringify(base).length;
  return { ...base, body: "x".repeat(Math.max(0, bytes - overhead)) };
}

async function benchServer(server: TestServer): Promise<string> {
  const Config = server.kind === "redis" ? RedisConfig : ValkeyConfig;
  const config = new Config({ url: server.url });
  if (!(await setCache({ provider: server.kind, config }))) {
    throw new Error(`Cannot reach ${server.kind} at ${server.host}:${server.port}`);
  }
  const client = getCacheClient() as BareClient;
  const info = await client.info("server");
  // Valkey also reports the Redis version it is compatible with: prefer its own.
  const version = (info.match(/valkey_version:(\S+)/) ?? info.match(/redis_version:(\S+)/))?.[1] ??
    "?";
  const label = `${server.kind} ${version}`;
  const prefix = config.prefix;
  const keyOf = (input: unknown) => entryKey(prefix, "", hashInput(input));

  // Sequential get / set of a 100-byte JSON value under a small object key.
  const small = valueOfSize(100);
  const smallText = JSON.stringify(small);
  const hitInput = { query: "user", id: 42 };
  const hitKey = keyOf(hitInput);
  await cacheSet(hitInput, small);
  const missInput = { query: "user", id: -1 };
  const missKey = keyOf(missInput);
  const setInput = { query: "user", id: 43 };
  const setKey = keyOf(setInput);

  await compare(label, "get hit, sequential", {
    bare: () => client.get(hitKey),
    lib: () => cacheGet(hitInput),
  }, { target: 0.9 });
  await compare(label, "get miss, sequential", {
    bare: () => client.get(missKey),
    lib: () => cacheGet(missInput),
  }, { target: 0.9 });
  await client.call("CONFIG", "RESETSTAT");
  await compare(label, "set, sequential", {
    bare: () => client.set(setKey, smallText, "EX", TTL),
    lib: () => cacheSet(setInput, small),
  }, { target: 0.8, note: () => serverCost(client) });
  // A tagged write: the same SET and registry SADD plus one SADD per tag and one to the scope's
  // tag index, in one script call (lua/set_and_register_tags.lua), against the same bare SET EX.
  const taggedInput = { query: "user", id: 44 };
  const threeTags = ["user:44", "orders", "region:eu"];
  await client.call("CONFIG", "RESETSTAT");
  await compare(label, "set with 3 tags, sequential", {
    bare: () => client.set(setKey, smallText, "EX", TTL),
    lib: () => cacheSet(taggedInput, small, { tags: threeTags }),
  }, { target: 0.75, note: () => serverCost(client) });

  // 100 callers in flight: each worker has its own key.
  let turn = 0;
  const conInputs = Array.from({ length: CONCURRENCY }, (_, i) => ({ query: "con", id: i }));
  const conKeys = conInputs.map(keyOf);
  await cacheSetMany(conInputs.map((input) => [input, small] as const));
  const nextIndex = () => (turn = (turn + 1) % CONCURRENCY);
  await compare(label, `get hit, ${CONCURRENCY} concurrent`, {
    bare: () => client.get(conKeys[nextIndex()]),
    lib: () => cacheGet(conInputs[nextIndex()]),
  }, { workers: CONCURRENCY, target: 0.9 });
  await compare(label, `get miss, ${CONCURRENCY} concurrent`, {
    bare: () => client.get(missKey),
    lib: () => cacheGet(missInput),
  }, { workers: CONCURRENCY, target: 0.9 });
  await client.call("CONFIG", "RESETSTAT");
  await compare(label, `set, ${CONCURRENCY} concurrent`, {
    bare: () => client.set(conKeys[nextIndex()], smallText, "EX", TTL),
    lib: () => cacheSet(conInputs[nextIndex()], small),
  }, { workers: CONCURRENCY, target: 0.8, note: () => serverCost(client) });

  // The same calls against the strongest bare setting for callers in flight: a client of its own
  // with ioredis's auto-pipelining on (the library's single-server default is off, since it
  // coalesces a tick's calls itself; see RedisCacheOptions.autoPipelining).
  const ClientClass = await clientClass(server.kind);
  const piped = new ClientClass({
    host: server.host,
    port: server.port,
    enableAutoPipelining: true,
  });
  await compare(label, "get hit, sequential, vs auto-pipelined client", {
    bare: () => piped.get(hitKey),
    lib: () => cacheGet(hitInput),
  }, { target: 0.9, note: "bare: enableAutoPipelining" });
  await compare(label, "set, sequential, vs auto-pipelined client", {
    bare: () => piped.set(setKey, smallText, "EX", TTL),
    lib: () => cacheSet(setInput, small),
  }, { target: 0.8, note: "bare: enableAutoPipelining" });
  await compare(label, `get hit, ${CONCURRENCY} concurrent, vs auto-pipelined client`, {
    bare: () => piped.get(conKeys[nextIndex()]),
    lib: () => cacheGet(conInputs[nextIndex()]),
  }, { workers: CONCURRENCY, target: 0.9, note: "bare: enableAutoPipelining" });
  await compare(label, `set, ${CONCURRENCY} concurrent, vs auto-pipelined client`, {
    bare: () => piped.set(conKeys[nextIndex()], smallText, "EX", TTL),
    lib: () => cacheSet(conInputs[nextIndex()], small),
  }, { workers: CONCURRENCY, target: 0.8, note: "bare: enableAutoPipelining" });

  // Batches of 100.
  await compare(label, "getMany 100 vs MGET", {
    bare: () => client.mget(...conKeys),
    lib: () => cacheGetMany(conInputs),
  }, { target: 0.85 });
  // The same MGET with the work a user of the bare client does to get values: the keys hashed
  // (with the library's own hashing) and the texts parsed. The ratio shows what the library
  // itself adds to a batch read.
  await compare(label, "getMany 100 vs MGET + hashing + JSON.parse", {
    bare: async () => {
      const texts = await client.mget(...conInputs.map(keyOf));
      return texts.map((text) => text === null ? null : JSON.parse(text));
    },
    lib: () => cacheGetMany(conInputs),
  }, { note: "bare hashes the inputs and parses the values" });
  const manyEntries = conInputs.map((input) => [input, small] as const);
  await compare(label, "setMany 100 vs pipelined SET EX", {
    bare: () => {
      const pipeline = client.pipeline();
      for (const key of conKeys) pipeline.set(key, smallText, "EX", TTL);
      return pipeline.exec();
    },
    lib: () => cacheSetMany(manyEntries),
  }, { target: 0.85 });

  // Large values.
  for (const [size, label2] of [[10 * 1024, "10 KB"], [1024 * 1024, "1 MB"]] as const) {
    const value = valueOfSize(size);
    const text = JSON.stringify(value);
    const input = { query: "large", size };
    const key = keyOf(input);
    await cacheSet(input, value);
    await compare(label, `get ${label2}, sequential`, {
      bare: () => client.get(key),
      lib: () => cacheGet(input),
    }, { note: "lib parses the JSON" });
    await compare(label, `set ${label2}, sequential`, {
      bare: () => client.set(key, text, "EX", TTL),
      lib: () => cacheSet(input, value),
    }, { note: "lib serializes the JSON" });
  }

  if (selected("pool")) await benchPool(server, label, config, small, conInputs, conKeys, piped);
  await piped.quit();
  if (selected("clear tenant")) await benchClear(server, label, "clear tenant");
  if (selected("invalidate tag")) await benchClear(server, label, "invalidate tag");
  await closeCache();
  return label;
}

/**
 * The provider on a 3-master cluster (cluster mode: hash-tagged layout, one tick's GETs as one
 * MGET per slot, writes per scope bucket as one script call) against a bare `Cluster` client of
 * the same library on the same cluster, with auto-pipelining on (its strongest setting for
 * callers in flight), sending ready-made keys of the cluster layout. On one 2-core machine the
 * masters share the cores with the client: this shows the library's cost over the bare client,
 * not scale-out.
 */
async function benchCluster(server: TestServer, label: string): Promise<void> {
  if (!selected("cluster")) return;
  const cluster = await startCluster(server.kind);
  const Config = server.kind === "redis" ? RedisConfig : ValkeyConfig;
  const config = new Config({ clusterNodes: cluster.seeds });
  const cache = server.kind === "redis"
    ? new RedisCache({ config })
    : new ValkeyCache({ config: config as ValkeyConfig });
  const module = server.kind === "redis" ? await import("ioredis") : await import("iovalkey");
  const Cluster = (module as unknown as {
    Cluster: new (
      seeds: { host: string; port: number }[],
      options: Record<string, unknown>,
    ) => BareClient;
  }).Cluster;
  const bare = new Cluster(
    cluster.nodes.map((node) => ({ host: node.host, port: node.port })),
    { enableAutoPipelining: true },
  );
  const layout = new ClusterLayout(config.prefix, {
    tenantBuckets: config.clusterTenantBuckets,
    globalBuckets: config.clusterGlobalBuckets,
  });
  const keyOf = (input: unknown) => layout.entryKey("", hashInput(input));
  try {
    if (!(await cache.connect())) throw new Error("cluster bench: connect failed");
    const inputs = Array.from({ length: CONCURRENCY }, (_, i) => ({ query: "cluster", id: i }));
    const keys = inputs.map(keyOf);
    const value = valueOfSize(100);
    const text = JSON.stringify(value);
    await cache.setMany(inputs.map((input) => [input, value] as const));
    let turn = 0;
    const next = () => (turn = (turn + 1) % CONCURRENCY);
    const note = `bare: ${cluster.nodes.length}-master Cluster client, enableAutoPipelining`;
    await compare(label, "cluster: get hit, sequential", {
      bare: () => bare.get(keys[0]),
      lib: () => cache.get(inputs[0]),
    }, { target: 0.9, note });
    await compare(label, "cluster: set, sequential", {
      bare: () => bare.set(keys[1], text, "EX", TTL),
      lib: () => cache.set(inputs[1], value),
    }, { note });
    await compare(label, `cluster: get hit, ${CONCURRENCY} concurrent`, {
      bare: () => bare.get(keys[next()]),
      lib: () => cache.get(inputs[next()]),
    }, { workers: CONCURRENCY, target: 1.0, note });
    await compare(label, `cluster: set, ${CONCURRENCY} concurrent`, {
      bare: () => bare.set(keys[next()], text, "EX", TTL),
      lib: () => cache.set(inputs[next()], value),
    }, { workers: CONCURRENCY, target: 0.8, note });
  } finally {
    await Promise.all([cache.close(), bare.quit()]);
    await cluster.stop();
  }
}

/**
 * Pool size × auto-pipelining under 100 concurrent callers, against the strongest bare baseline
 * (an auto-pipelined client), to choose the defaults.
 */
async function benchPool(
  server: TestServer,
  label: string,
  config: RedisConfig,
  small: unknown,
  inputs: { query: string; id: number }[],
  keys: string[],
  client: BareClient,
): Promise<void> {
  const caches: { name: string; cache: RedisCache | ValkeyCache }[] = [];
  for (const autoPipelining of [true, false]) {
    for (const poolSize of [1, 4, 16]) {
      const options = { config, poolSize, autoPipelining };
      const cache = server.kind === "redis"
        ? new RedisCache(options)
        : new ValkeyCache({ ...options, config: config as ValkeyConfig });
      if (!(await cache.connect())) throw new Error("pool connect failed");
      caches.push({ name: `pool ${poolSize}, autopipe ${autoPipelining ? "on" : "off"}`, cache });
    }
  }
  let turn = 0;
  const next = () => (turn = (turn + 1) % inputs.length);
  await compareVariants(
    label,
    "pool, get 100 concurrent",
    () => client.get(keys[next()]),
    caches.map(({ name, cache }) => ({ name, op: () => cache.get(inputs[next()]) })),
    CONCURRENCY,
  );
  const smallText = JSON.stringify(small);
  await compareVariants(
    label,
    "pool, set 100 concurrent",
    () => client.set(keys[next()], smallText, "EX", TTL),
    caches.map(({ name, cache }) => ({ name, op: () => cache.set(inputs[next()], small) })),
    CONCURRENCY,
  );
  await Promise.all(caches.map(({ cache }) => cache.close()));
}

/**
 * Clear of a big tenant, or invalidation of a big tag (all of the tenant's entries carry it):
 * total time, the longest single server call (SLOWLOG with a 0 µs threshold during the clear)
 * and the worst latency of a GET probe running on its own connection meanwhile.
 */
async function benchClear(
  server: TestServer,
  label: string,
  operation: "clear tenant" | "invalidate tag",
): Promise<void> {
  const tenant = "bench-clear";
  const tags = operation === "invalidate tag" ? ["bench-tag"] : undefined;
  const batch = Array.from({ length: 1000 }, (_, i) => [{ q: "clear", i }, { v: i }] as const);
  for (let start = 0; start < CLEAR_KEYS; start += 1000) {
    await cacheSetMany(batch.map(([input, value]) => [{ ...input, start }, value]), {
      companyId: tenant,
      tags,
    });
  }
  const config = new (server.kind === "redis" ? RedisConfig : ValkeyConfig)({ url: server.url });
  const probeCache = server.kind === "redis"
    ? new RedisCache({ config, autoPipelining: false })
    : new ValkeyCache({ config: config as ValkeyConfig, autoPipelining: false });
  await probeCache.connect();
  const probe = probeCache.client as unknown as BareClient;
  await probe.call("CONFIG", "SET", "slowlog-max-len", "100000");
  await probe.call("CONFIG", "SET", "slowlog-log-slower-than", "0");
  await probe.call("SLOWLOG", "RESET");
  let probing = true;
  let worstProbeMs = 0;
  let probes = 0;
  const prober = (async () => {
    while (probing) {
      const t0 = performance.now();
      await probe.get("probe:missing");
      worstProbeMs = Math.max(worstProbeMs, performance.now() - t0);
      probes++;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  })();
  const t0 = performance.now();
  const deleted = tags
    ? await cacheInvalidateTags(tags, { companyId: tenant })
    : await cacheClearCompany(tenant);
  const totalMs = performance.now() - t0;
  probing = false;
  await prober;
  await probe.call("CONFIG", "SET", "slowlog-log-slower-than", "10000");
  const log = await probe.call("SLOWLOG", "GET", "100000") as [
    number,
    number,
    number,
    string[],
  ][];
  let longestScriptUs = 0;
  for (const [, , micros, args] of log) {
    if (String(args[0]).toLowerCase() === "evalsha") {
      longestScriptUs = Math.max(longestScriptUs, micros);
    }
  }
  await probeCache.close();
  if (deleted !== CLEAR_KEYS) {
    throw new Error(`${operation} deleted ${deleted}, expected ${CLEAR_KEYS}`);
  }
  const note = `${fmt(deleted)} keys: total ${fmt(totalMs)} ms (≤ 1000), longest call ${
    fmt(longestScriptUs / 1000, 2)
  } ms (≤ 10), worst probe GET ${fmt(worstProbeMs, 2)} ms of ${probes} (≤ 25) ${
    totalMs <= 1000 && longestScriptUs <= 10_000 && worstProbeMs <= 25 ? "ok" : "MISSED"
  }`;
  const row: Row = {
    server: label,
    name: operation === "clear tenant" ? "clear tenant" : `invalidate ${fmt(CLEAR_KEYS)}-entry tag`,
    lib: { opsPerSec: deleted / (totalMs / 1000), p50Us: NaN, p99Us: NaN },
    note,
  };
  clears.push({
    server: label,
    operation,
    deleted,
    totalMs,
    longestCallMs: longestScriptUs / 1000,
    worstProbeMs,
    probes,
  });
  rows.push(row);
  printRow(row);
}

/**
 * `get` hit with OpenTelemetry metrics on (spans off) against the same call with them off: two
 * providers with the same settings on the same server, the "bare" side being the one without
 * `otel`. The meter provider is the SDK's with a Prometheus exporter (not serving), collected
 * once after the rows to check that every hit was counted.
 */
async function benchOtel(server: TestServer, label: string): Promise<void> {
  const names = ["sequential", `${CONCURRENCY} concurrent`].map((how) =>
    `get hit, otel metrics on vs off, ${how}`
  );
  if (!names.some(selected)) return;
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  const config = new (server.kind === "redis" ? RedisConfig : ValkeyConfig)({ url: server.url });
  const make = (otel: boolean) => {
    const options = { config, otel: otel ? { meterProvider } : false };
    return server.kind === "redis"
      ? new RedisCache(options)
      : new ValkeyCache({ ...options, config: config as ValkeyConfig });
  };
  const off = make(false);
  const on = make(true);
  try {
    if (!(await off.connect()) || !(await on.connect())) throw new Error("otel bench: connect");
    const inputs = Array.from({ length: CONCURRENCY }, (_, i) => ({ query: "otel", id: i }));
    await off.setMany(inputs.map((input) => [input, valueOfSize(100)] as const));
    let turn = 0;
    const next = () => inputs[turn = (turn + 1) % CONCURRENCY];
    const note = "bare: the same provider without otel";
    await compare(label, names[0], {
      bare: () => off.get(inputs[0]),
      lib: () => on.get(inputs[0]),
    }, { target: 0.95, note });
    await compare(label, names[1], {
      bare: () => off.get(next()),
      lib: () => on.get(next()),
    }, { workers: CONCURRENCY, target: 0.95, note });
    // Every hit the "on" side made was counted; durations are one sample per batch answered.
    const { resourceMetrics } = await exporter.collect();
    const metric = (name: string) =>
      resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)
        .find((metric) => metric.descriptor.name === name)?.dataPoints ?? [];
    const hits = metric("cache.hits").reduce((sum, point) => sum + (point.value as number), 0);
    if (hits !== on.stats().hits) {
      throw new Error(`otel bench: cache.hits ${hits}, provider stats ${on.stats().hits}`);
    }
    const samples = metric("db.client.operation.duration")
      .reduce((sum, point) => sum + (point.value as { count: number }).count, 0);
    console.log(
      `${label.padEnd(14)} otel: ${fmt(hits)} hits counted, ${fmt(samples)} duration samples`,
    );
  } finally {
    await Promise.all([off.close(), on.close()]);
    await meterProvider.shutdown();
  }
}

const clears: {
  server: string;
  operation: "clear tenant" | "invalidate tag";
  deleted: number;
  totalMs: number;
  longestCallMs: number;
  worstProbeMs: number;
  probes: number;
}[] = [];

/**
 * Key canonicalization + SHA-256 alone, µs per key. "cold" cycles through 10,000 distinct inputs,
 * more than the digest memo holds, so every call canonicalizes and hashes; "hot" repeats one
 * input, as a cache's hot keys do, so the memo answers.
 */
function benchHashing(): HashingFigures {
  const smallOf = (i: number) => ({
    query: "orders",
    userId: i,
    filters: { status: "open", page: 2 },
  });
  const largeOf = (i: number) => ({
    query: "report",
    ids: Array.from({ length: 150 }, (_, j) => i + j * 7919),
    filters: Object.fromEntries(Array.from({ length: 30 }, (_, j) => [`field${j}`, `value-${j}`])),
  });
  const time = (inputs: unknown[], n: number): number => {
    for (let i = 0; i < n / 2; i++) hashInput(inputs[i % inputs.length]);
    const results: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) hashInput(inputs[i % inputs.length]);
      results.push(((performance.now() - t0) * 1000) / n);
    }
    return median(results);
  };
  const distinct = 10_000;
  const figures: HashingFigures = {
    smallColdUs: time(Array.from({ length: distinct }, (_, i) => smallOf(i)), 50_000),
    smallHotUs: time([smallOf(1)], 50_000),
    largeColdUs: time(Array.from({ length: distinct }, (_, i) => largeOf(i)), 10_000),
    largeBytes: JSON.stringify(largeOf(1)).length,
  };
  console.log(
    `hashing: small object ${fmt(figures.smallColdUs, 2)} µs/key cold, ${
      fmt(figures.smallHotUs, 2)
    } µs/key hot (target ≤ 3: ${figures.smallColdUs <= 3 ? "ok" : "MISSED"}); ${
      fmt(figures.largeBytes / 1024, 1)
    } KB object ${fmt(figures.largeColdUs, 2)} µs/key`,
  );
  return figures;
}

interface HashingFigures {
  smallColdUs: number;
  smallHotUs: number;
  largeColdUs: number;
  largeBytes: number;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  const runtime = process.versions.deno
    ? `Deno ${process.versions.deno}`
    : `Node ${process.version}`;
  console.log(
    `core-lib cache benchmark: ${runtime}, ${ROUNDS} rounds × ${DURATION} ms per side, ` +
      `ratio = library / bare on the same connection`,
  );
  const hashing = benchHashing();
  printHeader();
  for (const kind of KINDS) {
    const server = await startServer(kind);
    try {
      const label = await benchServer(server);
      await benchOtel(server, label);
      await benchCluster(server, label);
    } finally {
      await closeCache();
      await server.stop();
    }
  }
  if (flags.markdown) printMarkdown(hashing);
  const seconds = (performance.now() - started) / 1000;
  console.log(`done in ${fmt(seconds, 1)} s`);
  if (flags.json) {
    await writeFile(
      flags.json,
      JSON.stringify(
        { runtime, rounds: ROUNDS, durationMs: DURATION, hashing, rows, clears, seconds },
        null,
        2,
      ) +
        "\n",
    );
    console.log(`figures written to ${flags.json}`);
  }
}

await main();
