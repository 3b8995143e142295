/**
 * `getOrSet`: read-through caching with stampede protection and invalidation-safe writes, shared
 * by every provider. The provider supplies a {@link GetOrSetStore} (four primitives: a plain read,
 * read-or-lock, set-if-generation, release-lock); this module holds the flow:
 *
 * - Hit without `staleWhileRevalidate`: one GET.
 * - Miss: in one process, concurrent callers of one key share one flow (single-flight). The flow
 *   runs read-or-lock, which atomically returns the value if it appeared meanwhile, or takes the
 *   key's lock (SET NX PX, random owner token) and reads the scope's generation counters. The
 *   lock owner runs `compute()` and writes with set-if-generation, which stores only if no clear
 *   moved the counters since they were read, and releases the lock. A caller that finds the lock
 *   held polls (10 ms growing to 100 ms) until the value appears, the lock is free (it then takes
 *   it), or `lockTimeout` passed (it then computes without the lock).
 * - `staleWhileRevalidate`: the entry lives `ttl + staleWhileRevalidate` on the server; each read
 *   is one read-or-lock call that also returns the remaining TTL's verdict. A stale value is
 *   returned at once; the caller that got the lock refreshes in the background; a failed refresh
 *   is logged and the stale value keeps being served.
 * - A server fault never throws: `compute()` runs and its value is returned, unstored.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { CacheInputError } from "./errors.ts";
import { hashInput, normalizeCompanyId } from "./keys.ts";
import type { KeyLayout } from "./layout.ts";
import type { FaultLog } from "./log.ts";
import { randomToken } from "./runtime.ts";
import type { Histogram, Metrics } from "./stats.ts";
import type { Compute, GetOrSetOptions } from "./types.ts";
import { validateTags } from "./tags.ts";
import { MAX_TTL_SECONDS, parseValue, serializeValue, ttlToMs } from "./values.ts";

/** The default `lockTimeout`, in seconds. */
export const DEFAULT_LOCK_TIMEOUT = 10;
/** How long a generation counter lives after the last getOrSet miss read it. */
export const GENERATION_TTL_MS = 24 * 60 * 60 * 1000;
const POLL_FIRST_MS = 10;

/**
 * The entry keys whose compute() the current async call chain is inside: a getOrSet of one of
 * them from within its own compute() must neither join that flow nor wait for its lock, since
 * both wait for the very call being made.
 */
const computing = new AsyncLocalStorage<ReadonlySet<string>>();
const POLL_MAX_MS = 100;

/** The keys one getOrSet call addresses. */
export interface FlowKeys {
  /** The entry key. */
  readonly key: string;
  /** The entry's lock. */
  readonly lock: string;
  /** The scope's registry. */
  readonly registry: string;
  /** The scope's generation counter. */
  readonly generation: string;
  /** The clear-all epoch. */
  readonly all: string;
  /** The tenant, `undefined` for the global scope. */
  readonly companyId: string | undefined;
  /** The entry's tags (checked, without duplicates); empty for an untagged entry. */
  readonly tags: readonly string[];
}

/** What read-or-lock found (see lua/read_or_lock.lua for the statuses). */
export interface LockReply {
  /** 1 fresh, 2 stale + lock taken, 3 stale + lock held, 4 missing + lock taken, 5 missing + lock held. */
  status: 1 | 2 | 3 | 4 | 5;
  /** The entry's text (statuses 1 to 3). */
  text: string | null;
  /** The scope generation read (statuses 2 to 5). */
  generation: string;
  /** The clear-all epoch read (statuses 2 to 5). */
  all: string;
}

/** The four primitives a provider supplies; each throws on a server fault. */
export interface GetOrSetStore {
  /** The entry's text, or `null`. */
  get(key: string): Promise<string | null>;
  /** Atomically: the fresh value, or the lock attempt and the generations. */
  readOrLock(
    keys: FlowKeys,
    token: string,
    lockMs: number,
    staleMs: number,
  ): Promise<LockReply>;
  /**
   * Stores `text` unless the generations moved since `reply` read them; releases the lock when
   * `token` still owns it. `true` when stored.
   */
  setIfGeneration(
    keys: FlowKeys,
    text: string,
    ttlMs: number,
    reply: LockReply,
    token: string,
  ): Promise<boolean>;
  /** Deletes the lock if `token` still owns it. */
  releaseLock(keys: FlowKeys, token: string): Promise<void>;
}

