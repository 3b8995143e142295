/**
 * RedisCache and ValkeyCache on a real 3-master Redis Cluster / Valkey Cluster (started by
 * tests/cluster_harness.ts): the provider and facade behaviour suite on the hash-tagged layout,
 * tenant buckets spread over masters, the slot spread of the 16-bucket global scope, a reshard
 * under load, and a killed master. One cluster per kind serves every step, in order: the reshard
 * and the kill come last.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  cacheClearCompany,
  cacheGet,
  cacheGetMany,
  cacheSet,
  closeCache,
  getCacheClient,
  RedisCache,
  type RedisCacheOptions,
  RedisConfig,
  type RedisConfigOptions,
  setCache,
  ValkeyCache,
  ValkeyConfig,
} from "../mod.ts";
import { hashInput } from "../src/keys.ts";
import { ClusterLayout } from "../src/layout.ts";
import { tagIndexKey, tagSetKey } from "../src/tags.ts";
import { keySlot, startCluster, type TestCluster } from "./cluster_harness.ts";
import {
  type AnyCache,
  collectingLogger,
  commandCalls,
  KINDS,
  luaSha,
  type ProcessRun,
  quietLogger,
  runProcess,
  runtimeEnv,
  sleep,
} from "./_helpers.ts";

const NASTY_TENANTS = [
  "a:b",
  "*",
  "{tag}",
  "{",
  "}",
  "a}b{c",
  "#x",
  "acme#1",
  "with space",
  "日本語😀",
  "x?[y]\\",
  "0",
];

/** Lines of redirection or slot errors that must never reach a user. */
const REDIRECTION = /MOVED|ASK|CROSSSLOT|TRYAGAIN|CLUSTERDOWN|redirection/i;

type ClusterCacheOptions = Omit<RedisCacheOptions, "config"> & {
  configOptions?: RedisConfigOptions;
};

/** A provider of the cluster's kind pointed at its seeds (not yet connected). */
function clusterCache(cluster: TestCluster, options: ClusterCacheOptions = {}): AnyCache {
  const { configOptions, ...rest } = options;
  const settings = { clusterNodes: cluster.seeds, ...configOptions };
  return cluster.kind === "redis"
    ? new RedisCache({ logger: quietLogger(), ...rest, config: new RedisConfig(settings) })
    : new ValkeyCache({ logger: quietLogger(), ...rest, config: new ValkeyConfig(settings) });
}

/** The cluster layout with the default bucket counts (1 per tenant, 16 global). */
function layout(tenantBuckets = 1, globalBuckets = 16): ClusterLayout {
  return new ClusterLayout("cache:", { tenantBuckets, globalBuckets });
}

/** Runs `args` on every master (plain, not cluster mode). */
async function onEveryNode(cluster: TestCluster, ...args: string[]): Promise<string[]> {
  return await Promise.all(cluster.nodes.map((node) => node.cli(...args)));
}

/** How many keys the whole cluster holds. */
async function dbsize(cluster: TestCluster): Promise<number> {
  return (await onEveryNode(cluster, "DBSIZE")).reduce((sum, n) => sum + Number(n), 0);
}

/** Calls of one command on every master, summed. */
async function clusterCalls(cluster: TestCluster, command: string): Promise<number> {
  const counts = await Promise.all(cluster.nodes.map((node) => commandCalls(node, command)));
  return counts.reduce((sum, n) => sum + n, 0);
}

