/**
 * `OtelRecorder`: what one provider's calls become in OpenTelemetry. Told of every call by the
 * provider's `Metrics` (src/stats.ts), it adds hits and misses to its meter's shared slots,
 * keeps one duration sample per operation and turn of the event loop, and, with spans on, ends a
 * span per call with the call's exact start and end.
 *
 * @module
 */

import type * as Api from "@opentelemetry/api";
import {
  type Attributes,
  baseAttributes,
  errorType,
  type OtelTarget,
  OTHER,
} from "./otel_attributes.ts";
import {
  type Counts,
  countsSince,
  type MeterMember,
  type MeterState,
  meterState,
  Slot,
  zeroCounts,
} from "./otel_meter.ts";
import type { ResolvedOtel } from "./otel_options.ts";
import type { CacheStats, Histogram, Metrics, MetricsRecorder } from "./stats.ts";

/** `@opentelemetry/api`, as its dynamic import resolves. */
export type OtelApi = typeof Api;

/** The instrumentation scope of every meter and tracer this library asks for. */
export const OTEL_SCOPE = "@core-lib/cache";

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
export class OtelRecorder implements MetricsRecorder, MeterMember {
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
    this.#offset = countsSince(metrics, target.stats(), zeroCounts());
    if (settings.spans) {
      const provider = settings.tracerProvider ?? api.trace.getTracerProvider();
      this.#tracer = provider.getTracer(OTEL_SCOPE) as Api.Tracer;
    }
    if (!settings.metrics) return;
    const meter = (settings.meterProvider ?? api.metrics.getMeterProvider())
      .getMeter(OTEL_SCOPE) as Api.Meter;
    const state = meterState(meter);
    this.#state = state;
    this.#duration = state.duration;
    state.attach(this);
  }

  // The calls `Metrics` reports, with the signatures of its MetricsRecorder (src/stats.ts).

  readonly lookup: MetricsRecorder["lookup"] = (op, hits, misses, start, ms, companyId) => {
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
  };

  readonly call: MetricsRecorder["call"] = (op, start, ms, companyId) => {
    const series = this.#seriesOf(op, companyId);
    if (this.#duration !== undefined) this.#sample(series, ms);
    if (this.#tracer !== undefined) this.#span(op, series.attrs, start).end(start + ms);
  };

  readonly failed: MetricsRecorder["failed"] = (op, start, ms, companyId) => {
    const series = this.#seriesOf(op, companyId).error(this.#errorType);
    if (this.#duration !== undefined) this.#sample(series, ms);
    if (this.#tracer !== undefined) {
      const span = this.#span(op, series.attrs, start);
      span.setStatus({ code: this.#errorStatus, message: this.#errorType });
      span.end(start + ms);
    }
  };

  readonly fault: MetricsRecorder["fault"] = (error) => {
    this.#errorType = errorType(error);
  };

  /** The provider's counters as they stand (what `stats()` returns). */
  stats(): CacheStats {
    return this.#target.stats();
  }

  /** This recorder's counts since it attached; `stats` gives the near cache's. */
  counts(stats: CacheStats): Counts {
    return countsSince(this.#metrics, stats, this.#offset);
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
