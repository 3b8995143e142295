/**
 * OpenTelemetry metrics and spans for the providers, through `@opentelemetry/api`: an optional
 * peer dependency, loaded by dynamic import only when the `otel` option (or `CACHE_OTEL=true` for
 * `setCache()`) turns recording on. Without the option nothing is imported and nothing is
 * recorded; with it and without the package installed, one line is logged and the cache works
 * as before, unrecorded.
 *
 * The recorder hangs off the provider's `Metrics` (src/stats.ts), which already sees every call
 * end: a provider without it pays one property check per call. With it, a call updates plain
 * numbers on precomputed attribute objects: the counters (hits, misses, writes, computes, ...)
 * are observed by the SDK only when it collects, and `db.client.operation.duration` takes one
 * sample per operation and turn of the event loop, so calls answered together by one coalesced
 * server call count as one batch (see `OtelRecorder`). Spans are off by default: one per call,
 * recorded when the call ends with its exact start and end (so the Redis commands inside are
 * not its children).
 *
 * Names follow OpenTelemetry's database client semantic conventions where they exist
 * (`db.client.operation.duration`, `db.system.name`, `db.operation.name`, `db.namespace`,
 * `server.address`, `server.port`, `error.type`); what they do not cover is named under
 * `cache.` (the table is in the README's Observability section).
 *
 * @module
 */

import type * as Api from "@opentelemetry/api";
import { CircuitOpenError } from "./circuit_breaker.ts";
import type { RedisConfig } from "./config.ts";
import { invalid, showRaw } from "./config_fields.ts";
import { CacheInputError } from "./errors.ts";
import type { FaultLog } from "./log.ts";
import type { EnvRecord } from "./runtime.ts";
import type { CacheStats, Histogram, Metrics, MetricsRecorder } from "./stats.ts";

/**
 * What the `otel` option turns on: metrics (on by default once the option is given), spans (off
 * by default) and the tenant attribute (off by default). `otel: true` is `{}`.
 *
 * Recording starts once `@opentelemetry/api` has loaded: `connect()` (and so `setCache()`) waits
 * for it. Without a `meterProvider` / `tracerProvider`, the global ones are used (the SDK's
 * after `metrics.setGlobalMeterProvider(...)`, Deno's own with `OTEL_DENO=true`, else the API's
 * no-op ones).
 *
 * @example Hit and miss counts of a MemoryCache, read with the SDK's in-memory reader
 * ```ts
 * import { MemoryCache, type OtelOptions } from "@core-lib/cache";
 * import {
 *   AggregationTemporality,
 *   InMemoryMetricExporter,
 *   MeterProvider,
 *   PeriodicExportingMetricReader,
 * } from "@opentelemetry/sdk-metrics";
 * import assert from "node:assert/strict";
 *
 * const reader = new PeriodicExportingMetricReader({
 *   exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
 *   exportIntervalMillis: 60_000,
 * });
 * const otel: OtelOptions = { meterProvider: new MeterProvider({ readers: [reader] }) };
 * const cache = new MemoryCache({ otel });
 * await cache.connect(); // waits for @opentelemetry/api to load
 * await cache.get("report"); // a miss
 * await cache.set("report", { total: 1 });
 * await cache.get("report"); // a hit
 * const { resourceMetrics } = await reader.collect();
 * const metrics = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
 * const count = (name: string) =>
 *   metrics.find((metric) => metric.descriptor.name === name)!.dataPoints
 *     .reduce((sum, point) => sum + (point.value as number), 0);
 * assert.equal(count("cache.hits"), 1);
 * assert.equal(count("cache.misses"), 1);
 * await cache.close();
 * await reader.shutdown();
 * ```
 */
