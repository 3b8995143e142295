/**
 * Background load for the fault tests: N workers issue a mix of facade calls (get, set, getMany,
 * delete, clearCompany) while a fault is injected, and every call is measured: how long it took,
 * whether it resolved within its deadline, whether it rejected. Also samples the client's
 * in-process queues and counts unhandled rejections.
 *
 * Runs unchanged under Deno and Node (only `node:` modules; the unhandled-rejection hook picks
 * the runtime's own API).
 */

import process from "node:process";
import {
  cacheClearCompany,
  cacheDelete,
  cacheGet,
  cacheGetMany,
  cacheSet,
  getCacheClient,
} from "../mod.ts";

/** One measured call. */
export interface CallRecord {
  /** The facade function called. */
  readonly op: "get" | "set" | "getMany" | "delete" | "clearCompany";
  /** When it was made (ms since the epoch). */
  readonly start: number;
  /** How long until it settled; `Infinity` while it has not. */
  ms: number;
  /** `hit` / `miss` for reads, `ok` / `false` for writes, `rejected` when it threw. */
  outcome: "hit" | "miss" | "ok" | "false" | "rejected" | "pending";
  /** Settled only after its deadline (or never). */
  late: boolean;
}

/** Figures over the calls made in one time window. */
export interface WindowStats {
  /** Calls made in the window. */
  calls: number;
  /** The slowest of them, in ms (rounded). */
  worstMs: number;
  /** Calls that did not settle within their deadline (timeout + 100 ms) or never settled. */
  unresolved: number;
  /** Calls that threw (an error reached the caller). */
  rejected: number;
  /** Reads that hit. */
  hits: number;
  /** Writes (set) that resolved false. */
  failedWrites: number;
}

/** A sample of the client's queues and of the event loop. */
export interface QueueSample {
  /** When it was taken (ms since the epoch). */
  readonly at: number;
  /** Commands held in process: sent and unanswered, offline-queued, or kept to resend. */
  readonly length: number;
  /** How late this sample's timer fired, in ms: the event loop's lag (CPU starvation, GC). */
  readonly lagMs: number;
}

/** Options of {@link startLoad}. */
export interface LoadOptions {
  /** Concurrent workers, each with at most one call in flight. */
  concurrency: number;
  /** A call that takes longer than this (timeout + 100 ms) counts as unresolved. */
  deadlineMs: number;
  /** Tenants the calls use (the global scope is used too). */
  tenants?: string[];
  /** Pause between a worker's calls, in ms. */
  thinkMs?: number;
  /** Share of calls that are clearCompany (0..1). */
  clearShare?: number;
}

const INPUTS = 200;
const SAMPLE_MS = 20;

/** A running load; `stop()` ends it and waits for every call to settle. */
export class Load {
  readonly records: CallRecord[] = [];
  readonly samples: QueueSample[] = [];
  readonly #options: Required<LoadOptions>;
  #running = true;
  #workers: Promise<void>[] = [];
  #pending = new Set<Promise<unknown>>();
  #sampler: ReturnType<typeof setInterval> | undefined;
  #seed = 1;
  #lastTick = 0;

