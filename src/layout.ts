/**
 * The key layout: every key name the Redis-protocol provider sends comes from here, so the
 * standalone layout (byte-compatible with the Python original) and the cluster layout (hash-tagged
 * scopes split into buckets) are one swap.
 *
 * Standalone (unchanged from the original):
 *
 * | what | key |
 * |---|---|
 * | tenant entry | `<prefix>tenant:<companyId>:<name>:<hash>` |
 * | tenant registry | `<prefix>registry:tenant:<companyId>` |
 * | global entry | `<prefix><name>:<hash>` |
 * | global registry | `<prefix>registry:global` |
 * | tenant tag set | `<prefix>tag:tenant:<companyId>:<digest>` |
 * | global tag set | `<prefix>tag:global:<digest>` |
 * | tenant tag index | `<prefix>tags:tenant:<companyId>` |
 * | global tag index | `<prefix>tags:global` |
 *
 * Cluster: every key of one scope bucket carries the same hash tag, so every script call (an entry
 * and its registry) stays within one slot, and a scope split into buckets spreads over the masters.
 * The bucket is chosen from the entry's hash (its first 32 bits mod the bucket count).
 *
 * | what | key |
 * |---|---|
 * | tenant entry | `<prefix>tenant:<scope>:<name>:<hash>` |
 * | tenant registry | `<prefix>registry:tenant:<scope>` |
 * | global entry | `<prefix>global:{g<bucket>}:<name>:<hash>` |
 * | global registry | `<prefix>registry:global:{g<bucket>}` |
 * | tenant tag set | `<prefix>tag:tenant:<scope>:<digest>` |
 * | global tag set | `<prefix>tag:global:{g<bucket>}:<digest>` |
 * | tenant tag index | `<prefix>tags:tenant:<scope>` |
 * | global tag index | `<prefix>tags:global:{g<bucket>}` |
 *
 * where a tenant's `<scope>` is `{<companyId>}` (one bucket) or `{<companyId>#<bucket>}`, with the
 * id written literally when it holds no `{`, `}` or `#`; any other id is written as
 * `{#<digest>}:<companyId>` or `{#<digest>#<bucket>}:<companyId>`, with `<digest>` the first 16
 * hex digits of the id's SHA-256. The literal id always follows the digest, and a literal tag never
 * holds `#`, so two different tenants can never share a key, a registry or any other scope key;
 * the tag is only ever the text between the braces the layout wrote (a prefix with braces is
 * refused in cluster mode).
 *
 * Tags (src/tags.ts): a tag set is `<prefix>tag:<registry key after <prefix>registry:>:<digest>`
 * and the scope's (bucket's) tag index, the set of its tag sets, `<prefix>tags:<the same>`, so
 * each lives in the slot of the entries it lists. `<digest>` is the 64 lowercase hex digits of
 * SHA-256(`tag:` + the tag's UTF-8 bytes): fixed-length and last, so no two (scope, tag) pairs
 * share a key, whatever the tenant id and the tag hold (tenant `a` with tag `b:c` and tenant
 * `a:b` with tag `c` are two keys). Neither is under `<prefix>registry:`, whose every Set the
 * Python original's clear-all treats as a registry.
 *
 * getOrSet's keys follow the registry of their bucket: the generation counter
 * `<prefix>generation:<registry key after <prefix>registry:>`, the clear-all epoch
 * `<prefix>generation:all:<same>` (one per bucket, instead of the single server's
 * `<prefix>generation:all`) and the lock `<prefix>lock:<entry key after <prefix>>`, each with the
 * bucket's hash tag.
 *
 * @module
 */

import { entryKey, registryKey } from "./keys.ts";
import { sha256Hex } from "./runtime.ts";
import { hashTagOf } from "./slots.ts";

// getOrSet's keys (src/get_or_set.ts), shared by every layout and by MemoryCache.

/** `<prefix>generation:tenant:<companyId>` or `<prefix>generation:global`. */
export function generationKey(prefix: string, companyId?: string): string {
  return companyId === undefined
    ? `${prefix}generation:global`
    : `${prefix}generation:tenant:${companyId}`;
}

/** The clear-all epoch, `<prefix>generation:all`, which every clearAll increments. */
export function allGenerationKey(prefix: string): string {
  return `${prefix}generation:all`;
}

