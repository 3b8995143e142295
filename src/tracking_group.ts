/**
 * The near cache's subscribers of one provider: one {@linkcode TrackingSubscriber} per server
 * that holds entries (the server; each master of a cluster), and the one validity they give the
 * near cache together.
 *
 * Each subscriber proves its own server's invalidation stream current up to some time; the near
 * cache may serve only while every stream is, so it is validated up to the earliest of them, and
 * only while every subscriber is armed. A subscriber that loses its stream empties the near cache
 * (src/tracking.ts), and the others' heartbeats cannot make it valid again until that one is
 * armed anew.
 *
 * A change of the servers (a cluster's masters or the slots they serve: a failover, a reshard, a
 * node added or gone) empties the near cache, starts subscribers on the new masters and closes
 * those of masters that are gone.
 *
 * @module
 */

import type { ClientConstructor, ProtocolClient } from "./client_types.ts";
import type { NearCache } from "./near_cache.ts";
import { TrackingSubscriber } from "./tracking.ts";

/** What a {@linkcode TrackingGroup} is given. */
export interface TrackingGroupOptions {
  /** The client library's `Redis` class. */
  Client: ClientConstructor;
  /** Connection options shared by every subscriber (credentials, TLS, db, timeouts). */
  clientOptions: Record<string, unknown>;
  /** The key prefixes to track (`trackedPrefixes`). */
  prefixes: readonly string[];
  /** The longest a stale value may be served under faults, in milliseconds. */
  maxStalenessMs: number;
  /** The near cache kept coherent. */
  nearCache: NearCache;
  /** Told when a server's tracking is armed or lost (with why). */
  onState?(target: string, armed: boolean, reason: string): void;
  /** Told of every invalidation message (`null`: a flush). */
  onInvalidation?(keys: string[] | null): void;
}

/** A subscriber and how far its stream is proven current (`until`, the near cache's clock). */
interface Member {
  subscriber: TrackingSubscriber;
  until: number;
}

/** The subscribers of one provider's servers. */
export class TrackingGroup {
  readonly #options: TrackingGroupOptions;
  /** By target (`host:port`). */
  readonly #members = new Map<string, Member>();
  /** What the servers looked like when last set (see `setTargets`). */
  #layout: string | undefined;
  #closed = false;

  /** @param options What to connect with and which near cache to keep. */
  constructor(options: TrackingGroupOptions) {
    this.#options = options;
  }

  /** Whether every server's tracking is armed. */
  get armed(): boolean {
    if (this.#members.size === 0) return false;
    for (const member of this.#members.values()) if (!member.subscriber.armed) return false;
    return true;
  }

  /** The servers tracked (`host:port`). */
  get targets(): string[] {
    return [...this.#members.keys()];
  }

  /** The subscribers' clients (for tests and the admin CLI). */
  get clients(): ProtocolClient[] {
    const clients: ProtocolClient[] = [];
    for (const { subscriber } of this.#members.values()) {
      if (subscriber.client) clients.push(subscriber.client);
    }
    return clients;
  }

  /**
   * Tracks `targets` (`host:port` each) from now on. `layout` says what else of the servers
   * matters (a cluster's slot owners): when it or the targets changed since the last call, the
   * near cache is emptied; subscribers start on new targets and close on those gone.
   */
  setTargets(targets: readonly string[], layout = ""): void {
    if (this.#closed) return;
    const wanted = new Set(targets);
    const signature = `${[...wanted].sort().join(" ")}\n${layout}`;
    if (signature === this.#layout) return;
    const changed = this.#layout !== undefined;
    this.#layout = signature;
    if (changed) this.#options.nearCache.invalidateAll();
    for (const [target, member] of this.#members) {
      if (wanted.has(target)) continue;
      this.#members.delete(target);
      void member.subscriber.close();
    }
    for (const target of wanted) {
      if (!this.#members.has(target)) this.#start(target);
    }
    // The servers that stayed still prove their streams: serve again at once if they are all.
    this.#revalidate();
  }

  /** Resolves `true` once every server's tracking is armed, or `false` after `timeoutMs`. */
  async whenArmed(timeoutMs: number): Promise<boolean> {
    const armed = await Promise.all(
      [...this.#members.values()].map((member) => member.subscriber.whenArmed(timeoutMs)),
    );
    return armed.length > 0 && armed.every(Boolean);
  }

  /** Closes every subscriber; the near cache stays bypassed. */
  async close(): Promise<void> {
    this.#closed = true;
    const members = [...this.#members.values()];
    this.#members.clear();
    await Promise.all(members.map((member) => member.subscriber.close()));
  }

  #start(target: string): void {
    const { Client, clientOptions, prefixes, maxStalenessMs, nearCache } = this.#options;
    const colon = target.lastIndexOf(":");
    const member: Member = { subscriber: undefined!, until: -Infinity };
    member.subscriber = new TrackingSubscriber({
      Client,
      clientOptions: {
        ...clientOptions,
        host: target.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
        port: Number(target.slice(colon + 1)),
      },
      prefixes,
      maxStalenessMs,
      nearCache,
      onState: (armed, reason) => {
        if (!armed) member.until = -Infinity;
        this.#options.onState?.(target, armed, reason);
      },
      onInvalidation: this.#options.onInvalidation,
      validate: (until) => {
        if (this.#members.get(target) !== member) return;
        if (until > member.until) member.until = until;
        this.#revalidate();
      },
    });
    this.#members.set(target, member);
    member.subscriber.start();
  }

  /** Validates the near cache up to the earliest proof, when every subscriber is armed. */
  #revalidate(): void {
    let until = Infinity;
    for (const member of this.#members.values()) {
      if (!member.subscriber.armed) return;
      if (member.until < until) until = member.until;
    }
    if (until !== Infinity && until !== -Infinity) this.#options.nearCache.validate(until);
  }
}
