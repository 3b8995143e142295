/**
 * OpenTelemetry (src/otel.ts and the src/otel_*.ts modules) with the real SDK: an in-memory
 * metric reader and an in-memory span exporter. Names, units, attributes and counts after a known
 * sequence of calls on Redis and Valkey and on MemoryCache; spans (off by default) with their
 * status on a fault; the tenant attribute only when asked for; the facade's option and
 * `CACHE_OTEL`; and, in a child process with `@opentelemetry/api` hidden, that nothing is
 * imported without the option and nothing breaks with it. Under Deno, examples/otel.ts serves
 * `/metrics` and a scrape finds the hits.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { metrics as globalMetrics } from "@opentelemetry/api";
import {
  AggregationTemporality,
  type DataPoint,
  DataPointType,
  type Histogram as HistogramPoint,
  MeterProvider,
  type MetricData,
  MetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import {
  CacheConfigError,
  cacheGet,
  CacheInputError,
  cacheSet,
  closeCache,
  MemoryCache,
  type OtelOptions,
  setCache,
} from "../mod.ts";
import { CircuitOpenError } from "../src/circuit_breaker.ts";
import { errorType } from "../src/otel_attributes.ts";
import { DURATION_BUCKETS } from "../src/otel_meter.ts";
import { otelFromEnv, resolveOtel } from "../src/otel_options.ts";
import { freePort, startServer, type TestServer } from "./harness.ts";
import {
  type AnyCache,
  cacheFor,
  collectingLogger,
  configFor,
  hidePackages,
  KINDS,
  quietLogger,
  runProcess,
  runtimeEnv,
} from "./_helpers.ts";

const isDeno = "Deno" in globalThis;

/** A reader the test collects from on demand (no timer, so no leaked interval). */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

/** An SDK pipeline: metrics read on demand, spans kept in memory. */
class Telemetry {
  readonly reader = new TestReader();
  readonly meterProvider = new MeterProvider({ readers: [this.reader] });
  readonly spans = new InMemorySpanExporter();
  readonly tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(this.spans)],
  });

  /** The `otel` option that records into this pipeline. */
  options(extra: OtelOptions = {}): OtelOptions {
    return { meterProvider: this.meterProvider, tracerProvider: this.tracerProvider, ...extra };
  }

  /** Every metric collected now, by name. */
  async collect(): Promise<Map<string, MetricData>> {
    const { resourceMetrics, errors } = await this.reader.collect();
    assert.deepEqual(errors, []);
    const byName = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) {
      assert.equal(scope.scope.name, "@core-lib/cache");
      for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric);
    }
    return byName;
  }

  finishedSpans(): ReadableSpan[] {
    return this.spans.getFinishedSpans();
  }

  async shutdown(): Promise<void> {
    await Promise.all([this.meterProvider.shutdown(), this.tracerProvider.shutdown()]);
  }
}

type Points = DataPoint<number | HistogramPoint>[];

/** The points of `name` whose attributes include `match`. */
function points(
  metrics: Map<string, MetricData>,
  name: string,
  match: Record<string, unknown> = {},
): Points {
  const metric = metrics.get(name);
  if (metric === undefined) return [];
  return (metric.dataPoints as Points).filter((point) =>
    Object.entries(match).every(([key, value]) => point.attributes[key] === value)
  );
}

/** The sum of a counter's points whose attributes include `match`. */
function sum(metrics: Map<string, MetricData>, name: string, match = {}): number {
  return points(metrics, name, match).reduce((total, point) => total + (point.value as number), 0);
}

/** How many calls the duration histogram counted for `operation` (and `match`). */
function calls(metrics: Map<string, MetricData>, operation: string, match = {}): number {
  return points(metrics, "db.client.operation.duration", {
    "db.operation.name": operation,
    ...match,
  }).reduce((total, point) => total + (point.value as HistogramPoint).count, 0);
}

