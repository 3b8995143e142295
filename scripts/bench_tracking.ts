/**
 * The measurement behind the near cache's choice of `CLIENT TRACKING` mode (docs/performance.md,
 * "Near cache"): BCAST (what the library uses: one subscriber connection per process, tracking on
 * itself with `CLIENT TRACKING ON REDIRECT <its id> BCAST PREFIX <prefix>`) against default
 * (per-key) tracking (each process's data connection `CLIENT TRACKING ON REDIRECT <subscriber
 * id>`, so the server remembers which process read which key and tells it of that key's next
 * change only). Bare ioredis / iovalkey clients, not the library: what is compared is the cost at
 * the server and in each process.
 *
 * Per server kind and per read pattern, three runs of the same load, each with READERS fresh
 * reader processes and one steady writer (this process):
 * - `off`: no tracking (the writer's cost alone, the baseline);
 * - `bcast`: BCAST over the keys' prefix;
 * - `default`: per-key tracking of what each reader read.
 *
 * Each reader keeps a local copy of what it read (a Map, standing in for the near cache): a
 * lookup that finds nothing GETs the key from the server and keeps the reply; an invalidation
 * drops the key. Lookups run at a fixed rate over the reader's keys, chosen at random:
 * - pattern `all`: every reader reads all KEYS keys (a shared hot set);
 * - pattern `split`: reader r reads only its own quarter (keys with i % READERS === r), as
 *   processes that serve different tenants would.
 *
 * The writer SETs random keys of all KEYS at RATE per second. Over a window of SECONDS after a
 * warm-up, it records: the server's CPU (INFO cpu, used_cpu_user + used_cpu_sys, delta), its
 * memory (used_memory against the same server before the readers came) and tracking table (INFO
 * stats `tracking_total_keys` / `tracking_total_items` / `tracking_total_prefixes`), the GETs the
 * readers sent; and each reader reports the invalidation messages, keys and bytes its subscriber
 * connection received (bytes counted on the socket) and its own CPU time.
 *
 * Usage (run once; the figures go into docs/performance.md):
 *   deno run -A scripts/bench_tracking.ts [--only redis|valkey] [--readers 4] [--keys 10000]
 *     [--rate 2000] [--lookups 20000] [--seconds 10] [--patterns all,split] [--json FILE]
 *
 * The machine has 2 cores: the readers, the writer and the server share them, so the server CPU
 * (time it spent, not wall time) is the figure to compare, not rates.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import process from "node:process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type ServerKind, startServer } from "../tests/harness.ts";
import { fmt } from "./bench_figures.ts";
import { type ChildLines, childLines } from "./child_lines.ts";

type Mode = "off" | "bcast" | "default";
type Pattern = "all" | "split";

/** The commands used, as ioredis and iovalkey define them. */
interface Client {
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<unknown>;
  info(section: string): Promise<string>;
  subscribe(channel: string): Promise<unknown>;
  pipeline(): { set(key: string, value: string): unknown; exec(): Promise<unknown> };
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  stream?: { on(event: "data", listener: (chunk: Uint8Array) => void): unknown };
}

type ClientClass = new (options: Record<string, unknown>) => Client;

interface ReaderSpec {
  kind: ServerKind;
  host: string;
  port: number;
  mode: Mode;
  pattern: Pattern;
  index: number;
  readers: number;
  keys: number;
  lookupsPerSecond: number;
}

interface ReaderReport {
  index: number;
  messages: number;
  keys: number;
  bytes: number;
  lookups: number;
  localHits: number;
  serverReads: number;
  cpuMs: number;
}

