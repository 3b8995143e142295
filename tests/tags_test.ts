/**
 * Tags (SPEC section 8) against redis-server, valkey-server and MemoryCache: tagged writes
 * (set, setMany, getOrSet), invalidation counted once per entry, isolation of scopes with hostile
 * tenant ids and tags (a property test), the paused-compute race, clears leaving no tag set, the
 * Python original's tenant clear, tag sets bounded under TTL churn, bad tags, and a
 * 100,000-entry tag invalidated under a GET probe. The cluster form is in tests/cluster_test.ts.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CacheInputError, MemoryCache } from "../mod.ts";
import { entryKey, hashInput, registryKey } from "../src/keys.ts";
import { tagIndexKey, tagSetKey } from "../src/tags.ts";
import { startServer, type TestServer } from "./harness.ts";
import { type AnyCache, cacheFor, KINDS, sleep } from "./_helpers.ts";

type Cache = AnyCache | MemoryCache;
type Kind = "memory" | (typeof KINDS)[number];

const HOSTILE = [":", "{", "}", "*", " ", "?", "[", "\\", "#", "日", "😀", "a", "b", "tag:"];

/** A deterministic PRNG (mulberry32), so a failing case can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hostileText(next: () => number): string {
  const length = 1 + Math.floor(next() * 5);
  let text = "";
  for (let i = 0; i < length; i++) text += HOSTILE[Math.floor(next() * HOSTILE.length)];
  return text;
}

/** A latch a test opens by hand. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => open = resolve);
  return { promise, open };
}

/** Every key of the server matching `pattern` (redis-cli --scan). */
async function scanKeys(server: TestServer, pattern: string): Promise<string[]> {
  const out = await server.cli("--scan", "--pattern", pattern);
  return out === "" ? [] : out.split("\n");
}

