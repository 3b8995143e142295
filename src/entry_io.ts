/**
 * How a Redis-protocol provider's entries travel between the caller and the servers: reads served
 * by the near cache when it holds the key, else gathered with the tick's other reads (one MGET per
 * slot: src/coalesce.ts; a near-cache read that goes out alone is a `read_with_ttl` call, which
 * brings its PTTL along; the near cache then installs what the reads found); writes
 * gathered with the tick's other writes of the same registry and TTL into one `set_and_register`
 * (or `set_and_register_tags`) call, or sent in batches of up to 1,000 for setMany; deletes; the
 * near cache told of every key written or deleted before the call resolves; the registry sampling
 * a cluster does outside the script after each write; and the ordering rule for every other
 * command (`now()`: what the tick gathered goes out first).
 *
 * The provider (src/provider.ts) decides which keys, values and registries; this module only moves
 * them.
 *
 * @module
 */

import { Coalescer } from "./coalesce.ts";
import { type NearTier, readWithTtl } from "./near_tier.ts";
import type { RegistryUpkeep, Servers } from "./servers.ts";
import type { TagTarget } from "./tags.ts";

/** Entries per `set_and_register` call of a setMany. */
const SET_MANY_CHUNK = 1000;

/** What an {@linkcode EntryIO} works with. */
export interface EntryIOContext {
  /** The topology's servers. */
  servers: Servers;
  /** How the topology keeps registries (the write scripts' sample, a cluster's after-write). */
  upkeep: RegistryUpkeep;
  /** The near cache, when it is on. */
  near: NearTier | undefined;
  /** Reports a failed write (operation `set`), served as `false`. */
  fault(operation: string, error: unknown): void;
}

/** One provider's entry reads and writes, coalesced per tick and fronted by its near cache. */
export class EntryIO {
  readonly #servers: Servers;
  readonly #upkeep: RegistryUpkeep;
  readonly #near: NearTier | undefined;
  readonly #fault: (operation: string, error: unknown) => void;
  /** One tick's GETs and writes, gathered (src/coalesce.ts). */
  readonly #coalescer: Coalescer;

