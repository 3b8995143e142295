/**
 * Counters, latency percentiles and events of one provider. Recording is O(1) and allocation-free:
 * a few counter increments and one bucket of a fixed log-scale histogram per call; an event object
 * is built only while a listener is subscribed.
 *
 * @module
 */

/**
 * What happened in one cache call, as an event listener receives it.
 *
 * @example The events of a read, a write and a clear
 * ```ts
 * import { type CacheEvent, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const events: CacheEvent[] = [];
 * const cache = new MemoryCache({ name: "reports", onEvent: (event) => events.push(event) });
 * await cache.get("sales", { companyId: "acme" });
 * await cache.set("sales", { total: 1200 }, { companyId: "acme" });
 * await cache.clearCompany("acme");
 * assert.deepEqual(events.map((event) => `${event.type} ${event.operation}`), [
 *   "miss get",
 *   "set set",
 *   "clear clearCompany",
 * ]);
 * assert.match(events[0].key!, /^cache:tenant:acme:reports:/);
 * assert.equal(events[1].key, events[0].key);
 * assert.equal(events[2].companyId, "acme");
 * assert.equal(events[2].count, 1);
 * assert.ok(events.every((event) => event.ms >= 0));
 * ```
 */
export interface CacheEvent {
  /**
   * `hit` / `miss`: a read found or did not find the entry (one event per key of a batch read);
   * `set`: an entry was stored; `error`: a server fault was served as a miss (or a background
   * refresh failed); `clear`: a tenant, the global scope or everything was cleared;
   * `circuit-open` / `circuit-close`: the circuit breaker of `target` opened (its calls are
   * served as misses at once) or closed again (`ms`: how long it was open);
   * `near-invalidation` / `near-eviction` / `near-flush`: near-cache entries dropped (`count` of
   * them) by invalidations (the server's, or this process's own writes and clears), by its
   * memory bounds, or all at once (a FLUSHALL, tracking lost, a topology change).
   */
  type:
    | "hit"
    | "miss"
    | "set"
    | "error"
    | "clear"
    | "circuit-open"
    | "circuit-close"
    | "near-invalidation"
    | "near-eviction"
    | "near-flush";
  /** The call: `get`, `set`, `getMany`, `setMany`, `getOrSet`, `clearCompany`, ... */
  operation: string;
  /** The tenant addressed, when the call addressed one. */
  companyId?: string;
  /** The full entry key, when the call addressed one entry. */
  key?: string;
  /** Milliseconds the call took until this event. */
  ms: number;
  /** For `clear`: how many keys were deleted. For a batch `set`: how many entries were stored. */
  count?: number;
  /** For `circuit-open` / `circuit-close`: the server (`host:port`) whose breaker it was. */
  target?: string;
}

/**
 * The near cache's figures, in `cacheStats()` when it is on.
 *
 * @example Reading the near cache's figures
 * ```ts
 * import type { CacheStats, NearCacheStats } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * function hitRatio(stats: CacheStats): number {
 *   const near: NearCacheStats | undefined = stats.nearCache;
 *   if (near === undefined) return 0;
 *   return near.hits / Math.max(1, near.hits + near.misses);
 * }
 * assert.equal(hitRatio({ nearCache: { hits: 3, misses: 1 } } as CacheStats), 0.75);
 * ```
 */
export interface NearCacheStats {
  /** Lookups served from memory. */
  hits: number;
  /** Lookups not served from memory (absent, expired, or tracking not armed). */
  misses: number;
  /** Entries dropped by an invalidation (the server's, or this process's own write or clear). */
  invalidations: number;
  /** Entries dropped to stay within `maxEntries` / `maxBytes`. */
  evictions: number;
  /** Times every entry was dropped (a FLUSHALL / FLUSHDB, tracking lost, a topology change). */
  flushes: number;
  /** Entries held now. */
  entries: number;
  /** Bytes of value JSON text held now. */
  bytes: number;
  /** Whether tracking is armed on every server now (the near cache serves only then). */
  armed: boolean;
}

