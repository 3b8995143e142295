/**
 * The near cache as a provider uses it: the in-process LRU (src/near_cache.ts) and the
 * subscribers that keep it coherent (src/tracking_group.ts), with the three things a provider
 * does with them: serve a read locally, read through and install what the server returned
 * (never a reply that an invalidation overtook), and drop what this process's own writes and
 * clears changed before they resolve to the caller, so a read after them sees their effect
 * (the server's invalidation of the same change may arrive later).
 *
 * Own writes are dropped, not installed: every change under the tracked prefixes reaches every
 * process, this one included, so the value written would be evicted by its own invalidation
 * soon after anyway; the next read installs it.
 *
 * @module
 */

import type { TextWithTtl } from "./coalesce.ts";
import { NearCache } from "./near_cache.ts";
import type { NearCacheResolved } from "./provider_options.ts";
import type { Servers, TrackOptions } from "./servers.ts";
import type { NearCacheStats } from "./stats.ts";
import type { TrackingGroup } from "./tracking_group.ts";

/** What a {@linkcode NearTier} reports besides its counters. */
export interface NearTierListeners {
  /** Entries dropped: by invalidations, by the LRU bounds, or all by a flush. */
  drop(kind: "invalidation" | "eviction" | "flush", count: number): void;
  /** A server's tracking armed or lost. */
  state(target: string, armed: boolean, reason: string): void;
}

/** One provider's near cache and its subscribers. */
export class NearTier {
  /** The entries. */
  readonly cache: NearCache;
  readonly #settings: NearCacheResolved;
  readonly #listeners: NearTierListeners;
  #tracking: TrackingGroup | undefined;
  #closed = false;

  /**
   * @param settings The bounds and the staleness bound.
   * @param listeners Told of drops and of tracking's state.
   */
  constructor(settings: NearCacheResolved, listeners: NearTierListeners) {
    this.#settings = settings;
    this.#listeners = listeners;
    this.cache = new NearCache({
      maxEntries: settings.maxEntries,
      maxBytes: settings.maxBytes,
      onDrop: (kind, count) => listeners.drop(kind, count),
    });
  }

  /** The subscribers, once started. */
  get tracking(): TrackingGroup | undefined {
    return this.#tracking;
  }

  /**
   * Starts tracking on `servers` (once; after they were opened) and waits up to `timeoutMs` for it
   * to be armed. Until it is, the near cache is bypassed.
   */
  async start(servers: Servers, prefixes: readonly string[], timeoutMs: number): Promise<void> {
    if (this.#tracking === undefined && !this.#closed) {
      const options: TrackOptions = {
        prefixes,
        maxStalenessMs: this.#settings.maxStalenessMs,
        nearCache: this.cache,
        onState: (target, armed, reason) => this.#listeners.state(target, armed, reason),
      };
      const tracking = await servers.track(options);
      if (this.#closed || this.#tracking !== undefined) {
        await tracking?.close();
        return;
      }
      this.#tracking = tracking;
    }
    await this.#tracking?.whenArmed(timeoutMs);
  }

  /** Stops tracking; the near cache is emptied and bypassed from now on. */
  async close(): Promise<void> {
    this.#closed = true;
    this.cache.invalidateAll();
    await this.#tracking?.close();
  }

  /**
   * Reads `key` through `fetch` (the value and its PTTL) and installs the reply, unless an
   * invalidation of `key` or a flush arrived while it was in flight.
   */
  read(key: string, fetch: (key: string) => Promise<TextWithTtl>): Promise<string | null> {
    const token = this.cache.begin(key);
    return fetch(key).then(([text, pttl]) => {
      this.cache.install(token, text, pttl);
      return text;
    }, (error) => {
      this.cache.abandon(token);
      throw error;
    });
  }

  /**
   * Reads `keys` through `fetch` (one call per group of keys that share a slot), installing each
   * reply no invalidation overtook.
   */
  async readMany(
    keys: readonly string[],
    fetch: (keys: string[]) => Promise<TextWithTtl[]>,
  ): Promise<(string | null)[]> {
    const tokens = keys.map((key) => this.cache.begin(key));
    let replies: TextWithTtl[];
    try {
      replies = await fetch([...keys]);
    } catch (error) {
      for (const token of tokens) this.cache.abandon(token);
      throw error;
    }
    return replies.map(([text, pttl], i) => {
      this.cache.install(tokens[i], text, pttl);
      return text;
    });
  }

  /** Drops `keys`, which this process just wrote or deleted, and voids the reads of them. */
  changed(keys: readonly string[]): void {
    for (const key of keys) this.cache.invalidate(key);
  }

  /** The figures of `cacheStats()`. */
  stats(): NearCacheStats {
    return {
      ...this.cache.counters,
      entries: this.cache.size,
      bytes: this.cache.bytes,
      armed: this.#tracking?.armed ?? false,
    };
  }
}
