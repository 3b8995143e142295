/**
 * Value and TTL handling shared by every provider: values travel as JSON text, TTLs as
 * milliseconds, and bad input becomes a typed error before anything is sent.
 *
 * @module
 */

import { CacheInputError, CacheSerializationError } from "./errors.ts";

/** The default maximum size of one value's JSON text: 64 MiB. */
export const DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024;

const encoder = new TextEncoder();

/**
 * Serializes `value` to JSON text with `JSON.stringify`, rejecting what JSON cannot carry
 * faithfully: `undefined`, functions, symbols, BigInt, circular structures, `NaN`/`Infinity`, and
 * text over `maxBytes` UTF-8 bytes.
 */
export function serializeValue(value: unknown, maxBytes: number): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    // JSON.stringify throws a TypeError for BigInt and for circular structures.
    throw new CacheSerializationError(
      `Cannot store value as JSON: ${
        (error as Error).message
      }; convert BigInt to string or number and remove circular references`,
      { cause: error },
    );
  }
  if (text === undefined) {
    throw new CacheSerializationError(
      `Cannot store a value of type ${typeof value}: store null, a boolean, number, string, array or plain object`,
    );
  }
  // JSON.stringify writes NaN, Infinity and array holes of undefined/function/symbol as null; only
  // when "null" appears can such a value be hiding, so the deep check runs only then.
  if (text.includes("null")) rejectLossyNulls(value, "value", new Set());
  checkSize(text, maxBytes);
  return text;
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

function rejectLossyNulls(value: unknown, path: string, seen: Set<object>): void {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new CacheSerializationError(
        `Cannot store ${value} at ${path}: JSON has no NaN or Infinity; store null or a string instead`,
      );
    }
    return;
  }
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return;
  seen.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      const kind = typeof item;
      if (item === undefined || kind === "function" || kind === "symbol") {
        throw new CacheSerializationError(
          `Cannot store ${kind} at ${path}[${i}]: JSON would turn it into null; store null explicitly`,
        );
      }
      rejectLossyNulls(item, `${path}[${i}]`, seen);
    }
  } else {
    for (const key of Object.keys(value)) {
      rejectLossyNulls((value as Record<string, unknown>)[key], `${path}.${key}`, seen);
    }
  }
  seen.delete(value);
}

/** Checks one `setMany` entry is an `[input, value]` pair and returns it as one. */
export function entryPair(entry: unknown): readonly [unknown, unknown] {
  if (!Array.isArray(entry) || entry.length !== 2) {
    throw new CacheInputError("Invalid setMany entry: pass an array of [input, value] pairs");
  }
  return entry as [unknown, unknown];
}

/** Parses stored JSON text; throws the parser's SyntaxError for text that is not JSON. */
export function parseValue<T>(text: string): T {
  return JSON.parse(text) as T;
}

/**
 * Resolves a TTL in seconds to milliseconds: `undefined` takes `defaultTtl`, `null` means no
 * expiry (returned as 0), a positive finite number is rounded up to a whole millisecond.
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
  return Math.ceil(seconds * 1000);
}
