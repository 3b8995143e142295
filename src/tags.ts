/**
 * Tags (SPEC section 8): the checks of a `tags` option, the key of a tag's set, and the server
 * side of an invalidation, shared by the Redis-protocol provider (both topologies) and, for the
 * checks and the key names, by `MemoryCache`.
 *
 * A tag is a set of the entry keys of one scope (one bucket of a scope in a cluster) that carry
 * the tag, kept by the write script exactly as a registry is: the SET, the SADD to the registry
 * and the SADD to each tag's set are one script call. Each scope (bucket) also has a tag index,
 * the set of its tag sets, so a clear of the scope finds them without pattern matching on a
 * tenant id. Key names (see src/layout.ts):
 *
 * | what | key |
 * |---|---|
 * | tag set | `<prefix>tag:<scope>:<digest>` |
 * | tag index | `<prefix>tags:<scope>` |
 *
 * where `<scope>` is the scope's registry key after `<prefix>registry:` (`tenant:<companyId>`,
 * `global`; in a cluster `tenant:{...}` or `global:{g<bucket>}`, so the tag set shares the slot of
 * the entries it lists), and `<digest>` the 64 lowercase hex digits of the SHA-256 of `tag:` and
 * the tag's UTF-8 bytes. The digest is fixed-length and last, so the scope part is everything
 * between `tag:` and the last 65 characters: two different (scope, tag) pairs never share a key,
 * whatever characters they hold. Neither key lives under `<prefix>registry:`, which the Python
 * original's clear-all treats as registries.
 *
 * @module
 */

import { CacheInputError } from "./errors.ts";
import { globEscape } from "./keys.ts";
import { scanSets } from "./registries.ts";
import { sha256Hex } from "./runtime.ts";
import type { Scanner, Servers } from "./servers.ts";
import { hashTagOf, keySlot } from "./slots.ts";

/** At most this many tags per entry. */
export const MAX_TAGS = 64;
/** A tag's largest size, in UTF-8 bytes. */
export const MAX_TAG_BYTES = 1024;

const NO_TAGS: readonly string[] = Object.freeze([]);
const encoder = new TextEncoder();

/**
 * The `tags` option checked: `undefined` is no tags; otherwise an array of at most 64 non-empty
 * strings of at most 1,024 UTF-8 bytes each, returned without duplicates. Anything else is a
 * `CacheInputError` naming the rule, thrown before anything is written.
 */
export function validateTags(tags: unknown): readonly string[] {
  if (tags === undefined) return NO_TAGS;
  if (!Array.isArray(tags)) {
    throw new CacheInputError(
      `Invalid tags ${describe(tags)}: pass an array of non-empty strings`,
    );
  }
  if (tags.length > MAX_TAGS) {
    throw new CacheInputError(
      `Invalid tags: ${tags.length} tags given, at most ${MAX_TAGS} per entry are allowed`,
    );
  }
  for (let i = 0; i < tags.length; i++) {
    const tag = tags[i];
    if (typeof tag !== "string") {
      throw new CacheInputError(
        `Invalid tag at index ${i} (${describe(tag)}): each tag must be a string`,
      );
    }
    if (tag.length === 0) {
      throw new CacheInputError(`Invalid tag at index ${i}: a tag must not be an empty string`);
    }
    // A UTF-16 code unit is at most 3 UTF-8 bytes: only long tags need encoding.
    if (tag.length * 3 > MAX_TAG_BYTES && encoder.encode(tag).length > MAX_TAG_BYTES) {
      throw new CacheInputError(
        `Invalid tag at index ${i}: ${
          encoder.encode(tag).length
        } UTF-8 bytes, at most ${MAX_TAG_BYTES} are allowed`,
      );
    }
  }
  return tags.length < 2 ? tags : [...new Set(tags as string[])];
}

/** `invalidateTags`' argument checked: as `validateTags`, but the list itself is required. */
export function requireTags(tags: unknown): readonly string[] {
  return validateTags(tags === undefined ? null : tags);
}

let digests = new Map<string, string>();

/** The tag's digest: the lowercase hex SHA-256 of `tag:` and the tag (memoized). */
export function tagDigest(tag: string): string {
  let digest = digests.get(tag);
  if (digest === undefined) {
    digest = sha256Hex(`tag:${tag}`);
    if (digests.size >= 4096) digests = new Map();
    digests.set(tag, digest);
  }
  return digest;
}

/** `<prefix>tag:<registry key after <prefix>registry:>:<digest>`. */
export function tagSetKey(prefix: string, registry: string, tag: string): string {
  return `${prefix}tag:${registry.slice(prefix.length + 9)}:${tagDigest(tag)}`;
}

/** `<prefix>tags:<registry key after <prefix>registry:>`: the scope's (bucket's) tag sets. */
export function tagIndexKey(prefix: string, registry: string): string {
  return `${prefix}tags:${registry.slice(prefix.length + 9)}`;
}