/** What a provider hands the runner. */
export interface GetOrSetContext {
  readonly prefix: string;
  /** Where the keys live (standalone or cluster layout): every key name comes from it. */
  readonly layout: KeyLayout;
  readonly name: string;
  readonly defaultTtl: number | null;
  readonly maxValueBytes: number;
  /** The largest key input, in bytes of its canonical JSON. */
  readonly maxKeyInputBytes: number;
  readonly store: GetOrSetStore;
  readonly metrics: Metrics;
  readonly log: FaultLog;
  /** Logs a server fault of `operation` (rate-limited). */
  fault(operation: string, error: unknown): void;
}

/** The outcome of one flow, shared by the callers that joined it. */
interface FlowResult {
  /** The value's JSON text; each caller parses its own copy. */
  text: string;
  /** `true` when the value came from the cache (possibly after waiting), `false` when computed. */
  fromCache: boolean;
  /** `true` when served stale. */
  stale: boolean;
}

/** Options of one call, validated and in milliseconds. */
interface Plan {
  ttlMs: number;
  /** 0: no stale-while-revalidate. */
  staleMs: number;
  lockMs: number;
}

/** Runs getOrSet calls for one provider. */
export class GetOrSetRunner {
  readonly #ctx: GetOrSetContext;
  readonly #op: Histogram;
  /** In-flight flows (foreground computes and background refreshes) by entry key. */
  readonly #inflight = new Map<string, Promise<FlowResult>>();

  constructor(context: GetOrSetContext) {
    this.#ctx = context;
    this.#op = context.metrics.operation("getOrSet");
  }

  /** The cached value, or `compute()`'s, stored when no clear intervened. */
  async run<T>(input: unknown, compute: Compute<T>, options?: GetOrSetOptions): Promise<T> {
    const start = performance.now();
    if (typeof compute !== "function") {
      throw new CacheInputError(
        `Invalid compute ${String(compute)}: pass a function that returns the value to cache`,
      );
    }
    const ctx = this.#ctx;
    const companyId = normalizeCompanyId(options?.companyId);
    const hash = hashInput(input, ctx.maxKeyInputBytes);
    const key = ctx.layout.entryKey(ctx.name, hash, companyId);
    const plan = resolvePlan(options, ctx.defaultTtl);
    const tags = validateTags(options?.tags);

    let result: FlowResult;
    if (plan.staleMs === 0) {
      // The hot path: one GET, exactly like get().
      let text: string | null;
      try {
        text = await ctx.store.get(key);
      } catch (error) {
        return await this.#degraded(error, compute, start, companyId, key);
      }
      if (text !== null) result = { text, fromCache: true, stale: false };
      else if (computing.getStore()?.has(key)) {
        return await this.#reentrant(compute, start, companyId, key);
      } else {
        const keys = this.#keys(key, hash, companyId, tags);
        const joined = this.#inflight.get(key);
        result = joined
          ? await this.#join(joined, keys, plan, compute)
          : await this.#start(keys, plan, compute, undefined, undefined);
      }
    } else {
      // One read-or-lock call: the value and whether it is stale, and the lock when it is.
      // In-process flows are joined only when the entry is missing: a refresh in flight must not
      // hold up callers that can be served the stale value.
      const keys = this.#keys(key, hash, companyId, tags);
      const token = randomToken();
      let reply: LockReply;
      try {
        reply = await ctx.store.readOrLock(keys, token, plan.lockMs, plan.staleMs);
      } catch (error) {
        return await this.#degraded(error, compute, start, companyId, key);
      }
      if (reply.status === 1) result = { text: reply.text!, fromCache: true, stale: false };
      else if (reply.status === 2 || reply.status === 3) {
        if (reply.status === 2) this.#refresh(keys, plan, compute, reply, token, start);
        result = { text: reply.text!, fromCache: true, stale: true };
      } else if (reply.status === 5 && computing.getStore()?.has(key)) {
        return await this.#reentrant(compute, start, companyId, key);
      } else {
        // Missing: join a flow of this process unless this call took the lock.
        const other = reply.status === 5 ? this.#inflight.get(key) : undefined;
        result = other
          ? await this.#join(other, keys, plan, compute)
          : await this.#start(keys, plan, compute, reply, token);
      }
    }

    const metrics = ctx.metrics;
    if (result.stale) metrics.staleHits++;
    metrics.lookup(this.#op, result.fromCache, start, companyId, key);
    try {
      return parseValue<T>(result.text);
    } catch (error) {
      // Not JSON (written by hand?): computed afresh, not stored over the foreign text.
      ctx.log.fault("parse", `Entry ${key} does not hold JSON text; computed afresh`, error);
      return await compute();
    }
  }

  #keys(
    key: string,
    hash: string,
    companyId: string | undefined,
    tags: readonly string[],
  ): FlowKeys {
    const layout = this.#ctx.layout;
    const registry = layout.registryKey(hash, companyId);
    return {
      key,
      lock: layout.lockKey(key),
      registry,
      generation: layout.generationKey(registry),
      all: layout.epochKey(registry),
      companyId,
      tags,
    };
  }

