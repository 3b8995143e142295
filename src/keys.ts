/**
 * Key layout shared with the Python `core_lib.cache` original: canonical JSON of the input
 * (byte-identical to `json.dumps(input, sort_keys=True)`), its SHA-256, and the entry and registry
 * key names built from it.
 *
 * @module
 */

import { CacheInputError } from "./errors.ts";
import { sha256Hex } from "./runtime.ts";

/** Per-call state, so a `toJSON` that itself calls `canonicalJson` cannot clobber it. */
interface Walk {
  /** `path[d]` is the key or index that led to the value at depth `d` (`path[0]` unused). */
  path: (string | number)[];
  /** `stack[d]` is the object or array being written at depth `d`: ancestors, for cycle checks. */
  stack: object[];
}

// Printable ASCII minus `"` and `\`: such strings need no escaping, the common case for keys.
const PLAIN_STRING = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
// Only surrogates make UTF-16 order differ from code-point order (astral vs U+E000..U+FFFF).
const HAS_SURROGATE = /[\ud800-\udfff]/;
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const SHORT_ESCAPES: Record<number, string> = {
  0x08: "\\b",
  0x09: "\\t",
  0x0a: "\\n",
  0x0c: "\\f",
  0x0d: "\\r",
  0x22: '\\"',
  0x5c: "\\\\",
};

/**
 * Serializes `input` exactly as Python's `json.dumps(input, sort_keys=True)` does, so a key
 * hashed here equals the key the Python original computes for the same data.
 *
 * Accepts strings, finite numbers, booleans, `null`, arrays, plain objects (including
 * `Object.create(null)`) and anything with a `toJSON` method (such as `Date`), which is replaced
 * by its result first, as `JSON.stringify` does.
 *
 * @example Sorted keys, Python separators, ASCII-only output
 * ```ts
 * import { canonicalJson } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(canonicalJson({ b: [1, 0.5], a: "é" }), '{"a": "\\u00e9", "b": [1, 0.5]}');
 * ```
 *
 * @param input The cache key input.
 * @returns The canonical JSON text, pure ASCII.
 * @throws {CacheInputError} For `undefined`, functions, symbols, BigInt, `NaN`/`Infinity`,
 * circular references, non-plain objects without `toJSON` (Map, Set, class instances) and
 * nesting deeper than {@linkcode MAX_NESTING_DEPTH} levels; the message names the path, such as
 * `input.a[2]`.
 */
export function canonicalJson(input: unknown): string {
  return flatObject(input) ?? write(input, "", { path: [], stack: [] }, 0);
}

/**
 * The canonical JSON of the most common key input, a plain object of strings, safe integers,
 * booleans and nulls, without the general walk's bookkeeping (paths, cycle checks, `toJSON`);
 * `undefined` for anything else, which {@linkcode write} then serializes (or rejects with its
 * path). Both give the same text for the inputs this one accepts.
 */
function flatObject(input: unknown): string | undefined {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined;
  if (Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  const record = input as Record<string, unknown>;
  if (record.toJSON !== undefined) return undefined;
  const keys = Object.keys(record);
  if (keys.length === 0) return undefined;
  if (!inOrder(keys)) {
    for (const k of keys) if (HAS_SURROGATE.test(k)) return undefined;
    if (keys.length > 8) keys.sort();
    else insertionSort(keys);
  }
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const value = record[k];
    let text: string;
    switch (typeof value) {
      case "string":
        text = PLAIN_STRING.test(value) ? `"${value}"` : quote(value);
        break;
      case "number":
        if (!Number.isSafeInteger(value)) return undefined;
        text = String(value);
        break;
      case "boolean":
        text = value ? "true" : "false";
        break;
      case "object":
        if (value !== null) return undefined;
        text = "null";
        break;
      default:
        return undefined;
    }
    out += (i === 0 ? "" : ", ") + quotedKey(k) + ": " + text;
  }
  return out + "}";
}