export interface OtelOptions {
  /**
   * Record metrics: the `db.client.operation.duration` histogram and the `cache.*` counters.
   *
   * @default {true}
   */
  metrics?: boolean;
  /**
   * Record a span per call (kind CLIENT, named after the operation, with the metrics'
   * attributes; a fault sets status ERROR and `error.type`). Off by default: a span per cache hit
   * costs more than the hit.
   *
   * @default {false}
   */
  spans?: boolean;
  /**
   * Add the tenant (`companyId`) to metrics and spans as `cache.tenant`. Off by default: each
   * tenant is a time series per metric, and how many tenants a deployment may chart is the
   * user's decision. Beyond 10,000 tenants per operation the rest are recorded as `_OTHER`.
   *
   * @default {false}
   */
  tenantAttribute?: boolean;
  /**
   * Where the metrics go.
   *
   * @default {the global meter provider of @opentelemetry/api}
   */
  meterProvider?: OtelMeterProvider;
  /**
   * Where the spans go.
   *
   * @default {the global tracer provider of @opentelemetry/api}
   */
  tracerProvider?: OtelTracerProvider;
}

/**
 * A meter provider: the SDK's `MeterProvider`, or anything with its `getMeter` (typed loosely so
 * that this package's types do not require `@opentelemetry/api`).
 *
 * @example The SDK's provider fits
 * ```ts
 * import type { OtelMeterProvider } from "@core-lib/cache";
 * import { MeterProvider } from "@opentelemetry/sdk-metrics";
 * import assert from "node:assert/strict";
 *
 * const provider: OtelMeterProvider = new MeterProvider();
 * assert.equal(typeof provider.getMeter, "function");
 * ```
 */
export interface OtelMeterProvider {
  /**
   * Returns the meter of an instrumentation scope (an `@opentelemetry/api` `Meter`).
   *
   * @param name The instrumentation scope's name.
   * @param version Its version.
   * @param options Its schema URL.
   */
  getMeter(name: string, version?: string, options?: { schemaUrl?: string }): unknown;
}

/**
 * A tracer provider: the SDK's `BasicTracerProvider`, or anything with its `getTracer`.
 *
 * @example The SDK's provider fits
 * ```ts
 * import type { OtelTracerProvider } from "@core-lib/cache";
 * import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
 * import assert from "node:assert/strict";
 *
 * const provider: OtelTracerProvider = new BasicTracerProvider();
 * assert.equal(typeof provider.getTracer, "function");
 * ```
 */
export interface OtelTracerProvider {
  /**
   * Returns the tracer of an instrumentation scope (an `@opentelemetry/api` `Tracer`).
   *
   * @param name The instrumentation scope's name.
   * @param version Its version.
   * @param options Its schema URL.
   */
  getTracer(name: string, version?: string, options?: { schemaUrl?: string }): unknown;
}

/** The instrumentation scope of every meter and tracer this library asks for. */
export const OTEL_SCOPE = "@core-lib/cache";

/**
 * `db.client.operation.duration`'s bucket boundaries, in seconds, as the semantic conventions
 * advise them. A cache hit on a local network lands in the first bucket: a View with finer
 * boundaries resolves it (README, Observability).
 */
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/** Tenants per operation with a series of their own; the rest share `cache.tenant="_OTHER"`. */
const MAX_TENANTS = 10_000;

/** `error.type` when nothing better names the fault, as the conventions spell it. */
const OTHER = "_OTHER";

/** What a provider tells the recorder about itself, once the API has loaded. */
export interface OtelTarget {
  /** `db.system.name`: `redis` (RedisCache), `valkey` (ValkeyCache) or `memory` (MemoryCache). */
  system: "redis" | "valkey" | "memory";
  /** Where it connects (`server.*`, `db.namespace`); none for MemoryCache. */
  config?: RedisConfig;
  /** The cache's name (`cache.name`, left out when empty). */
  name: string;
  /** The provider's counters as `stats()` gives them (open breakers, the near cache). */
  stats(): CacheStats;
}

/** A provider's link to its recorder. */
export interface OtelHandle {
  /** Settles once recording has started, or was found impossible (logged); never rejects. */
  readonly ready: Promise<void>;
  /** Stops recording and detaches the observable callbacks; idempotent. */
  close(): void;
}

const OFF: OtelHandle = { ready: Promise.resolve(), close: () => {} };

type OtelApi = typeof Api;

let apiLoad: Promise<OtelApi | Error> | undefined;