  /** Registers a foreground flow so callers of this process join it. */
  /**
   * Waits for this process's flow of the same key, as long as a cross-process waiter would wait
   * for the lock (`lockTimeout`): a compute() that never settles must not hold up every caller
   * of the key. Past that, this caller computes itself (the generations still guard the write).
   */
  async #join(
    flow: Promise<FlowResult>,
    keys: FlowKeys,
    plan: Plan,
    compute: Compute<unknown>,
  ): Promise<FlowResult> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), plan.lockMs);
    });
    const joined = await Promise.race([flow, timedOut]).finally(() => clearTimeout(timer));
    if (joined !== undefined) return joined;
    this.#ctx.metrics.lockWaits++;
    return await this.#flow(keys, plan, compute, undefined, randomToken(), 0);
  }

  /**
   * A getOrSet of a key from within that key's own compute(): computed here and returned
   * unstored (the outer call stores its own value), instead of waiting for itself.
   */
  async #reentrant<T>(
    compute: Compute<T>,
    start: number,
    companyId: string | undefined,
    key: string,
  ): Promise<T> {
    const text = serializeValue(await this.#compute(compute, key), this.#ctx.maxValueBytes);
    this.#ctx.metrics.lookup(this.#op, false, start, companyId, key);
    return parseValue<T>(text);
  }

  /** Runs compute() marked as computing `key` (see `computing`). */
  #compute<T>(compute: Compute<T>, key: string): Promise<T> {
    this.#ctx.metrics.computes++;
    const outer = computing.getStore();
    const keys = new Set(outer);
    keys.add(key);
    return computing.run(keys, async () => await compute());
  }

  #start(
    keys: FlowKeys,
    plan: Plan,
    compute: Compute<unknown>,
    reply: LockReply | undefined,
    token: string | undefined,
  ): Promise<FlowResult> {
    const flow = this.#flow(keys, plan, compute, reply, token ?? randomToken());
    this.#inflight.set(keys.key, flow);
    const forget = () => {
      if (this.#inflight.get(keys.key) === flow) this.#inflight.delete(keys.key);
    };
    flow.then(forget, forget);
    return flow;
  }

  /** Read-or-lock, wait while another process holds the lock, compute and store. */
  async #flow(
    keys: FlowKeys,
    plan: Plan,
    compute: Compute<unknown>,
    first: LockReply | undefined,
    token: string,
    waitMs = plan.lockMs,
  ): Promise<FlowResult> {
    const ctx = this.#ctx;
    const start = performance.now();
    let reply = first;
    let deadline: number | undefined;
    let delay = POLL_FIRST_MS;
    let waited = false;
    for (;;) {
      if (reply === undefined) {
        try {
          reply = await ctx.store.readOrLock(keys, token, plan.lockMs, plan.staleMs);
        } catch (error) {
          this.#fault(keys, start, error);
          return {
            text: serializeValue(await this.#compute(compute, keys.key), ctx.maxValueBytes),
            fromCache: false,
            stale: false,
          };
        }
      }
      // The lock wait is counted from the first answer.
      deadline ??= performance.now() + waitMs;
      switch (reply.status) {
        case 1:
          return { text: reply.text!, fromCache: true, stale: false };
        case 2:
          this.#refresh(keys, plan, compute, reply, token, start);
          return { text: reply.text!, fromCache: true, stale: true };
        case 3:
          return { text: reply.text!, fromCache: true, stale: true };
        case 4:
          return await this.#computeAndStore(keys, plan, compute, reply, token, start);
      }
      // 5: another process holds the lock.
      if (!waited) {
        waited = true;
        ctx.metrics.lockWaits++;
      }
      if (performance.now() >= deadline) {
        // Its holder is slow or gone: compute without the lock (the generations just read
        // still guard the write).
        return await this.#computeAndStore(keys, plan, compute, reply, "", start);
      }
      await sleep(Math.min(delay, Math.max(1, deadline - performance.now())));
      delay = Math.min(delay * 2, POLL_MAX_MS);
      reply = undefined;
    }
  }

  /**
   * Runs `compute()` and stores its value if no clear moved the generations `reply` read. Releases
   * the lock `token` holds ("" for none) in every case. A `compute()` error is rethrown.
   */
  async #computeAndStore(
    keys: FlowKeys,
    plan: Plan,
    compute: Compute<unknown>,
    reply: LockReply,
    token: string,
    start: number,
  ): Promise<FlowResult> {
    const ctx = this.#ctx;
    let text: string;
    try {
      text = serializeValue(await this.#compute(compute, keys.key), ctx.maxValueBytes);
    } catch (error) {
      if (token !== "") await this.#release(keys, token);
      throw error;
    }
    const ttlMs = plan.ttlMs === 0 ? 0 : plan.ttlMs + plan.staleMs;
    let stored: boolean;
    try {
      stored = await ctx.store.setIfGeneration(keys, text, ttlMs, reply, token);
    } catch (error) {
      this.#fault(keys, start, error);
      return { text, fromCache: false, stale: false };
    }
    const metrics = ctx.metrics;
    if (stored) {
      metrics.sets++;
      if (metrics.listening) {
        metrics.emit("set", "getOrSet", performance.now() - start, keys.companyId, keys.key);
      }
    } else {
      metrics.discardedSets++;
    }
    return { text, fromCache: false, stale: false };
  }

  /** Starts the background refresh of a stale entry whose lock this caller took. */
  #refresh(
    keys: FlowKeys,
    plan: Plan,
    compute: Compute<unknown>,
    reply: LockReply,
    token: string,
    start: number,
  ): void {
    const refresh = this.#computeAndStore(keys, plan, compute, reply, token, start);
    if (!this.#inflight.has(keys.key)) {
      this.#inflight.set(keys.key, refresh);
      const forget = () => {
        if (this.#inflight.get(keys.key) === refresh) this.#inflight.delete(keys.key);
      };
      refresh.then(forget, forget);
    }
    refresh.catch((error) => {
      const ctx = this.#ctx;
      ctx.log.fault(
        "refresh",
        `Background refresh of ${keys.key} failed; the stale value is served until it expires`,
        error,
      );
      ctx.metrics.fault("getOrSet", performance.now() - start, keys.companyId, keys.key);
    });
  }

  /** A server fault inside a flow: logged and counted; the call's latency is recorded once, later. */
  #fault(keys: FlowKeys, start: number, error: unknown): void {
    this.#ctx.fault("getOrSet", error);
    this.#ctx.metrics.fault("getOrSet", performance.now() - start, keys.companyId, keys.key);
  }

  async #release(keys: FlowKeys, token: string): Promise<void> {
    try {
      await this.#ctx.store.releaseLock(keys, token);
    } catch (error) {
      // The lock expires by itself after lockTimeout.
      this.#ctx.fault("getOrSet", error);
    }
  }

  /** The server failed: compute, return the value, store nothing. */
  async #degraded<T>(
    error: unknown,
    compute: Compute<T>,
    start: number,
    companyId: string | undefined,
    key: string,
  ): Promise<T> {
    const metrics = this.#ctx.metrics;
    this.#ctx.fault("getOrSet", error);
    metrics.fault("getOrSet", performance.now() - start, companyId, key);
    const text = serializeValue(await this.#compute(compute, key), this.#ctx.maxValueBytes);
    metrics.lookup(this.#op, false, start, companyId, key);
    return parseValue<T>(text);
  }
}

/** Validates the options of one call. */
function resolvePlan(options: GetOrSetOptions | undefined, defaultTtl: number | null): Plan {
  const ttlMs = ttlToMs(options?.ttl, defaultTtl);
  const lockTimeout = options?.lockTimeout ?? DEFAULT_LOCK_TIMEOUT;
  if (typeof lockTimeout !== "number" || !Number.isFinite(lockTimeout) || lockTimeout <= 0) {
    throw new CacheInputError(
      `Invalid lockTimeout ${
        String(lockTimeout)
      }: pass a positive number of seconds (default ${DEFAULT_LOCK_TIMEOUT})`,
    );
  }
  const swr = options?.staleWhileRevalidate ?? 0;
  if (typeof swr !== "number" || !Number.isFinite(swr) || swr < 0) {
    throw new CacheInputError(
      `Invalid staleWhileRevalidate ${
        String(swr)
      }: pass a number of seconds, 0 or omit it to turn it off`,
    );
  }
  // The entry is stored for ttl + staleWhileRevalidate: together they must fit the servers' TTL.
  if (ttlMs !== 0 && ttlMs + Math.ceil(swr * 1000) > MAX_TTL_SECONDS * 1000) {
    throw new CacheInputError(
      `Invalid staleWhileRevalidate ${swr}: the entry is kept for ttl + staleWhileRevalidate, ` +
        `which must be at most ${MAX_TTL_SECONDS} seconds`,
    );
  }
  return {
    ttlMs,
    // An entry without expiry is never stale.
    staleMs: ttlMs === 0 ? 0 : Math.ceil(swr * 1000),
    lockMs: Math.ceil(lockTimeout * 1000),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