/**
 * The deepest nesting of arrays and objects accepted in a key input or a value: 1,000 levels
 * (`[[1]]` is 2 levels, a scalar 0). Deeper data is a typed error, never the engine's
 * `RangeError` of a full call stack: `CacheInputError` for a key input,
 * `CacheSerializationError` for a value. Python's `json` module, which reads the same entries,
 * stops at about this depth too (its default recursion limit is 1,000).
 */
export const MAX_NESTING_DEPTH = 1000;

/** The default maximum size of one key input's canonical JSON: 1 MiB. */
export const DEFAULT_MAX_KEY_INPUT_BYTES = 1024 * 1024;

/**
 * The `<hash>` part of an entry key: lowercase hex SHA-256 of {@linkcode canonicalJson}.
 *
 * @example Hashing a query
 * ```ts
 * import { hashInput } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(hashInput({ user_id: 123 }), /^[0-9a-f]{64}$/);
 * assert.equal(hashInput({ a: 1, b: 2 }), hashInput({ b: 2, a: 1 }));
 * assert.throws(() => hashInput("x".repeat(100), 64), /maxKeyInputBytes/);
 * ```
 *
 * @param input The cache key input.
 * @param maxBytes The largest canonical JSON accepted, in bytes (canonical JSON is pure ASCII,
 * so its length is its byte count); no limit when omitted.
 * @returns 64 lowercase hex characters.
 * @throws {CacheInputError} As {@linkcode canonicalJson}, and when the canonical JSON is longer
 * than `maxBytes`.
 */
export function hashInput(input: unknown, maxBytes: number = Infinity): string {
  const canonical = canonicalJson(input);
  if (canonical.length > maxBytes) {
    throw new CacheInputError(
      `Cache key input too large: its canonical JSON is ${canonical.length} bytes, over the ` +
        `maximum of ${maxBytes} bytes (maxKeyInputBytes); key on a smaller input (an id, or a ` +
        `hash of the data) or raise maxKeyInputBytes`,
    );
  }
  return canonicalDigest(canonical);
}

/**
 * The lowercase hex SHA-256 of a canonical JSON text ({@linkcode hashInput} after its checks),
 * remembered for short texts.
 *
 * @example The digest of an input's canonical form is its hash
 * ```ts
 * import { canonicalDigest, canonicalJson, hashInput } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(canonicalDigest(canonicalJson({ a: 1 })), hashInput({ a: 1 }));
 * ```
 */
export function canonicalDigest(canonical: string): string {
  if (canonical.length > MEMO_MAX_CHARS) return sha256Hex(canonical);
  let hash = digestMemo.get(canonical);
  if (hash === undefined) {
    hash = sha256Hex(canonical);
    // Emptied when full rather than kept in LRU order: a hit costs one Map lookup, and the keys
    // that are hot come back within a few calls.
    if (digestMemo.size >= MEMO_ENTRIES) digestMemo = new Map();
    digestMemo.set(canonical, hash);
  }
  return hash;
}

/**
 * Digests of recent canonical inputs. A cache sees the same inputs again and again (that is why
 * it caches), and the SHA-256 call costs about twice as much as the canonicalization before it,
 * so hot keys skip it. Bounded: at most MEMO_ENTRIES inputs of up to MEMO_MAX_CHARS characters
 * each (canonical JSON is ASCII, so characters are bytes), about 1.5 MiB at worst.
 */
let digestMemo = new Map<string, string>();
const MEMO_ENTRIES = 4096;
const MEMO_MAX_CHARS = 256;