const PREFIX = "cache:tenant:trk:";
const CHANNEL = "__redis__:invalidate";
const VALUE = JSON.stringify({ id: 1, tags: ["a", "b"], body: "x".repeat(70) });
const keyOf = (i: number) => `${PREFIX}${i}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function clientClass(kind: ServerKind): Promise<ClientClass> {
  const module = kind === "redis" ? await import("ioredis") : await import("iovalkey");
  return (module as unknown as { Redis: ClientClass }).Redis;
}

// ---------------------------------------------------------------------------------------------
// A reader process

async function reader(spec: ReaderSpec): Promise<void> {
  const Client = await clientClass(spec.kind);
  const options = { host: spec.host, port: spec.port, protocol: 2, maxRetriesPerRequest: 0 };
  const subscriber = new Client(options);
  const data = new Client(options);
  const local = new Map<string, string>();
  const counts = { messages: 0, keys: 0, bytes: 0, lookups: 0, localHits: 0, serverReads: 0 };
  subscriber.on("messageBuffer", (channel: unknown, message: unknown) => {
    if (String(channel) !== CHANNEL) return;
    counts.messages++;
    if (message === null || message === undefined) {
      local.clear();
      return;
    }
    const keys = Array.isArray(message) ? message : [message];
    counts.keys += keys.length;
    for (const key of keys) local.delete(String(key));
  });
  const id = await subscriber.call("CLIENT", "ID");
  if (spec.mode === "bcast") {
    await subscriber.call(
      "CLIENT",
      "TRACKING",
      "ON",
      "REDIRECT",
      String(id),
      "BCAST",
      "PREFIX",
      PREFIX,
    );
  } else if (spec.mode === "default") {
    await data.call("CLIENT", "TRACKING", "ON", "REDIRECT", String(id));
  }
  await subscriber.subscribe(CHANNEL);
  subscriber.stream?.on("data", (chunk) => counts.bytes += chunk.length);

  const mine: string[] = [];
  for (let i = 0; i < spec.keys; i++) {
    if (spec.pattern === "all" || i % spec.readers === spec.index) mine.push(keyOf(i));
  }
  // Warm: read every key once (tracked, in default mode).
  for (let at = 0; at < mine.length; at += 500) {
    const batch = mine.slice(at, at + 500);
    const values = await Promise.all(batch.map((key) => data.get(key)));
    batch.forEach((key, i) => values[i] !== null && local.set(key, values[i]!));
  }

  let running = true;
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((spec.lookupsPerSecond * tickMs) / 1000));
  const loop = (async () => {
    let next = performance.now();
    while (running) {
      const reads: Promise<unknown>[] = [];
      for (let n = 0; n < perTick; n++) {
        const key = mine[Math.floor(Math.random() * mine.length)];
        counts.lookups++;
        if (local.has(key)) {
          counts.localHits++;
          continue;
        }
        counts.serverReads++;
        reads.push(
          data.get(key).then((value) => {
            if (value !== null) local.set(key, value);
          }),
        );
      }
      await Promise.all(reads);
      next += tickMs;
      await sleep(Math.max(0, next - performance.now()));
    }
  })();

  console.log(JSON.stringify({ ready: spec.index }));
  let base = { ...counts };
  let cpu = process.cpuUsage();
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "start") {
      base = { ...counts };
      cpu = process.cpuUsage();
    } else if (line === "stop") {
      const used = process.cpuUsage(cpu);
      const report: ReaderReport = {
        index: spec.index,
        messages: counts.messages - base.messages,
        keys: counts.keys - base.keys,
        bytes: counts.bytes - base.bytes,
        lookups: counts.lookups - base.lookups,
        localHits: counts.localHits - base.localHits,
        serverReads: counts.serverReads - base.serverReads,
        cpuMs: (used.user + used.system) / 1000,
      };
      console.log(JSON.stringify({ report }));
      break;
    }
  }
  running = false;
  await loop;
  await Promise.all([subscriber.quit(), data.quit()]);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// The parent: server, writer, readers, figures

function startReader(spec: ReaderSpec): ChildLines {
  const file = fileURLToPath(import.meta.url);
  const isDeno = "Deno" in globalThis;
  const args = isDeno ? ["run", "--allow-net", "--allow-env", "--allow-read", file] : [file];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, BENCH_TRACKING_READER: JSON.stringify(spec) },
    stdio: ["pipe", "pipe", "pipe"],
  });
  return childLines(child, "reader");
}

/** The numeric fields of INFO `section`. */
async function info(client: Client, section: string): Promise<Record<string, number>> {
  const fields: Record<string, number> = {};
  for (const line of (await client.info(section)).split("\n")) {
    const [name, value] = line.trim().split(":");
    if (value !== undefined && /^-?[\d.]+$/.test(value)) fields[name] = Number(value);
  }
  return fields;
}

async function commandCalls(client: Client, command: string): Promise<number> {
  const stats = await client.info("commandstats");
  return Number(stats.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`))?.[1] ?? 0);
}

