/**
 * Values JSON cannot carry faithfully, and nesting too deep to handle: every provider (RedisCache,
 * ValkeyCache, MemoryCache) and the facade refuse them with a typed error naming what and where,
 * and write nothing; what JSON does carry (toJSON results such as Date, null-prototype objects,
 * -0, nesting at the limit) is stored and reads back.
 */

import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type CacheBackend,
  cacheGetMany,
  cacheGetOrSet,
  CacheInputError,
  CacheSerializationError,
  cacheSet,
  cacheSetMany,
  closeCache,
  MemoryCache,
  setCache,
} from "../mod.ts";
import { MAX_NESTING_DEPTH } from "../src/keys.ts";
import { serializeValue } from "../src/values.ts";
import { startServer, type TestServer } from "./harness.ts";
import { cacheFor, configFor, KINDS, quietLogger } from "./_helpers.ts";

/** Where the cases run: a provider, and how many keys it holds (entries, registries, locks). */
interface Subject {
  cache: CacheBackend;
  /** What the backend holds besides getOrSet's generation counters: entries, registries, locks. */
  size(): Promise<number>;
  /** Installs the same backend behind the facade. */
  installFacade(): Promise<boolean>;
}

type Kind = (typeof KINDS)[number] | "memory";
const BACKENDS: readonly Kind[] = [...KINDS, "memory"];

/** `levels` arrays nested in each other around `leaf`: `nested(2, 1)` is `[[1]]`. */
function nested(levels: number, leaf: unknown = 1): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

/** `levels` objects nested in each other around `leaf`: `nestedObject(2, null)` is `{a:{a:null}}`. */
function nestedObject(levels: number, leaf: unknown = null): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
}

class Point {
  constructor(public x: number) {}
}

/** Each value JSON would change on the way, and what the error must say (what, then where). */
function lossyValues(): [string, () => unknown, RegExp][] {
  return [
    ["a Map", () => new Map([["a", 1]]), /Map at value: /],
    ["a Set", () => ({ s: new Set([1]) }), /Set at value\.s: /],
    ["an Error", () => [new Error("boom")], /Error at value\[0\]: /],
    ["a RegExp", () => ({ re: /x/g }), /RegExp at value\.re: /],
    ["a Uint8Array", () => new Uint8Array([1, 2]), /Uint8Array at value: /],
    ["an ArrayBuffer", () => ({ buf: new ArrayBuffer(4) }), /ArrayBuffer at value\.buf: /],
    ["a DataView", () => new DataView(new ArrayBuffer(2)), /DataView at value: /],
    ["a WeakMap", () => ({ w: new WeakMap() }), /WeakMap at value\.w: /],
    ["a Promise", () => ({ p: Promise.resolve(1) }), /Promise at value\.p: /],
    ["a boxed number", () => ({ n: Object(1) }), /Number at value\.n: /],
    ["a boxed string", () => [Object("s")], /String at value\[0\]: /],
    ["a class instance", () => ({ "odd key": new Point(1) }), /Point at value\["odd key"\]: /],
    ["a function property", () => ({ f: () => 1 }), /function at value\.f: /],
    ["a symbol property", () => ({ s: Symbol("s") }), /symbol at value\.s: /],
    ["an undefined property", () => ({ a: undefined }), /undefined at value\.a: /],
    ["an array hole", () => [1, , 2], /undefined at value\[1\]: /],
    ["an undefined array entry", () => [1, undefined], /undefined at value\[1\]: /],
    ["a function array entry", () => [() => 1], /function at value\[0\]: /],
    ["NaN under toJSON", () => ({ toJSON: () => ({ a: NaN }) }), /NaN at value\.a: /],
    ["a Map under toJSON", () => ({ d: { toJSON: () => new Map() } }), /Map at value\.d: /],
    ["undefined from toJSON", () => ({ x: { toJSON: () => undefined } }), /undefined at value\.x/],
    ["-Infinity", () => ({ n: -Infinity }), /-Infinity at value\.n: /],
    [
      "a Map deep inside",
      () => ({ items: [0, 1, 2, { when: new Map() }] }),
      /Map at value\.items\[3\]\.when: /,
    ],
    [
      "a circular reference",
      () => {
        const loop: Record<string, unknown> = { a: { b: [] } };
        (loop.a as { b: unknown[] }).b.push(loop);
        return loop;
      },
      /circular reference at value\.a\.b\[0\]: /,
    ],
  ];
}