/** The known sequence of calls every provider's suite makes, with its expected figures. */
async function knownSequence(cache: AnyCache | MemoryCache): Promise<void> {
  assert.equal(await cache.get("a", { companyId: "acme" }), null); // miss
  assert.equal(await cache.set("a", 1, { companyId: "acme" }), true);
  assert.equal(await cache.get("a", { companyId: "acme" }), 1); // hit
  assert.deepEqual(await cache.getMany(["a", "b"], { companyId: "acme" }), [1, null]);
  assert.equal(await cache.setMany([["x", 1], ["y", 2]]), true);
  assert.equal(await cache.exists("x"), true);
  assert.equal(await cache.delete("x"), true);
  assert.equal(await cache.getOrSet("g", () => "v", { companyId: "globex" }), "v"); // computes
  assert.equal(await cache.getOrSet("g", () => "w", { companyId: "globex" }), "v"); // hit
  assert.equal(await cache.clearCompany("acme"), 1);
}

const SEQUENCE_CALLS = {
  get: 2,
  set: 1,
  getMany: 1,
  setMany: 1,
  getOrSet: 2,
  clearCompany: 1,
};

describe("otel option and environment", () => {
  it("is off unless asked; true records metrics only; fields are checked", () => {
    assert.equal(resolveOtel(undefined), null);
    assert.equal(resolveOtel(false), null);
    assert.equal(resolveOtel({ metrics: false }), null, "metrics and spans off: nothing to do");
    assert.deepEqual(resolveOtel(true), {
      metrics: true,
      spans: false,
      tenantAttribute: false,
      meterProvider: undefined,
      tracerProvider: undefined,
    });
    assert.equal(resolveOtel({ metrics: false, spans: true })?.spans, true);
    for (const bad of ["yes", 1, [], null, { spans: "on" }, { meterProvider: {} }]) {
      assert.throws(() => resolveOtel(bad), CacheInputError, JSON.stringify(bad));
    }
    assert.throws(
      () => new MemoryCache({ otel: { tenantAttribute: 1 as unknown as boolean } }),
      /Invalid otel.tenantAttribute 1/,
    );
  });

  it("CACHE_OTEL is a boolean word; anything else is a CacheConfigError naming it", () => {
    assert.equal(otelFromEnv({}), undefined);
    assert.equal(otelFromEnv({ CACHE_OTEL: "" }), undefined);
    assert.equal(otelFromEnv({ CACHE_OTEL: "TRUE" }), true);
    assert.equal(otelFromEnv({ CACHE_OTEL: "on # metrics" }), true);
    assert.equal(otelFromEnv({ CACHE_OTEL: "0" }), false);
    assert.throws(() => otelFromEnv({ CACHE_OTEL: "spans" }), CacheConfigError);
    assert.throws(() => otelFromEnv({ CACHE_OTEL: "spans" }), /Invalid CACHE_OTEL: got "spans"/);
  });

  it("error.type takes a few values: reply prefix, timeout, circuit_open, errno code, _OTHER", () => {
    const reply = Object.assign(new Error("OOM command not allowed"), { name: "ReplyError" });
    assert.equal(errorType(reply), "OOM");
    assert.equal(errorType(new Error("Command timed out: no reply for 500 ms")), "timeout");
    assert.equal(errorType(new CircuitOpenError("127.0.0.1:6380")), "circuit_open");
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    assert.equal(errorType(refused), "ECONNREFUSED");
    assert.equal(errorType(new Error("Connection is closed.")), "connection_closed");
    assert.equal(errorType(new Error("something else")), "_OTHER");
    assert.equal(errorType("not an error"), "_OTHER");
  });
});

