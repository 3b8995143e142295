/**
 * The server side of the calls that delete many entries at once: a scope's clear (its registries,
 * then their tag sets), a tag invalidation, the clear of everything under the prefix (registries
 * found by SCAN, the Python original's included), and the walk that prunes registries and tag sets.
 * Each deletes in bounded batches through the topology's registry upkeep and reports every
 * batch's count as it lands; the provider around it keeps the counts, the metrics and the near
 * cache.
 *
 * @module
 */

import type { KeyLayout } from "./layout.ts";
import { scanRegistries } from "./registries.ts";
import type { RegistryUpkeep, Servers } from "./servers.ts";
import {
  dropTagSets,
  invalidateTagSet,
  scanTagKeys,
  type TagContext,
  tagIndexKey,
  tagSetKey,
} from "./tags.ts";

/** What the clears work with. */
export interface ClearsContext {
  /** The servers, with the calls this tick coalesced sent first. */
  servers(): Servers;
  /** The key layout. */
  layout: KeyLayout;
  /** The key prefix. */
  prefix: string;
  /** How the topology keeps registries. */
  upkeep: RegistryUpkeep;
  /** What the tag operations work with. */
  tags: TagContext;
  /** Reports a server fault of one step (`clear`, `scan`, `prune`, `invalidateTags`). */
  fault(operation: string, error: unknown): void;
}

/** Told the count of each batch deleted. */
export type OnBatch = (deleted: number) => void;

/** What {@linkcode progressCounter} returns. */
export interface ProgressCounter {
  /** Adds one batch's count and tells the callback the running total. */
  readonly onBatch: OnBatch;
  /** The keys deleted so far. */
  readonly deleted: number;
}

/**
 * Counts a clear's batches for `onProgress` (the running total after each); the callback's errors
 * are ignored, so a failing progress display can never leave a tenant half-cleared.
 */
export function progressCounter(onProgress?: (deleted: number) => void): ProgressCounter {
  let deleted = 0;
  return {
    onBatch: (count) => {
      deleted += count;
      if (!onProgress) return;
      try {
        onProgress(deleted);
      } catch {
        // The clear goes on.
      }
    },
    get deleted() {
      return deleted;
    },
  };
}

/** Clears, tag invalidations and prunes, each `false` / `null` after a fault it reported. */
export class Clears {
  readonly #ctx: ClearsContext;

  /** @param context What they work with. */
  constructor(context: ClearsContext) {
    this.#ctx = context;
  }

  /** Deletes every entry of `registries` and their tag sets; `false` after a fault. */
  async clearRegistries(registries: readonly string[], onBatch: OnBatch): Promise<boolean> {
    try {
      await this.#clear(registries, onBatch);
      return true;
    } catch (error) {
      this.#ctx.fault("clear", error);
      return false;
    }
  }

  /**
   * Deletes every entry of the scope of `companyId` (`undefined`: global) carrying any of `tags`
   * (checked already), fanned out over the scope's registries; `false` after a fault.
   */
  async invalidateTags(
    companyId: string | undefined,
    tags: readonly string[],
    onBatch: OnBatch,
  ): Promise<boolean> {
    const { layout, prefix } = this.#ctx;
    try {
      for (const registry of layout.scopeRegistries(companyId)) {
        for (const tag of tags) {
          await invalidateTagSet(
            this.#ctx.tags,
            registry,
            tagSetKey(prefix, registry, tag),
            onBatch,
          );
        }
      }
      return true;
    } catch (error) {
      this.#ctx.fault("invalidateTags", error);
      return false;
    }
  }

