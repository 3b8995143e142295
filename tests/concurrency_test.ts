/**
 * A clear racing writers: 16 concurrent writers keep storing new entries of one tenant (over a
 * pool of connections, so their commands really interleave with the clear's batches) while
 * `clearCompany` runs on it. After the clear resolves, no entry whose write completed before the
 * clear started remains; once the writers stop, the tenant's registry holds exactly its live keys
 * (no member without a key, no key without a member), and no other scope lost anything.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { entryKey, hashInput, registryKey } from "../src/keys.ts";
import { startServer } from "./harness.ts";
import { cacheFor, KINDS, sleep } from "./_helpers.ts";

const WRITERS = 16;
const ROUNDS = 3;
const TENANT = "acme";
const BYSTANDER = "globex";

interface Write {
  readonly key: string;
  readonly companyId: string;
  readonly start: number;
  end: number;
  ok: boolean;
}

/** The commands of the raw client the checks need. */
interface RawClient {
  smembers(key: string): Promise<string[]>;
  exists(...keys: string[]): Promise<number>;
}

async function existing(client: RawClient, keys: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  // One EXISTS per key (EXISTS of several keys only counts them).
  const replies = await Promise.all(keys.map((key) => client.exists(key)));
  replies.forEach((reply, i) => reply === 1 && found.add(keys[i]));
  return found;
}

for (const kind of KINDS) {
  describe(`${kind} clear racing writers`, () => {
    it(`${WRITERS} writers and clearCompany on one tenant`, async () => {
      await using server = await startServer(kind);
      // Small clear batches make the clear take many script calls, interleaved with the writes.
      const cache = cacheFor(server, { poolSize: 4, clearBatchSize: 25 });
      assert.equal(await cache.connect(), true);
      const client = cache.client as unknown as RawClient;
      try {
        for (let round = 0; round < ROUNDS; round++) {
          const writes: Write[] = [];
          let running = true;
          let seq = 0;
          const writers = Array.from({ length: WRITERS }, async (_, writer) => {
            while (running) {
              const n = seq++;
              // One write in eight goes to another tenant: a clear must never touch it.
              const companyId = n % 8 === 7 ? BYSTANDER : TENANT;
              const input = { round, writer, n };
              const write: Write = {
                key: entryKey("cache:", "", hashInput(input), companyId),
                companyId,
                start: Date.now(),
                end: Infinity,
                ok: false,
              };
              writes.push(write);
              write.ok = await cache.set(input, { n }, { companyId });
              write.end = Date.now();
            }
          });
          await sleep(300);
          const clearStart = Date.now();
          const cleared = await cache.clearCompany(TENANT);
          const clearEnd = Date.now();
          // Checked at once, while the writers still run: they only ever write new keys.
          const before = writes.filter((w) => w.companyId === TENANT && w.ok && w.end < clearStart);
          const survivors = await existing(client, before.map((w) => w.key));
          await sleep(200);
          running = false;
          await Promise.all(writers);

          assert.ok(writes.every((w) => w.ok), "every write succeeded");
          const mine = writes.filter((w) => w.companyId === TENANT);
          const live = await existing(client, mine.map((w) => w.key));
          const members = new Set(await client.smembers(registryKey("cache:", TENANT)));
          const dangling = [...members].filter((key) => !live.has(key));
          const unregistered = [...live].filter((key) => !members.has(key));
          const mineKeys = new Set(mine.map((w) => w.key));
          const foreign = [...members].filter((key) => !mineKeys.has(key));
          const after = mine.filter((w) => w.start > clearEnd);
          const lostAfter = after.filter((w) => !live.has(w.key)).length;
          const bystanders = writes.filter((w) => w.companyId === BYSTANDER);
          const lostBystanders = bystanders.length -
            (await existing(client, bystanders.map((w) => w.key))).size;
          console.log(
            `FIGURES concurrency kind=${kind} round=${round} writers=${WRITERS} ` +
              `writesBefore=${before.length} ` +
              `writesDuring=${
                mine.filter((w) => w.end >= clearStart && w.start <= clearEnd).length
              } ` +
              `writesAfter=${after.length} cleared=${cleared} clearMs=${clearEnd - clearStart} ` +
              `survivors=${survivors.size} danglingMembers=${dangling.length} ` +
              `unregistered=${unregistered.length} lost=${lostAfter + lostBystanders}`,
          );
          assert.ok(before.length > 100, `${before.length} writes before the clear`);
          assert.equal(survivors.size, 0, "entries written before the clear survived it");
          assert.ok(cleared >= before.length, `cleared ${cleared} of ${before.length}`);
          assert.deepEqual(dangling, [], "registry members without a live key");
          assert.deepEqual(unregistered, [], "live keys missing from the registry");
          assert.deepEqual(foreign, [], "registry members of another scope");
          assert.equal(lostAfter, 0, "writes after the clear are all there");
          assert.equal(lostBystanders, 0, "the other tenant lost nothing");
          await cache.clearAll();
        }
      } finally {
        await cache.close();
      }
    });
  });
}
