/**
 * The near cache's invalidation subscriber for one server: a dedicated connection of the client
 * library (ioredis / iovalkey), forced to RESP2, that carries the server's `CLIENT TRACKING`
 * invalidations into a {@linkcode NearCache}.
 *
 * On every connect it sends `CLIENT ID`, then
 * `CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <entry prefix> ...`, then
 * `SUBSCRIBE __redis__:invalidate`. In BCAST mode the server tells the subscribing connection of
 * every change of a key under the prefixes, whoever made it and whichever connection read the key,
 * so the data connections need no tracking of their own: a data connection that reconnects changes
 * nothing, and the near cache's coherence rests on this one connection alone. (Default, per-key
 * tracking would need `CLIENT TRACKING` on every data connection, re-enabled on each of their
 * reconnects before the cache is used again, and costs server memory per key read.)
 *
 * A multi-key invalidation arrives through ioredis's `messageBuffer` event as an array of keys; a
 * FLUSHALL / FLUSHDB as a `null` payload, which flushes the near cache.
 *
 * Heartbeat: a PING on the subscriber connection every `maxStaleness / 3`. Its reply arrives after
 * every invalidation the server queued before it, so an answered PING sent at `t` proves the near
 * cache current as of `t`, and extends its validity to `t + maxStaleness`. When no PING has been
 * answered for `maxStaleness`, or the connection drops, the near cache is emptied and bypassed
 * (it serves nothing, installs nothing) until tracking is armed again on a fresh connection with
 * a fresh `CLIENT ID`.
 *
 * @module
 */

import { clearInterval, setInterval } from "node:timers";
import type { ClientConstructor, ProtocolClient } from "./client_types.ts";
import type { NearCache } from "./near_cache.ts";

/**
 * The client name of every near-cache subscriber connection (`CLIENT SETNAME`), so an operator
 * (`core-lib-cache-admin stats`, `CLIENT LIST`) sees which processes keep a near cache.
 */
export const SUBSCRIBER_NAME = "core-lib-cache-near";

/** The channel the server publishes invalidations on (RESP2 redirect mode). */
export const INVALIDATE_CHANNEL = "__redis__:invalidate";

/** What a {@linkcode TrackingSubscriber} is given. */
export interface TrackingOptions {
  /** The client library's `Redis` class. */
  Client: ClientConstructor;
  /** Connection options (host, port, db, username, password, tls, connectTimeout, ...). */
  clientOptions: Record<string, unknown>;
  /** The key prefixes to track (see {@linkcode trackedPrefixes}). */
  prefixes: readonly string[];
  /** The longest a stale value may be served under faults, in milliseconds. */
  maxStalenessMs: number;
  /** The near cache kept coherent. */
  nearCache: NearCache;
  /** Told when tracking is armed (`true`) or lost (`false`, with why). */
  onState?(armed: boolean, reason: string): void;
  /** Told of every invalidation message (`null`: a flush), after the near cache applied it. */
  onInvalidation?(keys: string[] | null): void;
  /**
   * Told that this subscriber's stream is current as of `until - maxStaleness` (the near cache's
   * clock); without it, the near cache's own `validate`. A group of subscribers (one per cluster
   * master) validates the near cache only up to the earliest of theirs.
   */
  validate?(until: number): void;
}

/** The commands the subscriber sends besides those of {@linkcode ProtocolClient}. */
interface SubscriberClient extends ProtocolClient {
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  subscribe(channel: string): Promise<unknown>;
}

/**
 * The BCAST prefixes that cover a provider's entry keys and nothing else it writes.
 *
 * Standalone: `<prefix><name>:` for each cache name (global entries) and `<prefix>tenant:`
 * (tenant entries). Cluster: `<prefix>global:` and `<prefix>tenant:`. Registries
 * (`<prefix>registry:`), tag sets (`<prefix>tag:`, `<prefix>tags:`), generation counters and
 * locks lie outside these. The server refuses overlapping prefixes, so a prefix that another one
 * covers is left out.
 *
 * @example A tenant layout with the facade's unnamed cache and a cache named `users`
 * ```ts
 * import { trackedPrefixes } from "./tracking.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(trackedPrefixes("cache:", ["", "users"], false), [
 *   "cache::",
 *   "cache:tenant:",
 *   "cache:users:",
 * ]);
 * assert.deepEqual(trackedPrefixes("cache:", [""], true), ["cache:global:", "cache:tenant:"]);
 * ```
 */
export function trackedPrefixes(
  prefix: string,
  names: readonly string[],
  clustered: boolean,
): string[] {
  const all = clustered
    ? [`${prefix}global:`, `${prefix}tenant:`]
    : [...names.map((name) => `${prefix}${name}:`), `${prefix}tenant:`];
  const sorted = [...new Set(all)].sort();
  // After sorting, a prefix covering others comes right before them.
  const kept: string[] = [];
  for (const candidate of sorted) {
    if (!kept.some((shorter) => candidate.startsWith(shorter))) kept.push(candidate);
  }
  return kept;
}

/** One server's invalidation subscriber. */
export class TrackingSubscriber {
  readonly #options: TrackingOptions;
  #client: SubscriberClient | undefined;
  /** Counts connections: a reply of an older one changes nothing. */
  #generation = 0;
  #armed = false;
  #closed = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** When the last answered PING was sent (the near cache's clock). */
  #lastAnsweredAt = -Infinity;
  #armWaiters: (() => void)[] = [];

  /** @param options What to connect to and which near cache to keep. */
  constructor(options: TrackingOptions) {
    this.#options = options;
  }

