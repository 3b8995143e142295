/**
 * Value and TTL handling shared by every provider: values travel as JSON text, TTLs as
 * milliseconds, and bad input becomes a typed error before anything is sent.
 *
 * @module
 */

import { CacheInputError, CacheSerializationError } from "./errors.ts";
import { formatPath, MAX_NESTING_DEPTH } from "./keys.ts";

/** The default maximum size of one value's JSON text: 64 MiB. */
export const DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024;

/**
 * The largest TTL accepted, in seconds: 9,007,199,254,740 s (about 285,000 years), the largest
 * whole number of seconds whose milliseconds are still an exact integer in JavaScript
 * (2^53 − 1 ms). The servers add the current time in milliseconds to PX and refuse a sum over
 * 2^63 − 1; this maximum stays about a thousand times below that, whatever the clock says.
 */
export const MAX_TTL_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);

const encoder = new TextEncoder();

/**
 * Serializes `value` to JSON text with `JSON.stringify`, refusing what JSON cannot carry
 * faithfully, so that what reads back is what was stored: `undefined` (as a value, a property or
 * an array entry), functions, symbols, BigInt, `NaN`/`Infinity`, circular structures, objects
 * other than arrays and plain objects (`Map`, `Set`, typed arrays, `RegExp`, `Error`, boxed
 * primitives, class instances), nesting deeper than {@linkcode MAX_NESTING_DEPTH} levels, and
 * text over `maxBytes` UTF-8 bytes. An object with a `toJSON` method (such as `Date`) is replaced
 * by its result, as `JSON.stringify` does, and that result is checked the same way.
 *
 * @throws {CacheSerializationError} Naming what was refused and where (`value.items[3].when`).
 */
export function serializeValue(value: unknown, maxBytes: number): string {
  // A getter or toJSON that stores another value runs this again mid-check: it gets a pass of
  // its own, and the outer one is put back when it returns.
  const pass = idlePass ?? new Pass();
  idlePass = undefined;
  let text: string | undefined;
  try {
    // Plain data (no toJSON anywhere, the common case) is checked by a walk that builds nothing
    // and then written by JSON.stringify's own fast path. A replacer would check it in the same
    // pass, but takes V8 off that path: measured 2-3x the cost of walk + fast path, for a 100-byte
    // value and a 1 MB one alike. Data with a toJSON is written by that single replacer pass, so
    // each toJSON runs once and its result is what gets checked.
    text = pass.isPlain(value, 0) ? JSON.stringify(value) : pass.stringify(value);
  } catch (error) {
    if (error instanceof CacheSerializationError) throw error;
    // What the checks cannot see: a toJSON or a getter that throws.
    throw new CacheSerializationError(
      `Cannot store value as JSON: a toJSON method or getter of it threw: ${
        (error as Error)?.message ?? String(error)
      }`,
      { cause: error },
    );
  } finally {
    pass.reset();
    idlePass = pass;
  }
  // The checks refuse undefined, functions and symbols at the root too; this is a safeguard.
  if (text === undefined) {
    throw new CacheSerializationError(
      `Cannot store a value of type ${typeof value}: store null, a boolean, number, string, array or plain object`,
    );
  }
  checkSize(text, maxBytes);
  return text;
}

const FIX_NUMBER = "JSON has no NaN or Infinity and writes null; store null or a string instead";
const FIX_UNDEFINED = "JSON drops it from an object and writes null in an array, so it would " +
  "not read back; store null, or leave the property out";
const FIX_BIGINT =
  "JSON has no BigInt; convert it to a string, or to a number when it is a safe integer";
const FIX_OBJECT = "JSON would not read it back as it was; convert it to a plain object or " +
  "array (Object.fromEntries(map), [...set], Array.from(bytes)) or give it a toJSON method";
const FIX_DEPTH = "store a flatter value (Python's json module, which reads the same entries, " +
  "stops at about this depth too)";
const FIX_CYCLE = "store a tree of values without cycles";

/** What JSON cannot carry among the primitives: `undefined`, a `bigint`, a `function`, ... */
function primitiveProblem(value: unknown): [what: string, fix: string] {
  switch (typeof value) {
    case "number":
      return [String(value), FIX_NUMBER];
    case "undefined":
      return ["undefined", FIX_UNDEFINED];
    case "bigint":
      return ["a BigInt", FIX_BIGINT];
    default: // function, symbol
      return [`a ${typeof value}`, "JSON cannot carry it; store plain data only"];
  }
}

