/**
 * The near cache: an in-process LRU of entry values, kept coherent by the server's invalidations
 * (src/tracking.ts delivers them). It stores each value's JSON text as read; the first hit that
 * wants the value parses it once into a private master copy (the text is dropped then) and every
 * hit hands out a fresh copy of that master ({@linkcode copyJson}: 3-6x cheaper than parsing the
 * text again), so no caller can change what is cached.
 *
 * Three rules keep it from serving a value the server no longer holds:
 * - Invalidations: `invalidate(key)` drops the key's entry, `flush()` drops every entry.
 * - The placeholder race of node-redis and redis-py: a read that may install its reply first takes
 *   a token ({@linkcode NearCache.begin}). An invalidation of that key, or a flush, that arrives
 *   before the reply voids the token, so the reply (which may predate the change) is refused.
 * - Validity: the cache serves only while its invalidation stream is known to be current, that is
 *   until `validUntil` (the subscriber's last answered heartbeat plus `maxStaleness`). Once that
 *   passes, the entries are dropped before anything else is served or installed, so an entry only
 *   lives through a stretch of unbroken validity.
 *
 * Each entry also has its own deadline, never later than the server's: the PTTL the read returned,
 * counted from before the read was sent.
 *
 * This process's own writes come back as invalidations too (every change under the tracked
 * prefixes reaches every subscriber). A key written here is therefore not installed again until
 * its echo has arrived ({@linkcode NearCache.expectEcho}): a read installed before it would only be
 * evicted by it, and the read after that would go to the server again.
 *
 * @module
 */

import { copyJson } from "./json_copy.ts";

/** The near cache's settings, resolved. */
export interface NearCacheSettings {
  /** The most entries held (LRU beyond). */
  maxEntries: number;
  /** The most bytes of value JSON text held (UTF-8; LRU beyond). */
  maxBytes: number;
  /**
   * The longest a local entry lives, in milliseconds, whatever the server TTL (`Infinity`: the
   * server TTL alone bounds it).
   */
  maxLocalTtlMs?: number;
  /** The clock, in milliseconds (`performance.now` by default; tests may pass their own). */
  now?: () => number;
  /**
   * The longest a key written by this process waits for the server's invalidation of that write
   * before reads of it install again, in milliseconds (the staleness bound: by then the stream
   * is known current, or the cache is no longer valid).
   *
   * @default {1000}
   */
  echoWaitMs?: number;
  /**
   * Told when entries go: `count` dropped by invalidations (of one key, or of a scope), by the
   * LRU bounds, or every entry by a flush (`count`: how many were held).
   */
  onDrop?(kind: "invalidation" | "eviction" | "flush", count: number): void;
}

/** The near cache's counters since it was created. */
export interface NearCacheCounters {
  /** Lookups served from memory. */
  hits: number;
  /** Lookups not served from memory (absent, expired, or the cache not valid). */
  misses: number;
  /** Entries dropped by an invalidation of their key. */
  invalidations: number;
  /** Entries dropped to stay within `maxEntries` / `maxBytes`. */
  evictions: number;
  /** Times every entry was dropped (a FLUSHALL / FLUSHDB, a fault, validity lapsing). */
  flushes: number;
}

/**
 * A read in flight that may install its reply, while nothing voided it. Obtained from
 * {@linkcode NearCache.begin}; passed back to `install` or `abandon`.
 */
export interface ReadToken {
  /** The entry key read. */
  readonly key: string;
  /** When the read was begun (the cache's clock): a reply's PTTL counts from here. */
  readonly startedAt: number;
  /** `false` once an invalidation, a flush or an install voided it. */
  live: boolean;
}

interface Entry {
  /** The JSON text as read, until a hit parsed it into `value` (then `undefined`). */
  text: string | undefined;
  /** The parsed master copy, never handed out (`undefined` until the first value hit). */
  value: unknown;
  /** The UTF-8 length of the JSON text (what `maxBytes` bounds). */
  bytes: number;
  /** The cache clock's time after which the entry is gone (`Infinity`: no deadline). */
  expiresAt: number;
  /** The value of `#moves` when the entry was put or last moved to most recently used. */
  movedAt: number;
}

/** A token that never installs: handed out while the cache is not valid. */
const DEAD: ReadToken = Object.freeze({ key: "", startedAt: 0, live: false }) as ReadToken;