  constructor(options: LoadOptions) {
    this.#options = {
      tenants: ["t1", "t2", "t3"],
      thinkMs: 10,
      clearShare: 0.02,
      ...options,
    };
    for (let i = 0; i < options.concurrency; i++) this.#workers.push(this.#work());
    this.#lastTick = Date.now();
    this.#sampler = setInterval(() => this.#sample(), SAMPLE_MS);
  }

  /** Stops the workers, then waits up to `graceMs` for every call still out to settle. */
  async stop(graceMs = 5000): Promise<void> {
    this.#running = false;
    clearInterval(this.#sampler);
    await Promise.all(this.#workers);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.#pending]),
      new Promise((resolve) => timer = setTimeout(resolve, graceMs)),
    ]);
    clearTimeout(timer);
  }

  /** Figures over the calls made from `from` to `to` (ms since the epoch). */
  window(from = 0, to = Infinity): WindowStats {
    const calls = this.records.filter((r) => r.start >= from && r.start < to);
    return {
      calls: calls.length,
      worstMs: Math.round(Math.max(0, ...calls.map((r) => r.ms))),
      unresolved: calls.filter((r) => r.late || r.outcome === "pending").length,
      rejected: calls.filter((r) => r.outcome === "rejected").length,
      hits: calls.filter((r) => r.outcome === "hit").length,
      failedWrites: calls.filter((r) => r.op === "set" && r.outcome === "false").length,
    };
  }

  /** The longest in-process queue seen from `from` to `to`. */
  maxQueue(from = 0, to = Infinity): number {
    return Math.max(
      0,
      ...this.samples.filter((s) => s.at >= from && s.at < to).map((s) => s.length),
    );
  }

  /** The event loop's worst lag from `from` to `to`, in ms. */
  maxLag(from = 0, to = Infinity): number {
    return Math.max(
      0,
      ...this.samples.filter((s) => s.at >= from && s.at < to).map((s) => s.lagMs),
    );
  }

  #random(): number {
    // mulberry32: a fixed sequence, so a run is reproducible enough to compare.
    let t = (this.#seed += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  async #work(): Promise<void> {
    while (this.#running) {
      await this.#call();
      await new Promise((resolve) => setTimeout(resolve, this.#options.thinkMs));
    }
  }

  async #call(): Promise<void> {
    const { tenants, clearShare, deadlineMs } = this.#options;
    const pick = this.#random();
    const scopeIndex = Math.floor(this.#random() * (tenants.length + 1));
    const companyId = scopeIndex < tenants.length ? tenants[scopeIndex] : undefined;
    const input = { q: Math.floor(this.#random() * INPUTS) };
    const options = companyId === undefined ? undefined : { companyId };
    let op: CallRecord["op"];
    let call: () => Promise<unknown>;
    if (pick < clearShare) {
      op = "clearCompany";
      call = () => cacheClearCompany(tenants[scopeIndex % tenants.length]);
    } else if (pick < 0.45) {
      op = "get";
      call = () => cacheGet(input, options);
    } else if (pick < 0.8) {
      op = "set";
      call = () => cacheSet(input, { v: input.q, at: Date.now() }, options);
    } else if (pick < 0.92) {
      op = "getMany";
      call = () => cacheGetMany([input, { q: input.q + 1 }, { q: input.q + 2 }], options);
    } else {
      op = "delete";
      call = () => cacheDelete(input, options);
    }
    const record: CallRecord = {
      op,
      start: Date.now(),
      ms: Infinity,
      outcome: "pending",
      late: false,
    };
    this.records.push(record);
    const settled = (async () => {
      try {
        const result = await call();
        record.outcome = classify(op, result);
      } catch {
        record.outcome = "rejected";
      }
      record.ms = Date.now() - record.start;
      record.late = record.ms > deadlineMs;
    })();
    this.#pending.add(settled);
    settled.finally(() => this.#pending.delete(settled));
    // The worker moves on at the deadline even if the call hangs, so a hang cannot stall the load.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      settled,
      new Promise((resolve) => timer = setTimeout(resolve, deadlineMs)),
    ]);
    clearTimeout(timer);
  }

  #sample(): void {
    const now = Date.now();
    this.samples.push({
      at: now,
      length: clientQueueLength(getCacheClient()),
      lagMs: Math.max(0, now - this.#lastTick - SAMPLE_MS),
    });
    this.#lastTick = now;
  }
}

function classify(op: CallRecord["op"], result: unknown): CallRecord["outcome"] {
  switch (op) {
    case "get":
      return result === null ? "miss" : "hit";
    case "getMany":
      return (result as unknown[]).some((v) => v !== null) ? "hit" : "miss";
    case "set":
    case "delete":
      return result === true ? "ok" : "false";
    default:
      return "ok";
  }
}

/**
 * Commands an ioredis / iovalkey client holds in process: sent and awaiting a reply
 * (`commandQueue`), waiting for a connection (`offlineQueue`), and kept to resend after a
 * reconnect (`prevCommandQueue`).
 */
export function clientQueueLength(client: unknown): number {
  if (client === null || typeof client !== "object") return 0;
  const queues = client as {
    commandQueue?: { length: number };
    offlineQueue?: { length: number };
    prevCommandQueue?: { length: number } | null;
  };
  // While reconnecting, prevCommandQueue is the very queue commandQueue was: count it once.
  const kept = queues.prevCommandQueue && queues.prevCommandQueue !== queues.commandQueue
    ? queues.prevCommandQueue.length
    : 0;
  return (queues.commandQueue?.length ?? 0) + (queues.offlineQueue?.length ?? 0) + kept;
}

/** Starts a load; see {@link Load}. */
export function startLoad(options: LoadOptions): Load {
  return new Load(options);
}

/**
 * Counts unhandled promise rejections until the returned `stop()` is called (Deno: the web
 * `unhandledrejection` event, prevented so the test can report it; Node: the process event).
 */
export function countUnhandledRejections(): { readonly count: number; stop(): void } {
  const state = { count: 0 };
  if ("Deno" in globalThis) {
    const target = globalThis as unknown as EventTarget;
    const handler = (event: Event) => {
      event.preventDefault();
      state.count++;
    };
    target.addEventListener("unhandledrejection", handler);
    return {
      get count() {
        return state.count;
      },
      stop: () => target.removeEventListener("unhandledrejection", handler),
    };
  }
  const handler = () => state.count++;
  process.on("unhandledRejection", handler);
  return {
    get count() {
      return state.count;
    },
    stop: () => process.off("unhandledRejection", handler),
  };
}