/** Loads `@opentelemetry/api` once per process; the error when it cannot be loaded. */
function loadApi(): Promise<OtelApi | Error> {
  apiLoad ??= import("@opentelemetry/api").then(
    (module) => {
      // Node's CommonJS interop may put the exports under `default`.
      const api = (module as { metrics?: unknown }).metrics
        ? module
        : (module as unknown as { default: OtelApi }).default;
      return api as OtelApi;
    },
    (error) => error instanceof Error ? error : new Error(String(error)),
  );
  return apiLoad;
}

/** The `otel` option checked, with its defaults. */
export type ResolvedOtel =
  & Required<Pick<OtelOptions, "metrics" | "spans" | "tenantAttribute">>
  & Pick<OtelOptions, "meterProvider" | "tracerProvider">;

/**
 * Checks the `otel` option; `null` when it leaves recording off.
 *
 * @throws {CacheInputError} When the option or one of its fields is malformed.
 */
export function resolveOtel(option: unknown): ResolvedOtel | null {
  if (option === undefined || option === false) return null;
  if (option === true) option = {};
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new CacheInputError(
      `Invalid otel ${String(option)}: pass true, false or { metrics?, spans?, ` +
        "tenantAttribute?, meterProvider?, tracerProvider? }",
    );
  }
  const given = option as OtelOptions;
  const flag = (name: "metrics" | "spans" | "tenantAttribute", fallback: boolean) => {
    const value = given[name];
    if (value === undefined) return fallback;
    if (typeof value !== "boolean") {
      throw new CacheInputError(`Invalid otel.${name} ${String(value)}: pass true or false`);
    }
    return value;
  };
  const provider = <T>(name: "meterProvider" | "tracerProvider", method: string): T | undefined => {
    const value = given[name] as Record<string, unknown> | undefined;
    if (value === undefined) return undefined;
    if (typeof value !== "object" || value === null || typeof value[method] !== "function") {
      throw new CacheInputError(
        `Invalid otel.${name}: pass an object with a ${method}() method (the SDK's provider)`,
      );
    }
    return value as T;
  };
  const resolved = {
    metrics: flag("metrics", true),
    spans: flag("spans", false),
    tenantAttribute: flag("tenantAttribute", false),
    meterProvider: provider<OtelMeterProvider>("meterProvider", "getMeter"),
    tracerProvider: provider<OtelTracerProvider>("tracerProvider", "getTracer"),
  };
  return resolved.metrics || resolved.spans ? resolved : null;
}