for (const kind of KINDS) {
  describe(`${kind} cluster`, () => {
    let cluster: TestCluster;
    let cache: AnyCache;
    let logger: ReturnType<typeof collectingLogger>;

    before(async () => {
      cluster = await startCluster(kind);
    });
    after(async () => {
      await cluster?.stop();
    });

    describe("provider suite", () => {
      beforeEach(async () => {
        await onEveryNode(cluster, "FLUSHALL");
        await onEveryNode(cluster, "SCRIPT", "FLUSH");
        await onEveryNode(cluster, "CONFIG", "RESETSTAT");
        logger = collectingLogger();
        cache = clusterCache(cluster, { logger });
        assert.equal(await cache.connect(), true);
      });
      afterEach(async () => {
        await cache.close();
        assert.deepEqual(logger.lines, [], "no fault was logged");
      });

      it("stores, reads, checks and deletes entries in the hash-tagged layout", async () => {
        assert.equal(await cache.get({ q: 1 }), null);
        assert.equal(await cache.set({ q: 1 }, { rows: [1, "two"] }), true);
        assert.equal(await cache.set({ q: 1 }, "tenant", { companyId: "acme" }), true);
        const hash = hashInput({ q: 1 });
        const bucket = parseInt(hash.slice(0, 8), 16) % 16;
        const globalKey = `cache:global:{g${bucket}}::${hash}`;
        const tenantKey = `cache:tenant:{acme}::${hash}`;
        assert.equal(layout().entryKey("", hash), globalKey);
        assert.equal(await cluster.cli("GET", globalKey), '{"rows":[1,"two"]}');
        assert.equal(await cluster.cli("GET", tenantKey), '"tenant"');
        assert.equal(
          await cluster.cli("SISMEMBER", `cache:registry:global:{g${bucket}}`, globalKey),
          "1",
        );
        assert.equal(
          await cluster.cli("SISMEMBER", "cache:registry:tenant:{acme}", tenantKey),
          "1",
        );
        assert.deepEqual(await cache.get({ q: 1 }), { rows: [1, "two"] });
        assert.equal(await cache.get({ q: 1 }, { companyId: "acme" }), "tenant");
        assert.equal(await cache.exists({ q: 1 }, { companyId: "acme" }), true);
        assert.equal(await cache.delete({ q: 1 }, { companyId: "acme" }), true);
        assert.equal(await cache.delete({ q: 1 }, { companyId: "acme" }), false);
        assert.equal(await cache.exists({ q: 1 }, { companyId: "acme" }), false);
        assert.equal(await cluster.cli("EXISTS", "cache:registry:tenant:{acme}"), "0");
        assert.deepEqual(await cache.get({ q: 1 }), { rows: [1, "two"] });
        assert.equal(await cache.healthCheck(), true);
      });

      it("applies the default TTL, a fractional TTL as PX, and null as no expiry", async () => {
        await cache.set("default", 1);
        await cache.set("fraction", 1, { ttl: 1.5 });
        await cache.set("forever", 1, { ttl: null, companyId: "t" });
        const pttl = async (input: string, companyId?: string) =>
          Number(await cluster.cli("PTTL", layout().entryKey("", hashInput(input), companyId)));
        const defaultTtl = await pttl("default");
        assert.ok(defaultTtl > 3_590_000 && defaultTtl <= 3_600_000, `PTTL ${defaultTtl}`);
        const fraction = await pttl("fraction");
        assert.ok(fraction > 1000 && fraction <= 1500, `PTTL ${fraction}`);
        assert.equal(await pttl("forever", "t"), -1);
        await cache.set("short", "x", { ttl: 0.05 });
        await sleep(120);
        assert.equal(await cache.get("short"), null);
      });

      it("keeps tenants apart whatever their ids hold, braces included", async () => {
        for (const tenant of NASTY_TENANTS) {
          assert.equal(await cache.set("report", { tenant }, { companyId: tenant }), true, tenant);
        }
        await cache.set("report", { tenant: "global" });
        for (const tenant of NASTY_TENANTS) {
          assert.deepEqual(await cache.get("report", { companyId: tenant }), { tenant }, tenant);
        }
        // Every tenant has its own registry, in the slot of its entries.
        const registries = new Set(NASTY_TENANTS.map((t) => layout().scopeRegistries(t)[0]));
        assert.equal(registries.size, NASTY_TENANTS.length);
        for (const tenant of NASTY_TENANTS) {
          const [registry] = layout().scopeRegistries(tenant);
          const key = layout().entryKey("", hashInput("report"), tenant);
          assert.equal(keySlot(key), keySlot(registry), tenant);
          assert.equal(Number(await cluster.cli("CLUSTER", "KEYSLOT", key)), keySlot(key), key);
          assert.equal(await cluster.cli("SISMEMBER", registry, key), "1", tenant);
        }
        assert.equal(
          layout().entryKey("", "ab", "x{y}"),
          `cache:tenant:{#${
            (await import("../src/runtime.ts")).sha256Hex("x{y}").slice(0, 16)
          }}:x{y}::ab`,
        );
        assert.equal(await cache.clearCompany("{tag}"), 1);
        assert.equal(await cache.clearCompany("acme#1"), 1);
        assert.equal(await cache.get("report", { companyId: "{tag}" }), null);
        for (const tenant of NASTY_TENANTS.filter((t) => t !== "{tag}" && t !== "acme#1")) {
          assert.deepEqual(await cache.get("report", { companyId: tenant }), { tenant }, tenant);
        }
        assert.deepEqual(await cache.get("report"), { tenant: "global" });
        assert.deepEqual(await cache.get("report", { companyId: 0 }), { tenant: "0" });
      });

      it("getMany and setMany group keys by slot and keep input order", async () => {
        const entries: [string, number][] = Array.from({ length: 300 }, (_, i) => [`k${i}`, i]);
        assert.equal(await cache.setMany(entries), true);
        const wanted = ["k299", "missing", "k0", "k150", "k7"];
        assert.deepEqual(await cache.getMany(wanted), [299, null, 0, 150, 7]);
        const all = await cache.getMany(entries.map(([input]) => input));
        assert.deepEqual(all, entries.map(([, value]) => value));
        assert.deepEqual(await cache.getMany(["k1"], { companyId: "t" }), [null]);
        assert.deepEqual(await cache.getMany([]), []);
        // 300 global entries over 16 buckets: one script call and one MGET per bucket.
        const scriptCalls = await clusterCalls(cluster, "evalsha");
        assert.ok(scriptCalls >= 2 && scriptCalls <= 16 + 2, `${scriptCalls} script calls`);
        const mgets = await clusterCalls(cluster, "mget");
        assert.ok(mgets <= 16 + 1 + 16 + 1, `${mgets} MGETs`);
        const many: [number, number][] = Array.from({ length: 2500 }, (_, i) => [i, i]);
        assert.equal(await cache.setMany(many, { companyId: "big" }), true);
        assert.equal(await cluster.cli("SCARD", "cache:registry:tenant:{big}"), "2500");
      });

      it("calls of one tick run in call order and share one command per slot", async () => {
        // Not awaited in between: all in one tick. The coalesced set goes out in its master's
        // pipeline, on the connection the delete, exists and clear are sent on after it.
        for (let i = 0; i < 20; i++) {
          const [, deleted, gone] = await Promise.all([
            cache.set(`k${i}`, 1),
            cache.delete(`k${i}`),
            cache.exists(`k${i}`),
          ]);
          assert.equal(deleted, true, `delete after set, round ${i}`);
          assert.equal(gone, false, `exists after delete, round ${i}`);
        }
        const [, found, , read] = await Promise.all([
          cache.set("k", 3),
          cache.exists("k"),
          cache.set("k", 4),
          cache.get("k"),
        ]);
        assert.deepEqual([found, read], [true, 4]);
        // A clear of several round trips (a cluster's) is not ordered before a later call's
        // reply, but it sees the write made before it.
        const [, cleared] = await Promise.all([
          cache.set("x", 1, { companyId: "acme" }),
          cache.clearCompany("acme"),
        ]);
        assert.equal(cleared, 1);

        // 100 gets and 100 sets of one tick: at most one command per bucket slot each.
        const inputs = Array.from({ length: 100 }, (_, i) => ({ q: "tick", id: i }));
        await onEveryNode(cluster, "CONFIG", "RESETSTAT");
        const stored = await Promise.all(inputs.map((input) => cache.set(input, input.id)));
        assert.deepEqual(stored, inputs.map(() => true));
        // 16 set_and_register calls, and the prune sample after every 16th write (2 here).
        const scriptCalls = await clusterCalls(cluster, "evalsha");
        assert.ok(scriptCalls <= 16 + 2, `${scriptCalls} script calls`);
        const values = await Promise.all(inputs.map((input) => cache.get(input)));
        assert.deepEqual(values, inputs.map((input) => input.id));
        const reads = (await clusterCalls(cluster, "get")) + (await clusterCalls(cluster, "mget"));
        assert.ok(reads <= 16, `${reads} GETs and MGETs`);
      });

      it("clears fan out over buckets; clearAll and prune scan every master", async () => {
        const buckets = clusterCache(cluster, {
          logger,
          configOptions: { clusterTenantBuckets: 4 },
        });
        await buckets.connect();
        const entries: [number, number][] = Array.from({ length: 100 }, (_, i) => [i, i]);
        await buckets.setMany(entries, { companyId: "acme" });
        await buckets.setMany(entries.slice(0, 10), { companyId: "globex" });
        await buckets.setMany(entries.slice(0, 50));
        // Keys outside the prefix, and a foreign key of another slot slipped into a registry,
        // are never deleted.
        await cluster.cli("SET", "other:app:key", "keep");
        const acmeRegistries = layout(4).scopeRegistries("acme");
        await cluster.cli("SADD", acmeRegistries[0], "cache:foreign:{elsewhere}");
        await cluster.cli("SET", "cache:foreign:{elsewhere}", "keep");
        assert.equal(await buckets.clearCompany("acme"), 100);
        assert.equal(await buckets.clearCompany("acme"), 0);
        assert.equal(await buckets.get(3, { companyId: "globex" }), 3);
        assert.equal(await buckets.clearGlobal(), 50);
        assert.equal(await buckets.get(3, { companyId: "globex" }), 3);
        await buckets.set("g", 1);
        await buckets.set("t", 1, { companyId: "initech" });
        assert.equal(await buckets.clearAll(), 12);
        assert.equal(await cluster.cli("GET", "other:app:key"), "keep");
        assert.equal(await cluster.cli("GET", "cache:foreign:{elsewhere}"), "keep");
        assert.equal(await dbsize(cluster), 2);

        await buckets.set("live", 1, { companyId: "acme" });
        await buckets.setMany(entries, { companyId: "acme", ttl: 0.05 });
        await buckets.setMany(entries.slice(0, 20), { ttl: 0.05 });
        await sleep(120);
        assert.equal(await buckets.pruneRegistries(), 120);
        assert.equal(await buckets.get("live", { companyId: "acme" }), 1);
        assert.equal(await buckets.clearAll(), 1);
        await buckets.close();
      });

      it("tags: tag sets share their entries' slot, invalidation fans out, clears leave none", async () => {
        const buckets = clusterCache(cluster, {
          logger,
          configOptions: { clusterTenantBuckets: 4 },
        });
        await buckets.connect();
        const tagKeys = async () =>
          (await onEveryNode(cluster, "--scan", "--pattern", "cache:tag*"))
            .flatMap((out) => out === "" ? [] : out.split("\n"));
        try {
          const entries: [number, number][] = Array.from({ length: 100 }, (_, i) => [i, i]);
          await buckets.setMany(entries, { companyId: "acme", tags: ["t"] });
          await buckets.setMany(entries.slice(0, 10), { companyId: "globex", tags: ["t", "u"] });
          await buckets.setMany(entries.slice(0, 50), { tags: ["t"] });
          await buckets.set("untagged", 1, { companyId: "acme" });
          // Each entry's tag set is in its slot (so each script is single-slot), and lists it.
          for (const [input] of entries.slice(0, 20)) {
            const hash = hashInput(input);
            const registry = layout(4).registryKey(hash, "acme");
            const set = tagSetKey("cache:", registry, "t");
            const key = layout(4).entryKey("", hash, "acme");
            assert.equal(keySlot(set), keySlot(key));
            assert.equal(keySlot(tagIndexKey("cache:", registry)), keySlot(key));
            assert.equal(await cluster.cli("SISMEMBER", set, key), "1");
          }
          assert.ok(!(await tagKeys()).some((key) => key.startsWith("cache:registry:")));
          assert.equal(await buckets.invalidateTags(["t"], { companyId: "acme" }), 100);
          assert.equal(await buckets.get("untagged", { companyId: "acme" }), 1);
          assert.deepEqual(await buckets.getMany([0, 9], { companyId: "globex" }), [0, 9]);
          assert.equal(await buckets.invalidateTags(["t", "u"], { companyId: "globex" }), 10);
          assert.equal(await buckets.get(3), 3);
          assert.equal(await buckets.invalidateTags(["t"]), 50, "16 global buckets");
          assert.equal(await buckets.get(3), null);

          // Hostile tenants and tags: one scope's invalidation never reaches another.
          for (const tenant of NASTY_TENANTS) {
            await buckets.set("k", tenant, { companyId: tenant, tags: [tenant, "b:c", "{x}"] });
          }
          await buckets.set("k", "a/b:c", { companyId: "a", tags: ["b:c"] });
          await buckets.set("k", "a:b/c", { companyId: "a:b", tags: ["c"] });
          assert.equal(await buckets.invalidateTags(["c"], { companyId: "a" }), 0);
          assert.equal(await buckets.invalidateTags(["{x}", "b:c"], { companyId: "{tag}" }), 1);
          for (const tenant of NASTY_TENANTS.filter((t) => t !== "{tag}" && t !== "a:b")) {
            assert.equal(await buckets.get("k", { companyId: tenant }), tenant, tenant);
          }
          assert.equal(await buckets.get("k", { companyId: "a" }), "a/b:c");

          // A getOrSet paused across an invalidation of its bucket is not stored.
          let release!: () => void;
          const released = new Promise<void>((resolve) => release = resolve);
          let started!: () => void;
          const running = new Promise<void>((resolve) => started = resolve);
          const pending = buckets.getOrSet("report", async () => {
            started();
            await released;
            return "before";
          }, { companyId: "acme", tags: ["r"] });
          await running;
          await buckets.invalidateTags(["r"], { companyId: "acme" });
          release();
          assert.equal(await pending, "before");
          assert.equal(await buckets.get("report", { companyId: "acme" }), null);
          assert.equal(
            await buckets.getOrSet("report", () => "after", {
              companyId: "acme",
              tags: ["r"],
            }),
            "after",
          );

          // Clears leave no tag set of the scopes they cleared; clearAll none at all.
          await buckets.setMany(entries.slice(0, 20), { companyId: "acme", tags: ["t"] });
          await buckets.setMany(entries.slice(0, 20), { tags: ["t"] });
          await buckets.clearCompany("acme");
          const acmeTags = layout(4).scopeRegistries("acme").flatMap((r) => [
            tagIndexKey("cache:", r),
            tagSetKey("cache:", r, "t"),
            tagSetKey("cache:", r, "r"),
          ]);
          const left = await tagKeys();
          assert.ok(!left.some((key) => acmeTags.includes(key)), left.join(" "));
          assert.ok(left.length > 0);
          await buckets.clearGlobal();
          assert.ok(!(await tagKeys()).some((key) => key.startsWith("cache:tag:global")));
          await buckets.clearAll();
          assert.deepEqual(await tagKeys(), []);

          // pruneRegistries covers tag sets.
          await buckets.setMany(entries, { companyId: "acme", tags: ["t"], ttl: 0.05 });
          await sleep(120);
          assert.equal(await buckets.pruneRegistries(), 200 + 4, "registry, tag set, index");
          assert.deepEqual(await tagKeys(), []);
        } finally {
          await buckets.close();
        }
      });

      it("runs scripts by EVALSHA only and reloads them on every master after SCRIPT FLUSH", async () => {
        const inputs = Array.from({ length: 30 }, (_, i) => `s${i}`);
        for (const input of inputs) assert.equal(await cache.set(input, input), true);
        for (const name of ["set_and_register", "delete_and_unregister", "clear_registry"]) {
          const loaded = await onEveryNode(cluster, "SCRIPT", "EXISTS", await luaSha(name));
          assert.deepEqual(loaded, ["1", "1", "1"], name);
        }
        await onEveryNode(cluster, "SCRIPT", "FLUSH");
        for (const input of inputs) {
          assert.equal(await cache.set(input, 1, { companyId: input }), true);
        }
        for (const input of inputs) assert.equal(await cache.get(input, { companyId: input }), 1);
        await onEveryNode(cluster, "SCRIPT", "FLUSH");
        assert.equal(await cache.clearGlobal(), inputs.length);
        assert.equal(await clusterCalls(cluster, "eval"), 0);
      });

      it("getOrSet: one compute() for concurrent callers, its keys in the entry's slot", async () => {
        const buckets = clusterCache(cluster, {
          logger,
          configOptions: { clusterTenantBuckets: 4 },
        });
        await buckets.connect();
        try {
          let calls = 0;
          const compute = async () => {
            calls++;
            await sleep(50);
            return { rows: 3 };
          };
          const results = await Promise.all(
            Array.from(
              { length: 20 },
              () => buckets.getOrSet("report", compute, { companyId: "acme" }),
            ),
          );
          assert.deepEqual(results, Array(20).fill({ rows: 3 }));
          assert.equal(calls, 1);
          const four = layout(4);
          const hash = hashInput("report");
          const key = four.entryKey("", hash, "acme");
          const registry = four.registryKey(hash, "acme");
          const scopeKeys = [registry, four.generationKey(registry), four.epochKey(registry)];
          for (const scopeKey of scopeKeys) {
            assert.equal(await cluster.cli("EXISTS", scopeKey), "1", scopeKey);
            assert.equal(keySlot(scopeKey), keySlot(key), scopeKey);
          }
          assert.equal(await cluster.cli("EXISTS", four.lockKey(key)), "0", "lock released");
          assert.equal(keySlot(four.lockKey(key)), keySlot(key));
          assert.deepEqual(await buckets.get("report", { companyId: "acme" }), { rows: 3 });

          // staleWhileRevalidate: the stale value at once, one refresh in the background.
          const options = { ttl: 0.2, staleWhileRevalidate: 30 };
          assert.equal(await buckets.getOrSet("swr", () => "v1", options), "v1");
          await sleep(300);
          assert.equal(await buckets.getOrSet("swr", () => "v2", options), "v1");
          let value: unknown = null;
          for (let i = 0; i < 50 && value !== "v2"; i++) {
            await sleep(20);
            value = await buckets.get("swr");
          }
          assert.equal(value, "v2");
        } finally {
          await buckets.close();
        }
      });

      for (
        const [label, companyId, clear] of [
          ["clearCompany", "acme", (c: AnyCache) => c.clearCompany("acme")],
          ["clearGlobal", undefined, (c: AnyCache) => c.clearGlobal()],
          ["clearAll (tenant without a registry)", "newcomer", (c: AnyCache) => c.clearAll()],
        ] as const
      ) {
        it(`getOrSet does not store a compute() paused across ${label}`, async () => {
          const buckets = clusterCache(cluster, {
            logger,
            configOptions: { clusterTenantBuckets: 4 },
          });
          await buckets.connect();
          try {
            if (companyId !== "newcomer") await buckets.set("other", 1, { companyId });
            await buckets.set("elsewhere", 1, { companyId: "bystander" });
            let opened!: () => void;
            const started = new Promise<void>((resolve) => opened = resolve);
            let release!: () => void;
            const released = new Promise<void>((resolve) => release = resolve);
            const pending = buckets.getOrSet("report", async () => {
              opened();
              await released;
              return "computed before the clear";
            }, { companyId });
            await started;
            await clear(buckets);
            release();
            assert.equal(await pending, "computed before the clear");
            assert.equal(await buckets.get("report", { companyId }), null, "not stored");
            assert.equal(buckets.stats().discardedSets, 1);
            assert.equal(
              await buckets.getOrSet("report", () => "after", { companyId }),
              "after",
            );
            assert.equal(await buckets.get("report", { companyId }), "after");
          } finally {
            await buckets.close();
          }
        });
      }

      it("installs from REDIS_CLUSTER_NODES / VALKEY_CLUSTER_NODES through the facade", async () => {
        const variable = kind === "redis" ? "REDIS_CLUSTER_NODES" : "VALKEY_CLUSTER_NODES";
        assert.equal(
          await setCache({ env: { CACHE_BACKEND: kind, [variable]: cluster.seeds }, logger }),
          true,
        );
        try {
          const client = getCacheClient() as { nodes?: (role: string) => unknown[] };
          assert.equal(typeof client.nodes, "function", "the client is the library's Cluster");
          assert.equal(client.nodes!("master").length, 3);
          assert.equal(await cacheSet({ q: 1 }, "v", { companyId: "acme" }), true);
          assert.equal(await cacheGet({ q: 1 }, { companyId: "acme" }), "v");
          assert.deepEqual(await cacheGetMany([{ q: 1 }, { q: 2 }], { companyId: "acme" }), [
            "v",
            null,
          ]);
          assert.equal(await cacheClearCompany("acme"), 1);
        } finally {
          await closeCache();
        }
      });
    });

    it("spreads a tenant with several buckets over several masters", async () => {
      const owners = await cluster.slotOwners();
      const inputs = Array.from({ length: 64 }, (_, i) => ({ report: i }));
      const mastersOf = (buckets: number) =>
        new Set(inputs.map((input) => {
          const key = layout(buckets).entryKey("", hashInput(input), "acme");
          return owners[keySlot(key)];
        }));
      assert.equal(mastersOf(1).size, 1);
      assert.ok(mastersOf(8).size >= 2, `8 buckets on ${mastersOf(8).size} master(s)`);

      // And the cache finds them there.
      const cache = clusterCache(cluster, { configOptions: { clusterTenantBuckets: 8 } });
      await cache.connect();
      try {
        await cache.setMany(inputs.map((input, i) => [input, i]), { companyId: "acme" });
        const perNode = await onEveryNode(cluster, "DBSIZE");
        assert.ok(perNode.filter((n) => Number(n) > 0).length >= 2, `keys per node: ${perNode}`);
        assert.deepEqual(
          await cache.getMany(inputs, { companyId: "acme" }),
          inputs.map((_, i) => i),
        );
        assert.equal(await cache.clearCompany("acme"), 64);
      } finally {
        await cache.close();
      }
    });

    it("the admin CLI counts and clears across every master", async () => {
      await onEveryNode(cluster, "FLUSHALL");
      const cache = clusterCache(cluster, { configOptions: { clusterTenantBuckets: 4 } });
      await cache.connect();
      try {
        const entries: [number, number][] = Array.from({ length: 40 }, (_, i) => [i, i]);
        await cache.setMany(entries, { companyId: "a{b}" });
        await cache.setMany(entries.slice(0, 30));
        await cache.set("x", 1, { companyId: "acme" });
      } finally {
        await cache.close();
      }
      const variable = kind === "redis" ? "REDIS_CLUSTER_NODES" : "VALKEY_CLUSTER_NODES";
      const env = {
        CACHE_BACKEND: kind,
        [variable]: cluster.seeds,
        REDIS_CLUSTER_TENANT_BUCKETS: "4",
      };
      const stats = await admin(["stats", "--json"], env);
      assert.equal(stats.code, 0, stats.stderr);
      const report = JSON.parse(stats.stdout) as {
        scopes: { scope: string; companyId?: string; members: number; live: number }[];
        totals: { members: number; tenants: number };
      };
      assert.deepEqual(
        report.scopes.map(({ scope, companyId, members, live }) => ({
          scope,
          companyId,
          members,
          live,
        })),
        [
          { scope: "global", companyId: undefined, members: 30, live: 30 },
          { scope: "tenant", companyId: "a{b}", members: 40, live: 40 },
          { scope: "tenant", companyId: "acme", members: 1, live: 1 },
        ],
      );
      assert.equal(report.totals.members, 71);
      const clear = await admin(["clear", "--scope", "company", "--company-id", "a{b}"], env);
      assert.equal(clear.code, 0, clear.stderr);
      assert.match(clear.stdout, /deleted 40 keys/);
      const all = await admin(["clear", "--scope", "all"], env);
      assert.match(all.stdout, /deleted 31 keys/);
      assert.equal(await dbsize(cluster), 0);
    });

    it("spreads the 16-bucket global scope over the 3 masters", async () => {
      const owners = await cluster.slotOwners();
      const counts = [0, 0, 0];
      for (const registry of layout().scopeRegistries()) counts[owners[keySlot(registry)]]++;
      console.log(`FIGURES cluster-spread kind=${kind} masters=${counts.join("/")}`);
      assert.equal(counts.reduce((a, b) => a + b), 16);
      assert.ok(counts.every((n) => n >= 1), `buckets per master: ${counts.join("/")}`);
    });

    it("loses no entry and surfaces no redirection while slots move under load", async () => {
      await onEveryNode(cluster, "FLUSHALL");
      const owners = await cluster.slotOwners();
      const lowest = owners.indexOf(0);
      const moved = 400;
      // Tenants whose slot is among the first `moved` slots of master 0: they migrate.
      const tenants: string[] = [];
      for (let n = 0; tenants.length < 12; n++) {
        const slot = keySlot(layout().scopeRegistries(`t${n}`)[0]);
        if (owners[slot] === 0 && slot < lowest + moved) tenants.push(`t${n}`);
      }
      tenants.push("elsewhere-1", "elsewhere-2"); // and some that stay
      // One more migrating tenant is filled and cleared over and over by its own worker.
      let churn = "";
      for (let n = 0; churn === ""; n++) {
        const slot = keySlot(layout().scopeRegistries(`c${n}`)[0]);
        if (owners[slot] === 0 && slot < lowest + moved) churn = `c${n}`;
      }
      await onEveryNode(cluster, "CONFIG", "RESETSTAT");
      const log = collectingLogger();
      const cache = clusterCache(cluster, { logger: log });
      assert.equal(await cache.connect(), true);
      const acked = new Map<string, unknown>(); // `${tenant}|${input}` → last acknowledged value
      let ops = 0;
      let failedWrites = 0;
      let wrongReads = 0;
      let running = true;
      const worker = async (w: number) => {
        let version = 0;
        while (running) {
          const tenant = tenants[(w + version) % tenants.length];
          const input = { w, i: version % 40 };
          const id = `${tenant}|${JSON.stringify(input)}`;
          version++;
          if (version % 7 === 0) {
            // getOrSet's scripts (read-or-lock, set-if-generation) meet the migration too.
            const got = await cache.getOrSet({ w, g: version % 5 }, () => version, {
              companyId: tenant,
            });
            if (typeof got !== "number") wrongReads++;
          }
          if (version % 10 === 0) {
            const batch: [unknown, unknown][] = [0, 1, 2].map((k) => [{ w, b: k }, version + k]);
            if (await cache.setMany(batch, { companyId: tenant })) {
              batch.forEach(([key, value]) => acked.set(`${tenant}|${JSON.stringify(key)}`, value));
            } else failedWrites++;
            const read = await cache.getMany(batch.map(([key]) => key), { companyId: tenant });
            if (JSON.stringify(read) !== JSON.stringify(batch.map(([, v]) => v))) wrongReads++;
          } else if (await cache.set(input, version, { companyId: tenant })) {
            acked.set(id, version);
          } else failedWrites++;
          const previous = acked.get(id);
          if (previous !== undefined) {
            const read = await cache.get(input, { companyId: tenant });
            if (read !== previous) wrongReads++;
          }
          ops += 3;
        }
      };
      let clears = 0;
      let wrongClears = 0;
      const churner = async () => {
        const batch: [number, number][] = Array.from({ length: 20 }, (_, i) => [i, i]);
        while (running) {
          if (!(await cache.setMany(batch, { companyId: churn }))) failedWrites++;
          const cleared = await cache.clearCompany(churn);
          const left = await cache.getMany(batch.map(([i]) => i), { companyId: churn });
          if (cleared !== 20 || left.some((value) => value !== null)) {
            wrongClears++;
            log.lines.push(`clear of ${churn} returned ${cleared}, left ${JSON.stringify(left)}`);
          }
          clears++;
        }
      };
      const workers = [...Array.from({ length: 8 }, (_, w) => worker(w)), churner()];
      try {
        await sleep(300);
        const started = Date.now();
        await cluster.reshard(0, 1, moved);
        const reshardMs = Date.now() - started;
        await sleep(300);
        running = false;
        await Promise.all(workers);
        const after = await cluster.slotOwners();
        const migrated = tenants.filter((t) =>
          after[keySlot(layout().scopeRegistries(t)[0])] === 1
        );
        // What the servers answered with while slots moved: redirections the client absorbed.
        const errors = (await onEveryNode(cluster, "INFO", "errorstats")).join("\n");
        const served = (name: string) =>
          [...errors.matchAll(new RegExp(`errorstat_${name}:count=(\\d+)`, "g"))]
            .reduce((sum, match) => sum + Number(match[1]), 0);
        const redirected = served("MOVED") + served("ASK") + served("TRYAGAIN");
        console.log(
          `FIGURES cluster-reshard kind=${kind} slots=${moved} ms=${reshardMs} ops=${ops} ` +
            `clears=${clears} tenants-moved=${migrated.length}/${tenants.length} ` +
            `MOVED=${served("MOVED")} ASK=${served("ASK")} TRYAGAIN=${served("TRYAGAIN")} ` +
            `failed-writes=${failedWrites} wrong-reads=${wrongReads} wrong-clears=${wrongClears} ` +
            `fault-lines=${log.lines.length}`,
        );
        assert.ok(redirected > 0, "the load met no redirection: the test proves nothing");
        assert.ok(migrated.length >= 12, `${migrated.length} tenants moved`);
        assert.ok(acked.size > 100, `${acked.size} entries written`);
        // Every acknowledged write reads back, from wherever its slot lives now.
        let lost = 0;
        for (const [id, value] of acked) {
          const [tenant, input] = id.split("|");
          if ((await cache.get(JSON.parse(input), { companyId: tenant })) !== value) lost++;
        }
        assert.equal(lost, 0, `${lost} of ${acked.size} acknowledged entries lost`);
        assert.equal(failedWrites, 0, log.lines.join("\n"));
        assert.equal(wrongReads, 0);
        assert.ok(clears > 0);
        assert.equal(wrongClears, 0, log.lines.join("\n"));
        for (const line of log.lines) assert.doesNotMatch(line, REDIRECTION);
        assert.deepEqual(log.lines, []);
        // The moved tenants still clear completely.
        for (const tenant of [...tenants, churn]) await cache.clearCompany(tenant);
        // Only getOrSet's generation counters remain (they expire by themselves).
        for (const pattern of ["cache:tenant:*", "cache:registry:*", "cache:lock:*"]) {
          assert.deepEqual(await onEveryNode(cluster, "--scan", "--pattern", pattern), [
            "",
            "",
            "",
          ]);
        }
      } finally {
        running = false;
        await Promise.all(workers);
        await cache.close();
      }
    });

    it("a hung master (SIGSTOP): its slots cost at most the timeout, others keep working", async () => {
      await onEveryNode(cluster, "FLUSHALL");
      const log = collectingLogger();
      const cache = clusterCache(cluster, { logger: log, timeout: 0.5 });
      assert.equal(await cache.connect(), true);
      const owners = await cluster.slotOwners();
      const tenants = Array.from({ length: 30 }, (_, i) => `h${i}`);
      const ownerOf = (tenant: string) => owners[keySlot(layout().scopeRegistries(tenant)[0])];
      for (const tenant of tenants) await cache.set("v", tenant, { companyId: tenant });
      const victim = 1;
      const hung = tenants.filter((t) => ownerOf(t) === victim);
      const alive = tenants.filter((t) => ownerOf(t) !== victim);
      assert.ok(hung.length > 0 && alive.length > 0);
      try {
        cluster.nodes[victim].pause();
        const started = Date.now();
        const [hungGets, hungSets, aliveGets] = await Promise.all([
          Promise.all(hung.map((t) => cache.get("v", { companyId: t }))),
          Promise.all(hung.map((t) => cache.set("w", 1, { companyId: t }))),
          Promise.all(alive.map((t) => cache.get("v", { companyId: t }))),
        ]);
        const took = Date.now() - started;
        assert.deepEqual(hungGets, hung.map(() => null));
        assert.deepEqual(hungSets, hung.map(() => false));
        assert.deepEqual(aliveGets, alive);
        assert.ok(took < 1500, `the calls on the hung master took ${took} ms (timeout 0.5 s)`);
        console.log(`FIGURES cluster-hang kind=${kind} hung-calls-ms=${took} timeout-ms=500`);
      } finally {
        cluster.nodes[victim].resume();
      }
      // Thawed, the master serves its slots again.
      let value: unknown = null;
      for (let i = 0; i < 100 && value === null; i++) {
        value = await cache.get("v", { companyId: hung[0] });
        if (value === null) await sleep(30);
      }
      assert.equal(value, hung[0]);
      assert.ok(log.lines.length >= 1 && log.lines.length <= 10, `${log.lines.length} lines`);
      await cache.close();
    });

    it("a killed master: its slots degrade to misses within the timeout, others keep working", async () => {
      await onEveryNode(cluster, "FLUSHALL");
      const log = collectingLogger();
      const cache = clusterCache(cluster, { logger: log, timeout: 1 });
      assert.equal(await cache.connect(), true);
      const owners = await cluster.slotOwners();
      const tenants = Array.from({ length: 30 }, (_, i) => `k${i}`);
      const ownerOf = (tenant: string) => owners[keySlot(layout().scopeRegistries(tenant)[0])];
      for (const tenant of tenants) await cache.set("v", tenant, { companyId: tenant });
      const victim = 2;
      const dead = tenants.filter((t) => ownerOf(t) === victim);
      const alive = tenants.filter((t) => ownerOf(t) !== victim);
      assert.ok(dead.length > 0 && alive.length > 0);
      try {
        await cluster.nodes[victim].kill();
        const started = Date.now();
        const [deadGets, deadSets, deadExists, aliveGets, aliveSets, mixed] = await Promise.all([
          Promise.all(dead.map((t) => cache.get("v", { companyId: t }))),
          Promise.all(dead.map((t) => cache.set("w", 1, { companyId: t }))),
          Promise.all(dead.map((t) => cache.exists("v", { companyId: t }))),
          Promise.all(alive.map((t) => cache.get("v", { companyId: t }))),
          Promise.all(alive.map((t) => cache.set("w", 2, { companyId: t }))),
          cache.getMany(["v", "w"]),
        ]);
        const took = Date.now() - started;
        assert.deepEqual(deadGets, dead.map(() => null));
        assert.deepEqual(deadSets, dead.map(() => false));
        assert.deepEqual(deadExists, dead.map(() => false));
        assert.deepEqual(aliveGets, alive);
        assert.deepEqual(aliveSets, alive.map(() => true));
        assert.equal(mixed.length, 2);
        assert.ok(took < 2000, `the calls on the dead master took ${took} ms (timeout 1 s)`);
        console.log(`FIGURES cluster-kill kind=${kind} dead-calls-ms=${took}`);
        // Calls on the live masters stay fast and right while the dead one is retried.
        const liveStarted = Date.now();
        for (const t of alive.slice(0, 5)) {
          assert.equal(await cache.get("w", { companyId: t }), 2);
        }
        assert.ok(
          Date.now() - liveStarted < 1000,
          `live calls took ${Date.now() - liveStarted} ms`,
        );
        assert.equal(await cache.clearCompany(alive[0]), 2);
        assert.ok(log.lines.length >= 1 && log.lines.length <= 10, `${log.lines.length} lines`);
      } finally {
        await cache.close();
      }
    });
  });
}