/** Asserts `call` rejects with a CacheSerializationError whose message matches `message`. */
async function rejectsSerialization(
  call: () => Promise<unknown>,
  message: RegExp,
  label: string,
): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(
      error instanceof CacheSerializationError,
      `${label}: expected CacheSerializationError, got ${error}`,
    );
    assert.match(error.message, message, label);
    return true;
  }, label);
}

/** Asserts `call` rejects with `type` (never a RangeError) whose message names the depth limit. */
async function rejectsTooDeep(
  call: () => Promise<unknown>,
  type: typeof CacheInputError,
  label: string,
): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof type, `${label}: expected ${type.name}, got ${error}`);
    assert.match(error.message, /nested deeper than 1000 levels/, label);
    // The path of a deep value is shortened, so the message stays readable.
    assert.ok(error.message.length < 600, `${label}: message of ${error.message.length} chars`);
    return true;
  }, label);
}

describe("serializeValue", () => {
  const MAX = 1 << 26;

  it("writes exactly what JSON.stringify writes, on the fast path and the toJSON path alike", () => {
    const values: unknown[] = [
      { rows: [1, "two", null], ok: true, n: -0, f: 1.5e-7, big: 2 ** 60 },
      ["é", "😀", "\ud800", "\u2028", '"\\/\n'],
      Object.assign(Object.create(null), { z: 1, a: [[], {}] }),
      { when: new Date("2026-11-25T08:00:00.000Z"), later: [{ at: new Date(0) }], n: -0 },
      { custom: { toJSON: (key: string) => ({ key, list: [1, { deep: "x" }] }) } },
      new Date(NaN), // toJSON gives null: carriable
    ];
    for (const value of values) assert.equal(serializeValue(value, MAX), JSON.stringify(value));
  });

  it("counts depth through toJSON results", () => {
    const wrapped = (levels: number) => ({ toJSON: () => nested(levels) });
    assert.equal(serializeValue(wrapped(MAX_NESTING_DEPTH), MAX), JSON.stringify(nested(1000)));
    assert.throws(() => serializeValue(wrapped(MAX_NESTING_DEPTH + 1), MAX), /deeper than 1000/);
    // One level for the array around it: 999 inside fits, 1000 does not.
    assert.equal(serializeValue([wrapped(999)], MAX).length, 2 + 1999);
    assert.throws(
      () => serializeValue([wrapped(1000)], MAX),
      /deeper than 1000 levels at value\[0\]/,
    );
  });

  it("a toJSON or getter that stores a value itself does not disturb the outer check", () => {
    const inner = { toJSON: () => ({ stored: serializeValue({ a: [1, new Date(0)] }, MAX) }) };
    assert.throws(
      () => serializeValue({ first: inner, then: [1, new Set()] }, MAX),
      /Set at value\.then\[1\]: /,
    );
    const getter = {
      get g() {
        return serializeValue([1, 2], MAX);
      },
      bad: [undefined],
    };
    assert.throws(() => serializeValue(getter, MAX), /undefined at value\.bad\[0\]: /);
    assert.equal(serializeValue({ first: inner }, MAX), JSON.stringify({ first: inner }));
  });

  it("a toJSON or getter that throws is a CacheSerializationError keeping the cause", () => {
    const boom = new Error("boom");
    for (
      const value of [
        {
          toJSON: () => {
            throw boom;
          },
        },
        {
          get g() {
            throw boom;
          },
        },
        [new Date(0), {
          get g() {
            throw boom;
          },
        }],
      ]
    ) {
      assert.throws(() => serializeValue(value, MAX), (error: unknown) => {
        assert.ok(error instanceof CacheSerializationError);
        assert.equal(error.cause, boom);
        assert.match(error.message, /threw: boom/);
        return true;
      });
    }
  });
});

