/**
 * `MemoryCache`: an in-process provider with the same semantics as the Redis ones.
 *
 * @module
 */

import { CacheInputError } from "./errors.ts";
import {
  DEFAULT_MAX_KEY_INPUT_BYTES,
  entryKey,
  hashInput,
  normalizeCompanyId,
  registryKey,
  requireCompanyId,
} from "./keys.ts";
import type { CacheLogger } from "./log.ts";
import type { CacheBackend, ClearOptions, EntryOptions, SetOptions } from "./types.ts";
import {
  DEFAULT_MAX_VALUE_BYTES,
  entryPair,
  parseValue,
  serializeValue,
  ttlToMs,
} from "./values.ts";

/** Options of `MemoryCache`. */
export interface MemoryCacheOptions {
  /**
   * The cache's name: the `<name>` part of every key.
   *
   * @default {""}
   */
  name?: string;
  /**
   * Default TTL in seconds for writes that give none; `null` stores without expiry.
   *
   * @default {3600}
   */
  ttl?: number | null;
  /**
   * The key prefix.
   *
   * @default {"cache:"}
   */
  prefix?: string;
  /**
   * The largest value, in UTF-8 bytes of its JSON, that `set` accepts.
   *
   * @default {67108864 (64 MiB)}
   */
  maxValueBytes?: number;
  /**
   * The largest key input, in bytes of its canonical JSON (pure ASCII), that any call accepts.
   *
   * @default {1048576 (1 MiB)}
   */
  maxKeyInputBytes?: number;
  /**
   * Accepted for symmetry with the Redis providers; an in-process cache has no faults to log.
   *
   * @default {console.warn}
   */
  logger?: CacheLogger;
}

interface Entry {
  text: string;
  /** Epoch milliseconds after which the entry is gone; 0 = never. */
  expiresAt: number;
}

/**
 * An in-process cache with the semantics of `RedisCache`: the same keys, TTLs, tenants, clears
 * and JSON round-trip (values are stored as JSON text, so a caller can never mutate a cached
 * value through a reference). The quick-start demo's default and a stand-in for unit tests; never
 * chosen by `auto`.
 *
 * @example Tenant isolation and clears
 * ```ts
 * import { MemoryCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryCache();
 * await cache.set("report", { total: 1 }, { companyId: "acme" });
 * await cache.set("report", { total: 2 }, { companyId: "globex" });
 * assert.equal(await cache.clearCompany("acme"), 1);
 * assert.equal(await cache.get("report", { companyId: "acme" }), null);
 * assert.deepEqual(await cache.get("report", { companyId: "globex" }), { total: 2 });
 * ```
 */
export class MemoryCache implements CacheBackend {
  /** The cache's name, the `<name>` part of every key. */
  readonly name: string;
  /** The key prefix. */
  readonly prefix: string;
  readonly #defaultTtl: number | null;
  readonly #maxValueBytes: number;
  readonly #maxKeyInputBytes: number;
  readonly #entries = new Map<string, Entry>();
  readonly #registries = new Map<string, Set<string>>();
  #sweepAt = 1024;

  /**
   * Creates an empty cache.
   *
   * @param options Name, default TTL, prefix and value size limit.
   */
  constructor(options: MemoryCacheOptions = {}) {
    if (options.name !== undefined && typeof options.name !== "string") {
      throw new CacheInputError(`Invalid name ${String(options.name)}: pass a string`);
    }
    if (options.prefix !== undefined && typeof options.prefix !== "string") {
      throw new CacheInputError(`Invalid prefix ${String(options.prefix)}: pass a string`);
    }
    this.name = options.name ?? "";
    this.prefix = options.prefix ?? "cache:";
    this.#defaultTtl = options.ttl === undefined ? 3600 : options.ttl;
    if (this.#defaultTtl !== null) ttlToMs(this.#defaultTtl, null);
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.#maxKeyInputBytes = options.maxKeyInputBytes ?? DEFAULT_MAX_KEY_INPUT_BYTES;
  }

  /** Always `null`: there is no server client. */
  get client(): null {
    return null;
  }

  /** Always `true`. */
  async connect(): Promise<boolean> {
    return true;
  }

  /** Always `true`. */
  async healthCheck(): Promise<boolean> {
    return true;
  }

  /** Drops every entry. */
  async close(): Promise<void> {
    this.#entries.clear();
    this.#registries.clear();
  }

  /** The cached value (a fresh copy), or `null` on a miss. */
  async get<T = unknown>(input: unknown, options?: EntryOptions): Promise<T | null> {
    const key = this.#key(input, normalizeCompanyId(options?.companyId));
    const text = this.#live(key)?.text;
    return text === undefined ? null : parseValue<T>(text);
  }

  /** Stores a copy of `value` (as JSON text) and registers its key. */
  async set(input: unknown, value: unknown, options?: SetOptions): Promise<boolean> {
    return await this.setMany([[input, value]], options);
  }

  /** Deletes one entry; `true` when it existed. */
  async delete(input: unknown, options?: EntryOptions): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const key = this.#key(input, companyId);
    const existed = this.#live(key) !== undefined;
    this.#entries.delete(key);
    this.#unregister(registryKey(this.prefix, companyId), key);
    return existed;
  }

