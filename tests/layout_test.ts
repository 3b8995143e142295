/**
 * The key layouts (src/layout.ts) and local hash slots (src/slots.ts), without a server: the
 * standalone layout is the Python original's, the cluster layout keeps every script's keys in one
 * slot, never lets two tenants share a key or a registry, and matches docs/cluster.md's example.
 * (tests/cluster_test.ts checks the slots against CLUSTER KEYSLOT on real servers.)
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { entryKey, hashInput, registryKey } from "../src/keys.ts";
import { bucketOf, ClusterLayout, StandaloneLayout } from "../src/layout.ts";
import { registryScope } from "../src/registries.ts";
import { sha256Hex } from "../src/runtime.ts";
import { hashTagOf, keySlot } from "../src/slots.ts";

const TENANTS = [
  "acme",
  "0",
  "a:b",
  "*",
  "{tag}",
  "{",
  "}",
  "}{",
  "a}b{c",
  "#x",
  "x#",
  "acme#1",
  "acme#0",
  "with space",
  "日本語😀",
  "x?[y]\\",
  "#" + sha256Hex("a{b}").slice(0, 16),
  "a{b}",
];

describe("key layouts", () => {
  it("the standalone layout is the Python original's, byte for byte", () => {
    const layout = new StandaloneLayout("cache:");
    const hash = hashInput({ q: 1 });
    for (const tenant of [...TENANTS, undefined]) {
      assert.equal(layout.entryKey("n", hash, tenant), entryKey("cache:", "n", hash, tenant));
      assert.equal(layout.registryKey(hash, tenant), registryKey("cache:", tenant));
      assert.deepEqual(layout.scopeRegistries(tenant), [registryKey("cache:", tenant)]);
    }
  });

  it("a cluster scope's entries share the slot of their bucket's registry", () => {
    for (const [tenantBuckets, globalBuckets] of [[1, 16], [4, 1], [7, 3]]) {
      const layout = new ClusterLayout("app:", { tenantBuckets, globalBuckets });
      for (const tenant of [...TENANTS, undefined]) {
        const registries = layout.scopeRegistries(tenant);
        assert.equal(registries.length, tenant === undefined ? globalBuckets : tenantBuckets);
        for (let i = 0; i < 50; i++) {
          const hash = hashInput({ i });
          const key = layout.entryKey("name", hash, tenant);
          const registry = layout.registryKey(hash, tenant);
          assert.equal(keySlot(key), keySlot(registry), `${key} / ${registry}`);
          assert.notEqual(hashTagOf(key), key, `${key} has a hash tag`);
          assert.ok(registries.includes(registry));
          assert.ok(layout.isRegistry(registry));
          assert.deepEqual(
            registryScope("app:", registry, true),
            tenant === undefined ? { kind: "global" } : { kind: "tenant", companyId: tenant },
          );
        }
      }
    }
  });

  it("two tenants never share a key or a registry, whatever their ids hold", () => {
    for (const tenantBuckets of [1, 4]) {
      const layout = new ClusterLayout("cache:", { tenantBuckets, globalBuckets: 16 });
      const hash = hashInput("same input");
      const owners = new Map<string, string>();
      for (const tenant of [...TENANTS, undefined]) {
        const label = tenant ?? "(global)";
        for (const key of [layout.entryKey("", hash, tenant), ...layout.scopeRegistries(tenant)]) {
          assert.equal(owners.get(key) ?? label, label, `${key} shared`);
          owners.set(key, label);
        }
      }
    }
  });

  it("matches the worked example of docs/cluster.md", () => {
    const hash = hashInput({ report: 7 });
    assert.equal(hash, "9553918edfd5c692863f18fc917d1a04e12e2dfd3e65edc8ca75b43adfe483ed");
    assert.equal(parseInt(hash.slice(0, 8), 16), 2505281934);
    const one = new ClusterLayout("cache:", { tenantBuckets: 1, globalBuckets: 16 });
    const four = new ClusterLayout("cache:", { tenantBuckets: 4, globalBuckets: 16 });
    const rows: [ClusterLayout, string | undefined, string, string, number][] = [
      [one, "acme", "cache:tenant:{acme}::", "cache:registry:tenant:{acme}", 11304],
      [four, "acme", "cache:tenant:{acme#2}::", "cache:registry:tenant:{acme#2}", 14557],
      [
        one,
        "a{b}",
        "cache:tenant:{#b8a4b706093b9c71}:a{b}::",
        "cache:registry:tenant:{#b8a4b706093b9c71}:a{b}",
        3920,
      ],
      [one, undefined, "cache:global:{g14}::", "cache:registry:global:{g14}", 7816],
    ];
    for (const [layout, tenant, entry, registry, slot] of rows) {
      assert.equal(layout.entryKey("", hash, tenant), entry + hash);
      assert.equal(layout.registryKey(hash, tenant), registry);
      assert.equal(keySlot(registry), slot);
    }
    const slots = four.scopeRegistries("acme").map(keySlot);
    assert.deepEqual(slots, [6303, 2238, 14557, 10492]);
    const split = (slot: number) => slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
    const counts = [0, 0, 0];
    for (const registry of one.scopeRegistries()) counts[split(keySlot(registry))]++;
    assert.deepEqual(counts, [6, 5, 5]);
  });

  it("buckets come from the hash's first 32 bits", () => {
    assert.equal(bucketOf("00000005" + "0".repeat(56), 4), 1);
    assert.equal(bucketOf("ffffffff" + "0".repeat(56), 16), 15);
    assert.equal(bucketOf("ffffffff" + "0".repeat(56), 1), 0);
  });

  it("computes hash slots as the cluster does", () => {
    // Values of CLUSTER KEYSLOT (Redis 7).
    assert.equal(keySlot("foo"), 12182);
    assert.equal(keySlot("bar"), 5061);
    assert.equal(keySlot("{user1000}.following"), keySlot("{user1000}.followers"));
    assert.equal(keySlot("foo{}{bar}"), keySlot("foo{}{bar}")); // an empty tag: the whole key
    assert.equal(hashTagOf("foo{}{bar}"), "foo{}{bar}");
    assert.equal(hashTagOf("foo{{bar}}zap"), "{bar");
    assert.equal(hashTagOf("foo{bar}{zap}"), "bar");
    assert.equal(keySlot("日本"), keySlot("{日本}x"));
  });
});
