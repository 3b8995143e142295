/** MemoryCache: the in-process provider keeps the semantics of the Redis ones. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CacheInputError, CacheSerializationError, MemoryCache } from "../mod.ts";
import { sleep } from "./_helpers.ts";

describe("MemoryCache", () => {
  it("round-trips through JSON, so cached values cannot be mutated by reference", async () => {
    const cache = new MemoryCache();
    const value = { list: [1, 2], when: new Date(0) };
    await cache.set("k", value);
    value.list.push(3);
    const read = await cache.get<{ list: number[]; when: string }>("k");
    assert.deepEqual(read, { list: [1, 2], when: "1970-01-01T00:00:00.000Z" });
    read!.list.push(4);
    assert.deepEqual((await cache.get<{ list: number[] }>("k"))!.list, [1, 2]);
  });

  it("expires entries after their TTL and keeps null-TTL entries", async () => {
    const cache = new MemoryCache({ ttl: 0.05 });
    await cache.set("short", 1);
    await cache.set("forever", 2, { ttl: null });
    assert.equal(await cache.exists("short"), true);
    await sleep(80);
    assert.equal(await cache.get("short"), null);
    assert.equal(await cache.exists("short"), false);
    assert.equal(await cache.get("forever"), 2);
  });

  it("isolates tenants and counts clears like the Redis providers", async () => {
    const cache = new MemoryCache();
    await cache.setMany([["a", 1], ["b", 2]], { companyId: "acme" });
    await cache.set("a", 3, { companyId: "acme:x" });
    await cache.set("a", 4);
    await cache.set("gone", 5, { ttl: 0.01 });
    await sleep(30);
    assert.deepEqual(await cache.getMany(["a", "b", "c"], { companyId: "acme" }), [1, 2, null]);
    assert.equal(await cache.clearCompany("acme"), 2);
    assert.equal(await cache.get("a", { companyId: "acme:x" }), 3);
    assert.equal(await cache.clearGlobal(), 1, "an expired entry is not counted");
    assert.equal(await cache.get("a", { companyId: "acme:x" }), 3);
    assert.equal(await cache.clearAll(), 1);
    assert.equal(await cache.get("a", { companyId: "acme:x" }), null);
  });

  it("deletes, prunes and rejects bad input like the Redis providers", async () => {
    const cache = new MemoryCache();
    await cache.set("k", 1, { companyId: 5 });
    assert.equal(await cache.get("k", { companyId: "5" }), 1);
    assert.equal(await cache.delete("k", { companyId: 5 }), true);
    assert.equal(await cache.delete("k", { companyId: 5 }), false);
    await cache.setMany([["x", 1], ["y", 2]], { ttl: 0.01 });
    await sleep(30);
    assert.equal(await cache.pruneRegistries(), 2);
    await assert.rejects(() => cache.set("k", NaN), CacheSerializationError);
    await assert.rejects(() => cache.set("k", 1, { companyId: "" }), CacheInputError);
    await assert.rejects(() => cache.set("k", 1, { ttl: 0 }), CacheInputError);
    await assert.rejects(() => cache.setMany([["ok", 1], ["bad", 1n]]), CacheSerializationError);
    assert.equal(await cache.exists("ok"), false, "a rejected batch writes nothing");
    await assert.rejects(() => cache.clearCompany(""), CacheInputError);
  });
});
