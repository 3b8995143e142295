/**
 * Coalescing of the calls made in one tick: after the tick's first call, the GETs of concurrent
 * `get` calls go out as one MGET (one per slot in a cluster), and the writes of concurrent `set`
 * calls to one registry with one TTL as one `set_and_register` call (a registry is one slot in a
 * cluster too). A hundred callers in flight then cost the client and the server a few commands
 * instead of a hundred (the per-command work of the client library, about 4 µs of JavaScript, is
 * what bounds 100 concurrent callers; a script call costs the server about 5 µs before its first
 * command).
 *
 * Order is kept: a call joins an earlier command of its kind (a read batch, the write batch of its
 * registry and TTL) only when no command opened since then touches its key, so every key sees its
 * calls in the order they were made (calls on different keys commute), and any other command the
 * provider sends first flushes what is pending (`flush()`), so a `set` followed by a `delete` in
 * the same tick still runs in that order. The
 * first call of a tick goes out at once, as it would have anyway (a GET, a one-key script call),
 * so a lone caller waits for nothing; the calls after it in the same tick are the ones gathered.
 *
 * With lanes (a cluster, see {@linkcode Lanes}) the calls are gathered per hash slot and sent per
 * master: at the end of the tick, every slot whose master has none of this coalescer's commands
 * in flight goes out, all of that master's in one pipeline, while the slots of a busy master stay
 * open and take the calls that come meanwhile, until its commands are answered. A master then
 * gets one write of a few commands per round trip, as an auto-pipelining client does, but the
 * calls of one slot made while it was busy share one command. There is no call of its own at the
 * start of a tick here: a lone caller's command goes out at the end of its tick.
 *
 * @module
 */

import type { Lanes } from "./servers.ts";
import type { TagTarget } from "./tags.ts";

/** At most this many keys per coalesced command (Lua's `unpack` limit is about 8,000). */
const MAX_KEYS = 1000;
/** A coalesced write is sent once its values reach this many characters, so no command is huge. */
const MAX_WRITE_CHARS = 1024 * 1024;

/** Sends the coalesced commands; each is one command on the provider's connections. */
export interface CoalescedSender {
  /** One GET. */
  get(key: string): Promise<string | null>;
  /**
   * One `read_with_ttl` call on one key, for the near cache: its value and PTTL in one reply.
   * Needed only by `readWithTtl`.
   */
  getWithTtl?(key: string): Promise<TextWithTtl>;
  /** One MGET of keys of one group (see `groups`), replies in key order. */
  mget(keys: string[]): Promise<(string | null)[]>;
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
  /** Gathering per hash slot and sending per master (a cluster); without it, one group. */
  lanes?: Lanes;
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

/**
 * A value's text and, when the read could fetch it in the same command, its PTTL in
 * milliseconds (-1: no expiry, -2: absent); `undefined` when the read was part of an MGET.
 */
export type TextWithTtl = [text: string | null, pttlMs: number | undefined];

interface ReadWaiter {
  /** Whether the caller wants the PTTL with the value (`readWithTtl`). */
  readonly ttl: boolean;
  resolve(text: string | null, pttlMs?: number): void;
  reject(error: unknown): void;
}

interface ReadBatch {
  readonly kind: "read";
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

/** The pending batches of one group (all of them, without lanes), in the order they were opened. */
class Queue {
  readonly batches: Batch[] = [];
  /**
   * Each pending key's last batch (an index into `batches`): no call of it may join an earlier
   * one. Made when a second batch opens: while there is one, it is every key's last.
   */
  last: Map<string, number> | undefined;
  /** The read batch that takes more reads, -1 for none. */
  openRead = -1;
  /** The write batch that takes more writes, per TTL, registry and tags. */
  readonly openWrites = new Map<string, number>();
}

/** Gathers one tick's GETs and writes into as few commands as their order allows. */
export class Coalescer {
  readonly #send: CoalescedSender;
  readonly #lanes: Lanes | undefined;
  /** Without lanes: the batches of this tick. */
  #queue = new Queue();
  /** With lanes: the pending batches of each group. */
  readonly #queues = new Map<number, Queue>();
  /** Without lanes: a call went out in this tick, and the end of the tick sends what follows it. */
  #inTick = false;
  /** With lanes: a flush at the end of the tick is due. */
  #scheduled = false;
  /** With lanes: this coalescer's commands in flight per lane; a lane with none is absent. */
  readonly #busy = new Map<string | undefined, number>();
  /** Batches are being sent: a flush asked for meanwhile (a write's own) has nothing to do. */
  #sending = false;

