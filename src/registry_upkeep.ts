/**
 * How registries are kept (cleared, pruned and sampled for expired members), in the two forms the
 * servers' scripts allow:
 *
 * - {@link ScriptUpkeep}, a single server: a script may read keys it does not declare, so one call
 *   of `clear_registry` deletes a batch of a registry's members and bumps its generation counter,
 *   one `prune_registry` call prunes a page, and `set_and_register` samples members itself.
 * - {@link SlotUpkeep}, a cluster: a script may touch only the keys it declares, which must share
 *   its slot, so the members are read first (SRANDMEMBER, SSCAN) and passed to `clear_members` /
 *   `prune_members` as keys, and every 16th write samples members in a call of its own.
 *
 * Both are written against {@link Servers}; a topology says which one it takes.
 *
 * @module
 */

import { globEscape } from "./keys.ts";
import type { RegistryUpkeep, Servers, UpkeepContext } from "./servers.ts";
import { keySlot } from "./slots.ts";

const PRUNE_PAGE = 500;
const SAMPLE_EVERY = 16;
const SCAN_COUNT = 1000;

/** A single server's upkeep: the scripts read the registry's members themselves. */
export class ScriptUpkeep implements RegistryUpkeep {
  readonly #context: UpkeepContext;

  /** @param context The servers, layout and settings. */
  constructor(context: UpkeepContext) {
    this.#context = context;
  }

  /** The script samples `pruneSample` members per member it adds (lua/set_and_register.lua). */
  get inScriptSample(): number {
    return this.#context.pruneSample;
  }

  /** Nothing: the write script sampled already. */
  afterWrite(_registry: string): void {}

  /** `clear_registry` until the registry is empty; the script bumps the generation atomically. */
  async clear(registry: string, onBatch: (deleted: number) => void): Promise<void> {
    const { layout, clearBatch, prefix } = this.#context;
    const keys = [registry, layout.generationKey(registry)];
    for (;;) {
      const [count, left] = await this.#context.servers().run("clear_registry", keys, [
        clearBatch,
        prefix,
      ]) as [number, number];
      onBatch(count);
      if (left === 0) return;
    }
  }

  /** `prune_registry` page by page. */
  async prune(registry: string): Promise<number> {
    let removed = 0;
    let cursor = "0";
    do {
      const [next, count] = await this.#context.servers().run("prune_registry", [registry], [
        cursor,
        PRUNE_PAGE,
      ]) as [string, number];
      cursor = String(next);
      removed += count;
    } while (cursor !== "0");
    return removed;
  }

  /** The one epoch, `<prefix>generation:all`. */
  async bumpEpochs(): Promise<void> {
    const { layout } = this.#context;
    const epoch = layout.epochKey(layout.scopeRegistries(undefined)[0]);
    await this.#context.servers().run("bump_generation", [epoch], []);
  }
}

/** A cluster's upkeep: the members are read first and declared to the scripts as keys. */
export class SlotUpkeep implements RegistryUpkeep {
  readonly #context: UpkeepContext;
  /** The servers as they are, for the sample (see the constructor). */
  readonly #sampling: Servers | undefined;
  /** Writes so far, for the sampling of every 16th. */
  #writes = 0;

  /**
   * @param context The servers, layout and settings.
   * @param sampling The servers for the sample after a write, without the tick's coalesced calls
   *   sent first (`context.servers()` sends them, for the order of the calls that need it; the
   *   sample's order with other calls does not matter).
   */
  constructor(context: UpkeepContext, sampling?: Servers) {
    this.#context = context;
    this.#sampling = sampling;
  }

  /** None: a cluster script may not read the members it would sample. */
  get inScriptSample(): number {
    return 0;
  }