  /** @param context The servers, the registry upkeep, the near cache and the fault report. */
  constructor(context: EntryIOContext) {
    const servers = context.servers;
    this.#servers = servers;
    this.#upkeep = context.upkeep;
    this.#near = context.near;
    this.#fault = context.fault;
    this.#coalescer = new Coalescer({
      get: (key) => servers.get(key),
      getWithTtl: (key) => readWithTtl(servers, key),
      mget: (keys) => servers.mget(keys),
      groups: (keys) => servers.slotGroups(keys),
      endOfTick: (flush) => servers.endOfTick(flush),
      refusal: (key) => servers.refusal(key),
      lanes: servers.lanes,
      write: (registry, keys, texts, ttlMs, tags) =>
        this.writeNow(registry, keys, texts, ttlMs, tags),
    });
  }

  /**
   * The servers for any command but a coalesced GET or write: what this tick gathered goes out
   * first, so calls reach the servers in the order they were made.
   */
  now(): Servers {
    this.#coalescer.flush();
    return this.#servers;
  }

  /**
   * The value text at `key`: from the near cache when it holds it, else read (through the near
   * cache, which installs the reply, while it serves).
   */
  readText(key: string): Promise<string | null> {
    const local = this.#near?.cache.getText(key);
    return local === undefined ? this.fetchText(key) : Promise.resolve(local);
  }

  /**
   * The value text at `key` from the server (installed in the near cache while it serves).
   *
   * @param now The near cache's clock now, when the caller has just read it.
   */
  fetchText(key: string, now?: number): Promise<string | null> {
    const near = this.#near;
    if (near !== undefined) {
      // Void from the start while the near cache does not serve, or waits for this process's
      // own write of the key to come back: the read is then a plain one.
      const token = near.cache.begin(key, now);
      if (token.live) {
        // A key held until recently is likely on the server: its read brings the PTTL along
        // (one command). Any other read is a plain GET, as with the near cache off (a miss is
        // usually a key absent on the server), and the PTTL of a value it finds is read after.
        return near.cache.recentlyHeld(key)
          ? near.readThroughWithTtl(token, this.#coalescer.readWithTtl(key))
          : near.readThrough(token, this.#coalescer.read(key));
      }
    }
    return this.#coalescer.read(key);
  }

  /**
   * getMany's texts, in key order: one MGET per slot, or through the near cache when it is on. A
   * slot whose server fails reads as misses and `onFault` is told.
   */
  readMany(keys: string[], onFault: (error: unknown) => void): Promise<(string | null)[]> {
    return this.#near === undefined
      ? this.now().readMany(keys, onFault)
      : this.#near.readMany(keys, this.now(), onFault);
  }

  /**
   * Stores `text` at `key` and registers it, in one script call shared with the tick's other
   * writes to `registry` with the same TTL and tags; `false` on a fault (logged).
   */
  write(
    registry: string,
    key: string,
    text: string,
    ttlMs: number,
    tags: TagTarget | undefined,
  ): Promise<boolean> {
    return this.#coalescer.write(registry, key, text, ttlMs, tags);
  }

  /**
   * Stores the entries of one registry in batches of up to 1,000, one script call each, in turn;
   * returns how many were stored (a batch that failed, logged, stores none).
   */
  async writeInBatches(
    registry: string,
    keys: string[],
    texts: string[],
    ttlMs: number,
    tags: TagTarget | undefined,
  ): Promise<number> {
    let stored = 0;
    for (let from = 0; from < keys.length; from += SET_MANY_CHUNK) {
      const end = from + SET_MANY_CHUNK;
      const batch = await this.writeNow(
        registry,
        keys.slice(from, end),
        texts.slice(from, end),
        ttlMs,
        tags,
      );
      if (batch) stored += Math.min(end, keys.length) - from;
    }
    return stored;
  }

  /**
   * One `set_and_register` call, or `set_and_register_tags` for a tagged write; `false` on a
   * fault (logged).
   */
  async writeNow(
    registry: string,
    keys: string[],
    texts: string[],
    ttlMs: number,
    tags?: TagTarget,
  ): Promise<boolean> {
    this.writing(keys);
    try {
      // The script samples pruneSample members per member it adds, so a batch prunes as much as
      // the same writes one by one (lua/set_and_register.lua).
      if (tags === undefined) {
        await this.now().runResendable("set_and_register", [registry, ...keys], [
          ttlMs,
          this.#upkeep.inScriptSample,
          ...texts,
        ]);
      } else {
        await this.now().runResendable(
          "set_and_register_tags",
          [registry, tags.index, ...tags.sets, ...keys],
          [ttlMs, this.#upkeep.inScriptSample, tags.sets.length, ...texts],
        );
      }
      this.changed(keys);
      this.afterWrite(registry, tags);
      return true;
    } catch (error) {
      // It may still land: what was held is stale either way.
      this.changed(keys);
      this.#fault("set", error);
      return false;
    }
  }

  /**
   * Deletes `key` and unregisters it from `registry` (one `delete_and_unregister` call); `true`
   * when it existed. Rejects on a fault.
   */
  async remove(key: string, registry: string): Promise<boolean> {
    this.writing([key]);
    try {
      return (await this.now().run("delete_and_unregister", [key, registry], [])) === 1;
    } finally {
      // On a fault it may still land: what was held is stale either way.
      this.changed([key]);
    }
  }

  /** Notes that writes of `keys` go out now: the near cache waits for their echo to install. */
  writing(keys: readonly string[]): void {
    this.#near?.writing(keys);
  }

  /** Drops `keys`, just written or deleted by this process, from the near cache. */
  changed(keys: readonly string[]): void {
    this.#near?.changed(keys);
  }

  /** The sampling outside the script (a cluster's), for the registry and each tag set written. */
  afterWrite(registry: string, tags: TagTarget | undefined): void {
    this.#upkeep.afterWrite(registry);
    if (tags) { for (const set of tags.sets) this.#upkeep.afterWrite(set); }
  }

  /** How many registry members a write script samples per member it adds (src/servers.ts). */
  get inScriptSample(): number {
    return this.#upkeep.inScriptSample;
  }
}
