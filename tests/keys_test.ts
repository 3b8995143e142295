/**
 * Key layout: canonical JSON byte-identical to Python's `json.dumps(input, sort_keys=True)`,
 * checked against vectors computed by the Python original, plus the rejections and helpers.
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { EntryKeys } from "../src/entry_keys.ts";
import { CacheInputError } from "../src/errors.ts";
import {
  canonicalJson,
  entryKey,
  globEscape,
  hashInput,
  MAX_NESTING_DEPTH,
  normalizeCompanyId,
  registryKey,
} from "../src/keys.ts";
import { ClusterLayout, StandaloneLayout } from "../src/layout.ts";
import { sha256Hex } from "../src/runtime.ts";

interface VectorRow {
  prefix: string;
  name: string;
  companyId: string | null;
  input: unknown;
  canonical: string;
  key: string;
}

describe("Python vectors", () => {
  it("gives every row's canonical JSON and key", async () => {
    // The Node run executes a compiled copy of this file elsewhere; it names the file instead.
    const override = process.env.PYTHON_KEYS_VECTORS;
    const url = override
      ? pathToFileURL(override)
      : new URL("./fixtures/python_keys.json", import.meta.url);
    const rows: VectorRow[] = JSON.parse(await readFile(url, "utf8"));
    assert.ok(rows.length > 50, `expected the full vector file, got ${rows.length} rows`);
    rows.forEach((row, i) => {
      assert.equal(canonicalJson(row.input), row.canonical, `row ${i}: canonical JSON`);
      const key = entryKey(row.prefix, row.name, hashInput(row.input), row.companyId ?? undefined);
      assert.equal(key, row.key, `row ${i}: key`);
    });
  });
});

describe("canonicalJson", () => {
  it("uses Python's separators and sorts keys recursively", () => {
    assert.equal(
      canonicalJson({ z: { b: 1, a: [true, null] }, a: "x" }),
      '{"a": "x", "z": {"a": [true, null], "b": 1}}',
    );
    assert.equal(canonicalJson([]), "[]");
    assert.equal(canonicalJson({}), "{}");
  });

  it("sorts keys by code point, not UTF-16 code unit", () => {
    // UTF-16 order would put U+1F600 (a surrogate pair, 0xD83D...) before U+FFFF.
    assert.equal(
      canonicalJson({ "\u{1F600}": 1, "\uffff": 2, "\ue000": 3, a: 4 }),
      '{"a": 4, "\\ue000": 3, "\\uffff": 2, "\\ud83d\\ude00": 1}',
    );
    // An astral character sorts above a lone high surrogate followed by U+FFFF.
    assert.equal(
      canonicalJson({ "\ud83d\uffff": 1, "\u{1F600}": 2 }),
      '{"\\ud83d\\uffff": 1, "\\ud83d\\ude00": 2}',
    );
  });

  it("escapes like ensure_ascii and leaves / alone", () => {
    assert.equal(
      canonicalJson('a"b\\c/d\n\r\t\b\f\u0000\u007f\u00e9\u2028\u{1F600}\ud800'),
      '"a\\"b\\\\c/d\\n\\r\\t\\b\\f\\u0000\\u007f\\u00e9\\u2028\\ud83d\\ude00\\ud800"',
    );
    assert.equal(canonicalJson(" ~plain"), '" ~plain"');
  });

  it("writes -0 as 0 and safe integers as integers", () => {
    assert.equal(canonicalJson(-0), "0");
    assert.equal(canonicalJson([0, -0, 42, -7]), "[0, 0, 42, -7]");
    assert.equal(canonicalJson(Number.MAX_SAFE_INTEGER), "9007199254740991");
    assert.equal(canonicalJson(-Number.MAX_SAFE_INTEGER), "-9007199254740991");
  });

  it("writes integers beyond 2^53-1 as Python's repr(float)", () => {
    assert.equal(canonicalJson(2 ** 53), "9007199254740992.0");
    assert.equal(canonicalJson(-(2 ** 53)), "-9007199254740992.0");
    assert.equal(canonicalJson(1e16), "1e+16");
    assert.equal(canonicalJson(2 ** 60), "1.152921504606847e+18");
    assert.equal(canonicalJson(1e22), "1e+22");
    assert.equal(canonicalJson(1.7976931348623157e308), "1.7976931348623157e+308");
  });

  it("writes other floats as Python's repr(float)", () => {
    assert.equal(canonicalJson(0.1), "0.1");
    assert.equal(canonicalJson(-2.25), "-2.25");
    assert.equal(canonicalJson(123456.789), "123456.789");
    assert.equal(canonicalJson(0.0001), "0.0001");
    assert.equal(canonicalJson(1.5e-5), "1.5e-05");
    assert.equal(canonicalJson(1e-7), "1e-07");
    assert.equal(canonicalJson(5e-324), "5e-324");
    assert.equal(canonicalJson(1e15 + 0.5), "1000000000000000.5");
  });

  it("replaces values by their toJSON result, passing the key", () => {
    const when = new Date("2026-11-25T08:00:00.000Z");
    assert.equal(canonicalJson({ when }), '{"when": "2026-11-25T08:00:00.000Z"}');
    const seen: string[] = [];
    const custom = {
      toJSON(key: string) {
        seen.push(key);
        return { b: 1, a: [key] };
      },
    };
    assert.equal(canonicalJson([custom]), '[{"a": ["0"], "b": 1}]');
    assert.deepEqual(seen, ["0"]);
    // toJSON is applied once: returning `this` does not recurse forever.
    class Self {
      x = 1;
      toJSON() {
        return this;
      }
    }
    assert.throws(() => canonicalJson(new Self()), CacheInputError);
  });

  it("accepts null-prototype objects and shared (non-circular) references", () => {
    const bare = Object.create(null);
    bare.b = 2;
    bare.a = 1;
    assert.equal(canonicalJson(bare), '{"a": 1, "b": 2}');
    const shared = { v: 1 };
    assert.equal(canonicalJson([shared, shared]), '[{"v": 1}, {"v": 1}]');
  });
});

describe("canonicalJson rejections", () => {
  const circular: Record<string, unknown> = { a: { b: [] } };
  (circular.a as Record<string, unknown[]>).b.push(circular);
  class Point {
    constructor(public x: number) {}
  }
  const cases: [string, unknown, RegExp][] = [
    ["undefined at the root", undefined, /undefined at input: /],
    ["an undefined property", { a: [1, { b: undefined }] }, /undefined at input\.a\[1\]\.b: /],
    ["an array hole", [1, , 2], /undefined at input\[1\]/],
    ["a function", { f: () => 1 }, /function at input\.f: /],
    ["a symbol", [Symbol("s")], /symbol at input\[0\]: /],
    ["a BigInt", { n: 1n }, /BigInt at input\.n: /],
    ["NaN", { x: NaN }, /NaN at input\.x: /],
    ["Infinity", [Infinity], /Infinity at input\[0\]: /],
    ["-Infinity", -Infinity, /-Infinity at input: /],
    ["a circular reference", circular, /circular reference at input\.a\.b\[0\]: /],
    ["a Map", { m: new Map() }, /Map at input\.m: /],
    ["a Set", new Set([1]), /Set at input: /],
    ["a class instance", { "odd key": new Point(1) }, /Point at input\["odd key"\]: /],
    ["a RegExp", /x/, /RegExp at input: /],
    ["a toJSON returning undefined", { toJSON: () => undefined }, /undefined at input: /],
  ];
  for (const [label, input, message] of cases) {
    it(`rejects ${label}`, () => {
      assert.throws(() => canonicalJson(input), (error: unknown) => {
        assert.ok(error instanceof CacheInputError, `expected CacheInputError, got ${error}`);
        assert.match(error.message, message);
        return true;
      });
      assert.throws(() => hashInput(input), CacheInputError);
    });
  }
});

describe("canonicalJson nesting depth", () => {
  const arrays = (levels: number, leaf: unknown = 1) => {
    let input = leaf;
    for (let i = 0; i < levels; i++) input = [input];
    return input;
  };
  const objects = (levels: number, leaf: unknown = null) => {
    let input = leaf;
    for (let i = 0; i < levels; i++) input = { a: input };
    return input;
  };

  it("accepts exactly MAX_NESTING_DEPTH (1,000) levels", () => {
    assert.equal(MAX_NESTING_DEPTH, 1000);
    assert.equal(canonicalJson(arrays(1000)), "[".repeat(1000) + "1" + "]".repeat(1000));
    assert.equal(
      canonicalJson(objects(1000)),
      '{"a": '.repeat(1000) + "null" + "}".repeat(1000),
    );
    assert.match(hashInput(objects(1000, "x")), /^[0-9a-f]{64}$/);
  });

  for (const levels of [1001, 10_000, 100_000]) {
    it(`refuses ${levels} levels with a CacheInputError, never a RangeError`, () => {
      for (const input of [arrays(levels), objects(levels), [{ k: objects(levels) }]]) {
        for (const call of [() => canonicalJson(input), () => hashInput(input)]) {
          assert.throws(call, (error: unknown) => {
            assert.ok(error instanceof CacheInputError, `expected CacheInputError, got ${error}`);
            assert.match(error.message, /nested deeper than 1000 levels at input[[.]/);
            assert.match(error.message, /\(1000 steps\)/, "the path is shortened, not 1000 steps");
            assert.ok(error.message.length < 400, `message of ${error.message.length} chars`);
            return true;
          });
        }
      }
    });
  }

  it("counts depth through toJSON results", () => {
    const wrapped = { toJSON: () => arrays(1000) };
    assert.throws(() => canonicalJson([wrapped]), /nested deeper than 1000 levels/);
    assert.equal(canonicalJson({ toJSON: () => arrays(999) }).length, 1999);
  });
});

describe("hashInput", () => {
  it("is the SHA-256 of the canonical JSON", () => {
    const input = { user_id: 123, query: "expensive operation", page: 2 };
    assert.equal(
      hashInput(input),
      sha256Hex('{"page": 2, "query": "expensive operation", "user_id": 123}'),
    );
    assert.equal(hashInput("abc"), sha256Hex('"abc"'));
    assert.notEqual(hashInput({ a: 1 }), hashInput({ a: "1" }));
  });
});

describe("normalizeCompanyId", () => {
  it("keeps undefined as the global scope", () => {
    assert.equal(normalizeCompanyId(undefined), undefined);
  });

  it("accepts non-empty strings as they are and safe integers as decimal text", () => {
    assert.equal(normalizeCompanyId("acme"), "acme");
    assert.equal(normalizeCompanyId(" a:b*{ü} "), " a:b*{ü} ");
    assert.equal(normalizeCompanyId(0), "0");
    assert.equal(normalizeCompanyId(-0), "0");
    assert.equal(normalizeCompanyId(123), "123");
    assert.equal(normalizeCompanyId(-5), "-5");
  });

  const bad: [string, unknown][] = [
    ["an empty string", ""],
    ["null", null],
    ["a fraction", 1.5],
    ["NaN", NaN],
    ["Infinity", Infinity],
    ["an unsafe integer", 2 ** 53],
    ["a boolean", true],
    ["an object", {}],
    ["an array", ["a"]],
    ["a BigInt", 1n],
  ];
  for (const [label, companyId] of bad) {
    it(`rejects ${label}`, () => {
      assert.throws(() => normalizeCompanyId(companyId), (error: unknown) => {
        assert.ok(error instanceof CacheInputError);
        assert.match(error.message, /non-empty string or an integer/);
        assert.match(error.message, /global scope, omit it/);
        return true;
      });
    });
  }
});

describe("entryKey and registryKey", () => {
  it("lays out global and tenant keys", () => {
    assert.equal(entryKey("cache:", "", "h"), "cache::h");
    assert.equal(entryKey("app:", "users", "h"), "app:users:h");
    assert.equal(entryKey("app:", "users", "h", "acme"), "app:tenant:acme:users:h");
    assert.equal(entryKey("cache:", "", "h", "0"), "cache:tenant:0::h");
  });

  it("names one registry per tenant and one global", () => {
    assert.equal(registryKey("cache:"), "cache:registry:global");
    assert.equal(registryKey("cache:", undefined), "cache:registry:global");
    assert.equal(registryKey("app:", "acme"), "app:registry:tenant:acme");
    assert.equal(registryKey("app:", "a:b"), "app:registry:tenant:a:b");
  });
});

describe("globEscape", () => {
  it("escapes every glob metacharacter with a backslash", () => {
    assert.equal(globEscape("a*b?[c]\\^d"), "a\\*b\\?\\[c\\]\\\\\\^d");
    assert.equal(globEscape("cache:"), "cache:");
    assert.equal(globEscape(""), "");
  });

  it("round-trips: removing the escapes gives the text back", () => {
    for (const text of ["a*b?[c]\\", "\\\\**", "[^a-z]", "plain:prefix:"]) {
      const escaped = globEscape(text);
      assert.equal(escaped.replace(/\\(.)/gs, "$1"), text);
      // Outside an escape pair no metacharacter is left for Redis to interpret.
      assert.doesNotMatch(escaped.replace(/\\./gs, ""), /[*?[\]\\^]/);
    }
  });
});

describe("hashInput digest memo", () => {
  it("gives each input its own digest across memo refills", () => {
    // 10,000 distinct inputs overflow the memo (4,096) twice; a stale or shared entry would
    // hand one input another's digest.
    const inputs = Array.from({ length: 10_000 }, (_, i) => ({ q: "memo", i }));
    for (let pass = 0; pass < 2; pass++) {
      inputs.forEach((input, i) => {
        assert.equal(hashInput(input), sha256Hex(canonicalJson(input)), `pass ${pass}, input ${i}`);
      });
    }
    // An input too long to memoize is hashed directly.
    const long = { q: "x".repeat(1000) };
    assert.equal(hashInput(long), sha256Hex(canonicalJson(long)));
  });
});

/** A random property name: plain, escaped, non-ASCII, astral or with a lone surrogate. */
function randomName(random: () => number): string {
  const pool = [
    "a",
    "b",
    "id",
    "query",
    "Z",
    "_",
    "é",
    "日本",
    "\u{1F600}",
    "\ud800",
    '"',
    "\n",
    "\uffff",
  ];
  let name = "";
  const length = Math.floor(random() * 3);
  for (let i = 0; i <= length; i++) name += pool[Math.floor(random() * pool.length)];
  return name;
}

