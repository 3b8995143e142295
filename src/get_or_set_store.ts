/**
 * getOrSet's store on a Redis-protocol provider's servers: the four primitives the flow of
 * src/get_or_set.ts runs on, each one read or one script call. A plain read (through the near
 * cache, like `get`); `read_or_lock` (the fresh value, or the lock taken and the scope's
 * generation counters read, a missing counter seeded at random); `set_if_generation` (stores and
 * registers the value, with its tags, unless a clear moved the counters meanwhile, and releases
 * the lock); `release_lock`. The scripts' KEYS and ARGV are documented in lua/.
 *
 * @module
 */

import type { EntryIO } from "./entry_io.ts";
import { GENERATION_TTL_MS, type GetOrSetStore, type LockReply } from "./get_or_set.ts";
import { tagTarget } from "./tags.ts";

/**
 * The primitives of getOrSet on the servers `io` reaches; each throws on a server fault.
 *
 * @param io The provider's entry reads and writes.
 * @param prefix The key prefix (the tag sets' names).
 */
export function getOrSetStore(io: EntryIO, prefix: string): GetOrSetStore {
  return {
    get: (key) => io.readText(key),
    readOrLock: async (keys, token, lockMs, staleMs) => {
      // The token's first 48 bits seed a missing generation counter with a random value.
      const seed = parseInt(token.slice(0, 12), 16);
      const [status, text, generation, all] = await io.now().run(
        "read_or_lock",
        [keys.key, keys.lock, keys.generation, keys.all],
        [token, lockMs, staleMs, seed, GENERATION_TTL_MS],
      ) as [LockReply["status"], string | null, string | null, string | null];
      return { status, text, generation: generation ?? "", all: all ?? "" };
    },
    setIfGeneration: async (keys, text, ttlMs, reply, token) => {
      const names = [keys.registry, keys.key, keys.generation, keys.all, keys.lock];
      const tags = tagTarget(prefix, keys.registry, keys.tags);
      if (tags) names.push(tags.index, ...tags.sets);
      io.writing([keys.key]);
      const stored = (await io.now().run(
        "set_if_generation",
        names,
        [ttlMs, io.inScriptSample, text, reply.generation, reply.all, token],
      )) === 1;
      io.changed([keys.key]);
      if (stored) io.afterWrite(keys.registry, tags);
      return stored;
    },
    releaseLock: async (keys, token) => {
      await io.now().run("release_lock", [keys.lock], [token]);
    },
  };
}
