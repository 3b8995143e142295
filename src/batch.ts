/**
 * The argument checks of the batch calls (`getMany`, `setMany`), shared by every provider and
 * the facade so that misuse fails the same way everywhere: any iterable is taken (an array, a
 * `Map` of input to value, a generator), anything else is a `CacheInputError` before anything
 * is read or written.
 *
 * @module
 */

import { CacheInputError } from "./errors.ts";

/** `getMany`'s inputs as an array; a string or a non-iterable is a CacheInputError. */
export function inputList(inputs: Iterable<unknown>): readonly unknown[] {
  if (Array.isArray(inputs)) return inputs;
  if (!isIterable(inputs)) {
    throw new CacheInputError(
      `Invalid getMany inputs ${describe(inputs)}: pass an array (or another iterable) of inputs`,
    );
  }
  return Array.from(inputs);
}

/**
 * `setMany`'s entries as an array of `[input, value]` pairs; a non-iterable, a string, or an
 * entry that is not a pair is a CacheInputError.
 */
export function entryList(
  entries: Iterable<readonly [unknown, unknown]>,
): readonly (readonly [unknown, unknown])[] {
  if (!isIterable(entries)) {
    throw new CacheInputError(
      `Invalid setMany entries ${describe(entries)}: pass an array of [input, value] pairs ` +
        "or a Map of input to value",
    );
  }
  const list = Array.isArray(entries) ? entries : Array.from(entries);
  list.forEach((entry, i) => {
    if (!Array.isArray(entry) || entry.length !== 2) {
      throw new CacheInputError(
        `Invalid setMany entry at index ${i} (${describe(entry)}): each entry is an ` +
          "[input, value] pair",
      );
    }
  });
  return list;
}

function isIterable(value: unknown): value is Iterable<unknown> {
  return typeof value === "object" && value !== null &&
    typeof (value as { [Symbol.iterator]?: unknown })[Symbol.iterator] === "function";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object") return `a ${value.constructor?.name ?? "null-prototype object"}`;
  return typeof value === "string" ? "a string" : `${typeof value} ${String(value)}`;
}
