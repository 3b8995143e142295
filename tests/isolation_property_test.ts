/**
 * Tenant isolation, as a property: 1,000 random operations (10,000 under `CACHE_SOAK=1`) over
 * tenant ids drawn from nasty strings (`:`, `*`, `?`, `[`, `{}`, `\`, spaces, newlines, unicode,
 * 1 KB ids, "0" and 0) and the global scope, checked against a model held in memory. Every read
 * must return what the model holds for that scope; after every clear the server must hold
 * exactly the model's entries (no entry lost, none leaked) and each registry exactly the keys of
 * its own scope.
 *
 * The run is seeded: set `ISOLATION_SEED` to replay a failure (the seed is in the message).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { CacheInputError } from "../mod.ts";
import { entryKey, hashInput, normalizeCompanyId, registryKey } from "../src/keys.ts";
import { startServer } from "./harness.ts";
import { type AnyCache, cacheFor, KINDS } from "./_helpers.ts";

const OPS = process.env.CACHE_SOAK === "1" ? 10_000 : 1_000;
const PREFIX = "cache:";
const NAME = "";

/** Tenant ids chosen to break naive key building, globbing and line-based tooling. */
const TENANTS: (string | number)[] = [
  "a",
  "a:b",
  "a:b:",
  ":",
  "::",
  "a:",
  ":a",
  "*",
  "a*",
  "?",
  "a?",
  "[",
  "]",
  "[ab]",
  "[^a]",
  "{}",
  "{a}",
  "\\",
  "a\\*",
  "\\\\",
  " ",
  "with space",
  " a ",
  "\n",
  "line\nbreak",
  "\r\n",
  "\t",
  "\u0000",
  "日本語",
  "😀",
  "e\u0301",
  "\u00e9",
  "tenant:a",
  "registry:global",
  "registry",
  "global",
  "x".repeat(1024),
  "😀".repeat(256),
  "0",
  0,
  "00",
  42,
  "42",
  -1,
  "-1",
];

const INPUTS: unknown[] = [
  "k",
  "K",
  1,
  1.5,
  0,
  true,
  null,
  [],
  {},
  { q: 1 },
  { q: "1" },
  ["a", 1],
  "a:b",
  "*",
  "日本",
  { nested: { deep: [1, { x: "y" }] } },
];

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    let t = (state += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The commands of the raw client the checks need (ioredis and iovalkey both have them). */
interface RawClient {
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  type(key: string): Promise<string>;
  smembers(key: string): Promise<string[]>;
}

/** Every key under the prefix, by SCAN (binary-safe, unlike the CLI's line output). */
async function serverKeys(client: RawClient): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await client.scan(cursor, "MATCH", `${PREFIX}*`, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys;
}

const GLOBAL = "\u0000global-scope";

class Model {
  /** scope (normalized tenant id, or GLOBAL) → entry key → JSON text of the value. */
  readonly scopes = new Map<string, Map<string, string>>();

  #scope(companyId: string | number | undefined): Map<string, string> {
    const scope = normalizeCompanyId(companyId) ?? GLOBAL;
    let entries = this.scopes.get(scope);
    if (!entries) this.scopes.set(scope, entries = new Map());
    return entries;
  }

  set(key: string, value: unknown, companyId?: string | number): void {
    this.#scope(companyId).set(key, JSON.stringify(value));
  }

  get(key: string, companyId?: string | number): unknown {
    const text = this.#scope(companyId).get(key);
    return text === undefined ? null : JSON.parse(text);
  }

  delete(key: string, companyId?: string | number): boolean {
    return this.#scope(companyId).delete(key);
  }

  clear(scope: string): number {
    const size = this.scopes.get(scope)?.size ?? 0;
    this.scopes.delete(scope);
    return size;
  }

  clearAll(): number {
    let size = 0;
    for (const entries of this.scopes.values()) size += entries.size;
    this.scopes.clear();
    return size;
  }

  allKeys(): Set<string> {
    const keys = new Set<string>();
    for (const entries of this.scopes.values()) for (const key of entries.keys()) keys.add(key);
    return keys;
  }
}

function keyOf(input: unknown, companyId?: string | number): string {
  return entryKey(PREFIX, NAME, hashInput(input), normalizeCompanyId(companyId));
}

/** After a clear: the server holds exactly the model's entries, registries their own scope's. */
async function checkServer(
  client: RawClient,
  model: Model,
): Promise<{ lost: number; leaked: number; misregistered: number }> {
  const keys = await serverKeys(client);
  const registryPrefix = `${PREFIX}registry:`;
  const entries = new Set(keys.filter((key) => !key.startsWith(registryPrefix)));
  const registries = keys.filter((key) => key.startsWith(registryPrefix));
  const expected = model.allKeys();
  const lost = [...expected].filter((key) => !entries.has(key));
  const leaked = [...entries].filter((key) => !expected.has(key));
  assert.deepEqual(lost, [], "entries of the model missing on the server");
  assert.deepEqual(leaked, [], "entries on the server the model does not hold");
  // Each non-empty scope has its registry, holding exactly that scope's keys; no other registry.
  const expectedRegistries = new Map<string, Set<string>>();
  for (const [scope, scopeEntries] of model.scopes) {
    if (scopeEntries.size === 0) continue;
    const registry = registryKey(PREFIX, scope === GLOBAL ? undefined : scope);
    expectedRegistries.set(registry, new Set(scopeEntries.keys()));
  }
  let misregistered = 0;
  for (const registry of registries) {
    assert.equal(await client.type(registry), "set", `${JSON.stringify(registry)} is a set`);
    const want = expectedRegistries.get(registry);
    assert.ok(want, `registry ${JSON.stringify(registry.slice(0, 120))} of an empty scope`);
    const members = await client.smembers(registry);
    misregistered += members.filter((member) => !want.has(member)).length;
    assert.deepEqual(
      new Set(members),
      want,
      `members of ${JSON.stringify(registry.slice(0, 120))}`,
    );
  }
  assert.equal(registries.length, expectedRegistries.size, "one registry per non-empty scope");
  return { lost: lost.length, leaked: leaked.length, misregistered };
}

