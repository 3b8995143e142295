/**
 * Coalescing of the calls made in one tick: after the tick's first call, the GETs of concurrent
 * `get` calls go out as one MGET (one per slot in a cluster), and the writes of concurrent `set`
 * calls to one registry with one TTL as one `set_and_register` call (a registry is one slot in a
 * cluster too). A hundred callers in flight then cost the client and the server a few commands
 * instead of a hundred (the per-command work of the client library, about 4 µs of JavaScript, is
 * what bounds 100 concurrent callers; a script call costs the server about 5 µs before its first
 * command).
 *
 * The near cache's reads (`readWithTtl`) are gathered the same way, into one `read_with_ttl`
 * script call per group instead of an MGET, since each reply must carry its key's PTTL.
 *
 * Order is kept: a call joins an earlier command of its kind (a read batch, the write batch of its
 * registry and TTL) only when no command opened since then touches its key, so every key sees its
 * calls in the order they were made (calls on different keys commute), and any other command the
 * provider sends first flushes what is pending (`flush()`), so a `set` followed by a `delete` in
 * the same tick still runs in that order. The
 * first call of a tick goes out at once, as it would have anyway (a GET, a one-key script call),
 * so a lone caller waits for nothing; the calls after it in the same tick are the ones gathered.
 *
 * @module
 */

import type { TagTarget } from "./tags.ts";

/** At most this many keys per coalesced command (Lua's `unpack` limit is about 8,000). */
const MAX_KEYS = 1000;
/** A coalesced write is sent once its values reach this many characters, so no command is huge. */
const MAX_WRITE_CHARS = 1024 * 1024;

/** Sends the coalesced commands; each is one command on the provider's connections. */
export interface CoalescedSender {
  /** One GET. */
  get(key: string): Promise<string | null>;
  /** One MGET of keys of one group (see `groups`), replies in key order. */
  mget(keys: string[]): Promise<(string | null)[]>;
  /**
   * One `read_with_ttl` call on keys of one group: each key's value and PTTL, in key order.
   * Needed only by `readWithTtl`.
   */
  getWithTtl?(keys: string[]): Promise<TextWithTtl[]>;
  /**
   * The positions of a read batch's keys grouped so that each group can be one MGET (by hash
   * slot in a cluster); without it, a batch is one group.
   */
  groups?(keys: readonly string[]): number[][];
  /**
   * Runs `flush` when the tick's gathering ends; without it, once the tick's microtasks have
   * run (see `Servers.endOfTick`).
   */
  endOfTick?(flush: () => void): void;
  /**
   * The rejection of a read of `key` whose server's circuit breaker is open (`undefined` while
   * it is closed): such a read resolves at once instead of waiting for the tick's batch.
   */
  refusal?(key: string): Promise<never> | undefined;
  /**
   * One `set_and_register` call (`set_and_register_tags` with `tags`); resolves `false` on a
   * fault (already logged), never rejects.
   */
  write(
    registry: string,
    keys: string[],
    texts: string[],
    ttlMs: number,
    tags?: TagTarget,
  ): Promise<boolean>;
}

/** A value's text and its PTTL in milliseconds (-1: no expiry, -2: absent). */
export type TextWithTtl = [text: string | null, pttlMs: number];

interface ReadWaiter {
  resolve(reply: string | null | TextWithTtl): void;
  reject(error: unknown): void;
}

interface ReadBatch {
  readonly kind: "read";
  /** Whether the replies carry PTTLs (`read_with_ttl`), rather than values alone (MGET). */
  readonly ttl: boolean;
  readonly keys: string[];
  readonly waiters: ReadWaiter[];
}

interface WriteBatch {
  readonly kind: "write";
  readonly registry: string;
  readonly ttlMs: number;
  readonly tags: TagTarget | undefined;
  readonly keys: string[];
  readonly texts: string[];
  chars: number;
  readonly done: Promise<boolean>;
  resolve(stored: boolean): void;
}

type Batch = ReadBatch | WriteBatch;

/** Gathers one tick's GETs and writes into as few commands as their order allows. */
export class Coalescer {
  readonly #send: CoalescedSender;
  /** The batches of this tick, in the order they were opened (and are sent). */
  #pending: Batch[] = [];
  /** Each pending key's last batch (an index into #pending): no call of it may join an earlier one. */
  #lastBatch = new Map<string, number>();
  /** The read batches that take more reads, -1 for none: of values, and of values with PTTLs. */
  #openReads = [-1, -1];
  /** The write batch that takes more writes, per TTL and registry. */
  #openWrites = new Map<string, number>();
  /** A call went out in this tick, and the end of the tick will send what gathers after it. */
  #inTick = false;

  /** @param send What sends the coalesced commands. */
  constructor(send: CoalescedSender) {
    this.#send = send;
  }

  /** The value text at `key`: a GET of its own as a tick's first call, else in the tick's MGET. */
  read(key: string): Promise<string | null> {
    const refused = this.#send.refusal?.(key);
    if (refused !== undefined) return refused;
    if (!this.#inTick) {
      this.#startTick();
      return this.#send.get(key);
    }
    return this.#gather(key, false) as Promise<string | null>;
  }