for (const kind of BACKENDS) {
  describe(`${kind} values JSON cannot carry`, () => {
    let server: TestServer | undefined;
    let subject: Subject;

    before(async () => {
      if (kind === "memory") {
        const cache = new MemoryCache();
        subject = {
          cache,
          // clearAll counts what it deletes; what it deletes was written.
          size: () => cache.clearAll(),
          installFacade: () => setCache({ provider: "memory" }),
        };
        return;
      }
      const started = await startServer(kind);
      server = started;
      const cache = cacheFor(started);
      assert.equal(await cache.connect(), true);
      subject = {
        cache,
        size: async () => {
          // getOrSet keeps per-scope generation counters (its clear detection): not entries.
          const keys = (await started.cli("KEYS", "*")).split("\n").filter(Boolean);
          return keys.filter((key) => !key.startsWith("cache:generation:")).length;
        },
        installFacade: () =>
          setCache({ provider: kind, config: configFor(started), logger: quietLogger() }),
      };
    });
    after(async () => {
      await subject?.cache.close();
      await server?.stop();
    });
    afterEach(async () => {
      await closeCache();
      await subject.cache.clearAll();
      if (server) await server.cli("FLUSHDB");
    });

    it("set, setMany and getOrSet refuse each one, naming what and where; nothing is written", async () => {
      const { cache } = subject;
      for (const [label, make, message] of lossyValues()) {
        await rejectsSerialization(() => cache.set("k", make()), message, `set ${label}`);
        await rejectsSerialization(
          () => cache.setMany([["ok", 1], ["k", make()]]),
          message,
          `setMany ${label}`,
        );
        // getOrSet's computed value: a typed error to the caller and nothing stored (not even the
        // lock), as for a compute() result that cannot be serialized at all.
        await rejectsSerialization(
          () => cache.getOrSet("k", () => make()),
          message,
          `getOrSet ${label}`,
        );
        await rejectsSerialization(
          () => cache.getOrSet("k", () => Promise.resolve(make())),
          message,
          `getOrSet async ${label}`,
        );
      }
      assert.equal(await cache.exists("ok"), false, "a refused setMany stored none of its entries");
      assert.equal(await cache.exists("k"), false);
      assert.equal(await subject.size(), 0, "nothing written");
      // The cache still works after every refusal.
      assert.deepEqual(await cache.getOrSet("k", () => ({ fine: true })), { fine: true });
      assert.deepEqual(await cache.get("k"), { fine: true });
    });

    it("stores what JSON carries faithfully, toJSON results included", async () => {
      const { cache } = subject;
      const bare = Object.assign(Object.create(null), { b: 2, a: [1] });
      const withToJson = { toJSON: (key: string) => ({ key, plain: [1, "two"] }) };
      class Money {
        constructor(readonly cents: number) {}
        toJSON() {
          return { cents: this.cents, currency: "EUR" };
        }
      }
      const shared = { v: 1 };
      const cases: [string, unknown, unknown][] = [
        ["a Date (its ISO string)", { when: new Date("2026-11-25T08:00:00.000Z") }, {
          when: "2026-11-25T08:00:00.000Z",
        }],
        ["a null-prototype object", bare, { b: 2, a: [1] }],
        ["-0 (a number, written 0)", { n: -0 }, { n: 0 }],
        ["a toJSON's plain result, with its key", { x: withToJson }, {
          x: { key: "x", plain: [1, "two"] },
        }],
        ["a class with toJSON", [new Money(150)], [{ cents: 150, currency: "EUR" }]],
        ["shared references", [shared, { s: shared }], [{ v: 1 }, { s: { v: 1 } }]],
        ["null in arrays and objects", { a: null, b: [null, 1] }, { a: null, b: [null, 1] }],
        ["scalars", ["s", 1.5, true, false, 0], ["s", 1.5, true, false, 0]],
      ];
      for (const [label, value, readBack] of cases) {
        assert.equal(await cache.set(label, value), true, label);
        assert.deepEqual(await cache.get(label), readBack, label);
      }
      assert.equal(await cache.setMany(cases.map(([label, value]) => [[label], value])), true);
      assert.deepEqual(
        await cache.getMany(cases.map(([label]) => [label])),
        cases.map(([, , readBack]) => readBack),
      );
      assert.deepEqual(await cache.getOrSet("computed", () => ({ when: new Date(0) })), {
        when: "1970-01-01T00:00:00.000Z",
      });
    });

    it("the facade refuses them too, and stores nothing", async () => {
      assert.equal(await subject.installFacade(), true);
      await rejectsSerialization(
        () => cacheSet("k", new Map([["a", 1]])),
        /Map at value: /,
        "cacheSet",
      );
      await rejectsSerialization(
        () => cacheSetMany([["ok", 1], ["k", { a: undefined }]]),
        /undefined at value\.a: /,
        "cacheSetMany",
      );
      await rejectsSerialization(
        () => cacheGetOrSet("k", () => ({ bytes: new Uint8Array([1]) })),
        /Uint8Array at value\.bytes: /,
        "cacheGetOrSet",
      );
      assert.deepEqual(await cacheGetMany(["ok", "k"]), [null, null]);
      assert.equal(await subject.size(), 0);
    });

    it("a key input or value nested 10,000 or 100,000 levels deep is a typed error, never a RangeError", async () => {
      const { cache } = subject;
      for (const levels of [MAX_NESTING_DEPTH + 1, 10_000, 100_000]) {
        // Arrays around a number, and objects around null (null once sent a deep check down the
        // value recursively).
        for (
          const [shape, deep] of [["arrays", nested(levels)], ["objects", nestedObject(levels)]]
        ) {
          const label = `${levels} levels of ${shape}`;
          const calls: [string, () => Promise<unknown>][] = [
            ["get", () => cache.get(deep)],
            ["set", () => cache.set(deep, 1)],
            ["exists", () => cache.exists(deep)],
            ["delete", () => cache.delete(deep)],
            ["getMany", () => cache.getMany(["ok", deep])],
            ["setMany", () => cache.setMany([["ok", 1], [deep, 1]])],
            ["getOrSet", () => cache.getOrSet(deep, () => 1)],
          ];
          for (const [call, run] of calls) {
            await rejectsTooDeep(run, CacheInputError, `${call} input, ${label}`);
          }
          await rejectsTooDeep(
            () => cache.set("k", deep),
            CacheSerializationError,
            `set value, ${label}`,
          );
          await rejectsTooDeep(
            () => cache.setMany([["ok", 1], ["k", deep]]),
            CacheSerializationError,
            `setMany value, ${label}`,
          );
          await rejectsTooDeep(
            () => cache.getOrSet("k", () => deep),
            CacheSerializationError,
            `getOrSet value, ${label}`,
          );
        }
      }
      assert.equal(await subject.size(), 0, "nothing written");
    });

    it("nesting exactly at the limit (1,000 levels) is stored and reads back", async () => {
      const { cache } = subject;
      assert.equal(MAX_NESTING_DEPTH, 1000);
      const input = nestedObject(MAX_NESTING_DEPTH, "leaf");
      const value = nested(MAX_NESTING_DEPTH, null);
      assert.equal(await cache.set(input, value), true);
      assert.deepEqual(await cache.get(input), value);
      assert.equal(await cache.exists(input), true);
      assert.deepEqual(await cache.getMany([input, "missing"]), [value, null]);
      const other = nested(MAX_NESTING_DEPTH, "other");
      assert.equal(await cache.setMany([[other, nestedObject(MAX_NESTING_DEPTH)]]), true);
      assert.deepEqual(await cache.get(other), nestedObject(MAX_NESTING_DEPTH));
      assert.deepEqual(await cache.getOrSet("computed", () => value), value);
      assert.deepEqual(await cache.get("computed"), value);
      assert.equal(await cache.delete(input), true);
    });

    it("the facade refuses too-deep inputs and values alike", async () => {
      assert.equal(await subject.installFacade(), true);
      const deep = nested(10_000);
      await rejectsTooDeep(() => cacheSet(deep, 1), CacheInputError, "cacheSet input");
      await rejectsTooDeep(() => cacheGetMany([deep]), CacheInputError, "cacheGetMany input");
      await rejectsTooDeep(() => cacheSet("k", deep), CacheSerializationError, "cacheSet value");
      await rejectsTooDeep(
        () => cacheSetMany([["k", deep]]),
        CacheSerializationError,
        "cacheSetMany value",
      );
      assert.equal(await subject.size(), 0);
    });
  });
}
