/**
 * RedisCache and ValkeyCache on a real 3-master Redis Cluster / Valkey Cluster (started by
 * tests/cluster_harness.ts): the provider and facade behaviour suite on the hash-tagged layout,
 * tenant buckets spread over masters, the slot spread of the 16-bucket global scope, a reshard
 * under load, and a killed master. One cluster per kind serves every step, in order: the reshard
 * and the kill come last.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
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
import { keySlot, startCluster, type TestCluster } from "./cluster_harness.ts";
import {
  type AnyCache,
  collectingLogger,
  commandCalls,
  KINDS,
  luaSha,
  quietLogger,
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
        assert.ok(scriptCalls >= 2 && scriptCalls <= 16, `${scriptCalls} script calls`);
        const mgets = await clusterCalls(cluster, "mget");
        assert.ok(mgets <= 16 + 1 + 16 + 1, `${mgets} MGETs`);
        const many: [number, number][] = Array.from({ length: 2500 }, (_, i) => [i, i]);
        assert.equal(await cache.setMany(many, { companyId: "big" }), true);
        assert.equal(await cluster.cli("SCARD", "cache:registry:tenant:{big}"), "2500");
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

    it("spreads the 16-bucket global scope over the 3 masters", async () => {
      const owners = await cluster.slotOwners();
      const counts = [0, 0, 0];
      for (const registry of layout().scopeRegistries()) counts[owners[keySlot(registry)]]++;
      console.log(`FIGURES cluster-spread kind=${kind} masters=${counts.join("/")}`);
      assert.equal(counts.reduce((a, b) => a + b), 16);
      assert.ok(counts.every((n) => n >= 1), `buckets per master: ${counts.join("/")}`);
    });
  });
}