interface RunResult {
  server: string;
  mode: Mode;
  pattern: Pattern;
  readers: number;
  keys: number;
  writesPerSecond: number;
  seconds: number;
  /** Server CPU over the window: seconds of CPU per second of wall time (1 = one core). */
  serverCpu: number;
  /** Server CPU per write, µs (all of the server's time over the window, divided by writes). */
  serverCpuPerWriteUs: number;
  usedMemoryDelta: number;
  trackingTotalKeys: number;
  trackingTotalItems: number;
  trackingTotalPrefixes: number;
  serverGetsPerSecond: number;
  netOutputBytesPerSecond: number;
  perReader: ReaderReport[];
}

async function measure(
  kind: ServerKind,
  host: string,
  port: number,
  label: string,
  mode: Mode,
  pattern: Pattern,
  settings: { readers: number; keys: number; rate: number; lookups: number; seconds: number },
): Promise<RunResult> {
  const Client = await clientClass(kind);
  const admin = new Client({ host, port });
  const writer = new Client({ host, port });
  try {
    const memoryBefore = (await info(admin, "memory")).used_memory;
    const readers = Array.from({ length: settings.readers }, (_, index) =>
      startReader({
        kind,
        host,
        port,
        mode,
        pattern,
        index,
        readers: settings.readers,
        keys: settings.keys,
        lookupsPerSecond: settings.lookups,
      }));
    try {
      await Promise.all(readers.map((r) => r.line("ready", 60_000)));
      // The writer: RATE SETs a second in ticks of 5 ms, at random keys of all KEYS.
      let writing = true;
      let writes = 0;
      const writerLoop = (async () => {
        const tickMs = 5;
        const perTick = Math.max(1, Math.round((settings.rate * tickMs) / 1000));
        let next = performance.now();
        while (writing) {
          const sent: Promise<unknown>[] = [];
          for (let n = 0; n < perTick; n++) {
            sent.push(writer.set(keyOf(Math.floor(Math.random() * settings.keys)), VALUE));
          }
          await Promise.all(sent);
          writes += perTick;
          next += tickMs;
          await sleep(Math.max(0, next - performance.now()));
        }
      })();
      await sleep(2000); // warm-up: default mode's tracking table fills, rates settle
      const cpu0 = await info(admin, "cpu");
      const stats0 = await info(admin, "stats");
      const gets0 = await commandCalls(admin, "get");
      const writes0 = writes;
      const t0 = performance.now();
      for (const r of readers) r.send("start");
      await sleep(settings.seconds * 1000);
      for (const r of readers) r.send("stop");
      const elapsed = (performance.now() - t0) / 1000;
      const cpu1 = await info(admin, "cpu");
      const stats1 = await info(admin, "stats");
      const gets1 = await commandCalls(admin, "get");
      const memory = await info(admin, "memory");
      const windowWrites = writes - writes0;
      const perReader = await Promise.all(
        readers.map((r) => r.line<ReaderReport>("report", 30_000)),
      );
      writing = false;
      await writerLoop;
      const cpuSeconds = (c: Record<string, number>) => c.used_cpu_user + c.used_cpu_sys;
      const serverCpuSeconds = cpuSeconds(cpu1) - cpuSeconds(cpu0);
      return {
        server: label,
        mode,
        pattern,
        readers: settings.readers,
        keys: settings.keys,
        writesPerSecond: windowWrites / elapsed,
        seconds: elapsed,
        serverCpu: serverCpuSeconds / elapsed,
        serverCpuPerWriteUs: (serverCpuSeconds * 1e6) / windowWrites,
        usedMemoryDelta: memory.used_memory - memoryBefore,
        trackingTotalKeys: stats1.tracking_total_keys ?? 0,
        trackingTotalItems: stats1.tracking_total_items ?? 0,
        trackingTotalPrefixes: stats1.tracking_total_prefixes ?? 0,
        serverGetsPerSecond: (gets1 - gets0) / elapsed,
        netOutputBytesPerSecond: (stats1.total_net_output_bytes - stats0.total_net_output_bytes) /
          elapsed,
        perReader: perReader.sort((a, b) => a.index - b.index),
      };
    } finally {
      for (const r of readers) if (r.process.exitCode === null) r.process.kill();
      await sleep(200);
    }
  } finally {
    await Promise.all([admin.quit(), writer.quit()]);
  }
}