const TRUE_WORDS = new Set(["true", "1", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off"]);

/**
 * `CACHE_OTEL` as `setCache()` reads it: `true` records metrics (spans and the tenant attribute
 * only by the `otel` option), `false` or unset records nothing.
 *
 * @throws {CacheConfigError} When the value is not a boolean word.
 */
export function otelFromEnv(env: EnvRecord): boolean | undefined {
  const raw = env.CACHE_OTEL;
  if (raw === undefined || raw.trim() === "") return undefined;
  const hash = raw.indexOf("#");
  const word = (hash === -1 ? raw : raw.slice(0, hash)).trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw invalid("CACHE_OTEL", showRaw(raw), "true/false, 1/0, yes/no or on/off (any case)");
}

/**
 * Attaches an OpenTelemetry recorder to a provider's `Metrics` when `option` turns recording on:
 * loads the API (once per process), builds the instruments and sets `metrics.recorder`. Does
 * nothing, and imports nothing, when it is off.
 *
 * @param metrics The provider's counters, which call the recorder.
 * @param option The `otel` option as given.
 * @param target Describes the provider; called once the API has loaded.
 * @param log Where a failure to load the API is reported.
 * @throws {CacheInputError} When the option is malformed.
 */
export function attachOtel(
  metrics: Metrics,
  option: unknown,
  target: () => OtelTarget,
  log: FaultLog,
): OtelHandle {
  const settings = resolveOtel(option);
  if (settings === null) return OFF;
  let closed = false;
  let recorder: OtelRecorder | undefined;
  const ready = loadApi().then((api) => {
    if (closed) return;
    if (api instanceof Error) {
      log.fault(
        "otel",
        "Cannot load @opentelemetry/api, so no metrics or spans are recorded (install it: " +
          "npm install @opentelemetry/api); the cache works without it",
        api,
      );
      return;
    }
    try {
      recorder = new OtelRecorder(api, metrics, settings, target());
      metrics.recorder = recorder;
    } catch (error) {
      log.fault("otel", "Cannot set up OpenTelemetry; nothing is recorded", error);
    }
  });
  return {
    ready,
    close: () => {
      closed = true;
      if (recorder === undefined) return;
      if (metrics.recorder === recorder) metrics.recorder = undefined;
      recorder.close();
      recorder = undefined;
    },
  };
}

/**
 * The `error.type` of a fault: the server's error prefix for a reply error (`OOM`, `NOPERM`,
 * `WRONGTYPE`, ...), `timeout`, `circuit_open` (refused at once by an open breaker), a system
 * error code (`ECONNREFUSED`, `ECONNRESET`, ...), `connection_closed`, else `_OTHER`: a few
 * values, so the attribute stays low-cardinality.
 *
 * @param error What the call failed with.
 */
export function errorType(error: unknown): string {
  if (error instanceof CircuitOpenError) return "circuit_open";
  if (!(error instanceof Error)) return OTHER;
  const message = error.message ?? "";
  if (error.name === "ReplyError") return /^[A-Z][A-Z_]*(?=\s|$)/.exec(message)?.[0] ?? OTHER;
  if (/timed out/i.test(message)) return "timeout";
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && /^E[A-Z0-9_]+$/.test(code)) return code;
  if (
    /connection is closed|connection closed|not connected|no connection|isn't writeable/i.test(
      message,
    )
  ) {
    return "connection_closed";
  }
  return OTHER;
}

type Attributes = Api.Attributes;

/**
 * The hit and miss counts of one operation (and, with the tenant attribute, of one tenant),
 * shared by every provider recording into the same meter with the same attributes.
 */
class Slot {
  readonly attrs: Attributes;
  /** Per tenant, when the tenant attribute is on (the global scope stays on this slot). */
  tenants: Map<string, Slot> | undefined;
  hits = 0;
  misses = 0;
  /** Whether this is a read, whose hits and misses are reported (zeros included). */
  read = false;

  constructor(attrs: Attributes) {
    this.attrs = attrs;
  }

  /** The slot of `companyId` under this operation's (`_OTHER` beyond MAX_TENANTS). */
  tenant(companyId: string): Slot {
    const tenants = this.tenants ??= new Map();
    let tenant = tenants.get(companyId);
    if (tenant === undefined) {
      const id = tenants.size < MAX_TENANTS ? companyId : OTHER;
      tenant = tenants.get(id);
      if (tenant === undefined) {
        tenant = new Slot(Object.freeze({ ...this.attrs, "cache.tenant": id }));
        tenants.set(id, tenant);
      }
    }
    return tenant;
  }
}

/** A counter: its name, unit and description. */
type CounterSpec = readonly [name: string, unit: string, description: string];

/** The provider-wide counters, read from `Metrics` when the SDK collects. */
const TOTALS = {
  sets: ["cache.sets", "{entry}", "Entries stored (each entry of a batch write counts)"],
  staleHits: [
    "cache.get_or_set.stale_hits",
    "{hit}",
    "getOrSet hits served stale while one caller refreshed the value (also in cache.hits)",
  ],
  computes: ["cache.get_or_set.computes", "{compute}", "getOrSet compute() runs"],
  lockWaits: [
    "cache.get_or_set.lock_waits",
    "{wait}",
    "getOrSet calls that waited for another caller or process computing the same key",
  ],
  discardedSets: [
    "cache.get_or_set.discarded_sets",
    "{entry}",
    "getOrSet values returned but not stored because a clear of their scope ran meanwhile",
  ],
  errors: [
    "cache.errors",
    "{error}",
    "Server faults served as a miss / false / 0, and failed background refreshes",
  ],
  circuitOpens: [
    "cache.circuit_breaker.opens",
    "{open}",
    "Times a target's circuit breaker opened",
  ],
} as const satisfies Record<string, CounterSpec>;