  /**
   * Deletes every registered entry under the prefix: bumps the clear-all epochs, clears every
   * registry SCAN finds (the Python original's too) and the tag sets left; `false` after a fault.
   */
  async clearAll(onBatch: OnBatch): Promise<boolean> {
    try {
      // First the clear-all epoch: a getOrSet of a tenant that has no registry yet is invalidated
      // too.
      await this.#ctx.upkeep.bumpEpochs();
    } catch (error) {
      this.#ctx.fault("clear", error);
      return false;
    }
    const registries = await this.#scanRegistries();
    // Tag indexes whose scope has no registry left (all its entries expired) go too.
    const indexes = registries && await this.#scanTagKeys("indexes");
    if (registries === null || indexes === null) return false;
    try {
      for (const index of indexes) await dropTagSets(this.#ctx.tags, index);
      await this.#clear(registries, onBatch);
      await this.#sweepTagSets(onBatch);
      return true;
    } catch (error) {
      this.#ctx.fault("clear", error);
      return false;
    }
  }

  /**
   * Walks every registry, tag set and tag index and removes members whose key is gone; returns
   * how many, `null` after a fault.
   */
  async prune(): Promise<number | null> {
    const registries = await this.#scanRegistries();
    const tagSets = registries && await this.#scanTagKeys("sets");
    const indexes = tagSets && await this.#scanTagKeys("indexes");
    if (registries === null || tagSets === null || indexes === null) return null;
    let removed = 0;
    try {
      // Tag sets before the indexes, whose members are the tag sets that emptied.
      for (const set of [...registries, ...tagSets, ...indexes]) {
        removed += await this.#ctx.upkeep.prune(set);
      }
      return removed;
    } catch (error) {
      this.#ctx.fault("prune", error);
      return null;
    }
  }

  /** Clears each registry, then its tag sets; throws on a server fault. */
  async #clear(registries: readonly string[], onBatch: OnBatch): Promise<void> {
    const { upkeep, tags, prefix } = this.#ctx;
    for (const registry of registries) {
      // The registry first, so the clear's first command goes out with the call (a get made
      // after it in the same tick sees the clear). Then its tag sets; an entry written between
      // the two lost its tag, so when there were tag sets, the registry is cleared once more.
      await upkeep.clear(registry, onBatch);
      if (await dropTagSets(tags, tagIndexKey(prefix, registry)) > 0) {
        await upkeep.clear(registry, onBatch);
      }
    }
  }

  /**
   * clearAll's last step: a tag set still there (its index was deleted by hand, or a write raced
   * the clear) is invalidated like any tag, its entries deleted and counted; its registry and
   * index follow from its key (`<prefix>tag:<scope>:<digest>`). Throws on a server fault.
   */
  async #sweepTagSets(onBatch: OnBatch): Promise<void> {
    const { prefix, layout, tags } = this.#ctx;
    for (const node of this.#ctx.servers().scanners()) {
      for (const set of await scanTagKeys(node, prefix, "sets", layout.clustered)) {
        const registry = `${prefix}registry:${set.slice(prefix.length + 4, -65)}`;
        await invalidateTagSet(tags, registry, set, onBatch);
      }
    }
  }

  /**
   * Every Set named `<prefix>registry:*` that the layout treats as a registry, found with SCAN
   * on every node that holds keys; `null` after a fault.
   */
  async #scanRegistries(): Promise<string[] | null> {
    const { prefix, layout } = this.#ctx;
    try {
      const found: string[] = [];
      for (const node of this.#ctx.servers().scanners()) {
        for (const key of await scanRegistries(node, prefix)) {
          if (layout.isRegistry(key)) found.push(key);
        }
      }
      return found;
    } catch (error) {
      this.#ctx.fault("scan", error);
      return null;
    }
  }

  /** Every tag set or tag index under the prefix, on every node; `null` after a fault. */
  async #scanTagKeys(kind: "sets" | "indexes"): Promise<string[] | null> {
    const { prefix, layout } = this.#ctx;
    try {
      const found: string[] = [];
      for (const node of this.#ctx.servers().scanners()) {
        found.push(...await scanTagKeys(node, prefix, kind, layout.clustered));
      }
      return found;
    } catch (error) {
      this.#ctx.fault("scan", error);
      return null;
    }
  }
}