  /** @param send What sends the coalesced commands. */
  constructor(send: CoalescedSender) {
    this.#send = send;
    this.#lanes = send.lanes;
  }

  /** The value text at `key`: a GET of its own as a tick's first call, else in the tick's MGET. */
  read(key: string): Promise<string | null> {
    const refused = this.#send.refusal?.(key);
    if (refused !== undefined) return refused;
    if (this.#lanes !== undefined) {
      return this.#gather(this.#queueOf(key), key, false) as Promise<string | null>;
    }
    if (!this.#inTick) {
      this.#startTick();
      return this.#send.get(key);
    }
    return this.#gather(this.#queue, key, false) as Promise<string | null>;
  }

  /**
   * The value text at `key`, for the near cache, with its PTTL when the read goes out alone (a
   * `read_with_ttl` call: a sequential caller); in a batch, it joins the tick's MGET and the PTTL
   * is `undefined` (the near cache reads it after, for the values found).
   */
  readWithTtl(key: string): Promise<TextWithTtl> {
    const refused = this.#send.refusal?.(key);
    if (refused !== undefined) return refused;
    if (this.#lanes !== undefined) {
      return this.#gather(this.#queueOf(key), key, true) as Promise<TextWithTtl>;
    }
    if (!this.#inTick) {
      this.#startTick();
      return this.#send.getWithTtl!(key);
    }
    return this.#gather(this.#queue, key, true) as Promise<TextWithTtl>;
  }

  /** Adds a read of `key` to the open read batch (a new one if it may not). */
  #gather(queue: Queue, key: string, ttl: boolean): Promise<string | null | TextWithTtl> {
    let at = queue.openRead;
    if (!joins(queue, key, at) || (queue.batches[at] as ReadBatch).keys.length >= MAX_KEYS) {
      at = opened(queue, { kind: "read", keys: [], waiters: [] });
      queue.openRead = at;
    }
    queue.last?.set(key, at);
    const open = queue.batches[at] as ReadBatch;
    open.keys.push(key);
    return new Promise((resolve, reject) =>
      open.waiters.push(
        ttl
          ? { ttl, resolve: (text, pttlMs) => resolve([text, pttlMs]), reject }
          : { ttl, resolve, reject },
      )
    );
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
    let queue: Queue;
    if (this.#lanes !== undefined) queue = this.#queueOf(key);
    else if (!this.#inTick) {
      this.#startTick();
      return this.#send.write(registry, [key], [text], ttlMs, tags);
    } else queue = this.#queue;
    const id = tags ? `${ttlMs} ${registry}\n${tags.id}` : `${ttlMs} ${registry}`;
    let at = queue.openWrites.get(id) ?? -1;
    let batch = queue.batches[at] as WriteBatch | undefined;
    if (
      !joins(queue, key, at) || batch!.keys.length >= MAX_KEYS || batch!.chars >= MAX_WRITE_CHARS
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
      at = opened(queue, batch);
      queue.openWrites.set(id, at);
    }
    queue.last?.set(key, at);
    batch!.keys.push(key);
    batch!.texts.push(text);
    batch!.chars += text.length;
    return batch!.done;
  }

  /** Sends every pending batch now, in order: called before any other command goes out. */
  flush(): void {
    // A batch being sent asks for this before its own command: the batches are already going out
    // in order, and the ones still pending (of busy masters) hold other keys.
    if (this.#sending) return;
    if (this.#lanes !== undefined) {
      this.#flushLanes(true);
      return;
    }
    const queue = this.#queue;
    if (queue.batches.length === 0) return;
    this.#queue = new Queue();
    this.#sending = true;
    try {
      for (const batch of queue.batches) this.#sendBatch(batch, undefined, true);
    } finally {
      this.#sending = false;
    }
  }

  /**
   * With lanes: sends the pending groups of every lane that has no command in flight (`all`:
   * of every lane), one pipeline per lane; the others stay open until their lane is free.
   */
  #flushLanes(all: boolean): void {
    if (this.#queues.size === 0) return;
    const lanes = this.#lanes!;
    // A lane free now takes all its groups, though the first one sent makes it busy.
    const busy = all || this.#busy.size === 0 ? undefined : new Set(this.#busy.keys());
    this.#sending = true;
    try {
      lanes.together(() => {
        for (const [group, queue] of this.#queues) {
          const lane = lanes.laneOf(group);
          if (busy?.has(lane)) continue;
          this.#queues.delete(group);
          for (const batch of queue.batches) this.#sendBatch(batch, lane, false);
        }
      });
    } finally {
      this.#sending = false;
    }
  }

  /**
   * Sends one batch; with lanes (`split` false: a batch of one group), counts it in flight on
   * `lane` until it settles.
   */
  #sendBatch(batch: Batch, lane: string | undefined, split: boolean): void {
    const counted = this.#lanes !== undefined;
    if (counted) this.#busy.set(lane, (this.#busy.get(lane) ?? 0) + 1);
    if (batch.kind === "write") {
      this.#send.write(batch.registry, batch.keys, batch.texts, batch.ttlMs, batch.tags)
        .then((stored) => {
          if (counted) this.#settled(lane);
          batch.resolve(stored);
        });
      return;
    }
    const groups = split && batch.keys.length > 1 ? this.#send.groups?.(batch.keys) : undefined;
    if (!groups || groups.length === 1) {
      this.#sendReads(batch.keys, batch.waiters, counted, lane);
      return;
    }
    for (const group of groups) {
      this.#sendReads(
        group.map((i) => batch.keys[i]),
        group.map((i) => batch.waiters[i]),
        false,
        undefined,
      );
    }
  }

