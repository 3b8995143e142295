/**
 * One meter's OpenTelemetry instruments and the counts behind them, shared by every provider that
 * records into that meter: `db.client.operation.duration` and the observable counters (`cache.*`,
 * read from the providers' `Metrics` and `stats()` only when the SDK collects). Providers with the
 * same attributes add up; a provider that closes leaves its counts behind, so a cumulative counter
 * never goes down. The hit and miss counts live in slots, one per operation (and tenant), which
 * the recorders (src/otel_recorder.ts) add to.
 *
 * @module
 */

import type * as Api from "@opentelemetry/api";
import { type Attributes, OTHER, targetAttributes } from "./otel_attributes.ts";
import type { CacheStats, Metrics } from "./stats.ts";

/**
 * `db.client.operation.duration`'s bucket boundaries, in seconds, as the semantic conventions
 * advise them. A cache hit on a local network lands in the first bucket: a View with finer
 * boundaries resolves it (README, Observability).
 */
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/** Tenants per operation with a series of their own; the rest share `cache.tenant="_OTHER"`. */
const MAX_TENANTS = 10_000;

/**
 * The hit and miss counts of one operation (and, with the tenant attribute, of one tenant),
 * shared by every provider recording into the same meter with the same attributes.
 */
export class Slot {
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
export type Counts = Record<Total, number> & Partial<Record<NearTotal, number>>;

const TOTAL_FIELDS = Object.keys(TOTALS) as Total[];
const NEAR_FIELDS = Object.keys(NEAR_TOTALS) as NearTotal[];

/** The near cache's figures a recorder reads from `stats().nearCache`. */
type NearFigures = Record<NearTotal | "entries" | "bytes", number>;

/** What a meter's state reads from each provider recording into it (its `OtelRecorder`). */
export interface MeterMember {
  /** The attributes every record of the provider carries, and their identity. */
  readonly base: { readonly key: string; readonly attrs: Attributes };
  /** The provider's counters as they stand (what `stats()` returns). */
  stats(): CacheStats;
  /** The provider's counts since its recorder attached; `stats` gives the near cache's. */
  counts(stats: CacheStats): Counts;
}

/**
 * One meter's instruments and counts, shared by every provider recording into it: providers with
 * the same attributes (two caches on one server) add up, and a provider that closes leaves its
 * counts behind, so a cumulative counter never goes down.
 */
export class MeterState {
  readonly duration: Api.Histogram;
  readonly #slots = new Map<string, Slot>();
  readonly #recorders = new Set<MeterMember>();
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

  attach(recorder: MeterMember): void {
    this.#recorders.add(recorder);
  }

  /** A provider closed: its counts stay in the totals. */
  detach(recorder: MeterMember): void {
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

/** Every counter at 0. */
export function zeroCounts(): Counts {
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

/**
 * A provider's counts since `offset` (its counts when its recorder attached): the totals from its
 * `Metrics`, the near cache's from `stats`.
 */
export function countsSince(metrics: Metrics, stats: CacheStats, offset: Counts): Counts {
  const counts = zeroCounts();
  for (const field of TOTAL_FIELDS) counts[field] = metrics[field] - offset[field];
  const near = stats.nearCache;
  if (near !== undefined) {
    for (const field of NEAR_FIELDS) counts[field] = near[field] - (offset[field] ?? 0);
  }
  return counts;
}

/** The state of each meter providers record into. */
const meterStates = new WeakMap<Api.Meter, MeterState>();

/** The state of `meter`, created on first use: every provider recording into it shares it. */
export function meterState(meter: Api.Meter): MeterState {
  let state = meterStates.get(meter);
  if (state === undefined) meterStates.set(meter, state = new MeterState(meter));
  return state;
}