/** A random value of a flat object: mostly the kinds the fast path takes, some it hands on. */
function randomScalar(random: () => number): unknown {
  const pick = Math.floor(random() * 9);
  switch (pick) {
    case 0:
      return randomName(random);
    case 1:
      return Math.floor(random() * 2 ** 53) * (random() < 0.5 ? -1 : 1);
    case 2:
      return random() * 1e6; // a float: the general path writes it
    case 3:
      return random() < 0.5;
    case 4:
      return null;
    case 5:
      return -0;
    case 6:
      return 2 ** 60; // beyond safe integers: repr(float)
    case 7:
      return [1, "x"]; // nested: the general path
    default:
      return "plain text";
  }
}

/** A small deterministic generator, so a failure names a seed that reproduces it. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("canonicalJson of flat objects", () => {
  it("writes a flat object exactly as inside an array (the general walk)", () => {
    // The root object takes a fast path; the same object inside an array takes the general walk.
    for (let seed = 1; seed <= 3000; seed++) {
      const random = seeded(seed);
      const record: Record<string, unknown> = {};
      const size = Math.floor(random() * 6) + 1;
      for (let i = 0; i < size; i++) record[randomName(random)] = randomScalar(random);
      assert.equal(
        "[" + canonicalJson(record) + "]",
        canonicalJson([record]),
        `seed ${seed}: ${JSON.stringify(record)}`,
      );
    }
  });

  it("still rejects bad values with their path and honours toJSON", () => {
    assert.throws(() => canonicalJson({ b: 1, a: NaN }), /NaN at input\.a: /);
    assert.throws(() => canonicalJson({ a: undefined }), /undefined at input\.a: /);
    assert.equal(canonicalJson({ toJSON: () => ({ b: 1 }) }), '{"b": 1}');
    // A toJSON that is not a function is an ordinary property.
    assert.equal(canonicalJson({ toJSON: 1, a: 2 }), '{"a": 2, "toJSON": 1}');
    assert.equal(
      canonicalJson(Object.assign(Object.create(null), { b: 1, a: 2 })),
      '{"a": 2, "b": 1}',
    );
  });
});

describe("EntryKeys", () => {
  const layouts = [
    ["standalone", new StandaloneLayout("cache:")],
    ["cluster", new ClusterLayout("cache:", { tenantBuckets: 4, globalBuckets: 16 })],
  ] as const;
  for (const [label, layout] of layouts) {
    it(`gives the layout's key for every input and scope across memo refills (${label})`, () => {
      const keys = new EntryKeys(layout, "users", 1024);
      // 5,000 inputs x 3 scopes overflow the memo (4,096) several times.
      const inputs: unknown[] = Array.from(
        { length: 5000 },
        (_, i) => i % 2 === 0 ? `user:${i}` : { q: "k", i },
      );
      for (let pass = 0; pass < 2; pass++) {
        for (const companyId of [undefined, "acme", "7"]) {
          inputs.forEach((input, i) => {
            assert.equal(
              keys.of(input, companyId),
              layout.entryKey("users", hashInput(input), companyId),
              `pass ${pass}, scope ${companyId}, input ${i}`,
            );
          });
        }
      }
    });
  }

  it("keeps a string input apart from an object whose canonical JSON is that string", () => {
    const keys = new EntryKeys(new StandaloneLayout("cache:"), "", 1024);
    const object = { a: 1 };
    const text = canonicalJson(object); // '{"a": 1}'
    const fromObject = keys.of(object, undefined);
    assert.notEqual(keys.of(text, undefined), fromObject);
    assert.equal(keys.of(text, undefined), entryKey("cache:", "", hashInput(text)));
    assert.equal(keys.of(object, undefined), fromObject);
  });

  it("rejects an input over maxKeyInputBytes every time, remembered or not", () => {
    const keys = new EntryKeys(new StandaloneLayout("cache:"), "", 16);
    for (let i = 0; i < 2; i++) {
      assert.throws(() => keys.of("x".repeat(20), undefined), /maxKeyInputBytes/);
      assert.throws(() => keys.of({ long: "y".repeat(20) }, "acme"), /maxKeyInputBytes/);
    }
  });
});