  /**
   * One GET, or one MGET, for `keys`; each waiter is settled with its key's reply, after `lane`
   * is told (`counted`).
   */
  #sendReads(
    keys: string[],
    waiters: ReadWaiter[],
    counted: boolean,
    lane: string | undefined,
  ): void {
    if (keys.length === 1) {
      const waiter = waiters[0];
      const failed = (error: unknown) => {
        if (counted) this.#settled(lane);
        waiter.reject(error);
      };
      if (waiter.ttl) {
        // Alone, the near cache's read takes its PTTL in the same command.
        this.#send.getWithTtl!(keys[0]).then(([text, pttlMs]) => {
          if (counted) this.#settled(lane);
          waiter.resolve(text, pttlMs);
        }, failed);
      } else {
        this.#send.get(keys[0]).then((text) => {
          if (counted) this.#settled(lane);
          waiter.resolve(text);
        }, failed);
      }
      return;
    }
    this.#send.mget(keys).then(
      (texts) => {
        if (counted) this.#settled(lane);
        for (let i = 0; i < waiters.length; i++) waiters[i].resolve(texts[i]);
      },
      (error) => {
        if (counted) this.#settled(lane);
        for (const waiter of waiters) waiter.reject(error);
      },
    );
  }

  /** With lanes: the queue of `key`'s group, and a flush at the end of the tick. */
  #queueOf(key: string): Queue {
    const group = this.#lanes!.groupOf(key);
    let queue = this.#queues.get(group);
    if (queue === undefined) {
      queue = new Queue();
      this.#queues.set(group, queue);
    }
    if (!this.#scheduled) this.#schedule();
    return queue;
  }

  /** With lanes: one of `lane`'s commands settled; when it was the last, its groups may go. */
  #settled(lane: string | undefined): void {
    const left = this.#busy.get(lane)! - 1;
    if (left > 0) {
      this.#busy.set(lane, left);
      return;
    }
    this.#busy.delete(lane);
    if (this.#queues.size > 0 && !this.#scheduled) this.#schedule();
  }

  /**
   * With lanes: a flush once the calls of this tick are in. With none of this coalescer's
   * commands in flight (a lone caller, the first calls of a burst) that is once the tick's
   * microtasks have run, so the call waits for nothing; with some in flight, the end of the tick
   * (`endOfTick`), so that the callers resumed by several masters' replies share commands.
   */
  #schedule(): void {
    this.#scheduled = true;
    const flush = () => {
      this.#scheduled = false;
      this.#flushLanes(false);
    };
    if (this.#busy.size === 0) queueMicrotask(flush);
    else this.#endOfTick(flush);
  }

  #startTick(): void {
    this.#inTick = true;
    this.#endOfTick(() => {
      this.#inTick = false;
      this.flush();
    });
  }

  #endOfTick(flush: () => void): void {
    if (this.#send.endOfTick) this.#send.endOfTick(flush);
    else queueMicrotask(flush);
  }
}

/** Whether a call on `key` may join the batch at `at`: one exists, and none after it has `key`. */
function joins(queue: Queue, key: string, at: number): boolean {
  return at >= 0 && (queue.last === undefined || (queue.last.get(key) ?? -1) <= at);
}

/** Adds `batch` to `queue`; returns its index. */
function opened(queue: Queue, batch: Batch): number {
  if (queue.batches.length === 1 && queue.last === undefined) {
    queue.last = new Map(queue.batches[0].keys.map((key) => [key, 0]));
  }
  return queue.batches.push(batch) - 1;
}
