/**
 * The near cache as a provider uses it: the in-process LRU (src/near_cache.ts) and the
 * subscribers that keep it coherent (src/tracking_group.ts), with what a provider does with them:
 * serve a read locally; read through and install what the server returned (never a reply that an
 * invalidation overtook), each value with its PTTL so that a local copy never outlives it; and
 * drop what this process's own writes and clears changed before they resolve to the caller, so a
 * read after them sees their effect (the server's invalidation of the same change may come later).
 *
 * Own writes are dropped, not installed: every change under the tracked prefixes reaches every
 * process, this one included, so the value written would be evicted by its own invalidation soon
 * after anyway. Reads of a key written here install again once that echo has arrived.
 *
 * @module
 */

import type { TextWithTtl } from "./coalesce.ts";
import type { KeyLayout } from "./layout.ts";
import type { FaultLog } from "./log.ts";
import { NearCache, type ReadToken } from "./near_cache.ts";
import type { NearCacheResolved } from "./provider_options.ts";
import type { Servers } from "./servers.ts";
import type { NearCacheStats } from "./stats.ts";
import { trackedPrefixes } from "./tracking.ts";
import type { TrackingGroup } from "./tracking_group.ts";
import { TtlReads } from "./ttl_reads.ts";

/** What a {@linkcode NearTier} works with. */
export interface NearTierContext {
  /** The provider's servers (tracking starts on them; the PTTLs of reads go to them). */
  servers: Servers;
  /** The provider's key layout (which keys a scope's clear drops). */
  layout: KeyLayout;
  /** The key prefix. */
  prefix: string;
  /** The provider's cache name. */
  name: string;
  /** Where tracking's losses and recoveries are logged. */
  log: FaultLog;
  /** Told when entries go: by invalidations, by the memory bounds, or all by a flush. */
  onDrop(kind: "invalidation" | "eviction" | "flush", count: number): void;
}

/** One provider's near cache and its subscribers. */
export class NearTier {
  /** The entries. */
  readonly cache: NearCache;
  readonly #settings: NearCacheResolved;
  readonly #ctx: NearTierContext;
  #tracking: TrackingGroup | undefined;
  /** The PTTL reads of values about to be installed. */
  readonly #ttls: TtlReads;
  /** The servers whose tracking was lost and not armed again yet (for the log). */
  readonly #lost = new Set<string>();
  #closed = false;

  /**
   * @param settings The bounds and the staleness bound.
   * @param context The provider's layout, name, log and drop listener.
   */
  constructor(settings: NearCacheResolved, context: NearTierContext) {
    this.#settings = settings;
    this.#ctx = context;
    this.#ttls = new TtlReads(context.servers);
    this.cache = new NearCache({
      maxEntries: settings.maxEntries,
      maxBytes: settings.maxBytes,
      echoWaitMs: settings.maxStalenessMs,
      onDrop: (kind, count) => context.onDrop(kind, count),
    });
  }

  /**
   * Starts tracking on the servers (once; after they were opened) and waits up to `timeoutMs` for it
   * to be armed. Until it is, the near cache is bypassed. Never throws: a fault is logged and
   * leaves it bypassed.
   */
  async start(timeoutMs: number): Promise<void> {
    const { servers, prefix, name, layout, log } = this.#ctx;
    try {
      if (this.#tracking === undefined && !this.#closed) {
        const tracking = await servers.track({
          prefixes: trackedPrefixes(prefix, [name], layout.clustered),
          maxStalenessMs: this.#settings.maxStalenessMs,
          nearCache: this.cache,
          onState: (target, armed, reason) => this.#state(target, armed, reason),
        });
        if (this.#closed || this.#tracking !== undefined) {
          await tracking?.close();
          return;
        }
        this.#tracking = tracking;
      }
      await this.#tracking?.whenArmed(timeoutMs);
    } catch (error) {
      log.fault("near cache", "Cannot start the near cache's tracking; it stays off", error);
    }
  }

  /** Stops tracking; the near cache is emptied and bypassed from now on. */
  async close(): Promise<void> {
    this.#closed = true;
    this.cache.invalidateAll();
    await this.#tracking?.close();
  }