  /** `true` when the entry exists and has not expired. */
  async exists(input: unknown, options?: EntryOptions): Promise<boolean> {
    const key = this.#key(input, normalizeCompanyId(options?.companyId));
    return this.#live(key) !== undefined;
  }

  /** The values of `inputs`, in input order, `null` for each miss. */
  async getMany<T = unknown>(
    inputs: readonly unknown[],
    options?: EntryOptions,
  ): Promise<(T | null)[]> {
    const companyId = normalizeCompanyId(options?.companyId);
    return inputs.map((input) => {
      const text = this.#live(this.#key(input, companyId))?.text;
      return text === undefined ? null : parseValue<T>(text);
    });
  }

  /** Stores every entry; all are validated before any is written. */
  async setMany(
    entries: readonly (readonly [unknown, unknown])[],
    options?: SetOptions,
  ): Promise<boolean> {
    const companyId = normalizeCompanyId(options?.companyId);
    const ttlMs = ttlToMs(options?.ttl, this.#defaultTtl);
    const prepared = entries.map((entry) => {
      const [input, value] = entryPair(entry);
      return [this.#key(input, companyId), serializeValue(value, this.#maxValueBytes)];
    });
    const registry = registryKey(this.prefix, companyId);
    let members = this.#registries.get(registry);
    if (!members) this.#registries.set(registry, members = new Set());
    const expiresAt = ttlMs === 0 ? 0 : Date.now() + ttlMs;
    for (const [key, text] of prepared) {
      this.#entries.set(key, { text, expiresAt });
      members.add(key);
    }
    this.#maybeSweep();
    return true;
  }

  /**
   * Deletes every entry of one tenant; returns how many were deleted. It clears in one step, so
   * it never calls `onProgress`.
   */
  async clearCompany(companyId: string | number, _options?: ClearOptions): Promise<number> {
    const id = requireCompanyId(companyId);
    return this.#clear(registryKey(this.prefix, id));
  }

  /** Deletes every entry stored without a tenant; returns how many were deleted. */
  async clearGlobal(_options?: ClearOptions): Promise<number> {
    return this.#clear(registryKey(this.prefix, undefined));
  }

  /** Deletes every entry of every scope; returns how many were deleted. */
  async clearAll(_options?: ClearOptions): Promise<number> {
    let deleted = 0;
    for (const registry of [...this.#registries.keys()]) deleted += this.#clear(registry);
    return deleted;
  }

  /** Removes registry members whose entry has expired; returns how many were removed. */
  async pruneRegistries(): Promise<number> {
    let removed = 0;
    for (const [registry, members] of this.#registries) {
      for (const key of members) {
        if (this.#live(key) === undefined) {
          members.delete(key);
          removed++;
        }
      }
      if (members.size === 0) this.#registries.delete(registry);
    }
    return removed;
  }

  #key(input: unknown, companyId: string | undefined): string {
    return entryKey(this.prefix, this.name, hashInput(input, this.#maxKeyInputBytes), companyId);
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

  #clear(registry: string): number {
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
    this.#sweepAt = Math.max(1024, this.#entries.size * 2);
  }
}