for (const kind of KINDS) {
  describe(`${kind} tenant isolation property`, () => {
    it(`${OPS} random operations over nasty tenant ids match an in-memory model`, async () => {
      const seed = Number(process.env.ISOLATION_SEED ?? Math.floor(Math.random() * 2 ** 31));
      await using server = await startServer(kind);
      const cache: AnyCache = cacheFor(server);
      assert.equal(await cache.connect(), true);
      const client = cache.client as unknown as RawClient;
      const random = prng(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
      const scope = (): string | number | undefined => random() < 0.15 ? undefined : pick(TENANTS);
      const options = (companyId: string | number | undefined) =>
        companyId === undefined ? {} : { companyId };
      const model = new Model();
      const counts = { ops: 0, clears: 0, checks: 0, lost: 0, leaked: 0, misregistered: 0 };
      let step = "";
      try {
        for (let i = 0; i < OPS; i++) {
          counts.ops++;
          const companyId = scope();
          const input = pick(INPUTS);
          const r = random();
          step = `#${i} companyId=${JSON.stringify(companyId)} input=${JSON.stringify(input)}`;
          if (r < 0.35) {
            const value = { i, tenant: companyId ?? null, text: pick(["", "x", "日本", "\n"]) };
            step = `set ${step}`;
            assert.equal(await cache.set(input, value, options(companyId)), true);
            model.set(keyOf(input, companyId), value, companyId);
          } else if (r < 0.5) {
            step = `get ${step}`;
            assert.deepEqual(
              await cache.get(input, options(companyId)),
              model.get(keyOf(input, companyId), companyId),
            );
          } else if (r < 0.58) {
            step = `exists ${step}`;
            assert.equal(
              await cache.exists(input, options(companyId)),
              model.get(keyOf(input, companyId), companyId) !== null,
            );
          } else if (r < 0.68) {
            step = `delete ${step}`;
            assert.equal(
              await cache.delete(input, options(companyId)),
              model.delete(keyOf(input, companyId), companyId),
            );
          } else if (r < 0.76) {
            const inputs = [input, pick(INPUTS), pick(INPUTS)];
            step = `getMany ${step}`;
            assert.deepEqual(
              await cache.getMany(inputs, options(companyId)),
              inputs.map((each) => model.get(keyOf(each, companyId), companyId)),
            );
          } else if (r < 0.84) {
            const entries: [unknown, unknown][] = [[input, { many: i }], [pick(INPUTS), i]];
            step = `setMany ${step}`;
            assert.equal(await cache.setMany(entries, options(companyId)), true);
            for (const [each, value] of entries) {
              model.set(keyOf(each, companyId), value, companyId);
            }
          } else {
            counts.clears++;
            if (r < 0.95 && companyId !== undefined) {
              step = `clearCompany ${step}`;
              const id = normalizeCompanyId(companyId)!;
              assert.equal(await cache.clearCompany(companyId), model.clear(id));
            } else if (r < 0.995) {
              step = `clearGlobal ${step}`;
              assert.equal(await cache.clearGlobal(), model.clear(GLOBAL));
            } else {
              step = `clearAll ${step}`;
              assert.equal(await cache.clearAll(), model.clearAll());
            }
            const found = await checkServer(client, model);
            counts.checks++;
            counts.lost += found.lost;
            counts.leaked += found.leaked;
            counts.misregistered += found.misregistered;
          }
        }
        await checkServer(client, model);
        counts.checks++;
      } catch (error) {
        throw new Error(
          `Isolation property failed at ${step} with seed ${seed} (replay: ISOLATION_SEED=${seed}): ${
            (error as Error).message
          }`,
          { cause: error },
        );
      } finally {
        await cache.close();
      }
      console.log(
        `FIGURES property=isolation kind=${kind} seed=${seed} ops=${counts.ops} ` +
          `clears=${counts.clears} checks=${counts.checks} tenants=${TENANTS.length} ` +
          `lost=${counts.lost} leaked=${counts.leaked} misregistered=${counts.misregistered}`,
      );
    });

    it("a tenant id with a lone surrogate is refused: it would collide on the server", async () => {
      await using server = await startServer(kind);
      const cache = cacheFor(server);
      assert.equal(await cache.connect(), true);
      try {
        for (const id of ["a\ud800", "a\udbff", "\udc00b", "x\udfffy"]) {
          await assert.rejects(() => cache.set("k", 1, { companyId: id }), CacheInputError);
          await assert.rejects(() => cache.get("k", { companyId: id }), CacheInputError);
          await assert.rejects(() => cache.clearCompany(id), CacheInputError);
        }
        assert.equal(
          await cache.set("k", 1, { companyId: "a\ud83d\ude00" }),
          true,
          "a pair is fine",
        );
        assert.equal(await server.cli("DBSIZE"), "2");
      } finally {
        await cache.close();
      }
    });
  });
}