/** The near cache's counters, read from `stats().nearCache` when it is on. */
const NEAR_TOTALS = {
  hits: ["cache.near_cache.hits", "{hit}", "Reads served from the near cache (also in cache.hits)"],
  misses: ["cache.near_cache.misses", "{miss}", "Reads the near cache could not serve"],
  invalidations: [
    "cache.near_cache.invalidations",
    "{entry}",
    "Near-cache entries dropped by an invalidation",
  ],
  evictions: [
    "cache.near_cache.evictions",
    "{entry}",
    "Near-cache entries dropped to stay within maxEntries / maxBytes",
  ],
  flushes: ["cache.near_cache.flushes", "{flush}", "Times the near cache was emptied"],
} as const satisfies Record<string, CounterSpec>;

type Total = keyof typeof TOTALS;
type NearTotal = keyof typeof NEAR_TOTALS;
/** A recorder's counts since it attached, by counter. */
type Counts = Record<Total, number> & Partial<Record<NearTotal, number>>;

const TOTAL_FIELDS = Object.keys(TOTALS) as Total[];
const NEAR_FIELDS = Object.keys(NEAR_TOTALS) as NearTotal[];

/** The near cache's figures a recorder reads from `stats().nearCache`. */
type NearFigures = Record<NearTotal | "entries" | "bytes", number>;

/**
 * One meter's instruments and counts, shared by every provider recording into it: providers with
 * the same attributes (two caches on one server) add up, and a provider that closes leaves its
 * counts behind, so a cumulative counter never goes down.
 */
class MeterState {
  readonly duration: Api.Histogram;
  readonly #slots = new Map<string, Slot>();
  readonly #recorders = new Set<OtelRecorder>();
  /** The counts of closed providers, by their base attributes. */
  readonly #retired = new Map<string, { attrs: Attributes; counts: Counts }>();
  /** Breaker targets seen open, by base attributes and target: reported 0 once closed. */
  readonly #breakers = new Map<string, Attributes>();