/**
 * Receives cache events. Runs synchronously inside the cache call: keep it cheap.
 *
 * @example Counting events by type, then unsubscribing
 * ```ts
 * import { type CacheEventListener, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const counts = new Map<string, number>();
 * const countByType: CacheEventListener = (event) => {
 *   counts.set(event.type, (counts.get(event.type) ?? 0) + 1);
 * };
 * const cache = new MemoryCache();
 * const unsubscribe = cache.subscribe(countByType);
 * await cache.getMany(["a", "b"]); // one miss per key
 * await cache.set("a", 1);
 * unsubscribe();
 * await cache.get("a"); // not counted
 * assert.deepEqual(Object.fromEntries(counts), { miss: 2, set: 1 });
 * ```
 */
export type CacheEventListener = (event: CacheEvent) => void;

/**
 * Latency of one operation, in milliseconds.
 *
 * @example Reading one operation's latency
 * ```ts
 * import { MemoryCache, type OperationStats } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * for (let i = 0; i < 10; i++) await cache.set(`k${i}`, i);
 * const set: OperationStats = cache.stats().operations.set;
 * assert.equal(set.calls, 10);
 * assert.ok(set.p50 <= set.p95 && set.p95 <= set.p99 && set.p99 <= set.max);
 * ```
 */
export interface OperationStats {
  /** How many calls were recorded. */
  calls: number;
  /** Median latency. */
  p50: number;
  /** 95th percentile latency. */
  p95: number;
  /** 99th percentile latency. */
  p99: number;
  /** Slowest call. */
  max: number;
}

/**
 * A snapshot of a provider's counters since it was created (for the facade: since `setCache`).
 *
 * @example A provider's counters
 * ```ts
 * import { type CacheStats, MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * await cache.getOrSet("report", () => ({ total: 1 })); // a miss: computed and stored
 * await cache.getOrSet("report", () => ({ total: 2 })); // a hit
 * await cache.clearAll();
 * const stats: CacheStats = cache.stats();
 * assert.equal(stats.hits, 1);
 * assert.equal(stats.misses, 1);
 * assert.equal(stats.sets, 1);
 * assert.equal(stats.clears, 1);
 * assert.equal(stats.errors, 0);
 * assert.equal(stats.operations.getOrSet.calls, 2);
 * assert.ok(stats.since <= Date.now());
 * ```
 */
export interface CacheStats {
  /** When counting started (epoch milliseconds). */
  since: number;
  /** Reads that found their entry (`get`, per key of `getMany`, `getOrSet` served from cache). */
  hits: number;
  /** Reads that found nothing (for `getOrSet`: the calls that ran or shared a `compute()`). */
  misses: number;
  /** `getOrSet` hits that served a stale value while a refresh ran (also counted in `hits`). */
  staleHits: number;
  /** Entries stored. */
  sets: number;
  /** `getOrSet` values not stored because a clear ran while they were computed. */
  discardedSets: number;
  /** Server faults served as a miss / `false` / `0`, plus failed background refreshes. */
  errors: number;
  /** `getOrSet` calls that waited for another process holding the key's lock. */
  lockWaits: number;
  /** Clear calls (`clearCompany`, `clearGlobal`, `clearAll`). */
  clears: number;
  /** Times a circuit breaker opened (a server, or a cluster master, stopped answering). */
  circuitOpens: number;
  /** Times a circuit breaker closed again (its server answered a probe). */
  circuitCloses: number;
  /** The servers (`host:port`) whose breaker is open now: their calls are served as misses. */
  openCircuits: string[];
  /**
   * The near cache's figures, when it is on: lookups served from memory (`hits`) or not
   * (`misses`), entries dropped by invalidations, evictions and flushes, what it holds, and
   * whether tracking is armed. Its hits are counted in `hits` too.
   */
  nearCache?: NearCacheStats;
  /** Latency percentiles per operation that was called at least once. */
  operations: Record<string, OperationStats>;
}