  /**
   * Every 16th write samples 16 times as many members of its registry, off the write's path
   * (`lua/prune_members.lua`): the sampling rate per write of a single server's scripts, for one
   * extra round trip per 16 writes. Best effort: `pruneRegistries()` catches up.
   */
  afterWrite(registry: string): void {
    const sample = this.#context.pruneSample;
    if (sample === 0 || ++this.#writes % SAMPLE_EVERY !== 0) return;
    this.#sample(registry, sample * SAMPLE_EVERY).catch(() => {});
  }

  /**
   * The bucket's generation counter first (a script may only touch declared keys, so the deletes
   * are separate calls; see lua/clear_members.lua), then SRANDMEMBER batches deleted by
   * `clear_members` with every key declared, until the registry is empty.
   */
  async clear(registry: string, onBatch: (deleted: number) => void): Promise<void> {
    const { layout, clearBatch, prefix } = this.#context;
    await this.#context.servers().run("bump_generation", [layout.generationKey(registry)], []);
    for (;;) {
      const members = await this.#context.servers().srandmember(registry, clearBatch);
      if (members.length === 0) return;
      const local = await this.#localMembers(registry, members);
      if (local.length === 0) continue;
      const deleted = await this.#context.servers().run("clear_members", [registry, ...local], [
        prefix,
      ]);
      onBatch(Number(deleted));
    }
  }

  /** SSCAN pages, each checked by `prune_members` with the members declared as keys. */
  async prune(registry: string): Promise<number> {
    let removed = 0;
    let cursor = "0";
    do {
      const [next, members] = await this.#context.servers().sscan(registry, cursor, PRUNE_PAGE);
      cursor = next;
      const local = await this.#localMembers(registry, members);
      if (local.length > 0) {
        removed += Number(
          await this.#context.servers().run("prune_members", [registry, ...local], []),
        );
      }
    } while (cursor !== "0");
    return removed;
  }

  /**
   * Every bucket's epoch that exists, found with SCAN on every master, incremented by one script
   * call per slot.
   */
  async bumpEpochs(): Promise<void> {
    const pattern = `${globEscape(this.#context.prefix)}generation:all:*`;
    const epochs: string[] = [];
    for (const node of this.#context.servers().scanners()) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", SCAN_COUNT);
        cursor = next;
        epochs.push(...keys);
      } while (cursor !== "0");
    }
    const bySlot = new Map<number, string[]>();
    for (const key of epochs) {
      const slot = keySlot(key);
      bySlot.set(slot, [...bySlot.get(slot) ?? [], key]);
    }
    for (const keys of bySlot.values()) {
      await this.#context.servers().run("bump_generation", keys, []);
    }
  }

  /**
   * Prunes a random sample of one registry (what set_and_register does on a single server). Its
   * commands go out with the next ones to the registry's master (`Servers.soon`): the sample is
   * off every caller's path. prune_members may run twice (a second run finds nothing to remove).
   */
  async #sample(registry: string, count: number): Promise<number> {
    const servers: Servers = this.#sampling ?? this.#context.servers();
    const members = await soon(servers, () => servers.srandmember(registry, count));
    const local = await this.#localMembers(registry, members);
    if (local.length === 0) return 0;
    const keys = [registry, ...local];
    return Number(await soon(servers, () => servers.runResendable("prune_members", keys, [])));
  }

  /**
   * Splits registry members into those of the registry's slot (which a script may declare with
   * it) and foreign ones (keys of other slots, added by hand), which are dropped from the registry
   * with a plain SREM and their keys left alone.
   */
  async #localMembers(registry: string, members: string[]): Promise<string[]> {
    const slot = keySlot(registry);
    const local = members.filter((member) => keySlot(member) === slot);
    if (local.length < members.length) {
      await this.#context.servers().srem(
        registry,
        ...members.filter((member) => keySlot(member) !== slot),
      );
    }
    return local;
  }
}

/** What `send` returns, its commands sent through `servers.soon` when it has that. */
function soon<T>(servers: Servers, send: () => Promise<T>): Promise<T> {
  if (servers.soon === undefined) return send();
  let sent!: Promise<T>;
  servers.soon(() => sent = send());
  return sent;
}
