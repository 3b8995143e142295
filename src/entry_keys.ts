/**
 * The entry keys of a provider's reads, remembered: a hot read's input maps straight to the same
 * key string it had last time. With the near cache on, a hit is mostly this lookup, and the
 * remembered string also carries its hash code, so the near cache's own lookup need not compute
 * it again (a key built afresh, prefix + name + digest, must be hashed on every call).
 *
 * @module
 */

import { canonicalDigest, canonicalJson, hashInput } from "./keys.ts";
import type { KeyLayout } from "./layout.ts";

/** The most inputs remembered per provider (then the memo starts over). */
const MEMO_ENTRIES = 4096;
/** The longest input remembered, in characters (raw string, or canonical JSON). */
const MEMO_MAX_CHARS = 256;

/** One scope's remembered keys: string inputs by the string itself, others by canonical JSON. */
interface ScopeMemo {
  strings: Map<string, string>;
  canonical: Map<string, string>;
}

/** A provider's input -> entry key mapping, remembered for recent inputs. */
export class EntryKeys {
  readonly #layout: KeyLayout;
  readonly #name: string;
  readonly #maxKeyInputBytes: number;
  /** Per scope: the tenant id, or "" for the global scope (a tenant id is never empty). */
  #scopes = new Map<string, ScopeMemo>();
  #size = 0;

  /**
   * @param layout The provider's key layout.
   * @param name The provider's cache name.
   * @param maxKeyInputBytes The largest canonical JSON of an input accepted.
   */
  constructor(layout: KeyLayout, name: string, maxKeyInputBytes: number) {
    this.#layout = layout;
    this.#name = name;
    this.#maxKeyInputBytes = maxKeyInputBytes;
  }

  /**
   * The entry key of `input` in the scope of `companyId` (normalized; `undefined`: global), the
   * same string as `layout.entryKey(name, hashInput(input), companyId)`.
   *
   * @throws {CacheInputError} As {@linkcode hashInput}.
   */
  of(input: unknown, companyId: string | undefined): string {
    const scope = this.#scopes.get(companyId ?? "");
    if (typeof input === "string") {
      const known = scope?.strings.get(input);
      if (known !== undefined) return known;
      const key = this.#build(input, companyId);
      if (input.length <= MEMO_MAX_CHARS) this.#remember(companyId, input, key, true);
      return key;
    }
    const canonical = canonicalJson(input);
    const known = scope?.canonical.get(canonical);
    if (known !== undefined) return known;
    if (canonical.length > this.#maxKeyInputBytes) {
      // The same error hashInput gives, without computing the canonical form twice.
      return this.#build(input, companyId);
    }
    const key = this.#layout.entryKey(this.#name, canonicalDigest(canonical), companyId);
    if (canonical.length <= MEMO_MAX_CHARS) this.#remember(companyId, canonical, key, false);
    return key;
  }

  #build(input: unknown, companyId: string | undefined): string {
    return this.#layout.entryKey(this.#name, hashInput(input, this.#maxKeyInputBytes), companyId);
  }

  #remember(companyId: string | undefined, text: string, key: string, raw: boolean): void {
    // Emptied when full rather than kept in LRU order: a hit costs one lookup, and the inputs
    // that are hot come back within a few calls.
    if (this.#size >= MEMO_ENTRIES) {
      this.#scopes = new Map();
      this.#size = 0;
    }
    const name = companyId ?? "";
    let scope = this.#scopes.get(name);
    if (scope === undefined) {
      scope = { strings: new Map(), canonical: new Map() };
      this.#scopes.set(name, scope);
    }
    (raw ? scope.strings : scope.canonical).set(text, key);
    this.#size++;
  }
}