  /** Whether tracking is armed now. */
  get armed(): boolean {
    return this.#armed;
  }

  /** The subscriber's client, `undefined` before `start()`. */
  get client(): ProtocolClient | undefined {
    return this.#client;
  }

  /** Creates the connection and connects it (it keeps reconnecting by itself until `close()`). */
  start(): void {
    if (this.#client || this.#closed) return;
    const { Client, clientOptions } = this.#options;
    const client = new Client({
      ...clientOptions,
      // RESP2: ioredis 6 speaks RESP3 by default, whose client drops invalidation pushes.
      protocol: 2,
      connectionName: SUBSCRIBER_NAME,
      lazyConnect: true,
      // Tracking must be on before SUBSCRIBE: `#arm` subscribes itself on each connect.
      autoResubscribe: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 5), 1000),
    }) as SubscriberClient;
    this.#client = client;
    client.on("error", () => {
      // A connection fault: "close" follows, which flushes.
    });
    client.on("close", () => this.#lost("subscriber connection closed"));
    client.on("ready", () => void this.#arm(client));
    client.on("messageBuffer", (channel: unknown, message: unknown) => {
      if (String(channel) !== INVALIDATE_CHANNEL) return;
      this.#deliver(message);
    });
    client.connect().catch(() => {
      // Retried by the client's retry strategy.
    });
    this.#timer = setInterval(() => this.#beat(), Math.max(1, this.#options.maxStalenessMs / 3));
    this.#timer.unref();
  }

  /** Resolves once tracking is armed (at once when it is), or after `timeoutMs` with `false`. */
  whenArmed(timeoutMs: number): Promise<boolean> {
    if (this.#armed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#armWaiters = this.#armWaiters.filter((waiter) => waiter !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#armWaiters.push(done);
    });
  }

  /** Stops the heartbeat, closes the connection and leaves the near cache bypassed. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lost("closed");
    const client = this.#client;
    if (!client) return;
    client.disconnect(false);
    if (client.status !== "end") {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        client.once("end", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async #arm(client: SubscriberClient): Promise<void> {
    const generation = ++this.#generation;
    const { nearCache, prefixes, maxStalenessMs } = this.#options;
    try {
      const id = await client.call("CLIENT", "ID");
      const sentAt = nearCache.now();
      const args: (string | number)[] = ["TRACKING", "ON", "REDIRECT", String(id), "BCAST"];
      for (const prefix of prefixes) args.push("PREFIX", prefix);
      await client.call("CLIENT", ...args);
      await client.subscribe(INVALIDATE_CHANNEL);
      if (generation !== this.#generation || this.#closed) return;
      // Every change after TRACKING ON reaches this connection; the cache is empty (a flush
      // came with the loss of the previous connection) and the reads begun before now were void.
      this.#lastAnsweredAt = sentAt;
      this.#armed = true;
      this.#validate(sentAt + maxStalenessMs);
      this.#options.onState?.(true, "armed");
      const waiters = this.#armWaiters;
      this.#armWaiters = [];
      for (const waiter of waiters) waiter();
    } catch {
      if (generation !== this.#generation || this.#closed) return;
      // Try again on a fresh connection.
      drop(client);
    }
  }

  #beat(): void {
    const client = this.#client;
    if (!client || !this.#armed) return;
    if (this.#overdue(client)) return;
    const { nearCache, maxStalenessMs } = this.#options;
    const sentAt = nearCache.now();
    const generation = this.#generation;
    client.ping().then(() => {
      if (generation !== this.#generation || !this.#armed || this.#overdue(client)) return;
      if (sentAt > this.#lastAnsweredAt) this.#lastAnsweredAt = sentAt;
      this.#validate(sentAt + maxStalenessMs);
    }, () => {
      // The next beat, or "close", handles it.
    });
  }

  /**
   * Whether no PING has been answered for `maxStaleness`: then the near cache is emptied and the
   * connection dropped, to be armed again on a fresh one (even if the late PONG comes next).
   */
  #overdue(client: SubscriberClient): boolean {
    if (this.#options.nearCache.now() - this.#lastAnsweredAt < this.#options.maxStalenessMs) {
      return false;
    }
    this.#lost("heartbeat unanswered");
    drop(client);
    return true;
  }

  #validate(until: number): void {
    const { validate, nearCache } = this.#options;
    if (validate) validate(until);
    else nearCache.validate(until);
  }

  #deliver(message: unknown): void {
    const { nearCache, onInvalidation } = this.#options;
    if (message === null || message === undefined) {
      nearCache.flush();
      onInvalidation?.(null);
      return;
    }
    const keys = Array.isArray(message) ? message.map(String) : [String(message)];
    for (const key of keys) nearCache.invalidate(key);
    onInvalidation?.(keys);
  }

  #lost(reason: string): void {
    // Replies of the lost connection's commands change nothing.
    this.#generation++;
    const wasArmed = this.#armed;
    this.#armed = false;
    this.#lastAnsweredAt = -Infinity;
    // Unarmed, the near cache is already bypassed (it is validated only while armed).
    if (!wasArmed) return;
    this.#options.nearCache.invalidateAll();
    this.#options.onState?.(false, reason);
  }
}

/**
 * Drops a connection at once so the client reconnects: destroying its socket does not wait for a
 * hung server or a black-holed network to acknowledge a FIN, as `disconnect(true)` would.
 */
function drop(client: ProtocolClient): void {
  const stream = (client as unknown as { stream?: { destroy?: () => void } }).stream;
  if (typeof stream?.destroy === "function") stream.destroy();
  else client.disconnect(true);
}
