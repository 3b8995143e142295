/**
 * Cluster mode configuration: REDIS_CLUSTER_NODES / VALKEY_CLUSTER_NODES and the bucket counts
 * from the environment and from options, and every malformed or contradictory value refused with
 * a CacheConfigError that names it. No server needed.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CacheConfigError,
  hasValkeyEnv,
  RedisCache,
  RedisConfig,
  type RedisConfigOptions,
  ValkeyConfig,
} from "../mod.ts";

function rejects(build: () => unknown, pattern: RegExp): void {
  assert.throws(build, (error: Error) => {
    assert.ok(error instanceof CacheConfigError, `${error.name}: ${error.message}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe("cluster configuration", () => {
  it("REDIS_CLUSTER_NODES selects cluster mode with normalized seeds and default buckets", () => {
    const config = RedisConfig.fromEnv({
      REDIS_CLUSTER_NODES: " 10.0.0.1:7000, redis-b.internal:7001,[::1]:7002,seed-only # prod",
      REDIS_PASSWORD: "pw",
    });
    assert.equal(config.mode, "cluster");
    assert.deepEqual(config.clusterNodes, [
      "10.0.0.1:7000",
      "redis-b.internal:7001",
      "[::1]:7002",
      "seed-only:6379",
    ]);
    assert.equal(config.clusterTenantBuckets, 1);
    assert.equal(config.clusterGlobalBuckets, 16);
    assert.equal(config.password, "pw");
    assert.equal(
      String(config),
      "RedisConfig(redis://:***@10.0.0.1:7000,redis-b.internal:7001,[::1]:7002,seed-only:6379 cluster)",
    );
    const json = JSON.parse(JSON.stringify(config));
    assert.equal(json.mode, "cluster");
    assert.equal(json.clusterNodes.length, 4);
    assert.ok(!JSON.stringify(config).includes('"pw"'));
  });

  it("reads the bucket counts and lets VALKEY_* fall back to REDIS_*", () => {
    const env = {
      REDIS_CLUSTER_NODES: "r1:7000",
      REDIS_CLUSTER_TENANT_BUCKETS: "4 # big tenants",
      VALKEY_CLUSTER_GLOBAL_BUCKETS: "32",
    };
    const redis = RedisConfig.fromEnv(env);
    assert.deepEqual(
      [redis.clusterTenantBuckets, redis.clusterGlobalBuckets],
      [4, 16],
    );
    const valkey = ValkeyConfig.fromEnv(env);
    assert.deepEqual(valkey.clusterNodes, ["r1:7000"]);
    assert.deepEqual([valkey.clusterTenantBuckets, valkey.clusterGlobalBuckets], [4, 32]);
    assert.deepEqual(
      ValkeyConfig.fromEnv({ ...env, VALKEY_CLUSTER_NODES: "v1:7000" }).clusterNodes,
      ["v1:7000"],
    );
    assert.equal(hasValkeyEnv({ VALKEY_CLUSTER_NODES: "v1:7000" }), true);
  });

  it("standalone stays the default; mode cluster without seeds uses host:port", () => {
    const standalone = RedisConfig.fromEnv({ REDIS_HOST: "h" });
    assert.equal(standalone.mode, "standalone");
    assert.deepEqual(standalone.clusterNodes, []);
    assert.equal(JSON.parse(JSON.stringify(standalone)).mode, undefined);
    const single = new RedisConfig({ mode: "cluster", host: "config.endpoint", port: 7000 });
    assert.deepEqual(single.clusterNodes, ["config.endpoint:7000"]);
    const list = new RedisConfig({ clusterNodes: ["a:1", "b:2"], clusterGlobalBuckets: 8 });
    assert.equal(list.mode, "cluster");
    assert.equal(list.clusterGlobalBuckets, 8);
  });

  it("a malformed variable is a CacheConfigError that names it", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ REDIS_CLUSTER_NODES: "a:b:c" }, /REDIS_CLUSTER_NODES.*host:port/],
      [{ REDIS_CLUSTER_NODES: "host:0" }, /REDIS_CLUSTER_NODES/],
      [{ REDIS_CLUSTER_NODES: "host:70000" }, /REDIS_CLUSTER_NODES/],
      [{ REDIS_CLUSTER_NODES: "," }, /REDIS_CLUSTER_NODES/],
      [{ REDIS_CLUSTER_NODES: "redis://h:1" }, /REDIS_CLUSTER_NODES/],
      [{ REDIS_CLUSTER_NODES: "h:1", REDIS_CLUSTER_TENANT_BUCKETS: "0" }, /REDIS_CLUSTER_TENANT/],
      [{ REDIS_CLUSTER_NODES: "h:1", REDIS_CLUSTER_GLOBAL_BUCKETS: "x" }, /REDIS_CLUSTER_GLOBAL/],
      [{ REDIS_CLUSTER_NODES: "h:1", REDIS_CLUSTER_GLOBAL_BUCKETS: "2000" }, /1 to 1024/],
      [{ VALKEY_CLUSTER_NODES: "h" + ":x" }, /VALKEY_CLUSTER_NODES/],
    ];
    for (const [env, pattern] of cases) {
      const build = env.VALKEY_CLUSTER_NODES
        ? () => ValkeyConfig.fromEnv(env)
        : () => RedisConfig.fromEnv(env);
      rejects(build, pattern);
    }
  });

  it("refuses what cannot work on a cluster: braces in the prefix, a database other than 0", () => {
    rejects(
      () => RedisConfig.fromEnv({ REDIS_CLUSTER_NODES: "h:1", REDIS_PREFIX: "app{1}:" }),
      /prefix "app\{1\}:".*REDIS_PREFIX/,
    );
    rejects(
      () => RedisConfig.fromEnv({ REDIS_CLUSTER_NODES: "h:1", REDIS_URL: "redis://h:1/2" }),
      /database 2 for cluster mode/,
    );
    rejects(
      () => new RedisConfig({ mode: "standalone", clusterNodes: "h:1" }),
      /"standalone" was given together with cluster seeds/,
    );
    rejects(
      () => new RedisConfig({ mode: "sharded" } as unknown as RedisConfigOptions),
      /option "mode".*"standalone" or "cluster"/,
    );
    rejects(() => new RedisConfig({ clusterNodes: [7000] as unknown as string[] }), /clusterNodes/);
    // The same prefix is fine standalone (the Python original's layout has no hash tags).
    assert.equal(new RedisConfig({ prefix: "app{1}:" }).prefix, "app{1}:");
  });

  it("a cluster provider is built from seeds without I/O", async () => {
    const cache = new RedisCache({ config: new RedisConfig({ clusterNodes: "127.0.0.1:1" }) });
    assert.equal(cache.client, null);
    assert.equal(cache.config.mode, "cluster");
    await cache.close();
  });
});