describe("MemoryCache with otel", () => {
  let telemetry: Telemetry;
  beforeEach(() => {
    telemetry = new Telemetry();
  });
  afterEach(async () => {
    await telemetry.shutdown();
  });

  it("records durations, hits and misses under db.system.name memory, no server.*", async () => {
    const cache = new MemoryCache({ name: "reports", otel: telemetry.options() });
    assert.equal(await cache.connect(), true);
    await knownSequence(cache);
    const metrics = await telemetry.collect();
    const base = { "db.system.name": "memory", "cache.name": "reports" };
    for (const [operation, count] of Object.entries({ get: 2, set: 1, getOrSet: 2 })) {
      assert.equal(calls(metrics, operation, base), count, operation);
    }
    const [point] = points(metrics, "db.client.operation.duration", { "db.operation.name": "get" });
    assert.deepEqual(Object.keys(point.attributes).sort(), [
      "cache.name",
      "db.operation.name",
      "db.system.name",
    ]);
    assert.equal(sum(metrics, "cache.hits", { "db.operation.name": "get" }), 1);
    assert.equal(sum(metrics, "cache.misses", { "db.operation.name": "getMany" }), 1);
    assert.equal(sum(metrics, "cache.get_or_set.computes"), 1);
    assert.equal(telemetry.finishedSpans().length, 0, "spans are off by default");
    await cache.close();
  });

  it("caches with the same attributes add up; a closed one's counts stay (never going down)", async () => {
    const first = new MemoryCache({ otel: telemetry.options(), logger: quietLogger() });
    const second = new MemoryCache({ otel: telemetry.options() });
    await Promise.all([first.connect(), second.connect()]);
    await first.get("k");
    await first.set("k", 1);
    await second.get("k");
    let metrics = await telemetry.collect();
    assert.equal(sum(metrics, "cache.misses"), 2);
    assert.equal(sum(metrics, "cache.sets"), 1);
    await first.close();
    await first.get("k"); // closed: neither counted nor recorded
    await second.get("k");
    metrics = await telemetry.collect();
    assert.equal(sum(metrics, "cache.misses"), 3);
    assert.equal(sum(metrics, "cache.sets"), 1);
    assert.equal(calls(metrics, "get"), 3);
    await second.close();
  });
});