/**
 * Validates a tenant id and turns it into its key form. Unlike the Python original, an empty or
 * `null` id is an error rather than a silent fall into the global scope, which would leak data
 * across tenants.
 *
 * @example Numbers and strings name the same tenant
 * ```ts
 * import { normalizeCompanyId } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(normalizeCompanyId(42), "42");
 * assert.equal(normalizeCompanyId("acme"), "acme");
 * assert.equal(normalizeCompanyId(undefined), undefined);
 * ```
 *
 * @param companyId `undefined` for the global scope, a non-empty string, or a safe integer.
 * @returns The tenant id as a string, or `undefined` for the global scope.
 * @throws {CacheInputError} For an empty string, a string holding a lone surrogate, `null`, a
 * non-integer number or any other type.
 */
export function normalizeCompanyId(companyId: unknown): string | undefined {
  if (companyId === undefined) return undefined;
  if (typeof companyId === "string" && companyId !== "") {
    // A lone surrogate is not Unicode text: the client sends it as U+FFFD, so two different ids
    // would name the same tenant's keys.
    if (LONE_SURROGATE.test(companyId)) {
      throw new CacheInputError(
        `Invalid companyId ${
          JSON.stringify(companyId.slice(0, 80))
        }: it holds a lone UTF-16 surrogate, which is not valid Unicode and would collide with ` +
          `other ids on the server; pass well-formed text`,
      );
    }
    return companyId;
  }
  // String(-0) is "0", so 0 and -0 are the same tenant.
  if (typeof companyId === "number" && Number.isSafeInteger(companyId)) return String(companyId);
  throw new CacheInputError(
    `Invalid companyId ${describe(companyId)}: companyId must be a non-empty string or an ` +
      `integer; to use the global scope, omit it`,
  );
}

/**
 * The tenant id a per-tenant operation needs (a clear): like `normalizeCompanyId`, but a missing
 * id is an error instead of the global scope, so a clear can never widen by accident.
 */
export function requireCompanyId(companyId: unknown): string {
  const id = normalizeCompanyId(companyId);
  if (id === undefined) {
    throw new CacheInputError(
      "clearCompany needs a companyId: pass the tenant's id, or call clearGlobal() for the global scope",
    );
  }
  return id;
}

/**
 * The server key of an entry: `<prefix><name>:<hash>` globally,
 * `<prefix>tenant:<companyId>:<name>:<hash>` for a tenant.
 *
 * @example Global and tenant keys
 * ```ts
 * import { entryKey } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(entryKey("cache:", "", "ab12"), "cache::ab12");
 * assert.equal(entryKey("cache:", "users", "ab12", "acme"), "cache:tenant:acme:users:ab12");
 * ```
 *
 * @param prefix The configured prefix, used as is (default `cache:`).
 * @param name The cache's name (`""` for the facade).
 * @param hash The input's hash, from {@linkcode hashInput}.
 * @param companyId The tenant id from {@linkcode normalizeCompanyId}; `undefined` for global.
 * @returns The full key.
 */
export function entryKey(prefix: string, name: string, hash: string, companyId?: string): string {
  return companyId === undefined
    ? `${prefix}${name}:${hash}`
    : `${prefix}tenant:${companyId}:${name}:${hash}`;
}

/**
 * The key of the Set that lists every entry key of one scope.
 *
 * @example Tenant and global registries
 * ```ts
 * import { registryKey } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(registryKey("cache:", "acme"), "cache:registry:tenant:acme");
 * assert.equal(registryKey("cache:"), "cache:registry:global");
 * ```
 *
 * @param prefix The configured prefix, used as is.
 * @param companyId The tenant id from {@linkcode normalizeCompanyId}; `undefined` for global.
 * @returns `<prefix>registry:tenant:<companyId>` or `<prefix>registry:global`.
 */
export function registryKey(prefix: string, companyId?: string): string {
  return companyId === undefined
    ? `${prefix}registry:global`
    : `${prefix}registry:tenant:${companyId}`;
}

