/**
 * What a `MemoryCache` holds and how it changes, with the semantics of the servers' keys and Lua
 * scripts: entries with their expiry, the registry of each scope, tag sets and tag indexes, and
 * getOrSet's locks and generation counters. It takes keys already built and values already
 * checked: the options, the events and statistics, and the refusals after `close()` are
 * src/memory.ts's.
 *
 * @module
 */

import type { GetOrSetStore } from "./get_or_set.ts";
import { allGenerationKey, registryGenerationKey } from "./layout.ts";
import { tagIndexKey, tagSetKey } from "./tags.ts";

/** A validated write: the entries' keys and JSON texts, their TTL and their registry. */
export interface PreparedWrite {
  pairs: [string, string][];
  ttlMs: number;
  registry: string;
  /** The entries' tags (checked), empty for none. */
  tags: readonly string[];
}

interface Lock {
  token: string;
  /** Epoch milliseconds after which the lock is free. */
  expiresAt: number;
}

interface Entry {
  text: string;
  /** Epoch milliseconds after which the entry is gone; 0 = never. */
  expiresAt: number;
}

/** The in-process keyspace of one `MemoryCache`. */
export class MemoryStore {
  readonly #prefix: string;
  readonly #entries = new Map<string, Entry>();
  readonly #registries = new Map<string, Set<string>>();
  /** Tag sets (entry keys) by tag set key, as on the server (src/tags.ts). */
  readonly #tagSets = new Map<string, Set<string>>();
  /** Each scope's tag sets, by tag index key. */
  readonly #tagIndexes = new Map<string, Set<string>>();
  /** getOrSet's locks, by lock key. */
  readonly #locks = new Map<string, Lock>();
  /** Generation counters, by counter key (created by a getOrSet miss, bumped by clears). */
  readonly #generations = new Map<string, number>();
  #sweepAt = 1024;

  /** @param prefix The key prefix, which the tag and generation keys start with too. */
  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** The JSON text of the entry at `key`; `undefined` when it is absent or has expired. */
  text(key: string): string | undefined {
    return this.#live(key)?.text;
  }

  /** Stores validated entries and registers them; returns their keys. */
  write({ pairs: prepared, ttlMs, registry, tags }: PreparedWrite): string[] {
    let members = this.#registries.get(registry);
    if (!members) this.#registries.set(registry, members = new Set());
    const expiresAt = ttlMs === 0 ? 0 : Date.now() + ttlMs;
    for (const [key, text] of prepared) {
      this.#entries.set(key, { text, expiresAt });
      members.add(key);
    }
    const keys = prepared.map(([key]) => key);
    this.#tag(registry, tags, keys);
    this.#maybeSweep();
    return keys;
  }

  /** Deletes one entry and unregisters it; `true` when it existed. */
  delete(key: string, registry: string): boolean {
    const existed = this.#live(key) !== undefined;
    this.#entries.delete(key);
    this.#unregister(registry, key);
    return existed;
  }