/** An in-process LRU of value JSON texts, bounded by entries and bytes. */
export class NearCache {
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #maxLocalTtlMs: number;
  readonly #now: () => number;
  readonly #onDrop: NearCacheSettings["onDrop"];
  readonly #echoWaitMs: number;
  /** Keys this process wrote whose invalidation has not come back yet: when each was sent. */
  readonly #echoes = new Map<string, number>();
  /** In recency order: the first is the least recently used. */
  #entries = new Map<string, Entry>();
  #bytes = 0;
  /**
   * Entries put or moved to most recently used so far. An entry last moved fewer than
   * `#moveSlack` moves ago has at most that many entries after it, so it is far from the LRU end:
   * a hit on it skips the move (two Map operations), which costs a hot key nothing in recency.
   */
  #moves = 0;
  readonly #moveSlack: number;
  /**
   * Keys whose entries went (LRU, invalidation, expiry), most recent last, at most `#maxGhosts`:
   * likely still on the server, so a read of one fetches its PTTL in the same command.
   */
  #ghosts = new Set<string>();
  readonly #maxGhosts: number;
  /** The tokens of the reads in flight, per key. */
  #pending = new Map<string, ReadToken | Set<ReadToken>>();
  /** Until when the entries may be served (the cache clock); `-Infinity` while not armed. */
  #validUntil = -Infinity;
  readonly #counters: NearCacheCounters = {
    hits: 0,
    misses: 0,
    invalidations: 0,
    evictions: 0,
    flushes: 0,
  };

  /** @param settings The bounds. */
  constructor(settings: NearCacheSettings) {
    this.#maxEntries = settings.maxEntries;
    this.#maxBytes = settings.maxBytes;
    // Keys only (about 100 bytes each): more than the entries, so a key read again after a
    // cycle through more keys than the cache holds is still known.
    this.#maxGhosts = Math.max(settings.maxEntries, 10_000);
    this.#moveSlack = settings.maxEntries >> 2;
    this.#maxLocalTtlMs = settings.maxLocalTtlMs ?? Infinity;
    this.#now = settings.now ?? (() => performance.now());
    this.#onDrop = settings.onDrop;
    this.#echoWaitMs = settings.echoWaitMs ?? 1000;
  }

  /** The counters (a snapshot). */
  get counters(): NearCacheCounters {
    return { ...this.#counters };
  }

  /** How many entries are held. */
  get size(): number {
    return this.#entries.size;
  }

  /** How many bytes of value JSON text are held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the cache serves now (its invalidation stream is current). */
  get valid(): boolean {
    return this.#now() < this.#validUntil;
  }

  /** The cache clock. */
  now(): number {
    return this.#now();
  }

  /**
   * Extends validity to `until` (the cache clock): the subscriber proved its stream current as of
   * `until - maxStaleness`. When validity had lapsed, the entries are dropped first.
   */
  validate(until: number): void {
    this.#lapse(this.#now());
    if (until > this.#validUntil) this.#validUntil = until;
  }

  /** Ends validity: drops every entry and voids every token until `validate` is called again. */
  invalidateAll(): void {
    this.#validUntil = -Infinity;
    this.flush();
  }

  /**
   * A fresh copy of the value held for `key`, or `undefined` on a miss. `null` values are never
   * cached, so `undefined` is the only miss.
   *
   * @param now The cache clock now, when the caller has just read it.
   * @throws {SyntaxError} When the text read from the server is not JSON (the entry stays as it
   * was; the caller reports it as it would a server reply that does not parse).
   */
  get<T>(key: string, now: number = this.#now()): T | undefined {
    const entry = this.#lookup(key, now);
    if (entry === undefined) return undefined;
    if (entry.text === undefined) return copyJson(entry.value) as T;
    const value = JSON.parse(entry.text);
    let copy: unknown;
    try {
      copy = copyJson(value);
    } catch {
      // Nested too deep to copy by recursion (only a foreign writer makes such a value): this
      // entry keeps its text and parses it on every hit.
      return value as T;
    }
    entry.value = value;
    entry.text = undefined;
    return copy as T;
  }

  /**
   * The JSON text held for `key` (moved to most recently used), or `undefined` on a miss.
   *
   * @param now The cache clock now, when the caller has just read it.
   */
  getText(key: string, now: number = this.#now()): string | undefined {
    const entry = this.#lookup(key, now);
    if (entry === undefined) return undefined;
    return entry.text ?? JSON.stringify(entry.value);
  }

  /**
   * Whether `key` is held, counted as a hit or a miss and moved to most recently used (`exists`,
   * which needs no value).
   */
  holds(key: string, now: number = this.#now()): boolean {
    return this.#lookup(key, now) !== undefined;
  }

  /** The entry of `key` if it may be served (counted, moved to most recently used). */
  #lookup(key: string, now: number): Entry | undefined {
    if (!(now < this.#validUntil)) {
      this.#lapse(now);
      this.#counters.misses++;
      return undefined;
    }
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      this.#counters.misses++;
      return undefined;
    }
    if (!(now < entry.expiresAt)) {
      this.#drop(key, entry);
      this.#counters.misses++;
      return undefined;
    }
    // Most recently used last: re-inserting moves it to the end of the Map's order.
    if (this.#moves - entry.movedAt >= this.#moveSlack) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
      entry.movedAt = ++this.#moves;
    }
    this.#counters.hits++;
    return entry;
  }

  /**
   * Whether `key` was held until recently (its entry went by LRU, invalidation or expiry, and no
   * flush came since): its value is then likely on the server, so a read of it should bring the
   * PTTL along rather than fetch it after.
   */
  recentlyHeld(key: string): boolean {
    return this.#ghosts.has(key);
  }

  /** Whether `key` is held, without counting or reordering (for tests). */
  has(key: string): boolean {
    const now = this.#now();
    const entry = this.#entries.get(key);
    return now < this.#validUntil && entry !== undefined && now < entry.expiresAt;
  }

  /**
   * Registers a read of `key` about to be sent. Its reply may be installed with
   * {@linkcode install} unless an invalidation of `key` or a flush arrives first. While the cache
   * is not valid the token is void from the start.
   *
   * @param now The cache clock now, when the caller has just read it.
   */
  begin(key: string, now: number = this.#now()): ReadToken {
    if (!(now < this.#validUntil)) {
      this.#lapse(now);
      return DEAD;
    }
    const sentAt = this.#echoes.get(key);
    if (sentAt !== undefined) {
      if (now - sentAt < this.#echoWaitMs) return DEAD;
      this.#echoes.delete(key);
    }
    const token: ReadToken = { key, startedAt: now, live: true };
    const pending = this.#pending.get(key);
    if (pending === undefined) this.#pending.set(key, token);
    else if (pending instanceof Set) pending.add(token);
    else this.#pending.set(key, new Set([pending, token]));
    return token;
  }

  /** Forgets a read that will not install (it failed, or its reply is not wanted). */
  abandon(token: ReadToken): void {
    if (!token.live) return;
    token.live = false;
    this.#release(token);
  }

  /**
   * Installs a read's reply, unless its token was voided. `pttlMs` is the PTTL the server
   * returned with the value (`-1`: no expiry, `-2` or `null` text: gone), counted from the token's
   * start, which is before the server ran the read, so the local deadline is never the later.
   *
   * @returns Whether the text was installed.
   */
  install(token: ReadToken, text: string | null, pttlMs: number): boolean {
    if (!token.live) return false;
    token.live = false;
    this.#release(token);
    const now = this.#now();
    if (!(now < this.#validUntil)) {
      this.#lapse(now);
      return false;
    }
    if (text === null || pttlMs === -2 || pttlMs === 0) return false;
    const ttl = pttlMs < 0 ? this.#maxLocalTtlMs : Math.min(pttlMs, this.#maxLocalTtlMs);
    return this.#put(token.key, text, token.startedAt + ttl, now);
  }

  /**
   * A write of `key` by this process is about to be sent: until the server's invalidation of it
   * arrives (or `echoWaitMs` passes), reads of `key` do not install. Nothing is noted while the
   * cache is not valid (a later flush would forget it anyway).
   */
  expectEcho(key: string): void {
    const now = this.#now();
    if (now < this.#validUntil) this.#echoes.set(key, now);
  }

  /**
   * A write or delete of `key` by this process resolved: drops its entry and voids the reads of
   * it in flight, which may predate the write (the server's invalidation may come later).
   */
  written(key: string): void {
    this.#invalidateKey(key);
  }

  /**
   * The server's invalidation of `key`: drops its entry, voids the reads of it in flight, and is
   * the echo a write of this process waited for.
   *
   * @returns Whether an entry was dropped.
   */
  invalidate(key: string): boolean {
    this.#echoes.delete(key);
    return this.#invalidateKey(key);
  }

  /** Voids the reads of `key` in flight and drops its entry (counted); whether one was held. */
  #invalidateKey(key: string): boolean {
    this.#voidTokens(key);
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#drop(key, entry);
    this.#counters.invalidations++;
    this.#onDrop?.("invalidation", 1);
    return true;
  }

  /**
   * Invalidates every key for which `matches` holds: the entries held and the reads in flight
   * (a clear of one scope, whose own invalidations may arrive after the clear resolved).
   *
   * @returns How many entries were dropped.
   */
  invalidateWhere(matches: (key: string) => boolean): number {
    for (const key of [...this.#pending.keys()]) {
      if (matches(key)) this.#voidTokens(key);
    }
    let dropped = 0;
    for (const [key, entry] of this.#entries) {
      if (!matches(key)) continue;
      this.#drop(key, entry);
      dropped++;
    }
    this.#counters.invalidations += dropped;
    if (dropped > 0) this.#onDrop?.("invalidation", dropped);
    return dropped;
  }

  /** Drops every entry and voids every read in flight (a FLUSHALL / FLUSHDB, a fault). */
  flush(): void {
    for (const pending of this.#pending.values()) voidAll(pending);
    this.#pending.clear();
    this.#echoes.clear();
    this.#ghosts.clear();
    const held = this.#entries.size;
    this.#entries.clear();
    this.#bytes = 0;
    this.#counters.flushes++;
    this.#onDrop?.("flush", held);
  }

  /** Once validity has passed: drop everything (once) so nothing from before is served later. */
  #lapse(now: number): void {
    if (now < this.#validUntil) return;
    if (this.#validUntil !== -Infinity || this.#entries.size > 0 || this.#pending.size > 0) {
      this.#validUntil = -Infinity;
      this.flush();
    }
  }

  #put(key: string, text: string, expiresAt: number, now: number): boolean {
    if (!(now < expiresAt)) return false;
    const bytes = utf8Length(text);
    if (bytes > this.#maxBytes || this.#maxEntries < 1) return false;
    const old = this.#entries.get(key);
    if (old !== undefined) this.#drop(key, old);
    this.#ghosts.delete(key);
    this.#entries.set(key, { text, value: undefined, bytes, expiresAt, movedAt: ++this.#moves });
    this.#bytes += bytes;
    // Least recently used first in the Map's order.
    let evicted = 0;
    while (this.#entries.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      const [oldestKey, oldest] = this.#entries.entries().next().value!;
      this.#drop(oldestKey, oldest);
      evicted++;
    }
    if (evicted > 0) {
      this.#counters.evictions += evicted;
      this.#onDrop?.("eviction", evicted);
    }
    return true;
  }

  #drop(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    const ghosts = this.#ghosts;
    ghosts.add(key);
    if (ghosts.size > this.#maxGhosts) ghosts.delete(ghosts.values().next().value!);
  }

  #voidTokens(key: string): void {
    const pending = this.#pending.get(key);
    if (pending === undefined) return;
    voidAll(pending);
    this.#pending.delete(key);
  }

  #release(token: ReadToken): void {
    const pending = this.#pending.get(token.key);
    if (pending === token) this.#pending.delete(token.key);
    else if (pending instanceof Set) {
      // A Set: a hundred reads of one hot key in flight release in constant time each.
      pending.delete(token);
      if (pending.size === 0) this.#pending.delete(token.key);
    }
  }
}

/** Voids the tokens of one key's reads in flight. */
function voidAll(pending: ReadToken | Set<ReadToken>): void {
  if (pending instanceof Set) { for (const token of pending) token.live = false; }
  else pending.live = false;
}

/** The UTF-8 length of `text` (lone surrogates count 3, as the client sends U+FFFD). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A pair: 4 bytes for 2 units.
        bytes += 2;
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}