/**
 * Escapes `text` so that it matches only itself in a Redis glob (`SCAN MATCH`, `KEYS`).
 * Outside brackets only `* ? [ \` are special; `]` and `^` are escaped too so the result stays
 * literal wherever it is placed. Redis treats `\x` as a literal `x` for any `x`.
 *
 * @example Escaping a prefix
 * ```ts
 * import { globEscape } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(globEscape("app[1]*:"), "app\\[1\\]\\*:");
 * ```
 *
 * @param text Literal text, such as a configured prefix.
 * @returns The glob pattern matching exactly `text`.
 */
export function globEscape(text: string): string {
  return text.replace(/[*?[\]\\^]/g, "\\$&");
}

/** Serializes one value; `key` is what `toJSON` receives, as with `JSON.stringify`. */
function write(value: unknown, key: string, walk: Walk, depth: number): string {
  if (typeof value === "object" && value !== null) {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    // Applied once, as JSON.stringify does: a toJSON returning `this` must not loop.
    if (typeof toJSON === "function") value = toJSON.call(value, key);
  }
  switch (typeof value) {
    case "string":
      return PLAIN_STRING.test(value) ? `"${value}"` : quote(value);
    case "number":
      return formatNumber(value, walk, depth);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      break;
    case "undefined":
      throw reject(walk, depth, "undefined", "use null, or leave the property out");
    case "bigint":
      throw reject(walk, depth, "a BigInt", "convert it to a string or a safe-integer number");
    default: // function, symbol
      throw reject(walk, depth, `a ${typeof value}`, "pass plain JSON data only");
  }
  if (value === null) return "null";

  // Checked before going one level down, so a deep input never reaches the engine's stack limit
  // (a RangeError) however deep it is.
  if (depth >= MAX_NESTING_DEPTH) {
    throw reject(
      walk,
      depth,
      `an array or object nested deeper than ${MAX_NESTING_DEPTH} levels`,
      "key on a flatter input (Python's json.dumps stops near this depth too)",
    );
  }
  for (let i = 0; i < depth; i++) {
    if (walk.stack[i] === value) {
      throw reject(walk, depth, "a circular reference", "pass a tree of values without cycles");
    }
  }
  walk.stack[depth] = value;
  const inner = depth + 1;

  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      walk.path[inner] = i;
      out += (i === 0 ? "" : ", ") + write(value[i], String(i), walk, inner);
    }
    return out + "]";
  }

  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const kind = (value as { constructor?: { name?: string } }).constructor?.name || "object";
    throw reject(
      walk,
      depth,
      `a ${kind}`,
      "convert it to a plain object or array, or give it a toJSON method",
    );
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length === 0) return "{}";
  if (keys.length > 1 && !inOrder(keys)) {
    keys.sort();
    for (const k of keys) {
      if (HAS_SURROGATE.test(k)) {
        keys.sort(compareCodePoints);
        break;
      }
    }
  }
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    walk.path[inner] = k;
    out += (i === 0 ? "" : ", ") + quotedKey(k) + ": " + write(record[k], k, walk, inner);
  }
  return out + "}";
}

/**
 * Whether `keys` are already in Python's order (code points, which equal UTF-16 order without
 * surrogates): the common case of an input written with its keys sorted, which then skips the
 * sort.
 */
function inOrder(keys: string[]): boolean {
  for (let i = 1; i < keys.length; i++) {
    if (!(keys[i - 1] < keys[i]) || HAS_SURROGATE.test(keys[i])) return false;
  }
  return !HAS_SURROGATE.test(keys[0]);
}

/** Sorts a few strings by UTF-16 code units (as `sort()` does), without its call overhead. */
function insertionSort(keys: string[]): void {
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i];
    let j = i - 1;
    for (; j >= 0 && keys[j] > k; j--) keys[j + 1] = keys[j];
    keys[j + 1] = k;
  }
}

/**
 * Property names quoted, remembered: an application keys on the same few property names again
 * and again, and a lookup of a property name (whose hash the engine keeps) costs less than the
 * test for characters that need escaping. Bounded by QUOTED_KEYS names of up to 64 characters.
 */
let quotedKeys = new Map<string, string>();
const QUOTED_KEYS = 1024;