for (const kind of KINDS) {
  describe(`${kind} with otel`, () => {
    let server: TestServer;
    let telemetry: Telemetry;
    let cache: AnyCache;

    before(async () => {
      server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server.stop();
    });
    beforeEach(async () => {
      await server.cli("FLUSHALL");
      telemetry = new Telemetry();
    });
    afterEach(async () => {
      await cache?.close();
      await closeCache();
      await telemetry.shutdown();
    });

    it("names, units, attributes and counts after a known sequence of calls", async () => {
      cache = cacheFor(server, { otel: telemetry.options() });
      assert.equal(await cache.connect(), true);
      await knownSequence(cache);
      const metrics = await telemetry.collect();

      const duration = metrics.get("db.client.operation.duration")!;
      assert.equal(duration.descriptor.unit, "s");
      assert.equal(duration.dataPointType, DataPointType.HISTOGRAM);
      const base = {
        "db.system.name": kind,
        "db.namespace": "0",
        "server.address": "127.0.0.1",
        "server.port": server.port,
      };
      for (const [operation, count] of Object.entries(SEQUENCE_CALLS)) {
        assert.equal(calls(metrics, operation, base), count, operation);
      }
      assert.equal(calls(metrics, "exists"), 1);
      assert.equal(calls(metrics, "delete"), 1);
      const [get] = points(metrics, "db.client.operation.duration", { "db.operation.name": "get" });
      assert.deepEqual(get.attributes, { ...base, "db.operation.name": "get" });
      const histogram = get.value as HistogramPoint;
      assert.deepEqual(histogram.buckets.boundaries, DURATION_BUCKETS);
      assert.ok(histogram.sum! > 0 && histogram.sum! < 5, `sum ${histogram.sum} s`);
      assert.ok(!("error.type" in get.attributes));

      // Hits and misses per operation: the ratio the issue asks for.
      const counts = (name: string) =>
        Object.fromEntries(
          ["get", "getMany", "getOrSet"].map((
            op,
          ) => [op, sum(metrics, name, { "db.operation.name": op })]),
        );
      assert.deepEqual(counts("cache.hits"), { get: 1, getMany: 1, getOrSet: 1 });
      assert.deepEqual(counts("cache.misses"), { get: 1, getMany: 1, getOrSet: 1 });
      assert.equal(metrics.get("cache.hits")!.descriptor.unit, "{hit}");
      assert.equal(sum(metrics, "cache.sets", base), 4); // set, setMany of 2, getOrSet's store
      assert.equal(sum(metrics, "cache.get_or_set.computes"), 1);
      assert.equal(sum(metrics, "cache.get_or_set.lock_waits"), 0);
      assert.equal(sum(metrics, "cache.errors"), 0);
      // No tenant anywhere unless asked for.
      for (const metric of metrics.values()) {
        for (const point of metric.dataPoints as Points) {
          assert.ok(!("cache.tenant" in point.attributes), metric.descriptor.name);
        }
      }
      assert.equal(telemetry.finishedSpans().length, 0, "spans are off by default");
    });

    it("calls answered together are one duration sample; hits still count per call", async () => {
      cache = cacheFor(server, { otel: telemetry.options() });
      assert.equal(await cache.connect(), true);
      const inputs = Array.from({ length: 50 }, (_, i) => ({ i }));
      await cache.setMany(inputs.map((input) => [input, 1] as const));
      // One tick's reads go out as one MGET and come back together.
      const values = await Promise.all(inputs.map((input) => cache.get(input)));
      assert.deepEqual(values, inputs.map(() => 1));
      const metrics = await telemetry.collect();
      assert.equal(sum(metrics, "cache.hits", { "db.operation.name": "get" }), 50);
      const samples = calls(metrics, "get");
      assert.ok(samples >= 1 && samples <= 3, `${samples} samples for one coalesced MGET`);
      const [point] = points(metrics, "db.client.operation.duration", {
        "db.operation.name": "get",
      });
      assert.ok((point.value as HistogramPoint).max! > 0);
      // Awaited one by one, each call is a sample of its own.
      for (const input of inputs.slice(0, 5)) await cache.get(input);
      assert.equal(calls(await telemetry.collect(), "get"), samples + 5);
    });

    it("tenantAttribute: hits, misses and durations per tenant", async () => {
      cache = cacheFor(server, { otel: telemetry.options({ tenantAttribute: true }) });
      assert.equal(await cache.connect(), true);
      await knownSequence(cache);
      await cache.get("global-miss");
      const metrics = await telemetry.collect();
      const get = { "db.operation.name": "get" };
      assert.equal(sum(metrics, "cache.hits", { ...get, "cache.tenant": "acme" }), 1);
      assert.equal(sum(metrics, "cache.misses", { ...get, "cache.tenant": "acme" }), 1);
      assert.equal(
        sum(metrics, "cache.hits", { "db.operation.name": "getOrSet", "cache.tenant": "globex" }),
        1,
      );
      // The global scope has no tenant attribute.
      const global = points(metrics, "cache.misses", get).filter((p) =>
        !("cache.tenant" in p.attributes)
      );
      assert.equal(global.length, 1);
      assert.equal(global[0].value, 1);
      assert.equal(calls(metrics, "clearCompany", { "cache.tenant": "acme" }), 1);
    });

    it("spans: one per call, CLIENT, the metrics' attributes, hit or miss", async () => {
      cache = cacheFor(server, { otel: telemetry.options({ spans: true, metrics: false }) });
      assert.equal(await cache.connect(), true);
      const before = performance.timeOrigin + performance.now();
      await knownSequence(cache);
      const spans = telemetry.finishedSpans();
      assert.deepEqual(spans.map((span) => span.name), [
        "get",
        "set",
        "get",
        "getMany",
        "setMany",
        "exists",
        "delete",
        "getOrSet", // its store is part of the call, not a span of its own
        "getOrSet",
        "clearCompany",
      ]);
      for (const span of spans) {
        assert.equal(span.kind, 2 /* SpanKind.CLIENT */);
        assert.equal(span.attributes["db.system.name"], kind);
        assert.equal(span.attributes["server.port"], server.port);
        assert.equal(span.attributes["db.operation.name"], span.name);
        assert.equal(span.status.code, 0 /* UNSET */);
        const startMs = span.startTime[0] * 1000 + span.startTime[1] / 1e6;
        assert.ok(startMs >= before - 5, `span starts with its call (${startMs} vs ${before})`);
        assert.ok(span.duration[0] >= 0 && span.duration[0] < 5);
      }
      assert.deepEqual(
        spans.filter((span) => span.name === "get").map((span) => span.attributes["cache.hit"]),
        [false, true],
      );
      const getMany = spans.find((span) => span.name === "getMany")!;
      assert.equal(getMany.attributes["cache.hit_count"], 1);
      assert.equal(getMany.attributes["cache.miss_count"], 1);
      assert.equal((await telemetry.collect()).size, 0, "metrics: false records no metric");
    });

    it("a dead server: failed calls carry error.type, spans ERROR, the breaker is observed", async () => {
      cache = cacheFor(server, {
        configOptions: { port: await freePort() },
        timeout: 1,
        otel: telemetry.options({ spans: true }),
      });
      assert.equal(await cache.connect(), false);
      assert.equal(await cache.get("k"), null);
      assert.equal(await cache.set("k", 1), false);
      assert.equal(await cache.get("k"), null);
      assert.equal(await cache.clearCompany("acme"), 0);
      const metrics = await telemetry.collect();
      const failed = points(metrics, "db.client.operation.duration").filter((point) =>
        "error.type" in point.attributes
      );
      const types = new Set(failed.map((point) => point.attributes["error.type"]));
      assert.ok(failed.length >= 3, `failed points: ${failed.length}`);
      for (const type of types) {
        assert.match(String(type), /^(ECONNREFUSED|connection_closed|circuit_open)$/);
      }
      assert.ok(types.has("circuit_open"), `after three faults the breaker refuses: ${[...types]}`);
      assert.equal(sum(metrics, "cache.errors"), 4);
      assert.equal(sum(metrics, "cache.circuit_breaker.opens"), 1);
      const open = points(metrics, "cache.circuit_breaker.open");
      assert.equal(open.length, 1);
      assert.equal(open[0].value, 1);
      assert.equal(open[0].attributes["server.port"], cache.config.port);
      const spans = telemetry.finishedSpans();
      assert.equal(spans.length, 4);
      for (const span of spans) {
        assert.equal(span.status.code, 2, /* ERROR */ span.name);
        assert.equal(span.status.message, span.attributes["error.type"]);
        assert.ok(types.has(span.attributes["error.type"]));
      }
    });

    it("the facade: setCache({ otel }) records, and CACHE_OTEL=true does with the global provider", async () => {
      const logger = collectingLogger();
      const config = configFor(server);
      assert.equal(
        await setCache({ provider: kind, config, logger, otel: telemetry.options() }),
        true,
      );
      await cacheSet("k", 1);
      assert.equal(await cacheGet("k"), 1);
      assert.equal(await cacheGet("nope"), null);
      let metrics = await telemetry.collect();
      assert.equal(sum(metrics, "cache.hits", { "db.system.name": kind }), 1);
      assert.equal(sum(metrics, "cache.misses"), 1);
      await closeCache();

      const global = new Telemetry();
      globalMetrics.setGlobalMeterProvider(global.meterProvider);
      try {
        assert.equal(
          await setCache({ provider: kind, config, logger, env: { CACHE_OTEL: "true" } }),
          true,
        );
        assert.equal(await cacheGet("k"), 1);
        metrics = await global.collect();
        assert.equal(sum(metrics, "cache.hits"), 1);
        await closeCache();
        assert.equal(
          await setCache({ provider: kind, config, logger, env: { CACHE_OTEL: "false" } }),
          true,
        );
        await cacheGet("k");
        assert.equal(sum(await global.collect(), "cache.hits"), 1, "off: nothing more recorded");
      } finally {
        await closeCache();
        globalMetrics.disable();
        await global.shutdown();
      }
      assert.deepEqual(logger.lines, []);
    });
  });
}