  /**
   * The value text at `key` and its PTTL, for the near cache: a `read_with_ttl` call of its own as
   * a tick's first call, else in the tick's call.
   */
  readWithTtl(key: string): Promise<TextWithTtl> {
    const refused = this.#send.refusal?.(key);
    if (refused !== undefined) return refused;
    if (!this.#inTick) {
      this.#startTick();
      return this.#send.getWithTtl!([key]).then((replies) => replies[0]);
    }
    return this.#gather(key, true) as Promise<TextWithTtl>;
  }

  /** Adds a read of `key` to the tick's open read batch of its kind (a new one if it may not). */
  #gather(key: string, ttl: boolean): Promise<string | null | TextWithTtl> {
    const kind = ttl ? 1 : 0;
    let at = this.#openReads[kind];
    if (!this.#joins(key, at) || (this.#pending[at] as ReadBatch).keys.length >= MAX_KEYS) {
      at = this.#pending.push({ kind: "read", ttl, keys: [], waiters: [] }) - 1;
      this.#openReads[kind] = at;
    }
    this.#lastBatch.set(key, at);
    const open = this.#pending[at] as ReadBatch;
    open.keys.push(key);
    return new Promise((resolve, reject) => open.waiters.push({ resolve, reject }));
  }

  /**
   * Stores `text` at `key` and registers it: in a script call of its own as a tick's first call,
   * else in the tick's call for `registry`, `ttlMs` and `tags`; every call in one batch shares its
   * outcome (the script is atomic).
   */
  write(
    registry: string,
    key: string,
    text: string,
    ttlMs: number,
    tags?: TagTarget,
  ): Promise<boolean> {
    if (!this.#inTick) {
      this.#startTick();
      return this.#send.write(registry, [key], [text], ttlMs, tags);
    }
    const id = tags ? `${ttlMs} ${registry}\n${tags.id}` : `${ttlMs} ${registry}`;
    let at = this.#openWrites.get(id) ?? -1;
    let batch = this.#pending[at] as WriteBatch | undefined;
    if (
      !this.#joins(key, at) || batch!.keys.length >= MAX_KEYS || batch!.chars >= MAX_WRITE_CHARS
    ) {
      let resolve!: (stored: boolean) => void;
      const done = new Promise<boolean>((r) => resolve = r);
      batch = {
        kind: "write",
        registry,
        ttlMs,
        tags,
        keys: [],
        texts: [],
        chars: 0,
        done,
        resolve,
      };
      at = this.#pending.push(batch) - 1;
      this.#openWrites.set(id, at);
    }
    this.#lastBatch.set(key, at);
    batch!.keys.push(key);
    batch!.texts.push(text);
    batch!.chars += text.length;
    return batch!.done;
  }

  /** Sends every pending batch now, in order: called before any other command goes out. */
  flush(): void {
    if (this.#pending.length === 0) return;
    // Detached first: sending may come back here (the write path flushes before its script).
    const batches = this.#pending;
    this.#pending = [];
    this.#lastBatch.clear();
    this.#openReads = [-1, -1];
    this.#openWrites.clear();
    for (const batch of batches) {
      if (batch.kind === "write") {
        this.#send.write(batch.registry, batch.keys, batch.texts, batch.ttlMs, batch.tags)
          .then(batch.resolve);
      } else {
        const groups = batch.keys.length > 1 ? this.#send.groups?.(batch.keys) : undefined;
        if (!groups || groups.length === 1) this.#sendReads(batch.ttl, batch.keys, batch.waiters);
        else {
          for (const group of groups) {
            this.#sendReads(
              batch.ttl,
              group.map((i) => batch.keys[i]),
              group.map((i) => batch.waiters[i]),
            );
          }
        }
      }
    }
  }

  /**
   * One GET, or one MGET, for `keys` (one `read_with_ttl` call with `ttl`); each waiter is
   * settled with its key's reply.
   */
  #sendReads(ttl: boolean, keys: string[], waiters: ReadWaiter[]): void {
    if (!ttl && keys.length === 1) {
      const waiter = waiters[0];
      this.#send.get(keys[0]).then(waiter.resolve, waiter.reject);
      return;
    }
    (ttl ? this.#send.getWithTtl!(keys) : this.#send.mget(keys)).then(
      (texts) => {
        for (let i = 0; i < waiters.length; i++) waiters[i].resolve(texts[i]);
      },
      (error) => {
        for (const waiter of waiters) waiter.reject(error);
      },
    );
  }

  /** Whether a call on `key` may join the batch at `at`: one exists, and none after it has `key`. */
  #joins(key: string, at: number): boolean {
    return at >= 0 && (this.#lastBatch.get(key) ?? -1) <= at;
  }

  #startTick(): void {
    this.#inTick = true;
    const flush = () => {
      this.#inTick = false;
      this.flush();
    };
    if (this.#send.endOfTick) this.#send.endOfTick(flush);
    else queueMicrotask(flush);
  }
}
