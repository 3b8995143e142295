/**
 * The PTTLs the near cache needs before it installs what a read returned, gathered per tick: the
 * caller's read is a plain GET / MGET (as with the near cache off), and the remaining time to live
 * of the values it found follows off the caller's path, one command per slot for all the keys
 * read in a tick (a PTTL for one key, a `read_ttls` script call for more).
 *
 * No ordering with other commands is needed: the near cache installs a value only while no
 * invalidation of its key, no write of it by this process and no flush has come since the read
 * began (its token, src/near_cache.ts), and every change of a key between the read and its PTTL
 * (a write, an EXPIRE, a delete) brings such an invalidation.
 *
 * @module
 */

import type { Servers } from "./servers.ts";

interface Waiter {
  resolve(pttlMs: number): void;
  reject(error: unknown): void;
}

/** One provider's pending PTTL reads. */
export class TtlReads {
  readonly #servers: Servers;
  #keys: string[] = [];
  #waiters: Waiter[] = [];

  /** @param servers The servers the reads go to. */
  constructor(servers: Servers) {
    this.#servers = servers;
  }

  /** The PTTL of `key` in milliseconds (-1: no expiry, -2: absent), read with the tick's others. */
  ttl(key: string): Promise<number> {
    if (this.#keys.length === 0) this.#servers.endOfTick(() => this.#flush());
    this.#keys.push(key);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #flush(): void {
    const keys = this.#keys;
    const waiters = this.#waiters;
    this.#keys = [];
    this.#waiters = [];
    // A sequential caller's tick has one key: no slot to work out.
    const groups = keys.length === 1 ? [[0]] : this.#servers.slotGroups(keys);
    for (const group of groups) {
      const groupKeys = group.map((i) => keys[i]);
      const send = groupKeys.length === 1
        ? this.#servers.pttl(groupKeys[0]).then((pttl) => [pttl])
        : this.#servers.runResendable("read_ttls", groupKeys, []) as Promise<unknown[]>;
      send.then(
        (pttls) => group.forEach((at, i) => waiters[at].resolve(Number(pttls[i]))),
        (error) => group.forEach((at) => waiters[at].reject(error)),
      );
    }
  }
}