/** What a tagged write adds to its script call: the tag index and each tag's set. */
export interface TagTarget {
  /** Identifies the tag list within its registry (for coalescing writes of the same tags). */
  readonly id: string;
  /** The registry's tag index. */
  readonly index: string;
  /** The tag sets of the registry's scope (bucket), one per tag. */
  readonly sets: readonly string[];
}

/** The tag sets a write of `tags` to `registry` adds its keys to; `undefined` for no tags. */
export function tagTarget(
  prefix: string,
  registry: string,
  tags: readonly string[],
): TagTarget | undefined {
  if (tags.length === 0) return undefined;
  const sets = tags.map((tag) => tagSetKey(prefix, registry, tag));
  return { id: sets.join(" "), index: tagIndexKey(prefix, registry), sets };
}

/** What the tag operations work with (the provider's servers, layout and settings). */
export interface TagContext {
  /** The servers, with the calls this tick coalesced sent first. */
  servers(): Servers;
  /** `true` in a cluster: scripts may only touch declared keys. */
  clustered: boolean;
  /** The key prefix. */
  prefix: string;
  /** Keys one script call deletes. */
  batch: number;
  /** The generation counter a clear of `registry` bumps (src/layout.ts). */
  generationKey(registry: string): string;
}

/**
 * Deletes every entry listed in one tag set of one registry, in bounded batches, and bumps the
 * registry's generation counter first; `onBatch` is told each batch's count. Each member is also
 * removed from the registry; a key already deleted (through another tag) is not counted again.
 */
export async function invalidateTagSet(
  context: TagContext,
  registry: string,
  tagSet: string,
  onBatch: (deleted: number) => void,
): Promise<void> {
  const { prefix, batch } = context;
  const index = tagIndexKey(prefix, registry);
  const generation = context.generationKey(registry);
  if (!context.clustered) {
    for (;;) {
      const [count, left] = await context.servers().run("invalidate_tag", [
        tagSet,
        registry,
        generation,
        index,
      ], [batch, prefix]) as [number, number];
      onBatch(Number(count));
      if (Number(left) === 0) return;
    }
  }
  await context.servers().run("bump_generation", [generation], []);
  for (;;) {
    const members = await context.servers().srandmember(tagSet, batch);
    if (members.length === 0) break;
    const local = await localMembers(context, tagSet, members);
    if (local.length === 0) continue;
    const deleted = await context.servers().run(
      "invalidate_members",
      [tagSet, registry, ...local],
      [prefix],
    );
    onBatch(Number(deleted));
  }
  await context.servers().srem(index, tagSet);
}

/**
 * Deletes every tag set listed in one tag index (the scope's or bucket's), in bounded batches,
 * and the index itself: what a clear of the scope does after it cleared the registry. The entries
 * are the registry's clear's. Returns how many tag sets were deleted.
 */
export async function dropTagSets(context: TagContext, index: string): Promise<number> {
  const tagPrefix = `${context.prefix}tag:`;
  let dropped = 0;
  for (;;) {
    const members = await context.servers().srandmember(index, context.batch);
    if (members.length === 0) return dropped;
    const local = context.clustered ? await localMembers(context, index, members) : members;
    if (local.length === 0) continue;
    // clear_members: SREM each from the index, UNLINK it when it is a tag set of this prefix.
    dropped += Number(await context.servers().run("clear_members", [index, ...local], [tagPrefix]));
  }
}

/**
 * Every Set of one node named `<prefix>tag:*` (`kind: "sets"`) or `<prefix>tags:*` (`"indexes"`),
 * the prefix glob-escaped, found with SCAN ... TYPE set; in a cluster only keys with a hash tag
 * (whose members share their slot).
 */
export async function scanTagKeys(
  node: Scanner,
  prefix: string,
  kind: "sets" | "indexes",
  clustered: boolean,
): Promise<string[]> {
  const pattern = `${globEscape(prefix)}${kind === "sets" ? "tag" : "tags"}:*`;
  return await scanSets(node, pattern, (key) => !clustered || hashTagOf(key) !== key);
}

/**
 * The members of the set's slot; the others (keys of other slots, added by hand) are dropped
 * from the set with a plain SREM and their keys left alone.
 */
async function localMembers(
  context: TagContext,
  set: string,
  members: string[],
): Promise<string[]> {
  const slot = keySlot(set);
  const local = members.filter((member) => keySlot(member) === slot);
  if (local.length < members.length) {
    await context.servers().srem(set, ...members.filter((member) => keySlot(member) !== slot));
  }
  return local;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return `a string ${JSON.stringify(value.slice(0, 40))}`;
  if (typeof value === "object") return `a ${value.constructor?.name ?? "null-prototype object"}`;
  return `${typeof value} ${String(value)}`;
}