  constructor(meter: Api.Meter) {
    this.duration = meter.createHistogram("db.client.operation.duration", {
      description: "Duration of cache operations (each call of the facade or a provider)",
      unit: "s",
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS] },
    });
    const observables: Api.Observable[] = [];
    const counter = ([name, unit, description]: CounterSpec) => {
      const instrument = meter.createObservableCounter(name, { unit, description });
      observables.push(instrument);
      return instrument;
    };
    const hits = counter(["cache.hits", "{hit}", "Reads that found their entry, per key"]);
    const misses = counter(["cache.misses", "{miss}", "Reads that found nothing, per key"]);
    const totals = TOTAL_FIELDS.map((field) => [field, counter(TOTALS[field])] as const);
    const near = NEAR_FIELDS.map((field) => [field, counter(NEAR_TOTALS[field])] as const);
    const nearEntries = meter.createObservableUpDownCounter("cache.near_cache.entries", {
      unit: "{entry}",
      description: "Entries the near cache holds",
    });
    const nearBytes = meter.createObservableUpDownCounter("cache.near_cache.size", {
      unit: "By",
      description: "Bytes of value JSON text the near cache holds",
    });
    const breaker = meter.createObservableGauge("cache.circuit_breaker.open", {
      unit: "1",
      description: "1 while the target's circuit breaker is open (its calls are served as " +
        "misses at once, without being sent), 0 after it closed",
    });
    observables.push(nearEntries, nearBytes, breaker);
    meter.addBatchObservableCallback((result) => {
      for (const slot of this.#allSlots()) {
        if (!slot.read) continue;
        result.observe(hits, slot.hits, slot.attrs);
        result.observe(misses, slot.misses, slot.attrs);
      }
      // Counts by base attributes: the closed providers', plus each open provider's.
      const sums = new Map<string, { attrs: Attributes; counts: Counts; near?: NearFigures }>();
      for (const [key, { attrs, counts }] of this.#retired) {
        sums.set(key, { attrs, counts: { ...counts } });
      }
      const open = new Set<string>();
      for (const recorder of this.#recorders) {
        const { key, attrs } = recorder.base;
        const stats = recorder.stats();
        let sum = sums.get(key);
        if (sum === undefined) sums.set(key, sum = { attrs, counts: zeroCounts() });
        addCounts(sum.counts, recorder.counts(stats));
        if (stats.nearCache !== undefined) {
          const figures = sum.near ??= { ...zeroNear(), entries: 0, bytes: 0 };
          figures.entries += stats.nearCache.entries;
          figures.bytes += stats.nearCache.bytes;
        }
        for (const target of stats.openCircuits) {
          const id = `${key} ${target}`;
          open.add(id);
          if (!this.#breakers.has(id)) this.#breakers.set(id, targetAttributes(attrs, target));
        }
      }
      for (const { attrs, counts, near: figures } of sums.values()) {
        for (const [field, instrument] of totals) result.observe(instrument, counts[field], attrs);
        if (counts.hits === undefined && figures === undefined) continue;
        for (const [field, instrument] of near) {
          result.observe(instrument, counts[field] ?? 0, attrs);
        }
        if (figures !== undefined) {
          result.observe(nearEntries, figures.entries, attrs);
          result.observe(nearBytes, figures.bytes, attrs);
        }
      }
      for (const [id, attrs] of this.#breakers) {
        result.observe(breaker, open.has(id) ? 1 : 0, attrs);
      }
    }, observables);
  }

  /** The series of `attrs`, shared by every provider that records it. */
  slot(attrs: Attributes): Slot {
    const key = JSON.stringify(attrs);
    let slot = this.#slots.get(key);
    if (slot === undefined) this.#slots.set(key, slot = new Slot(attrs));
    return slot;
  }

  attach(recorder: OtelRecorder): void {
    this.#recorders.add(recorder);
  }

  /** A provider closed: its counts stay in the totals. */
  detach(recorder: OtelRecorder): void {
    if (!this.#recorders.delete(recorder)) return;
    const { key, attrs } = recorder.base;
    let retired = this.#retired.get(key);
    if (retired === undefined) this.#retired.set(key, retired = { attrs, counts: zeroCounts() });
    addCounts(retired.counts, recorder.counts(recorder.stats()));
  }

  *#allSlots(): Iterable<Slot> {
    for (const slot of this.#slots.values()) {
      yield slot;
      if (slot.tenants !== undefined) yield* slot.tenants.values();
    }
  }
}

function zeroCounts(): Counts {
  return Object.fromEntries(TOTAL_FIELDS.map((field) => [field, 0])) as Counts;
}

function zeroNear(): Record<NearTotal, number> {
  return Object.fromEntries(NEAR_FIELDS.map((field) => [field, 0])) as Record<NearTotal, number>;
}

function addCounts(into: Counts, from: Counts): void {
  for (const field of TOTAL_FIELDS) into[field] += from[field];
  for (const field of NEAR_FIELDS) {
    if (from[field] !== undefined) into[field] = (into[field] ?? 0) + from[field];
  }
}

/** The state of each meter providers record into. */
const meterStates = new WeakMap<Api.Meter, MeterState>();

/**
 * One series of a provider's duration samples (an operation, a tenant of it, or one of its
 * `error.type`s) and the calls of this turn of the event loop not recorded yet.
 */
class Series {
  readonly attrs: Attributes;
  /** The shared hit and miss counts this series' reads go to. */
  readonly slot: Slot;
  /** The longest call of this turn not recorded yet, in milliseconds; -1 when none. */
  pending = -1;
  /** By tenant slot, when the tenant attribute is on. */
  tenants: Map<Slot, Series> | undefined;
  /** By `error.type`. */
  errors: Map<string, Series> | undefined;

  constructor(attrs: Attributes, slot: Slot) {
    this.attrs = attrs;
    this.slot = slot;
  }