/** `a Map`, `an Error`: the kind of a non-plain object, for a message. */
function describeObject(value: object): string {
  const kind = (value as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof kind !== "string" || kind === "") return "a non-plain object";
  return `${/^[AEIO]/.test(kind) ? "an" : "a"} ${kind}`;
}

/** Whether JSON.stringify would call a toJSON on `value` (objects, functions and BigInt). */
function hasToJSON(value: unknown): boolean {
  return typeof (value as { toJSON?: unknown }).toJSON === "function";
}

/** The state of one serialization: the ancestors of the value being checked, and its path. */
class Pass {
  /**
   * Walk: `stack[d]` is the object or array at depth `d` (the root is depth 0). Replacer pass:
   * `stack[d]` is the holder at depth `d`, `stack[0]` being JSON's `{ "": value }` wrapper.
   */
  readonly stack: unknown[] = [];
  /** `steps[d]` is the key or index that led to `stack[d]` (`steps[0]` unused). */
  readonly steps: (string | number)[] = [];
  /** Replacer pass: index of the innermost holder; -1 before the root is seen. */
  top = -1;
  /** The highest index used, so `reset` knows how far to clear. */
  high = 0;

  /**
   * Checks `value` at `depth` for the fast path: `true` when JSON.stringify writes it faithfully,
   * `false` when a toJSON (or a replaced BigInt / function) is in it, so the replacer pass must
   * write it; throws for what JSON cannot carry.
   */
  isPlain(value: unknown, depth: number): boolean {
    switch (typeof value) {
      case "string":
      case "boolean":
        return true;
      case "number":
        if (Number.isFinite(value)) return true; // -0 is written 0, as a number should be
        break;
      case "object":
        if (value === null) return true;
        return this.#isPlainObject(value, depth);
    }
    // JSON.stringify calls the toJSON of a function or BigInt too (BigInt.prototype.toJSON).
    if ((typeof value === "function" || typeof value === "bigint") && hasToJSON(value)) {
      return false;
    }
    const [what, fix] = primitiveProblem(value);
    throw this.#refuseAt(depth, what, fix);
  }

  #isPlainObject(value: object, depth: number): boolean {
    if (hasToJSON(value)) return false;
    const isArray = Array.isArray(value);
    if (!isArray) {
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw this.#refuseAt(depth, describeObject(value), FIX_OBJECT);
      }
    }
    if (depth >= MAX_NESTING_DEPTH) throw this.#tooDeep(depth);
    const stack = this.stack;
    for (let d = 0; d < depth; d++) {
      if (stack[d] === value) throw this.#refuseAt(depth, "a circular reference", FIX_CYCLE);
    }
    stack[depth] = value;
    if (depth > this.high) this.high = depth;
    const inner = depth + 1;
    const steps = this.steps;
    if (isArray) {
      const items = value as unknown[];
      for (let i = 0; i < items.length; i++) {
        steps[inner] = i;
        if (!this.isPlain(items[i], inner)) return false;
      }
    } else {
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        steps[inner] = key;
        if (!this.isPlain(record[key], inner)) return false;
      }
    }
    return true;
  }

  /**
   * Writes `value` with JSON.stringify and a replacer that checks every value after its toJSON.
   * The replacer sees values depth first with the object holding them as `this`, so the
   * ancestors of the current value are kept on `stack` as it goes: the depth, the cycle check and
   * the path of an error come from the same pass.
   */
  stringify(value: unknown): string | undefined {
    this.reset();
    const outer = replacing;
    replacing = this;
    try {
      return JSON.stringify(value, checkReplaced);
    } finally {
      replacing = outer;
    }
  }

  /** The replacer pass's check of `value`, held under `key` by `holder`. */
  checkReplaced(holder: unknown, key: string, value: unknown): unknown {
    const stack = this.stack;
    let depth = this.top;
    if (depth < 0) {
      // The root: JSON.stringify wraps it in { "": value }.
      stack[0] = holder;
      depth = 0;
    } else {
      // Back from the subtrees of earlier siblings: drop holders down to this value's own (the
      // holder is always on the stack; the bound only guards the loop).
      while (depth > 0 && stack[depth] !== holder) depth--;
    }
    this.top = depth;
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        if (Number.isFinite(value)) return value;
        break;
      case "object": {
        if (value === null) return value;
        if (!Array.isArray(value)) {
          const proto = Object.getPrototypeOf(value);
          if (proto !== Object.prototype && proto !== null) {
            throw this.#refuseReplaced(key, describeObject(value), FIX_OBJECT);
          }
        }
        if (depth >= MAX_NESTING_DEPTH) {
          this.top = depth + 1;
          this.steps[depth + 1] = Array.isArray(holder) ? Number(key) : key;
          throw this.#tooDeep(depth);
        }
        // An ancestor again is a cycle; JSON.stringify would throw too, but without a path.
        for (let d = 1; d <= depth; d++) {
          if (stack[d] === value) {
            throw this.#refuseReplaced(key, "a circular reference", FIX_CYCLE);
          }
        }
        this.top = ++depth;
        stack[depth] = value;
        this.steps[depth] = Array.isArray(holder) ? Number(key) : key;
        if (depth > this.high) this.high = depth;
        return value;
      }
    }
    const [what, fix] = primitiveProblem(value);
    throw this.#refuseReplaced(key, what, fix);
  }

  /** The walk's error for the value at `depth`, whose path is `steps[1..depth]`. */
  #refuseAt(depth: number, what: string, fix: string): CacheSerializationError {
    const where = formatPath("value", this.steps.slice(1, depth + 1));
    return new CacheSerializationError(`Cannot store ${what} at ${where}: ${fix}`);
  }

  /** The replacer pass's error for the value under `key` of the innermost holder. */
  #refuseReplaced(key: string, what: string, fix: string): CacheSerializationError {
    const depth = this.top + 1;
    this.steps[depth] = Array.isArray(this.stack[this.top]) ? Number(key) : key;
    // steps[1] is the root's own key "" under JSON's wrapper, not a step of the path.
    const where = formatPath("value", this.steps.slice(2, depth + 1));
    return new CacheSerializationError(`Cannot store ${what} at ${where}: ${fix}`);
  }

  #tooDeep(depth: number): CacheSerializationError {
    const what = `an array or object nested deeper than ${MAX_NESTING_DEPTH} levels`;
    if (this.top < 0) return this.#refuseAt(depth, what, FIX_DEPTH);
    const where = formatPath("value", this.steps.slice(2, this.top + 1));
    return new CacheSerializationError(`Cannot store ${what} at ${where}: ${FIX_DEPTH}`);
  }

  /** Forgets the pass: no reference to the caller's value outlives the call. */
  reset(): void {
    this.stack.fill(undefined, 0, this.high + 1);
    this.top = -1;
    this.high = 0;
  }
}