for (const kind of KINDS) {
  describe(`${kind} cluster with AUTH and a custom prefix`, () => {
    it("authenticates on every master, keeps every key under the prefix, refuses a wrong password", async () => {
      const password = "cluster-Pa55";
      await using cluster = await startCluster(kind, { password });
      const logger = collectingLogger();
      const cache = clusterCache(cluster, { logger, configOptions: { password, prefix: "app:" } });
      assert.equal(await cache.connect(), true);
      try {
        const inputs = Array.from({ length: 40 }, (_, i) => ({ q: i }));
        assert.equal(await cache.setMany(inputs.map((input) => [input, input.q] as const)), true);
        assert.equal(await cache.set({ q: "t" }, "tenant", { companyId: "acme" }), true);
        assert.deepEqual(await cache.getMany(inputs), inputs.map((input) => input.q));
        // Every key of the library is under the prefix, and the global scope spans the masters.
        const keys = (await onEveryNode(cluster, "KEYS", "*")).map((out) =>
          out.split("\n").filter(Boolean)
        );
        assert.ok(keys.flat().every((key) => key.startsWith("app:")), keys.flat().join(" "));
        assert.ok(keys.filter((node) => node.length > 0).length >= 2, "spread over masters");
        assert.equal(await cache.clearCompany("acme"), 1);
        assert.equal(await cache.clearAll(), 40);
        assert.equal(await dbsize(cluster), 0);
      } finally {
        await cache.close();
      }
      assert.deepEqual(logger.lines, [], "no fault was logged");

      const wrongLogger = collectingLogger();
      const wrong = clusterCache(cluster, {
        logger: wrongLogger,
        timeout: 1,
        configOptions: { password: "not-the-Pa55", prefix: "app:" },
      });
      try {
        assert.equal(await wrong.connect(), false);
        assert.equal(await wrong.get({ q: 1 }), null);
      } finally {
        await wrong.close();
      }
      const lines = wrongLogger.lines.join("\n");
      assert.match(lines, /authentication failed/i);
      assert.ok(!lines.includes("not-the-Pa55") && !lines.includes(password), lines);
    });
  });
}

/** The admin CLI as an operator runs it (see tests/cache_admin_test.ts). */
function admin(
  args: string[],
  env: Record<string, string>,
): Promise<ProcessRun> {
  const isDeno = "Deno" in globalThis;
  const cli = fileURLToPath(
    new URL(isDeno ? "../scripts/cache_admin.ts" : "../scripts/cache_admin.js", import.meta.url),
  );
  const argv = isDeno ? ["run", "--allow-net", "--allow-env", "--allow-read", cli, ...args] : [
    cli,
    ...args,
  ];
  return runProcess(argv, { env: { ...runtimeEnv(), ...env }, timeoutMs: 60_000 });
}