describe("without the option, or without @opentelemetry/api", () => {
  /** Runs tests/otel_worker with the API hidden and `env`; returns what it printed. */
  async function runWorker(
    env: Record<string, string>,
  ): Promise<{ connected: boolean; value: unknown; lines: string[] }> {
    const dir = await mkdtemp(join(tmpdir(), "cache-no-otel-"));
    try {
      const file = fileURLToPath(new URL(`./otel_worker.${isDeno ? "ts" : "js"}`, import.meta.url));
      const hide = await hidePackages(dir, ["@opentelemetry/api"]);
      const args = isDeno
        ? ["run", ...hide, "--allow-env", "--allow-read", "--allow-net=127.0.0.1", file]
        : [...hide, file];
      const run = await runProcess(args, { env: { ...runtimeEnv(), ...env }, timeoutMs: 30_000 });
      const line = run.stdout.trim().split("\n").pop() ?? "";
      assert.ok(line.startsWith("{"), `worker output: ${run.stdout}${run.stderr}`);
      return JSON.parse(line);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  let server: TestServer;
  before(async () => {
    server = await startServer("redis");
  });
  after(async () => {
    await server.stop();
  });

  it("no option: the API is never imported, and the cache works", async () => {
    const result = await runWorker({ REDIS_URL: server.url, REDIS_DB: String(server.db) });
    assert.deepEqual(result, { connected: true, value: 1, lines: [] });
  });

  it("the option without the package: one line says so, and the cache works unrecorded", async () => {
    const result = await runWorker({
      REDIS_URL: server.url,
      REDIS_DB: String(server.db),
      CACHE_OTEL: "true",
    });
    assert.equal(result.connected, true);
    assert.equal(result.value, 1);
    assert.equal(result.lines.length, 1, result.lines.join("\n"));
    assert.match(
      result.lines[0],
      /Cannot load @opentelemetry\/api.*npm install @opentelemetry\/api/,
    );
  });
});

describe("examples/otel.ts", { skip: !isDeno && "the example is a Deno program" }, () => {
  /** What the test uses of examples/otel.ts. */
  interface ExampleModule {
    startOtelExample(
      options: Parameters<typeof setCache>[0],
    ): Promise<{ url: string; close(): Promise<void> }>;
    exampleTraffic(): Promise<void>;
    promSum(text: string, name: string, labels?: string[]): number;
  }

  /** The example's module, loaded by URL so that the Node test build does not compile it. */
  async function example(): Promise<ExampleModule> {
    return await import(new URL("../examples/otel.ts", import.meta.url).href);
  }

  for (const kind of KINDS) {
    it(`serves /metrics over HTTP; a scrape finds the hits and misses (${kind})`, async () => {
      const server = await startServer(kind, { own: true });
      const { exampleTraffic, promSum, startOtelExample } = await example();
      const running = await startOtelExample({
        provider: kind,
        config: configFor(server),
        logger: quietLogger(),
      });
      try {
        await exampleTraffic();
        const response = await fetch(running.url);
        assert.equal(response.status, 200);
        const text = await response.text();
        const get = ['db_operation_name="get"', `db_system_name="${kind}"`];
        assert.equal(promSum(text, "cache_hits_total", get), 6);
        assert.equal(promSum(text, "cache_misses_total", get), 2);
        assert.match(text, /# TYPE db_client_operation_duration histogram/);
        assert.match(text, new RegExp(`server_port="${server.port}"`));
      } finally {
        await running.close();
        await server.stop();
      }
    });
  }

  it("runs as a program and prints the hit ratio", async () => {
    const run = await runProcess(
      ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", "examples/otel.ts"],
      { cwd: fileURLToPath(new URL("..", import.meta.url)), env: runtimeEnv() },
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^cache_hits_total\{.*db_system_name="memory".*\} 6$/m);
    assert.match(run.stdout, /get hit ratio: 6 \/ 8 = 0\.75/);
  });
});