function quotedKey(k: string): string {
  let quoted = quotedKeys.get(k);
  if (quoted !== undefined) return quoted;
  quoted = PLAIN_STRING.test(k) ? `"${k}"` : quote(k);
  if (k.length <= 64) {
    if (quotedKeys.size >= QUOTED_KEYS) quotedKeys = new Map();
    quotedKeys.set(k, quoted);
  }
  return quoted;
}

/** Quotes a string that needs escaping, as Python's `ensure_ascii` encoder does. */
function quote(text: string): string {
  let out = '"';
  let start = 0; // start of the pending run of characters that need no escape
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    // Surrogates (paired or lone) are escaped unit by unit, which is what Python emits.
    out += text.slice(start, i) + (SHORT_ESCAPES[c] ?? "\\u" + c.toString(16).padStart(4, "0"));
    start = i + 1;
  }
  return out + text.slice(start) + '"';
}

/** Writes a number as Python would: an int for safe integers, else `repr(float)`. */
function formatNumber(n: number, walk: Walk, depth: number): string {
  // String(-0) is "0", and safe integers never print in exponent form.
  if (Number.isSafeInteger(n)) return String(n);
  if (!Number.isFinite(n)) {
    throw reject(walk, depth, String(n), "use a finite number, null or a string");
  }
  // toExponential() without an argument gives the shortest round-trip digits, as repr does.
  let text = n.toExponential();
  let sign = "";
  if (text[0] === "-") {
    sign = "-";
    text = text.slice(1);
  }
  const e = text.indexOf("e");
  const digits = text[0] + text.slice(2, e);
  const exponent = Number(text.slice(e + 1));
  const decpt = exponent + 1; // value = 0.<digits> × 10^decpt
  if (decpt <= -4 || decpt > 16) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const abs = Math.abs(exponent);
    return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${abs < 10 ? "0" : ""}${abs}`;
  }
  if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`;
  if (decpt < digits.length) return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  return `${sign}${digits}${"0".repeat(decpt - digits.length)}.0`;
}

/**
 * Orders strings by Unicode code point, as Python sorts `str`. Only called when a key holds a
 * surrogate, where UTF-16 order puts U+1F600 before U+FFFF.
 */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length - b.length;
  // The strings may differ in the low half of a pair whose high half they share: compare the
  // whole code point, so an astral character still sorts above a lone high surrogate.
  if (i > 0 && isHighSurrogate(a.charCodeAt(i - 1))) {
    if (isLowSurrogate(a.charCodeAt(i)) || isLowSurrogate(b.charCodeAt(i))) i--;
  }
  return a.codePointAt(i)! - b.codePointAt(i)!;
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/** Builds the error for a value at `depth` that has no canonical JSON form. */
function reject(walk: Walk, depth: number, what: string, fix: string): CacheInputError {
  return new CacheInputError(
    `Cache key input holds ${what} at ${
      formatPath("input", walk.path.slice(1, depth + 1))
    }: ${fix}`,
  );
}

/** Paths longer than this many steps are shortened in messages to their first and last steps. */
const PATH_SHOWN = 12;

/**
 * `input.a[2]["odd key"]`: where a refused value sits, from `root` through `steps` (numbers are
 * array indexes). A path of a deeply nested value is shortened to its ends and its length, so a
 * message stays readable at any depth.
 */
export function formatPath(root: string, steps: readonly (string | number)[]): string {
  const step = (s: string | number) =>
    typeof s === "number" ? `[${s}]` : IDENTIFIER.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`;
  if (steps.length <= PATH_SHOWN) return root + steps.map(step).join("");
  return `${root}${steps.slice(0, PATH_SHOWN - 2).map(step).join("")}…${
    steps.slice(-2).map(step).join("")
  } (${steps.length} steps)`;
}

/** A short, safe description of a rejected companyId for an error message. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return String(value);
  return `of type ${typeof value}`;
}