for (const kind of ["memory", ...KINDS] as Kind[]) {
  describe(`tags on ${kind}`, () => {
    let server: TestServer | undefined;
    let cache: Cache;

    before(async () => {
      if (kind !== "memory") server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server?.stop();
    });
    beforeEach(async () => {
      if (server) {
        await server.cli("FLUSHALL");
        cache = cacheFor(server);
      } else cache = new MemoryCache();
      assert.equal(await cache.connect(), true);
    });
    afterEach(async () => {
      await cache.close();
    });

    it("invalidates the entries carrying a tag and only those, counting each once", async () => {
      const acme = { companyId: "acme" };
      await cache.set("profile", 1, { ...acme, tags: ["user:42"] });
      await cache.set("orders", 2, { ...acme, tags: ["user:42", "orders"] });
      await cache.set("orders:7", 3, { ...acme, tags: ["user:7", "orders"] });
      await cache.set("plain", 4, acme);
      await cache.set("profile", 5, { tags: ["user:42"] }); // global scope
      assert.equal(await cache.invalidateTags(["user:42"], acme), 2);
      assert.equal(await cache.get("profile", acme), null);
      assert.equal(await cache.get("orders", acme), null);
      assert.equal(await cache.get("orders:7", acme), 3);
      assert.equal(await cache.get("plain", acme), 4);
      assert.equal(await cache.get("profile"), 5, "the global scope is another scope");
      // Several tags of one entry, invalidated together: deleted once, counted once.
      await cache.set("both", 6, { ...acme, tags: ["x", "y", "x"] });
      assert.equal(await cache.invalidateTags(["x", "y", "orders"], acme), 2);
      assert.equal(await cache.invalidateTags(["x", "y", "orders"], acme), 0);
      assert.equal(await cache.get("plain", acme), 4);
      assert.equal(await cache.invalidateTags(["user:42"]), 1);
      assert.equal(await cache.get("profile"), null);
      if (server) {
        // Invalidated entries left their registry too.
        assert.equal(await server.cli("SCARD", registryKey("cache:", "acme")), "1");
      }
    });

    it("tags setMany batches and getOrSet values", async () => {
      const scope = { companyId: 9, tags: ["batch"] };
      assert.equal(await cache.setMany([["a", 1], ["b", 2], ["c", 3]], scope), true);
      assert.equal(
        await cache.getOrSet("computed", () => "v", { companyId: 9, tags: ["batch", "gos"] }),
        "v",
      );
      assert.equal(
        await cache.getOrSet("swr", () => "w", {
          companyId: 9,
          tags: ["gos"],
          staleWhileRevalidate: 30,
        }),
        "w",
      );
      await cache.set("untagged", 0, { companyId: 9 });
      assert.equal(await cache.invalidateTags(["gos"], { companyId: "9" }), 2);
      assert.deepEqual(await cache.getMany(["a", "b", "c"], { companyId: 9 }), [1, 2, 3]);
      assert.equal(await cache.invalidateTags(["batch"], { companyId: 9 }), 3);
      assert.deepEqual(await cache.getMany(["a", "computed", "untagged"], { companyId: 9 }), [
        null,
        null,
        0,
      ]);
    });

    it("coalesced writes of one tick keep each call's tags", async () => {
      await Promise.all([
        cache.set("t1", 1, { tags: ["one"] }),
        cache.set("t2", 2, { tags: ["two"] }),
        cache.set("t3", 3, { tags: ["one", "two"] }),
        cache.set("t4", 4),
      ]);
      assert.equal(await cache.invalidateTags(["one"]), 2);
      assert.deepEqual(await cache.getMany(["t1", "t2", "t3", "t4"]), [null, 2, null, 4]);
    });

    it("never lets one scope's tag reach another scope (hostile ids and tags)", async () => {
      // The pair the issue names: tenant "a" + tag "b:c" vs tenant "a:b" + tag "c".
      await cache.set("k", "a/b:c", { companyId: "a", tags: ["b:c"] });
      await cache.set("k", "a:b/c", { companyId: "a:b", tags: ["c"] });
      assert.equal(await cache.invalidateTags(["c"], { companyId: "a" }), 0);
      assert.equal(await cache.invalidateTags(["b:c"], { companyId: "a:b" }), 0);
      assert.equal(await cache.get("k", { companyId: "a" }), "a/b:c");
      assert.equal(await cache.get("k", { companyId: "a:b" }), "a:b/c");
      assert.notEqual(
        tagSetKey("cache:", registryKey("cache:", "a"), "b:c"),
        tagSetKey("cache:", registryKey("cache:", "a:b"), "c"),
      );

      const next = random(1414);
      for (let round = 0; round < 8; round++) {
        const scopes = Array.from(
          { length: 4 },
          () => next() < 0.2 ? undefined : hostileText(next),
        );
        const tags = Array.from({ length: 4 }, () => hostileText(next));
        // Every scope stores one entry per tag, and one carrying every tag.
        for (const companyId of scopes) {
          for (const tag of tags) {
            await cache.set(["one", tag], [companyId ?? null, tag], {
              companyId,
              tags: [tag],
            });
          }
          await cache.set("all", companyId ?? null, { companyId, tags });
        }
        const victim = scopes[0];
        const tag = tags[0];
        // The victim scope's ["one", tag] and "all": nothing of any other scope.
        const deleted = await cache.invalidateTags([tag], { companyId: victim });
        assert.equal(deleted, 2, `round ${round}: ${JSON.stringify({ victim, tag })}`);
        for (const companyId of scopes) {
          const isVictim = companyId === victim;
          for (const t of tags) {
            const value = await cache.get(["one", t], { companyId });
            const gone = isVictim && t === tag;
            assert.deepEqual(
              value,
              gone ? null : [companyId ?? null, t],
              `round ${round}: ${JSON.stringify({ companyId, t, victim, tag })}`,
            );
          }
          assert.equal(
            await cache.get("all", { companyId }),
            isVictim ? null : companyId ?? null,
            `round ${round}: ${JSON.stringify({ companyId, victim, tag })}`,
          );
        }
        await cache.clearAll();
      }
    });

    it("returns but does not store a value whose compute() was paused across an invalidation", async () => {
      const scope = { companyId: "acme" };
      await cache.set("other", 1, { ...scope, tags: ["t"] });
      await cache.set("bystander", 1, { companyId: "globex", tags: ["t"] });
      const started = gate();
      const release = gate();
      const pending = cache.getOrSet("report", async () => {
        started.open();
        await release.promise;
        return "computed before";
      }, { ...scope, tags: ["t"] });
      await started.promise;
      assert.equal(await cache.invalidateTags(["t"], scope), 1);
      release.open();
      assert.equal(await pending, "computed before", "the caller still gets it");
      assert.equal(await cache.get("report", scope), null, "not stored");
      assert.equal(cache.stats().discardedSets, 1);
      if (server) {
        const key = entryKey("cache:", "", hashInput("report"), "acme");
        assert.equal(await server.cli("EXISTS", key), "0");
      }
      assert.equal(await cache.get("bystander", { companyId: "globex" }), 1);
      assert.equal(
        await cache.getOrSet("report", () => "after", { ...scope, tags: ["t"] }),
        "after",
      );
      assert.equal(await cache.get("report", scope), "after");
      // An invalidation of another scope discards nothing.
      const again = gate();
      const pending2 = cache.getOrSet("r2", async () => {
        await again.promise;
        return "kept";
      }, scope);
      await sleep(5);
      await cache.invalidateTags(["t"], { companyId: "globex" });
      again.open();
      assert.equal(await pending2, "kept");
      assert.equal(await cache.get("r2", scope), "kept");
    });

    it("rejects bad tags with a CacheInputError naming the rule, writing nothing", async () => {
      const cases: [unknown, RegExp][] = [
        ["user:1", /array/],
        [null, /array/],
        [[""], /empty/],
        [[1], /string/],
        [["ok", { tag: 1 }], /index 1.*string/],
        [Array.from({ length: 65 }, (_, i) => `t${i}`), /65 tags.*at most 64/],
        [["é".repeat(513)], /1026 UTF-8 bytes, at most 1024/],
      ];
      for (const [tags, rule] of cases) {
        const options = { companyId: "acme", tags: tags as string[] };
        await assert.rejects(() => cache.set("k", 1, options), (e) => {
          assert.ok(e instanceof CacheInputError, String(e));
          assert.match(e.message, rule);
          return true;
        });
        await assert.rejects(() => cache.setMany([["k", 1]], options), CacheInputError);
        await assert.rejects(() => cache.getOrSet("k", () => 1, options), CacheInputError);
        await assert.rejects(
          () => cache.invalidateTags(tags as string[], options),
          CacheInputError,
        );
      }
      assert.equal(await cache.get("k", { companyId: "acme" }), null, "nothing written");
      if (server) assert.equal(await server.cli("DBSIZE"), "0");
      // At the limits: accepted.
      const edge = Array.from({ length: 64 }, (_, i) => `${i}${"x".repeat(1020)}`);
      assert.equal(await cache.set("edge", 1, { tags: edge }), true);
      assert.equal(await cache.invalidateTags([edge[63]]), 1);
    });

    if (kind === "memory") return;

    it("keeps tag sets out of <prefix>registry: and drops them with the scope's clear", async () => {
      const s = server!;
      await cache.set("k", 1, { companyId: "acme", tags: ["a", "b"] });
      await cache.set("k", 1, { companyId: "globex", tags: ["a"] });
      await cache.set("k", 1, { tags: ["a"] });
      const acmeRegistry = registryKey("cache:", "acme");
      assert.deepEqual(
        (await scanKeys(s, "cache:tag*")).sort(),
        [
          tagIndexKey("cache:", acmeRegistry),
          tagIndexKey("cache:", registryKey("cache:", "globex")),
          tagIndexKey("cache:", registryKey("cache:")),
          tagSetKey("cache:", acmeRegistry, "a"),
          tagSetKey("cache:", acmeRegistry, "b"),
          tagSetKey("cache:", registryKey("cache:", "globex"), "a"),
          tagSetKey("cache:", registryKey("cache:"), "a"),
        ].sort(),
      );
      assert.deepEqual(
        (await scanKeys(s, "cache:registry:*")).sort(),
        ["cache:registry:global", "cache:registry:tenant:acme", "cache:registry:tenant:globex"],
      );
      assert.equal(await cache.clearCompany("acme"), 1);
      assert.equal((await scanKeys(s, "cache:tag*:tenant:acme*")).length, 0);
      assert.equal((await scanKeys(s, "cache:tag*")).length, 4, "the other scopes keep theirs");
      assert.equal(await cache.clearGlobal(), 1);
      assert.equal((await scanKeys(s, "cache:tag*")).length, 2);
      await s.cli("SET", "outside", "x");
      await s.cli("SADD", "other:tag:global:x", "y");
      assert.equal(await cache.clearAll(), 1);
      assert.deepEqual((await scanKeys(s, "*")).sort(), ["other:tag:global:x", "outside"]);
    });

    it("clearAll removes tag sets of scopes whose entries all expired", async () => {
      await cache.set("k", 1, { companyId: "acme", tags: ["a"], ttl: 0.02 });
      await sleep(50);
      assert.equal(await cache.pruneRegistries() >= 1, true);
      await cache.set("k", 1, { companyId: "acme", tags: ["b"], ttl: 0.02 });
      await sleep(50);
      assert.equal(await cache.clearAll(), 0);
      assert.deepEqual(await scanKeys(server!, "*"), []);
    });

    it("clearAll removes a tag set whose index was deleted by hand, and its entries", async () => {
      const s = server!;
      await cache.set("k", 1, { companyId: "acme", tags: ["a"] });
      await s.cli("DEL", tagIndexKey("cache:", registryKey("cache:", "acme")));
      await s.cli(
        "SREM",
        registryKey("cache:", "acme"),
        entryKey("cache:", "", hashInput("k"), "acme"),
      );
      assert.equal(await cache.clearAll(), 1, "found through its tag set");
      assert.deepEqual(await scanKeys(s, "*"), []);
    });

    it("a tenant cleared the Python original's way (SMEMBERS, DEL) loses its tagged entries", async () => {
      const s = server!;
      const scope = { companyId: "acme", tags: ["user:1"] };
      await cache.setMany([["a", 1], ["b", 2]], scope);
      await cache.getOrSet("c", () => 3, scope);
      const registry = registryKey("cache:", "acme");
      const members = (await s.cli("SMEMBERS", registry)).split("\n");
      assert.equal(members.length, 3, "tagged entries are plain registry members");
      await s.cli("DEL", ...members, registry);
      assert.deepEqual(await cache.getMany(["a", "b", "c"], { companyId: "acme" }), [
        null,
        null,
        null,
      ]);
      // The tag set still lists them: an invalidation finds nothing left to count.
      assert.equal(await cache.invalidateTags(["user:1"], { companyId: "acme" }), 0);
      assert.deepEqual(await scanKeys(s, "cache:tag*"), []);
    });

    it("keeps tag sets bounded under TTL churn; pruneRegistries shrinks them", async () => {
      const s = server!;
      const set = tagSetKey("cache:", registryKey("cache:", "acme"), "churn");
      const options = { companyId: "acme", tags: ["churn", "other"], ttl: 0.05 };
      for (let wave = 0; wave < 10; wave++) {
        for (let i = 0; i < 200; i++) await cache.set(["churn", wave, i], i, options);
        await sleep(60);
      }
      await cache.set(["churn", "last"], 0, { ...options, ttl: 60 });
      // 2,001 tagged writes, of which 1 is live: sampling keeps the set near its live entries
      // (one wave of 200 was still alive when the last wave sampled).
      const size = Number(await s.cli("SCARD", set));
      assert.ok(size <= 3 * 200, `tag set of ${size} members after 2,001 writes`);
      assert.ok(await cache.pruneRegistries() > 0);
      assert.equal(await s.cli("SCARD", set), "1");
      assert.equal(await cache.invalidateTags(["churn"], { companyId: "acme" }), 1);
    });

    it("invalidates a 100,000-entry tag in bounded batches while GETs are served", async () => {
      const scope = { companyId: "big", tags: ["huge"] };
      const entries: [number, number][] = [];
      for (let i = 0; i < 100_000; i++) entries.push([i, i]);
      assert.equal(await cache.setMany(entries, scope), true);
      await cache.set("probe", "alive", { companyId: "big" });
      await cache.set("probe", "alive", { tags: ["huge"] });
      const probe = cacheFor(server!);
      await probe.connect();
      let running = true;
      let maxMs = 0;
      let probes = 0;
      const loop = (async () => {
        while (running) {
          const start = performance.now();
          assert.equal(await probe.get("probe", { companyId: "big" }), "alive");
          maxMs = Math.max(maxMs, performance.now() - start);
          probes++;
        }
      })();
      const progress: number[] = [];
      const start = performance.now();
      const deleted = await cache.invalidateTags(["huge"], {
        companyId: "big",
        onProgress: (n) => progress.push(n),
      });
      const totalMs = performance.now() - start;
      running = false;
      await loop;
      await probe.close();
      assert.equal(deleted, 100_000);
      assert.ok(progress.length >= 100_000 / 500, `${progress.length} batches`);
      assert.equal(progress.at(-1), 100_000);
      assert.equal(await cache.get("probe"), "alive", "the global scope's tag is another");
      assert.equal(await cache.get(5, { companyId: "big" }), null);
      assert.equal(await server!.cli("SCARD", registryKey("cache:", "big")), "1");
      console.log(
        `100,000-entry tag (${kind}): ${totalMs.toFixed(0)} ms, ${probes} probe GETs, ` +
          `longest ${maxMs.toFixed(1)} ms`,
      );
    });
  });
}