/** A pass not in use, kept so a set allocates nothing for its check. */
let idlePass: Pass | undefined;
/** The pass whose replacer JSON.stringify is calling. */
let replacing: Pass | undefined;

/** The replacer: JSON.stringify passes the holder as `this`, so the pass is found here. */
function checkReplaced(this: unknown, key: string, value: unknown): unknown {
  return replacing!.checkReplaced(this, key, value);
}

function checkSize(text: string, maxBytes: number): void {
  // Each UTF-16 unit is 1 to 3 UTF-8 bytes: most texts are decided without encoding them.
  if (text.length * 3 <= maxBytes) return;
  const bytes = text.length > maxBytes ? text.length : encoder.encode(text).length;
  if (bytes > maxBytes) {
    throw new CacheSerializationError(
      `Value too large: its JSON is at least ${bytes} bytes, over the maximum of ${maxBytes} bytes (maxValueBytes); store less or raise maxValueBytes`,
    );
  }
}

/** Parses stored JSON text; throws the parser's SyntaxError for text that is not JSON. */
export function parseValue<T>(text: string): T {
  return JSON.parse(text) as T;
}

/**
 * Resolves a TTL in seconds to milliseconds: `undefined` takes `defaultTtl`, `null` means no
 * expiry (returned as 0), a positive finite number up to {@linkcode MAX_TTL_SECONDS} is rounded
 * up to a whole millisecond.
 *
 * @throws {CacheInputError} For 0, a negative number, `NaN`, `Infinity`, a non-number, or a
 * number over {@linkcode MAX_TTL_SECONDS}.
 */
export function ttlToMs(ttl: number | null | undefined, defaultTtl: number | null): number {
  const seconds = ttl === undefined ? defaultTtl : ttl;
  if (seconds === null) return 0;
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds <= 0) {
    throw new CacheInputError(
      `Invalid ttl ${
        String(seconds)
      }: pass a positive number of seconds, null for no expiry, or omit it for the default`,
    );
  }
  if (seconds > MAX_TTL_SECONDS) {
    throw new CacheInputError(
      `Invalid ttl ${seconds}: the maximum is ${MAX_TTL_SECONDS} seconds (about 285,000 years; ` +
        `the servers count expiry in 64-bit milliseconds); pass a smaller number, or null for no expiry`,
    );
  }
  return Math.ceil(seconds * 1000);
}