// Buckets: 0 holds everything under 1 µs; bucket i ≥ 1 holds [2^((i-1)/8), 2^(i/8)) µs, so each is
// about 9 % wide; the last one also holds everything from about 2 minutes up.
const STEPS_PER_DOUBLING = 8;
const BUCKETS = 2 + 27 * STEPS_PER_DOUBLING;

/** A fixed log-bucketed latency histogram of one operation. */
export class Histogram {
  /** The operation's name. */
  readonly name: string;
  /** How many calls were recorded. */
  calls = 0;
  #min = Infinity;
  #max = 0;
  readonly #buckets = new Uint32Array(BUCKETS);

  constructor(name: string) {
    this.name = name;
  }

  /** Records one call that took `ms` milliseconds. */
  record(ms: number): void {
    this.calls++;
    if (ms < this.#min) this.#min = ms;
    if (ms > this.#max) this.#max = ms;
    const us = ms * 1000;
    const index = us < 1 ? 0 : 1 + Math.floor(Math.log2(us) * STEPS_PER_DOUBLING);
    this.#buckets[index < BUCKETS ? index : BUCKETS - 1]++;
  }

  /** The latency at quantile `q` (0..1), within one bucket's width; 0 with no calls. */
  quantile(q: number): number {
    if (this.calls === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.calls));
    let seen = 0;
    let index = 0;
    for (; index < BUCKETS; index++) {
      seen += this.#buckets[index];
      if (seen >= rank) break;
    }
    // The overflow bucket has no upper bound: the slowest call stands for it.
    if (index >= BUCKETS - 1) return this.#max;
    // The bucket's geometric middle, kept within what was actually seen.
    const middle = index === 0 ? 0.0005 : 2 ** ((index - 0.5) / STEPS_PER_DOUBLING) / 1000;
    return Math.min(Math.max(middle, this.#min), this.#max);
  }

  /** Calls, p50 / p95 / p99 and max, rounded to microseconds. */
  snapshot(): OperationStats {
    return {
      calls: this.calls,
      p50: round(this.quantile(0.5)),
      p95: round(this.quantile(0.95)),
      p99: round(this.quantile(0.99)),
      max: round(this.calls === 0 ? 0 : this.#max),
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * Told of every call `Metrics` records, when one is attached (`Metrics.recorder`): the
 * OpenTelemetry recorder of src/otel.ts. Each method runs synchronously inside the cache call,
 * after the call's own counters; `start` is its `performance.now()` start and `ms` its duration.
 */
export interface MetricsRecorder {
  /** A read: `hits` and `misses` among its keys (one key for `get` and `getOrSet`). */
  lookup(
    op: Histogram,
    hits: number,
    misses: number,
    start: number,
    ms: number,
    companyId: string | undefined,
  ): void;
  /** A call that succeeded and is not a read (a write, delete, exists, clear, prune). */
  call(op: Histogram, start: number, ms: number, companyId: string | undefined): void;
  /** A call served as a miss / `false` / `0` because of a server fault. */
  failed(op: Histogram, start: number, ms: number, companyId: string | undefined): void;
  /** The fault a provider is about to serve as a miss (it precedes the `failed` it causes). */
  fault(error: unknown): void;
}

/**
 * One provider's counters, histograms and event listeners. The recording methods take the
 * `performance.now()` of the call's start and measure the end themselves.
 */
export class Metrics {
  /** When counting started (epoch milliseconds). */
  readonly since: number = Date.now();
  hits = 0;
  misses = 0;
  staleHits = 0;
  sets = 0;
  discardedSets = 0;
  errors = 0;
  lockWaits = 0;
  clears = 0;
  circuitOpens = 0;
  circuitCloses = 0;
  /** getOrSet `compute()` runs (reported to OpenTelemetry; not part of `CacheStats`). */
  computes = 0;
  /**
   * The OpenTelemetry recorder while the `otel` option is on (src/otel.ts), else `undefined`:
   * then a call pays one property check for it.
   */
  recorder: MetricsRecorder | undefined = undefined;
  readonly #histograms = new Map<string, Histogram>();
  readonly #listeners = new Set<CacheEventListener>();
  readonly #onListenerError: (error: unknown) => void;

  /**
   * @param onEvent A first listener (the `onEvent` option).
   * @param onListenerError Told when a listener throws (the error is otherwise swallowed).
   */
  constructor(
    onEvent?: CacheEventListener,
    onListenerError: (error: unknown) => void = () => {},
  ) {
    if (onEvent !== undefined) this.subscribe(onEvent);
    this.#onListenerError = onListenerError;
  }

  /** The histogram of `name`, created on first use; keep the reference for the hot path. */
  operation(name: string): Histogram {
    let histogram = this.#histograms.get(name);
    if (!histogram) this.#histograms.set(name, histogram = new Histogram(name));
    return histogram;
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: CacheEventListener): () => void {
    if (typeof listener !== "function") {
      throw new TypeError(`Invalid event listener ${String(listener)}: pass a function`);
    }
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** `true` while at least one listener is subscribed: build event data only then. */
  get listening(): boolean {
    return this.#listeners.size !== 0;
  }

  /** Sends one event to every listener; a listener that throws is reported, never rethrown. */
  emit(
    type: CacheEvent["type"],
    operation: string,
    ms: number,
    companyId?: string,
    key?: string,
    count?: number,
    target?: string,
  ): void {
    if (this.#listeners.size === 0) return;
    // Only the fields that apply, so a listener never sees `key: undefined`.
    const event: CacheEvent = { type, operation, ms };
    if (companyId !== undefined) event.companyId = companyId;
    if (key !== undefined) event.key = key;
    if (count !== undefined) event.count = count;
    if (target !== undefined) event.target = target;
    for (const listener of this.#listeners) {
      try {
        const result: unknown = listener(event);
        // An async listener's rejection must not become an unhandled rejection.
        if (result instanceof Promise) result.catch((error) => this.#onListenerError(error));
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }

  /**
   * A read of one key: a hit or a miss. `end`: the clock read that ended it, when the caller
   * has one (a near-cache hit), else read now.
   */
  lookup(
    op: Histogram,
    hit: boolean,
    start: number,
    companyId?: string,
    key?: string,
    end: number = performance.now(),
  ): void {
    const ms = end - start;
    op.record(ms);
    if (hit) this.hits++;
    else this.misses++;
    const recorder = this.recorder;
    if (recorder !== undefined) recorder.lookup(op, hit ? 1 : 0, hit ? 0 : 1, start, ms, companyId);
    if (this.#listeners.size !== 0) this.emit(hit ? "hit" : "miss", op.name, ms, companyId, key);
  }

  /** A batch read: per-key hits and misses (and events), one latency sample. */
  lookups(
    op: Histogram,
    keys: readonly string[],
    found: readonly boolean[],
    start: number,
    companyId?: string,
  ): void {
    const ms = performance.now() - start;
    op.record(ms);
    let hits = 0;
    for (const hit of found) if (hit) hits++;
    this.hits += hits;
    this.misses += found.length - hits;
    this.recorder?.lookup(op, hits, found.length - hits, start, ms, companyId);
    if (this.#listeners.size === 0) return;
    for (let i = 0; i < keys.length; i++) {
      this.emit(found[i] ? "hit" : "miss", op.name, ms, companyId, keys[i]);
    }
  }

  /** Entries stored: one `key`, or a batch of `count` (`key` undefined). */
  stored(op: Histogram, start: number, companyId?: string, key?: string, count = 1): void {
    const ms = performance.now() - start;
    op.record(ms);
    this.sets += count;
    this.recorder?.call(op, start, ms, companyId);
    if (this.#listeners.size !== 0) {
      this.emit("set", op.name, ms, companyId, key, key === undefined ? count : undefined);
    }
  }

  /** A call that needs only its latency recorded (delete, exists, prune). */
  timed(op: Histogram, start: number): void {
    const ms = performance.now() - start;
    op.record(ms);
    this.recorder?.call(op, start, ms, undefined);
  }

  /** A fault inside a call whose latency is recorded separately: counted, and an error event. */
  fault(operation: string, ms: number, companyId?: string, key?: string): void {
    this.errors++;
    if (this.#listeners.size !== 0) this.emit("error", operation, ms, companyId, key);
  }

  /** A server fault served as a miss / `false` / `0`. */
  failed(op: Histogram, start: number, companyId?: string, key?: string): void {
    const ms = performance.now() - start;
    op.record(ms);
    this.errors++;
    this.recorder?.failed(op, start, ms, companyId);
    if (this.#listeners.size !== 0) this.emit("error", op.name, ms, companyId, key);
  }

  /**
   * The fault a provider is about to serve as a miss: the recorder names the `error.type` of the
   * `failed` call(s) it causes from it. A no-op without a recorder.
   */
  noteFault(error: unknown): void {
    this.recorder?.fault(error);
  }

  /** A clear that deleted `count` keys. */
  cleared(op: Histogram, start: number, count: number, companyId?: string): void {
    const ms = performance.now() - start;
    op.record(ms);
    this.clears++;
    this.recorder?.call(op, start, ms, companyId);
    if (this.#listeners.size !== 0) this.emit("clear", op.name, ms, companyId, undefined, count);
  }

  /** A target's breaker opened or closed (`ms`: how long it was open, for a close). */
  circuit(target: string, open: boolean, ms: number): void {
    if (open) this.circuitOpens++;
    else this.circuitCloses++;
    this.emit(
      open ? "circuit-open" : "circuit-close",
      "circuit",
      ms,
      undefined,
      undefined,
      undefined,
      target,
    );
  }

  /**
   * Counters and percentiles as they stand.
   *
   * @param openCircuits The targets whose breaker is open now.
   */
  snapshot(openCircuits: string[] = []): CacheStats {
    const operations: Record<string, OperationStats> = {};
    for (const [name, histogram] of this.#histograms) {
      if (histogram.calls > 0) operations[name] = histogram.snapshot();
    }
    return {
      since: this.since,
      hits: this.hits,
      misses: this.misses,
      staleHits: this.staleHits,
      sets: this.sets,
      discardedSets: this.discardedSets,
      errors: this.errors,
      lockWaits: this.lockWaits,
      clears: this.clears,
      circuitOpens: this.circuitOpens,
      circuitCloses: this.circuitCloses,
      openCircuits,
      operations,
    };
  }
}

/** The stats of a cache that counted nothing (no cache installed). */
export function emptyStats(): CacheStats {
  return new Metrics().snapshot();
}

/** The operations whose latency a Redis-protocol provider records itself (getOrSet's: its own). */
export type OperationName =
  | "get"
  | "set"
  | "delete"
  | "exists"
  | "getMany"
  | "setMany"
  | "clearCompany"
  | "clearGlobal"
  | "clearAll"
  | "invalidateTags"
  | "prune";

/**
 * The histogram of each of a provider's operations, created up front in this order (the order
 * `stats().operations` lists them in), for the hot path to hold.
 */
export function operationHistograms(metrics: Metrics): Record<OperationName, Histogram> {
  const names: OperationName[] = [
    "get",
    "set",
    "delete",
    "exists",
    "getMany",
    "setMany",
    "clearCompany",
    "clearGlobal",
    "clearAll",
    "invalidateTags",
    "prune",
  ];
  return Object.fromEntries(names.map((name) => [name, metrics.operation(name)])) as Record<
    OperationName,
    Histogram
  >;
}
