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
 *   deno task bench --filter near       (only the near-cache rows; under `bench:node` also the
 *                                        peer rows against BentoCache)
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

import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  cacheClearCompany,
  type CacheEvent,
  cacheGet,
  cacheGetMany,
  cacheInvalidateTags,
  cacheSet,
  cacheSetMany,
  closeCache,
  getCacheClient,
  type NearCacheOptions,
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
import { fmt, median, percentile } from "./bench_figures.ts";
import { type ChildLines, childLines } from "./child_lines.ts";

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
 * The longest the call-by-call loop runs without letting the event loop turn. A side that never
 * waits for I/O (a near-cache hit, a BentoCache memory hit) resolves in microtasks alone, and
 * while only microtasks run no timer fires and no socket is read: the near cache's heartbeat
 * would go unanswered and, after `maxStaleness`, empty it (as it would in an application that
 * blocked its event loop that long). The measurement pauses (uncounted) every so often instead,
 * and between slices, as a request handler's process does between requests.
 */
const YIELD_EVERY_MS = 20;

/** One turn of the event loop (a timer: under Deno, setImmediate alone may not poll sockets). */
const yieldToLoop = () => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * One round of `ops`, each for about `ms`, interleaved so that drift within the round (CPU
 * frequency, a neighbour's load, GC) hits every side alike:
 * - one worker: call by call (A B A B ...), each side's rate being its calls over the time spent
 *   in them;
 * - more workers (or `sliced`): in SLICES slices per side (A B A B ...), each slice drained before
 *   the next, a side's rate being its calls over the time of its slices.
 */
async function runInterleaved(
  ops: Op[],
  workers: number,
  ms: number,
  sliced = false,
): Promise<Sample[]> {
  const latencies = ops.map(() => [] as number[]);
  const spent = ops.map(() => 0);
  if (workers === 1 && !sliced) {
    const deadline = performance.now() + ms * ops.length;
    let yielded = performance.now();
    while (performance.now() < deadline) {
      if (performance.now() - yielded > YIELD_EVERY_MS) {
        await yieldToLoop();
        yielded = performance.now();
      }
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
        await yieldToLoop();
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
    /** One worker in slices (as for callers in flight) instead of call by call. */
    sliced?: boolean;
    /** Run before the measurement (e.g. CONFIG RESETSTAT for a note of server costs). */
    before?: () => Promise<unknown>;
  } = {},
): Promise<void> {
  if (!selected(name)) return;
  await options.before?.();
  const workers = options.workers ?? 1;
  await run(sides.bare, workers, DURATION / 2);
  await yieldToLoop();
  await run(sides.lib, workers, DURATION / 2);
  await yieldToLoop();
  const bare: Sample[] = [];
  const lib: Sample[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let b: Sample, l: Sample;
    if (round % 2 === 0) {
      [b, l] = await runInterleaved([sides.bare, sides.lib], workers, DURATION, options.sliced);
    } else {
      [l, b] = await runInterleaved([sides.lib, sides.bare], workers, DURATION, options.sliced);
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

/** The server's own µs per call of `commands` since the last CONFIG RESETSTAT, for a note. */
async function serverCalls(client: BareClient, commands: string[]): Promise<string> {
  const stats = await client.info("commandstats");
  const usec = (command: string) =>
    Number(stats.match(new RegExp(`cmdstat_${command}:.*?usec_per_call=([\\d.]+)`))?.[1]);
  const parts = commands.map((command) => `${command.toUpperCase()} ${fmt(usec(command), 2)}`);
  return `server µs/call: ${parts.join(", ")}`;
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

// ---------------------------------------------------------------------------------------------
// Near cache

/** What the near-cache rows measured besides ratios (in `--json`). */
const nearFigures: Record<string, unknown>[] = [];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Epoch milliseconds with sub-millisecond precision: one clock for this process and its worker. */
const epochMs = () => performance.timeOrigin + performance.now();

/**
 * A provider of `server` with the near cache on (`nearCache`) or off, named `name` so that its
 * keys lie under a prefix of their own: the near-cache providers track `cache:<name>:` and
 * `cache:tenant:`, so the writes of a provider named otherwise (the "off" side) send them nothing.
 */
function nearProvider(
  server: TestServer,
  name: string,
  nearCache: boolean | NearCacheOptions,
): RedisCache | ValkeyCache {
  const config = new (server.kind === "redis" ? RedisConfig : ValkeyConfig)({ url: server.url });
  const options = { config, name, nearCache };
  return server.kind === "redis"
    ? new RedisCache(options)
    : new ValkeyCache({ ...options, config: config as ValkeyConfig });
}

/** Connects `cache` and waits until its near cache's tracking is armed (it serves only then). */
async function armed(cache: RedisCache | ValkeyCache): Promise<void> {
  if (!(await cache.connect())) throw new Error("near bench: connect failed");
  const deadline = performance.now() + 5000;
  while (cache.stats().nearCache?.armed !== true) {
    if (performance.now() > deadline) throw new Error("near bench: tracking not armed");
    await sleep(5);
  }
}

/**
 * The near-cache rows (`--filter near`), each in the same run on the same server:
 * - get hit, sequential, against a bare GET on the provider's own connection (target ≥ 25), call
 *   by call and again in slices (each side alone for a slice: the hit's code stays hot), and 100 in
 *   flight against an auto-pipelined bare client (target ≥ 4);
 * - against the same calls on a provider with the near cache off (target ≥ 0.9): a get miss (the
 *   entry absent on the server: both sides send a GET, or an MGET for the calls of a tick); a get
 *   of an entry present on the server that the near cache evicted since its last read (each side
 *   cycles through 1,000 entries, the near cache holding 100, so every read misses locally, reads
 *   through and installs, evicting another: a lone read of such a key is one `read_with_ttl`
 *   call, value and PTTL, and a tick's reads one MGET followed by one `read_ttls` call); a
 *   set (the near-cache side also drops its local copy and receives its own write's
 *   invalidation on its subscriber);
 * - the delay from a foreign write (a bare client's SET) to the local eviction;
 * - a tenant clear by one provider reaching a second process whose near cache holds the tenant,
 *   and the same with that process's event loop busy meanwhile (the server buffers it all);
 * - under Node with BentoCache installed (`deno task bench:node`): a hit against a BentoCache hit.
 */
async function benchNear(server: TestServer, label: string): Promise<void> {
  const rowsOf = {
    hitSeq: "near cache: get hit, sequential, vs bare GET",
    hitSlices: "near cache: get hit, sequential, vs bare GET, in slices",
    hitCon: `near cache: get hit, ${CONCURRENCY} concurrent, vs auto-pipelined client`,
    missSeq: "near cache: get miss (absent), sequential, on vs off",
    missCon: `near cache: get miss (absent), ${CONCURRENCY} concurrent, on vs off`,
    evictSeq: "near cache: get, evicted each time, sequential, on vs off",
    evictCon: `near cache: get, evicted each time, ${CONCURRENCY} concurrent, on vs off`,
    setSeq: "near cache: set, sequential, on vs off",
    setCon: `near cache: set, ${CONCURRENCY} concurrent, on vs off`,
  };
  const delayRow = "near cache: invalidation delay, foreign SET to local eviction";
  const clearRow = `near cache: ${fmt(CLEAR_KEYS)}-key tenant clear seen by another process`;
  const blockedRow = `${clearRow}, its event loop busy ${fmt(BLOCK_MS / 1000, 1)} s`;
  const peerRows = [
    "near cache vs BentoCache: get hit, sequential",
    `near cache vs BentoCache: get hit, ${CONCURRENCY} concurrent`,
  ];
  const ratioRows = Object.values(rowsOf).filter(selected);
  const wanted = (name: string) => selected(name);
  if (ratioRows.length > 0) await benchNearRatios(server, label, rowsOf);
  if (wanted(delayRow)) await benchNearDelay(server, label, delayRow);
  if (wanted(clearRow)) await benchNearClear(server, label, clearRow, 0);
  if (wanted(blockedRow)) await benchNearClear(server, label, blockedRow, BLOCK_MS);
  if (peerRows.some(wanted)) await benchBentoCache(server, label, peerRows);
}

async function benchNearRatios(
  server: TestServer,
  label: string,
  names: Record<
    | "hitSeq"
    | "hitSlices"
    | "hitCon"
    | "missSeq"
    | "missCon"
    | "evictSeq"
    | "evictCon"
    | "setSeq"
    | "setCon",
    string
  >,
): Promise<void> {
  const on = nearProvider(server, "on", true);
  const off = nearProvider(server, "of", false);
  /** Holds 100 entries and reads through 1,000: every read is evicted before it comes again. */
  const thrash = nearProvider(server, "th", { maxEntries: CONCURRENCY });
  const ClientClass = await clientClass(server.kind);
  const piped = new ClientClass({
    host: server.host,
    port: server.port,
    enableAutoPipelining: true,
  });
  try {
    await Promise.all([armed(on), off.connect(), armed(thrash)]);
    const prefix = on.prefix;
    const keyOn = (input: unknown) => entryKey(prefix, "on", hashInput(input));
    const bare = on.client as unknown as BareClient;
    const small = valueOfSize(100);
    const hitInput = { query: "near", id: 42 };
    const missInput = { query: "near", id: -1 };
    const setInput = { query: "near", id: 43 };
    const conInputs = Array.from({ length: CONCURRENCY }, (_, i) => ({ query: "near-con", id: i }));
    const conKeys = conInputs.map(keyOn);
    const cycle = Array.from(
      { length: 10 * CONCURRENCY },
      (_, i) => ({ query: "near-cyc", id: i }),
    );
    await on.setMany([hitInput, ...conInputs].map((input) => [input, small] as const));
    await off.setMany(cycle.map((input) => [input, small] as const));
    await thrash.setMany(cycle.map((input) => [input, small] as const));
    // Installed before the rows: the first read of each is a local miss that reads through.
    await on.getMany([hitInput, ...conInputs]);
    let turn = 0;
    const next = () => (turn = (turn + 1) % CONCURRENCY);
    let at = 0;
    let atOff = 0;
    const nextCycle = () => cycle[at = (at + 1) % cycle.length];
    const nextCycleOff = () => cycle[atOff = (atOff + 1) % cycle.length];

    const hitsBefore = on.stats().nearCache!;
    await compare(label, names.hitSeq, {
      bare: () => bare.get(keyOn(hitInput)),
      lib: () => on.get(hitInput),
    }, { target: 25, note: "bare: GET on the provider's own connection" });
    // The same, each side running alone for a slice (4 × DURATION / 4 per round): the hit runs
    // back to back with its code and data hot, where call by call it runs after each network wait.
    await compare(label, names.hitSlices, {
      bare: () => bare.get(keyOn(hitInput)),
      lib: () => on.get(hitInput),
    }, { target: 25, sliced: true, note: "bare: GET on the provider's own connection" });
    await compare(label, names.hitCon, {
      bare: () => piped.get(conKeys[next()]),
      lib: () => on.get(conInputs[next()]),
    }, { workers: CONCURRENCY, target: 4, note: "bare: enableAutoPipelining" });
    const hitsAfter = on.stats().nearCache!;
    // Server time per call (INFO commandstats) of each row: GET and MGET on both sides; the near
    // cache's PTTLs (PTTL, or EVALSHA of read_with_ttl / read_ttls) on its side alone.
    const resetStats = () => bare.call("CONFIG", "RESETSTAT");
    const reads = (note: string) => async () =>
      `bare: the same calls, near cache off; ${note}; ${await serverCalls(bare, [
        "get",
        "mget",
        "evalsha",
        "pttl",
      ])}`;
    await compare(label, names.missSeq, {
      bare: () => off.get(missInput),
      lib: () => on.get(missInput),
    }, { target: 0.9, before: resetStats, note: reads("absent on the server") });
    await compare(label, names.missCon, {
      bare: () => off.get(missInput),
      lib: () => on.get(missInput),
    }, {
      workers: CONCURRENCY,
      target: 0.9,
      before: resetStats,
      note: reads("absent on the server"),
    });
    const thrashBefore = thrash.stats().nearCache!;
    const cycled = reads("1,000 entries read in turn, the near cache holds 100");
    await compare(label, names.evictSeq, {
      bare: () => off.get(nextCycleOff()),
      lib: () => thrash.get(nextCycle()),
    }, { target: 0.9, before: resetStats, note: cycled });
    await compare(label, names.evictCon, {
      bare: () => off.get(nextCycleOff()),
      lib: () => thrash.get(nextCycle()),
    }, { workers: CONCURRENCY, target: 0.9, before: resetStats, note: cycled });
    const thrashAfter = thrash.stats().nearCache!;
    // Both sides write with the same script: its server time would not tell them apart.
    const writes = "bare: the same calls, near cache off";
    await compare(label, names.setSeq, {
      bare: () => off.set(setInput, small),
      lib: () => on.set(setInput, small),
    }, { target: 0.9, note: writes });
    await compare(label, names.setCon, {
      bare: () => off.set(conInputs[next()], small),
      lib: () => on.set(conInputs[next()], small),
    }, { workers: CONCURRENCY, target: 0.9, note: writes });

    // The hit rows were served from memory, the evicted-each-time rows were not.
    const hitRowMisses = hitsAfter.misses - hitsBefore.misses;
    const thrashHits = thrashAfter.hits - thrashBefore.hits;
    console.log(
      `${label.padEnd(14)} near cache: hit rows ${fmt(hitsAfter.hits - hitsBefore.hits)} hits, ` +
        `${fmt(hitRowMisses)} misses, ${
          fmt(hitsAfter.flushes - hitsBefore.flushes)
        } flushes; evicted-each-time rows ${
          fmt(thrashAfter.misses - thrashBefore.misses)
        } misses, ${fmt(thrashHits)} hits, ${
          fmt(thrashAfter.evictions - thrashBefore.evictions)
        } LRU evictions`,
    );
    nearFigures.push({
      server: label,
      row: "near cache: counters",
      hitRows: { hits: hitsAfter.hits - hitsBefore.hits, misses: hitRowMisses },
      evictedRows: {
        hits: thrashHits,
        misses: thrashAfter.misses - thrashBefore.misses,
        evictions: thrashAfter.evictions - thrashBefore.evictions,
      },
    });
  } finally {
    await Promise.all([on.close(), off.close(), thrash.close(), piped.quit()]);
  }
}

/**
 * Delay from a foreign write to the local eviction: a provider with the near cache holds one entry
 * (read through, checked to be held); a bare client on a connection of its own SETs the key; the
 * delay runs from just before the SET is sent to the `near-invalidation` event (the listener runs
 * inside the eviction). Also: the eviction against the SET's reply (negative: before the reply).
 */
async function benchNearDelay(server: TestServer, label: string, name: string): Promise<void> {
  const samples = flags.quick ? 100 : 400;
  const cache = nearProvider(server, "dl", true);
  const ClientClass = await clientClass(server.kind);
  const writer = new ClientClass({ host: server.host, port: server.port });
  let waiting: ((at: number) => void) | undefined;
  const unsubscribe = cache.subscribe((event: CacheEvent) => {
    if (event.type === "near-invalidation" && waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve(performance.now());
    }
  });
  try {
    await armed(cache);
    const input = { query: "near-delay" };
    const key = entryKey(cache.prefix, "dl", hashInput(input));
    const value = valueOfSize(100);
    const text = JSON.stringify(value);
    await cache.set(input, value);
    const delays: number[] = [];
    const afterReply: number[] = [];
    for (let i = 0; i < samples + 20; i++) {
      // Read until held: a read is installed once its PTTL is back (read after the value, or
      // with it for a key held before), and not at all when the invalidation of the previous
      // round's write arrives while it is in flight.
      for (let wait = 0; cache.stats().nearCache!.entries !== 1; wait++) {
        if (wait > 1000) throw new Error("near delay: not held");
        if ((await cache.get(input)) === null) throw new Error("near delay: entry missing");
        await sleep(1);
      }
      const evicted = new Promise<number>((resolve) => waiting = resolve);
      const t0 = performance.now();
      const replied = writer.set(key, text, "EX", TTL).then(() => performance.now());
      const [evictedAt, repliedAt] = await Promise.all([evicted, replied]);
      // The first 20 warm up the JIT and the connections.
      if (i >= 20) {
        delays.push(evictedAt - t0);
        afterReply.push(evictedAt - repliedAt);
      }
      await sleep(1);
    }
    delays.sort((a, b) => a - b);
    afterReply.sort((a, b) => a - b);
    const us = (ms: number) => fmt(ms * 1000);
    const p50 = percentile(delays, 0.5);
    const p99 = percentile(delays, 0.99);
    const max = delays[delays.length - 1];
    const note = `${samples} foreign SETs: p50 ${us(p50)} µs, p99 ${us(p99)} µs, max ${
      us(max)
    } µs (aim p99 ≤ 1,000 ${p99 <= 1 ? "ok" : "MISSED"}); eviction vs SET reply p50 ${
      us(percentile(afterReply, 0.5))
    } µs`;
    const row: Row = {
      server: label,
      name,
      lib: { opsPerSec: NaN, p50Us: p50 * 1000, p99Us: p99 * 1000 },
      note,
    };
    rows.push(row);
    printRow(row);
    nearFigures.push({
      server: label,
      row: name,
      samples,
      p50Us: p50 * 1000,
      p99Us: p99 * 1000,
      maxUs: max * 1000,
      afterReplyP50Us: percentile(afterReply, 0.5) * 1000,
      afterReplyP99Us: percentile(afterReply, 0.99) * 1000,
    });
  } finally {
    unsubscribe();
    await Promise.all([cache.close(), writer.quit()]);
  }
}

/** `host:port` / `id` / `omem` of the pub/sub connections (CLIENT LIST TYPE pubsub). */
async function pubsubClients(client: BareClient): Promise<Map<string, number>> {
  const list = String(await client.call("CLIENT", "LIST", "TYPE", "pubsub"));
  const clients = new Map<string, number>();
  for (const line of list.split("\n")) {
    const id = line.match(/\bid=(\d+)/)?.[1];
    const omem = line.match(/\bomem=(\d+)/)?.[1];
    if (id !== undefined) clients.set(id, Number(omem ?? 0));
  }
  return clients;
}

/** Runs scripts/bench_near_worker (`deno run` on the .ts under Deno, `node` on its .js). */
function startNearWorker(spec: Record<string, unknown>): ChildLines {
  const isDeno = "Deno" in globalThis;
  const file = fileURLToPath(
    new URL(`./bench_near_worker.${isDeno ? "ts" : "js"}`, import.meta.url),
  );
  const args = isDeno
    ? ["run", "--allow-net=127.0.0.1,localhost", "--allow-env", "--allow-read", "--allow-sys", file]
    : [file];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, BENCH_NEAR_WORKER: JSON.stringify(spec) },
    stdio: ["pipe", "pipe", "pipe"],
  });
  return childLines(child, "near worker");
}

/** How long the worker of the "busy" tenant-clear row keeps its event loop busy. */
const BLOCK_MS = 2000;

/**
 * A tenant of CLEAR_KEYS entries held in the near cache of a second process
 * (scripts/bench_near_worker.ts), cleared by a provider of this process (near cache off): the
 * time from the start of `clearCompany` to the worker's last eviction, what its subscriber
 * received (messages, keys, RESP2 bytes), the most output the server buffered for it
 * (`omem` of CLIENT LIST, polled every 2 ms) against `client-output-buffer-limit pubsub`, and
 * whether its connection survived (same client id, no flush, still armed).
 *
 * With `blockMs`, the worker keeps its event loop busy that long from just before the clear (with
 * `maxStaleness` 10 s so that its heartbeat holds): its subscriber reads nothing meanwhile, so the
 * server buffers the clear's whole invalidation traffic for it, which is what the output buffer
 * limit is checked against.
 */
async function benchNearClear(
  server: TestServer,
  label: string,
  name: string,
  blockMs: number,
): Promise<void> {
  const tenant = "bench-near-clear";
  const cacheName = "nc";
  const clearer = nearProvider(server, cacheName, false);
  const ClientClass = await clientClass(server.kind);
  const monitor = new ClientClass({ host: server.host, port: server.port });
  let worker: ReturnType<typeof startNearWorker> | undefined;
  try {
    if (!(await clearer.connect())) throw new Error("near clear: connect failed");
    const limits = (await monitor.call("CONFIG", "GET", "client-output-buffer-limit")) as string[];
    const pubsubLimit = String(limits[1]).match(/pubsub (\d+) (\d+) (\d+)/);
    const [hard, soft, softSeconds] = pubsubLimit
      ? pubsubLimit.slice(1).map(Number)
      : [NaN, NaN, NaN];
    for (let start = 0; start < CLEAR_KEYS; start += 1000) {
      const batch = [];
      for (let i = start; i < Math.min(CLEAR_KEYS, start + 1000); i++) {
        batch.push([{ q: "near-clear", i }, { v: i }] as const);
      }
      await clearer.setMany(batch, { companyId: tenant });
    }
    const idsBefore = new Set((await pubsubClients(monitor)).keys());
    worker = startNearWorker({
      kind: server.kind,
      url: server.url,
      name: cacheName,
      companyId: tenant,
      count: CLEAR_KEYS,
      blockMs,
      // Busy longer than the default 1 s, its heartbeat would lapse first (and empty it).
      maxStaleness: blockMs > 0 ? 10 : 1,
    });
    const ready = await worker.line<{ entries: number; bytes: number; readMs: number }>(
      "ready",
      120_000,
    );
    if (ready.entries !== CLEAR_KEYS) {
      throw new Error(`near clear: the worker holds ${ready.entries} of ${CLEAR_KEYS}`);
    }
    const subscriberIds = [...(await pubsubClients(monitor)).keys()].filter((id) =>
      !idsBefore.has(id)
    );
    let polling = true;
    let maxOmem = 0;
    let polls = 0;
    const poller = (async () => {
      while (polling) {
        const clients = await pubsubClients(monitor);
        for (const id of subscriberIds) maxOmem = Math.max(maxOmem, clients.get(id) ?? 0);
        polls++;
        await sleep(2);
      }
    })();
    if (blockMs > 0) {
      worker.send("go");
      await sleep(50);
    }
    const t0 = epochMs();
    const cleared = await clearer.clearCompany(tenant);
    const clearMs = epochMs() - t0;
    const result = await worker.line<{
      held: number;
      evicted: number;
      firstEvictionAt: number;
      lastEvictionAt: number;
      messages: number;
      keys: number;
      bytes: number;
      maxKeysPerMessage: number;
      flushes: number;
      entriesLeft: number;
      armed: boolean;
      cpuMs: number;
    }>("result", 120_000);
    polling = false;
    await poller;
    const idsAfter = await pubsubClients(monitor);
    const survived = subscriberIds.length > 0 && subscriberIds.every((id) => idsAfter.has(id)) &&
      result.flushes === 0 && result.armed;
    if (cleared !== CLEAR_KEYS) throw new Error(`near clear: cleared ${cleared}`);
    const lastMs = result.lastEvictionAt - t0;
    const mb = (bytes: number) => fmt(bytes / (1024 * 1024), 1);
    const note =
      `${fmt(result.evicted)} of ${fmt(result.held)} evicted, first ${
        fmt(result.firstEvictionAt - t0)
      } ms, last ${fmt(lastMs)} ms after the clear began (clear call ${fmt(clearMs)} ms); ${
        fmt(result.messages)
      } messages, ${fmt(result.keys)} keys (≤ ${fmt(result.maxKeysPerMessage)} a message), ${
        mb(result.bytes)
      } MiB; worker CPU ${fmt(result.cpuMs)} ms; peak omem ${mb(maxOmem)} MiB of ${polls} polls ` +
      `(pubsub limit ${mb(hard)} MiB hard, ${mb(soft)} MiB for ${softSeconds} s); subscriber ${
        survived ? "kept its connection" : "LOST its connection"
      }`;
    const row: Row = {
      server: label,
      name,
      lib: { opsPerSec: result.evicted / (lastMs / 1000), p50Us: NaN, p99Us: NaN },
      note,
    };
    rows.push(row);
    printRow(row);
    nearFigures.push({
      server: label,
      row: name,
      cleared,
      clearMs,
      firstEvictionMs: result.firstEvictionAt - t0,
      lastEvictionMs: lastMs,
      worker: result,
      ready,
      peakOmemBytes: maxOmem,
      omemPolls: polls,
      pubsubLimit: { hardBytes: hard, softBytes: soft, softSeconds },
      survived,
    });
  } finally {
    worker?.kill();
    await Promise.all([clearer.close(), monitor.quit()]);
  }
}

/** The part of BentoCache's API the peer rows use. */
interface BentoCacheLike {
  get(options: { key: string }): Promise<unknown>;
  set(options: { key: string; value: unknown; ttl?: string | number }): Promise<unknown>;
  disconnect(): Promise<void>;
}

/**
 * The peer rows (`deno task bench:node` only): the near cache's hit against BentoCache's hit, both
 * caches with a memory tier over the same server. BentoCache: `bentostore()` with its memory
 * driver (defaults: it stores serialized values and parses a copy per hit, as the near cache does)
 * as L1, its Redis driver as L2 and its Redis bus, on connections of its own. bench_node installs
 * it outside the package (CACHE_BENCH_PEERS: a module that re-exports it).
 */
async function benchBentoCache(server: TestServer, label: string, names: string[]): Promise<void> {
  const peers = process.env.CACHE_BENCH_PEERS;
  if (!peers) {
    console.log(
      `${label.padEnd(14)} near cache vs BentoCache: skipped (runs under \`deno task bench:node\`)`,
    );
    return;
  }
  const module = await import(peers) as {
    version: string;
    create(connection: { host: string; port: number }): BentoCacheLike;
  };
  const bento = module.create({ host: server.host, port: server.port });
  const near = nearProvider(server, "bn", true);
  try {
    await armed(near);
    const value = valueOfSize(100);
    const inputs = Array.from({ length: CONCURRENCY }, (_, i) => ({ query: "peer", id: i }));
    const bentoKeys = inputs.map((_, i) => `peer:${i}`);
    await near.setMany(inputs.map((input) => [input, value] as const));
    await near.getMany(inputs);
    for (const key of bentoKeys) await bento.set({ key, value, ttl: "1h" });
    for (const key of bentoKeys) await bento.get({ key });
    let turn = 0;
    const next = () => (turn = (turn + 1) % CONCURRENCY);
    const note = `bare: BentoCache ${module.version}, memory + Redis tiers + Redis bus`;
    const before = near.stats().nearCache!;
    await compare(label, names[0], {
      bare: () => bento.get({ key: bentoKeys[0] }),
      lib: () => near.get(inputs[0]),
    }, { target: 1.3, note });
    await compare(label, names[1], {
      bare: () => bento.get({ key: bentoKeys[next()] }),
      lib: () => near.get(inputs[next()]),
    }, { workers: CONCURRENCY, target: 1.3, note });
    const after = near.stats().nearCache!;
    console.log(
      `${label.padEnd(14)} near cache vs BentoCache: near cache ${
        fmt(after.hits - before.hits)
      } hits, ${fmt(after.misses - before.misses)} misses, ${
        fmt(after.flushes - before.flushes)
      } flushes`,
    );
  } finally {
    await Promise.all([near.close(), bento.disconnect()]);
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
      await benchNear(server, label);
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
        {
          runtime,
          rounds: ROUNDS,
          durationMs: DURATION,
          hashing,
          rows,
          clears,
          near: nearFigures,
          seconds,
        },
        null,
        2,
      ) +
        "\n",
    );
    console.log(`figures written to ${flags.json}`);
  }
}

await main();