/**
 * The generation counter of a registry found by the clear-all SCAN:
 * `<prefix>registry:<scope>` → `<prefix>generation:<scope>`.
 */
export function registryGenerationKey(prefix: string, registry: string): string {
  return `${prefix}generation:${registry.slice(prefix.length + "registry:".length)}`;
}

/** `<prefix>lock:<entry key without the prefix>`. */
export function lockKey(prefix: string, key: string): string {
  return `${prefix}lock:${key.slice(prefix.length)}`;
}

/** Where the provider's keys live: one implementation per server topology. */
export interface KeyLayout {
  /** `true` for the cluster layout (hash-tagged scopes, slot-aware batches). */
  readonly clustered: boolean;
  /** The key of one entry. */
  entryKey(name: string, hash: string, companyId?: string): string;
  /** The registry (a Set) the entry with `hash` is registered in: its scope's, or bucket's. */
  registryKey(hash: string, companyId?: string): string;
  /** Every registry of one scope: one standalone, one per bucket in a cluster. */
  scopeRegistries(companyId?: string): string[];
  /**
   * Whether a Set found by `SCAN MATCH <prefix>registry:*` is a registry this layout may clear and
   * prune (in a cluster: one with a hash tag, so its members share its slot).
   */
  isRegistry(key: string): boolean;
  /**
   * The generation counter of a registry's scope (getOrSet; see src/get_or_set.ts), which a clear
   * of that registry increments: `<prefix>generation:<the registry key after <prefix>registry:>`.
   */
  generationKey(registry: string): string;
  /**
   * The clear-all epoch a getOrSet of that registry's scope reads, which clearAll increments:
   * `<prefix>generation:all` on a single server; one per bucket in a cluster,
   * `<prefix>generation:all:<the registry key after <prefix>registry:>`, so that it shares the
   * slot of the entries it guards.
   */
  epochKey(registry: string): string;
  /** The getOrSet lock of an entry: `<prefix>lock:<the entry key after <prefix>>`. */
  lockKey(entryKey: string): string;
}

/** The layout of the Python original, for a single server (or a primary with replicas). */
export class StandaloneLayout implements KeyLayout {
  readonly clustered = false;
  readonly #prefix: string;