  /**
   * The caller's read of `token`'s key (`reply`, a plain GET or MGET), resolved as soon as it
   * returns; a value it found is installed once its PTTL is read (after it, off the caller's
   * path), unless an invalidation of the key, a write of it or a flush came since the read began.
   */
  readThrough(token: ReadToken, reply: Promise<string | null>): Promise<string | null> {
    return reply.then((text) => this.#settle(token, text), (error) => this.#fail(token, error));
  }

  /**
   * As {@linkcode readThrough}, for a read that may bring its key's PTTL along (`read_with_ttl`,
   * when it went out alone): then the value is installed at once.
   */
  readThroughWithTtl(token: ReadToken, reply: Promise<TextWithTtl>): Promise<string | null> {
    return reply.then(
      ([text, pttlMs]) => this.#settle(token, text, pttlMs),
      (error) => this.#fail(token, error),
    );
  }

  /**
   * A read's reply: installed at once when its PTTL came along, else once the PTTL is read, if
   * `token` is still live then; returns `text`.
   */
  #settle(token: ReadToken, text: string | null, pttlMs?: number): string | null {
    if (pttlMs !== undefined) this.cache.install(token, text, pttlMs);
    else if (text === null || !token.live) this.cache.abandon(token);
    else {
      this.#ttls.ttl(token.key).then(
        (pttl) => this.cache.install(token, text, pttl),
        // Not installed: the next read of the key goes to the server again.
        () => this.cache.abandon(token),
      );
    }
    return text;
  }

  /** A read that failed: its token installs nothing; rethrows `error`. */
  #fail(token: ReadToken, error: unknown): never {
    this.cache.abandon(token);
    throw error;
  }

  /**
   * getMany's values: what the near cache holds, and the rest read with one MGET per slot, the
   * values found installed once their PTTLs are read (off the caller's path). A slot whose server
   * fails reads as misses and `onFault` is told; the others are still served.
   */
  async readMany(
    keys: readonly string[],
    servers: Servers,
    onFault: (error: unknown) => void,
  ): Promise<(string | null)[]> {
    const texts: (string | null)[] = new Array(keys.length).fill(null);
    const missing: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const local = this.cache.getText(keys[i]);
      if (local === undefined) missing.push(i);
      else texts[i] = local;
    }
    if (missing.length === 0) return texts;
    const missKeys = missing.map((i) => keys[i]);
    // Void from the start while the near cache does not serve: the reads are then plain ones.
    const now = this.cache.now();
    const tokens = missKeys.map((key) => this.cache.begin(key, now));
    let read: (string | null)[];
    try {
      read = await servers.readMany(missKeys, onFault);
    } catch (error) {
      for (const token of tokens) this.cache.abandon(token);
      throw error;
    }
    missing.forEach((position, i) => {
      // A slot that failed reads as nulls: nothing of it is installed.
      texts[position] = this.#settle(tokens[i], read[i]);
    });
    return texts;
  }

  /** Notes writes of `keys` about to be sent: their reads install again after the echo. */
  writing(keys: readonly string[]): void {
    for (const key of keys) this.cache.expectEcho(key);
  }

  /** Drops `keys`, which this process just wrote or deleted, and voids the reads of them. */
  changed(keys: readonly string[]): void {
    for (const key of keys) this.cache.written(key);
  }

  /**
   * Drops the entries of one scope (`undefined`: global), after this process cleared it or
   * invalidated tags in it (which entries carried the tags is not known here: the scope's go).
   */
  dropScope(companyId: string | undefined): void {
    if (this.cache.size === 0) return;
    const { layout, name } = this.#ctx;
    // A key of the scope is exactly the key the layout makes of its own trailing hash.
    this.cache.invalidateWhere((key) =>
      key.length > 64 && key === layout.entryKey(name, key.slice(-64), companyId)
    );
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

  /** A server's tracking lost (one line) or armed again after a loss (one line). */
  #state(target: string, armed: boolean, reason: string): void {
    if (this.#closed) return;
    const { log } = this.#ctx;
    if (!armed) {
      this.#lost.add(target);
      log.info(
        `Near cache: tracking on ${target} lost (${reason}); emptied and bypassed until it is re-armed`,
      );
    } else if (this.#lost.delete(target)) {
      log.info(`Near cache: tracking re-armed on ${target}`);
    }
  }
}

/** One `read_with_ttl` call on one key: its value and PTTL. */
export async function readWithTtl(servers: Servers, key: string): Promise<TextWithTtl> {
  const [text, pttlMs] = await servers.runResendable("read_with_ttl", [key], []) as [
    string | null,
    number,
  ];
  return [text, Number(pttlMs)];
}