  tenant(companyId: string): Series {
    const slot = this.slot.tenant(companyId);
    const tenants = this.tenants ??= new Map();
    let series = tenants.get(slot);
    if (series === undefined) tenants.set(slot, series = new Series(slot.attrs, slot));
    return series;
  }

  error(type: string): Series {
    const errors = this.errors ??= new Map();
    let series = errors.get(type);
    if (series === undefined) {
      const attrs = Object.freeze({ ...this.attrs, "error.type": type });
      errors.set(type, series = new Series(attrs, this.slot));
    }
    return series;
  }
}

/**
 * Records one provider's calls into OpenTelemetry instruments.
 *
 * `db.client.operation.duration` takes one sample per series and turn of the event loop: the
 * longest of the calls that ended in it. Calls that end together were answered together (one tick's
 * reads are one MGET, its writes one script call: src/coalesce.ts), and the conventions record a
 * batch as one operation; a caller that awaits each call gets a sample per call. Recording each
 * call through the SDK would cost about 0.5 µs (it hashes the attributes on every record), a
 * sixth of a coalesced hit; the counters and spans stay per call.
 */
class OtelRecorder implements MetricsRecorder {
  /** The attributes every record carries, and their identity. */
  readonly base: { readonly key: string; readonly attrs: Attributes };
  readonly #metrics: Metrics;
  readonly #target: OtelTarget;
  readonly #tenants: boolean;
  readonly #state: MeterState | undefined;
  readonly #duration: Api.Histogram | undefined;
  readonly #tracer: Api.Tracer | undefined;
  readonly #spanKind: Api.SpanKind;
  readonly #errorStatus: Api.SpanStatusCode;
  /** Each operation's series, by its histogram. */
  readonly #series = new Map<Histogram, Series>();
  /** The series with a sample pending, recorded at the end of this turn. */
  readonly #dirty: Series[] = [];
  #flushQueued = false;
  /** The type of the last fault noted: the `failed` calls that follow were caused by it. */
  #errorType = OTHER;
  /** The counters' values when recording started: only what follows is this recorder's. */
  readonly #offset: Counts;

  constructor(
    api: OtelApi,
    metrics: Metrics,
    settings: ResolvedOtel,
    target: OtelTarget,
  ) {
    this.#metrics = metrics;
    this.#target = target;
    this.#tenants = settings.tenantAttribute;
    const attrs = baseAttributes(target);
    this.base = { key: JSON.stringify(attrs), attrs };
    this.#spanKind = api.SpanKind.CLIENT;
    this.#errorStatus = api.SpanStatusCode.ERROR;
    this.#offset = zeroCounts();
    this.#offset = this.counts(target.stats());
    if (settings.spans) {
      const provider = settings.tracerProvider ?? api.trace.getTracerProvider();
      this.#tracer = provider.getTracer(OTEL_SCOPE) as Api.Tracer;
    }
    if (!settings.metrics) return;
    const meter = (settings.meterProvider ?? api.metrics.getMeterProvider())
      .getMeter(OTEL_SCOPE) as Api.Meter;
    let state = meterStates.get(meter);
    if (state === undefined) meterStates.set(meter, state = new MeterState(meter));
    this.#state = state;
    this.#duration = state.duration;
    state.attach(this);
  }