function printResult(r: RunResult): void {
  const sum = (f: (x: ReaderReport) => number) => r.perReader.reduce((s, x) => s + f(x), 0);
  const per = (f: (x: ReaderReport) => number) => sum(f) / r.perReader.length / r.seconds;
  console.log(
    [
      r.server.padEnd(13),
      r.pattern.padEnd(6),
      r.mode.padEnd(8),
      fmt(r.writesPerSecond).padStart(6),
      `${fmt(r.serverCpu * 100, 1)}%`.padStart(7),
      fmt(r.serverCpuPerWriteUs, 1).padStart(8),
      fmt(per((x) => x.messages)).padStart(9),
      fmt(per((x) => x.keys)).padStart(9),
      fmt(per((x) => x.bytes) / 1024, 1).padStart(9),
      fmt(per((x) => x.cpuMs) / 10, 1).padStart(8),
      fmt(r.serverGetsPerSecond).padStart(8),
      fmt(r.trackingTotalKeys).padStart(8),
      fmt(r.trackingTotalItems).padStart(8),
      fmt(r.usedMemoryDelta / 1024, 0).padStart(9),
    ].join(" "),
  );
}

/** Writes the KEYS keys; returns the server's label (`redis 7.0.15`). */
async function seed(kind: ServerKind, host: string, port: number, keys: number): Promise<string> {
  const Client = await clientClass(kind);
  const admin = new Client({ host, port });
  try {
    for (let at = 0; at < keys; at += 1000) {
      const pipeline = admin.pipeline();
      for (let i = at; i < Math.min(keys, at + 1000); i++) pipeline.set(keyOf(i), VALUE);
      await pipeline.exec();
    }
    const text = await admin.info("server");
    const version = (text.match(/valkey_version:(\S+)/) ?? text.match(/redis_version:(\S+)/))?.[1];
    return `${kind} ${version ?? "?"}`;
  } finally {
    await admin.quit();
  }
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    args: process.argv.slice(2),
    options: {
      only: { type: "string" },
      readers: { type: "string", default: "4" },
      keys: { type: "string", default: "10000" },
      rate: { type: "string", default: "2000" },
      lookups: { type: "string", default: "20000" },
      seconds: { type: "string", default: "10" },
      patterns: { type: "string", default: "all,split" },
      modes: { type: "string", default: "off,bcast,default" },
      json: { type: "string" },
    },
  });
  const settings = {
    readers: Number(flags.readers),
    keys: Number(flags.keys),
    rate: Number(flags.rate),
    lookups: Number(flags.lookups),
    seconds: Number(flags.seconds),
  };
  const kinds: ServerKind[] = flags.only ? [flags.only as ServerKind] : ["redis", "valkey"];
  const patterns = flags.patterns!.split(",") as Pattern[];
  const modes = flags.modes!.split(",") as Mode[];
  console.log(
    `CLIENT TRACKING cost: ${settings.readers} reader processes (${
      fmt(settings.lookups)
    } lookups/s each), one writer at ${fmt(settings.rate)} SET/s over ${
      fmt(settings.keys)
    } keys, ${settings.seconds} s windows`,
  );
  console.log(
    [
      "server".padEnd(13),
      "keys".padEnd(6),
      "mode".padEnd(8),
      "SET/s".padStart(6),
      "srv CPU".padStart(7),
      "µs/SET".padStart(8),
      "msgs/s".padStart(9),
      "keys/s".padStart(9),
      "KiB/s".padStart(9),
      "rdr CPU%".padStart(8),
      "GETs/s".padStart(8),
      "trk keys".padStart(8),
      "trk items".padStart(8),
      "mem KiB".padStart(9),
    ].join(" ") + "   (msgs, keys, KiB, reader CPU: per reader process)",
  );
  const results: RunResult[] = [];
  for (const kind of kinds) {
    for (const pattern of patterns) {
      for (const mode of modes) {
        // A fresh server for each run: the tracking table outlives the clients that filled it
        // (a key's entry goes only when the key changes), so a run would inherit the last one's.
        const server = await startServer(kind, { own: true });
        try {
          const label = await seed(kind, server.host, server.port, settings.keys);
          const result = await measure(
            kind,
            server.host,
            server.port,
            label,
            mode,
            pattern,
            settings,
          );
          results.push(result);
          printResult(result);
        } finally {
          await server.stop();
        }
      }
    }
  }
  if (flags.json) {
    await writeFile(flags.json, JSON.stringify({ settings, results }, null, 2) + "\n");
    console.log(`figures written to ${flags.json}`);
  }
}

if (process.env.BENCH_TRACKING_READER) {
  reader(JSON.parse(process.env.BENCH_TRACKING_READER)).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  await main();
}