  /** @param prefix The key prefix, used as is. */
  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** `<prefix>tenant:<companyId>:<name>:<hash>` or `<prefix><name>:<hash>`. */
  entryKey(name: string, hash: string, companyId?: string): string {
    return entryKey(this.#prefix, name, hash, companyId);
  }

  /** `<prefix>registry:tenant:<companyId>` or `<prefix>registry:global`. */
  registryKey(_hash: string, companyId?: string): string {
    return registryKey(this.#prefix, companyId);
  }

  /** The scope's one registry. */
  scopeRegistries(companyId?: string): string[] {
    return [registryKey(this.#prefix, companyId)];
  }

  /** Every Set under `<prefix>registry:` (including those the Python original wrote). */
  isRegistry(_key: string): boolean {
    return true;
  }

  /** `<prefix>generation:tenant:<companyId>` or `<prefix>generation:global`. */
  generationKey(registry: string): string {
    return registryGenerationKey(this.#prefix, registry);
  }

  /** The one clear-all epoch, `<prefix>generation:all`. */
  epochKey(_registry: string): string {
    return allGenerationKey(this.#prefix);
  }

  /** `<prefix>lock:<entry key after the prefix>`. */
  lockKey(entryKey: string): string {
    return lockKey(this.#prefix, entryKey);
  }
}

/** Bucket counts of the cluster layout. */
export interface ClusterLayoutOptions {
  /** Buckets per tenant (1: a tenant lives in one slot). */
  tenantBuckets: number;
  /** Buckets of the global scope. */
  globalBuckets: number;
}

// A companyId is written literally inside the braces only when it holds none of these.
const NOT_LITERAL = /[{}#]/;
const DIGEST_CHARS = 16;

/** The hash-tagged layout for Redis Cluster / Valkey Cluster. */
export class ClusterLayout implements KeyLayout {
  readonly clustered = true;
  readonly #prefix: string;
  readonly #tenantBuckets: number;
  readonly #globalBuckets: number;
  /** The tag (without bucket) and literal-id suffix of recent tenants: digests cost a SHA-256. */
  #tenants = new Map<string, readonly [tag: string, suffix: string]>();

  /**
   * @param prefix The key prefix; must hold no `{` or `}` (checked by the config).
   * @param options The bucket counts.
   */
  constructor(prefix: string, options: ClusterLayoutOptions) {
    this.#prefix = prefix;
    this.#tenantBuckets = options.tenantBuckets;
    this.#globalBuckets = options.globalBuckets;
  }

  /** `<prefix>tenant:<scope>:<name>:<hash>` or `<prefix>global:{g<bucket>}:<name>:<hash>`. */
  entryKey(name: string, hash: string, companyId?: string): string {
    return companyId === undefined
      ? `${this.#prefix}global:${
        this.#globalScope(bucketOf(hash, this.#globalBuckets))
      }:${name}:${hash}`
      : `${this.#prefix}tenant:${this.#tenantScope(companyId, hash)}:${name}:${hash}`;
  }

  /** `<prefix>registry:tenant:<scope>` or `<prefix>registry:global:{g<bucket>}`. */
  registryKey(hash: string, companyId?: string): string {
    return companyId === undefined
      ? `${this.#prefix}registry:global:${this.#globalScope(bucketOf(hash, this.#globalBuckets))}`
      : `${this.#prefix}registry:tenant:${this.#tenantScope(companyId, hash)}`;
  }

  /** One registry per bucket of the scope. */
  scopeRegistries(companyId?: string): string[] {
    if (companyId === undefined) {
      return Array.from(
        { length: this.#globalBuckets },
        (_, bucket) => `${this.#prefix}registry:global:${this.#globalScope(bucket)}`,
      );
    }
    return Array.from(
      { length: this.#tenantBuckets },
      (_, bucket) =>
        `${this.#prefix}registry:tenant:${this.#tenantScopeOfBucket(companyId, bucket)}`,
    );
  }

  /** A Set with a hash tag under `<prefix>registry:tenant:` or `<prefix>registry:global:`. */
  isRegistry(key: string): boolean {
    const rest = key.slice(this.#prefix.length);
    return (rest.startsWith("registry:tenant:{") || rest.startsWith("registry:global:{")) &&
      hashTagOf(key) !== key;
  }

  /** `<prefix>generation:tenant:<scope>` or `<prefix>generation:global:{g<bucket>}`. */
  generationKey(registry: string): string {
    return registryGenerationKey(this.#prefix, registry);
  }

  /** `<prefix>generation:all:tenant:<scope>` or `<prefix>generation:all:global:{g<bucket>}`. */
  epochKey(registry: string): string {
    return `${this.#prefix}generation:all:${registry.slice(this.#prefix.length + 9)}`;
  }

  /** `<prefix>lock:<entry key after the prefix>`: the entry's hash tag, so its slot. */
  lockKey(entryKey: string): string {
    return lockKey(this.#prefix, entryKey);
  }

  #globalScope(bucket: number): string {
    return `{g${bucket}}`;
  }

  #tenantScope(companyId: string, hash: string): string {
    return this.#tenantScopeOfBucket(companyId, bucketOf(hash, this.#tenantBuckets));
  }

  #tenantScopeOfBucket(companyId: string, bucket: number): string {
    const [tag, suffix] = this.#tenant(companyId);
    return this.#tenantBuckets === 1 ? `{${tag}}${suffix}` : `{${tag}#${bucket}}${suffix}`;
  }

  #tenant(companyId: string): readonly [string, string] {
    let entry = this.#tenants.get(companyId);
    if (entry === undefined) {
      entry = NOT_LITERAL.test(companyId)
        ? [`#${sha256Hex(companyId).slice(0, DIGEST_CHARS)}`, `:${companyId}`]
        : [companyId, ""];
      if (this.#tenants.size >= 4096) this.#tenants = new Map();
      this.#tenants.set(companyId, entry);
    }
    return entry;
  }
}

/** The bucket of an entry: the first 32 bits of its hash, mod the bucket count. */
export function bucketOf(hash: string, buckets: number): number {
  return buckets === 1 ? 0 : parseInt(hash.slice(0, 8), 16) % buckets;
}