  lookup(
    op: Histogram,
    hits: number,
    misses: number,
    start: number,
    ms: number,
    companyId: string | undefined,
  ): void {
    const series = this.#seriesOf(op, companyId);
    const slot = series.slot;
    slot.read = true;
    slot.hits += hits;
    slot.misses += misses;
    if (this.#duration !== undefined) this.#sample(series, ms);
    if (this.#tracer !== undefined) {
      const span = this.#span(op, series.attrs, start);
      if (hits + misses === 1) span.setAttribute("cache.hit", hits === 1);
      else {
        span.setAttribute("cache.hit_count", hits);
        span.setAttribute("cache.miss_count", misses);
      }
      span.end(start + ms);
    }
  }

  call(op: Histogram, start: number, ms: number, companyId: string | undefined): void {
    const series = this.#seriesOf(op, companyId);
    if (this.#duration !== undefined) this.#sample(series, ms);
    if (this.#tracer !== undefined) this.#span(op, series.attrs, start).end(start + ms);
  }

  failed(op: Histogram, start: number, ms: number, companyId: string | undefined): void {
    const series = this.#seriesOf(op, companyId).error(this.#errorType);
    if (this.#duration !== undefined) this.#sample(series, ms);
    if (this.#tracer !== undefined) {
      const span = this.#span(op, series.attrs, start);
      span.setStatus({ code: this.#errorStatus, message: this.#errorType });
      span.end(start + ms);
    }
  }

  fault(error: unknown): void {
    this.#errorType = errorType(error);
  }

  /** The provider's counters as they stand (what `stats()` returns). */
  stats(): CacheStats {
    return this.#target.stats();
  }

  /** This recorder's counts since it attached; `stats` gives the near cache's. */
  counts(stats: CacheStats): Counts {
    const counts = zeroCounts();
    const metrics = this.#metrics;
    const offset = this.#offset;
    for (const field of TOTAL_FIELDS) counts[field] = metrics[field] - offset[field];
    const near = stats.nearCache;
    if (near !== undefined) {
      for (const field of NEAR_FIELDS) counts[field] = near[field] - (offset[field] ?? 0);
    }
    return counts;
  }

  close(): void {
    this.#flush();
    this.#state?.detach(this);
  }

  /** Keeps the longest call of this turn for `series`; recorded when the turn ends. */
  #sample(series: Series, ms: number): void {
    if (series.pending < 0) {
      this.#dirty.push(series);
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        queueMicrotask(this.#flush);
      }
    }
    if (ms > series.pending) series.pending = ms;
  }

  /** Records the pending samples. */
  readonly #flush = (): void => {
    this.#flushQueued = false;
    const duration = this.#duration!;
    for (const series of this.#dirty) {
      duration.record(series.pending / 1000, series.attrs);
      series.pending = -1;
    }
    this.#dirty.length = 0;
  };

  /** A span of `op` that started at `start` (performance.now() time), to be ended by the caller. */
  #span(op: Histogram, attributes: Attributes, start: number): Api.Span {
    return this.#tracer!.startSpan(op.name, { kind: this.#spanKind, startTime: start, attributes });
  }

  #seriesOf(op: Histogram, companyId: string | undefined): Series {
    let series = this.#series.get(op);
    if (series === undefined) {
      const attrs = Object.freeze({ ...this.base.attrs, "db.operation.name": op.name });
      const slot = this.#state?.slot(attrs) ?? new Slot(attrs);
      this.#series.set(op, series = new Series(slot.attrs, slot));
    }
    if (!this.#tenants || companyId === undefined) return series;
    return series.tenant(companyId);
  }
}

/** The attributes every record of a provider carries. */
function baseAttributes(target: OtelTarget): Attributes {
  const attrs: Attributes = { "db.system.name": target.system };
  const config = target.config;
  if (config !== undefined) {
    // In cluster mode: the first seed node, and database 0 (the only one a cluster has).
    const seed = config.mode === "cluster" ? splitTarget(config.clusterNodes[0] ?? "") : undefined;
    attrs["db.namespace"] = String(config.mode === "cluster" ? 0 : config.db);
    attrs["server.address"] = seed?.host ?? config.host;
    attrs["server.port"] = seed?.port ?? config.port;
  }
  if (target.name !== "") attrs["cache.name"] = target.name;
  return Object.freeze(attrs);
}

/** `host:port` (or `[v6]:port`) split; `undefined` when it has no port. */
function splitTarget(target: string): { host: string; port: number } | undefined {
  const match = /^\[?(.*?)\]?:(\d+)$/.exec(target);
  return match ? { host: match[1], port: Number(match[2]) } : undefined;
}

/** The base attributes with `server.*` naming a breaker's target. */
function targetAttributes(base: Attributes, target: string): Attributes {
  const split = splitTarget(target);
  if (split === undefined) return base;
  return Object.freeze({ ...base, "server.address": split.host, "server.port": split.port });
}