  /**
   * Deletes every entry of `registry`'s scope that carries any of `tags`; returns how many were
   * deleted (an entry carrying several of them counts once). Bumps the scope's generation, as a
   * clear does.
   */
  invalidateTags(registry: string, tags: readonly string[]): number {
    this.#bump(registryGenerationKey(this.#prefix, registry));
    const index = this.#tagIndexes.get(tagIndexKey(this.#prefix, registry));
    let deleted = 0;
    for (const tag of tags) {
      const setKey = tagSetKey(this.#prefix, registry, tag);
      const set = this.#tagSets.get(setKey);
      if (!set) continue;
      for (const key of set) {
        if (this.#live(key) !== undefined) deleted++;
        this.#entries.delete(key);
        this.#unregister(registry, key);
      }
      this.#tagSets.delete(setKey);
      index?.delete(setKey);
    }
    if (index?.size === 0) this.#tagIndexes.delete(tagIndexKey(this.#prefix, registry));
    return deleted;
  }

  /** Deletes every entry of one scope (its registry); returns how many were live. */
  clear(registry: string): number {
    this.#bump(registryGenerationKey(this.#prefix, registry));
    const indexKey = tagIndexKey(this.#prefix, registry);
    for (const setKey of this.#tagIndexes.get(indexKey) ?? []) this.#tagSets.delete(setKey);
    this.#tagIndexes.delete(indexKey);
    const members = this.#registries.get(registry);
    if (!members) return 0;
    let deleted = 0;
    for (const key of members) {
      if (this.#live(key) !== undefined) deleted++;
      this.#entries.delete(key);
    }
    this.#registries.delete(registry);
    return deleted;
  }

  /** Deletes every entry of every scope; returns how many were live. */
  clearAll(): number {
    this.#bump(allGenerationKey(this.#prefix));
    let deleted = 0;
    for (const registry of [...this.#registries.keys()]) deleted += this.clear(registry);
    this.#tagSets.clear();
    this.#tagIndexes.clear();
    return deleted;
  }

  /** Removes registry and tag set members whose entry is gone; returns how many were removed. */
  prune(): number {
    let removed = 0;
    for (const [registry, members] of this.#registries) {
      removed += this.#dropGone(members);
      if (members.size === 0) this.#registries.delete(registry);
    }
    return removed + this.#pruneTagSets();
  }

  /** Drops everything held (`MemoryCache.close()`). */
  reset(): void {
    this.#entries.clear();
    this.#registries.clear();
    this.#tagSets.clear();
    this.#tagIndexes.clear();
    this.#locks.clear();
    this.#generations.clear();
  }

  /**
   * getOrSet's primitives, with the semantics of the Lua scripts.
   *
   * @param refuse Called first by each primitive; throws when the cache is closed (a fault, so
   * the runner returns `compute()`'s value unstored).
   */
  getOrSetStore(refuse: () => void): GetOrSetStore {
    return {
      get: async (key) => {
        refuse();
        return this.#live(key)?.text ?? null;
      },
      readOrLock: async (keys, token, lockMs, staleMs) => {
        refuse();
        const now = Date.now();
        const entry = this.#live(keys.key);
        if (entry) {
          const left = entry.expiresAt === 0 ? Infinity : entry.expiresAt - now;
          if (staleMs <= 0 || left > staleMs) {
            return { status: 1, text: entry.text, generation: "", all: "" };
          }
        }
        const lock = this.#locks.get(keys.lock);
        const taken = !lock || lock.expiresAt <= now;
        if (taken) this.#locks.set(keys.lock, { token, expiresAt: now + lockMs });
        for (const counter of [keys.generation, keys.all]) {
          if (!this.#generations.has(counter)) this.#generations.set(counter, 0);
        }
        return {
          status: entry ? (taken ? 2 : 3) : (taken ? 4 : 5),
          text: entry?.text ?? null,
          generation: String(this.#generations.get(keys.generation)),
          all: String(this.#generations.get(keys.all)),
        };
      },
      setIfGeneration: async (keys, text, ttlMs, reply, token) => {
        refuse();
        this.#unlock(keys.lock, token);
        if (
          String(this.#generations.get(keys.generation)) !== reply.generation ||
          String(this.#generations.get(keys.all)) !== reply.all
        ) return false;
        let members = this.#registries.get(keys.registry);
        if (!members) this.#registries.set(keys.registry, members = new Set());
        this.#entries.set(keys.key, { text, expiresAt: ttlMs === 0 ? 0 : Date.now() + ttlMs });
        members.add(keys.key);
        this.#tag(keys.registry, keys.tags, [keys.key]);
        this.#maybeSweep();
        return true;
      },
      releaseLock: async (keys, token) => this.#unlock(keys.lock, token),
    };
  }

  /** Adds `keys` to the set of each of `tags` in `registry`'s scope. */
  #tag(registry: string, tags: readonly string[], keys: readonly string[]): void {
    if (tags.length === 0) return;
    const indexKey = tagIndexKey(this.#prefix, registry);
    let index = this.#tagIndexes.get(indexKey);
    if (!index) this.#tagIndexes.set(indexKey, index = new Set());
    for (const tag of tags) {
      const setKey = tagSetKey(this.#prefix, registry, tag);
      let set = this.#tagSets.get(setKey);
      if (!set) this.#tagSets.set(setKey, set = new Set());
      for (const key of keys) set.add(key);
      index.add(setKey);
    }
  }

  #unlock(lock: string, token: string): void {
    if (token !== "" && this.#locks.get(lock)?.token === token) this.#locks.delete(lock);
  }

  /** Increments a generation counter that exists (a getOrSet may be relying on it). */
  #bump(counter: string): void {
    const value = this.#generations.get(counter);
    if (value !== undefined) this.#generations.set(counter, value + 1);
  }

  /** Drops the members (entry keys) whose entry is gone; returns how many were dropped. */
  #dropGone(members: Set<string>): number {
    let removed = 0;
    for (const key of members) {
      if (this.#live(key) === undefined) {
        members.delete(key);
        removed++;
      }
    }
    return removed;
  }

  /** Drops tag set members whose entry is gone, and empty tag sets; returns members removed. */
  #pruneTagSets(): number {
    let removed = 0;
    for (const [setKey, set] of this.#tagSets) {
      removed += this.#dropGone(set);
      if (set.size === 0) this.#tagSets.delete(setKey);
    }
    for (const [indexKey, index] of this.#tagIndexes) {
      for (const setKey of index) {
        if (!this.#tagSets.has(setKey)) {
          index.delete(setKey);
          removed++;
        }
      }
      if (index.size === 0) this.#tagIndexes.delete(indexKey);
    }
    return removed;
  }

  /** The entry if it exists and has not expired; drops it when it has. */
  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt !== 0 && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #unregister(registry: string, key: string): void {
    const members = this.#registries.get(registry);
    if (!members) return;
    members.delete(key);
    if (members.size === 0) this.#registries.delete(registry);
  }

  /** Drops expired entries once the map has doubled since the last sweep, so it stays bounded. */
  #maybeSweep(): void {
    if (this.#entries.size < this.#sweepAt) return;
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt !== 0 && entry.expiresAt <= now) this.#entries.delete(key);
    }
    // Tag sets stay bounded as the server's do (there, by sampling in the write script).
    if (this.#tagSets.size > 0) this.#pruneTagSets();
    this.#sweepAt = Math.max(1024, this.#entries.size * 2);
  }
}
