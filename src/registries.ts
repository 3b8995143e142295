/**
 * Registry discovery and counting, shared by the provider (`clearAll`, `pruneRegistries`) and
 * the admin CLI (`scripts/cache_admin.ts`): one place knows how the registries of a prefix are
 * found and how a registry key maps back to its scope.
 *
 * Unlike the provider's methods, these functions throw on a server fault: the provider turns
 * that into a logged miss, the admin CLI into exit code 1.
 *
 * @module
 */

import { globEscape } from "./keys.ts";
import { runScript, type Script, type ScriptClient } from "./scripts.ts";

/** The commands registry discovery and counting need (ioredis and iovalkey both have them). */
export interface RegistryClient extends ScriptClient {
  /** SCAN with MATCH / COUNT / TYPE arguments. */
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  /** SCARD. */
  scard(key: string): Promise<number>;
}

/** How many keys one SCAN call looks at. */
export const SCAN_COUNT = 1000;
/** How many registry members one `count_live_members` call looks at. */
const COUNT_PAGE = 500;

/**
 * Every Set named `<prefix>registry:*` (the prefix glob-escaped, so a prefix holding `*`, `?` or
 * `[` matches only itself), found with SCAN ... TYPE set, so registries written by the Python
 * original are found too and a non-Set key that happens to match is left alone.
 *
 * @param client A connected client.
 * @param prefix The configured prefix, used as is.
 * @returns The registry keys, each once, in no particular order.
 * @throws When the server fails.
 */
export async function scanRegistries(
  client: Pick<RegistryClient, "scan">,
  prefix: string,
): Promise<string[]> {
  return await scanSets(client, `${globEscape(prefix)}registry:*`);
}

/**
 * Every Set key matching `pattern` on one node (SCAN MATCH ... TYPE set, each key once), those
 * `keep` accepts.
 *
 * @param client A connected client (or one cluster node).
 * @param pattern A glob whose user-supplied parts are already escaped.
 * @param keep Which keys to return (all by default).
 * @returns The keys, in no particular order.
 */
export async function scanSets(
  client: Pick<RegistryClient, "scan">,
  pattern: string,
  keep: (key: string) => boolean = () => true,
): Promise<string[]> {
  const found = new Set<string>();
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(
      cursor,
      "MATCH",
      pattern,
      "COUNT",
      SCAN_COUNT,
      "TYPE",
      "set",
    );
    cursor = next;
    for (const key of keys) if (keep(key)) found.add(key);
  } while (cursor !== "0");
  return [...found];
}

/** The scope a registry key belongs to. */
export type RegistryScope =
  | { kind: "global" }
  | { kind: "tenant"; companyId: string }
  | { kind: "other"; name: string };

/**
 * The scope of a registry key found under `prefix`: the inverse of `registryKey`. A Set under
 * `<prefix>registry:` that is neither the global nor a tenant registry is `other` (`clearAll`
 * clears it all the same).
 *
 * @param prefix The configured prefix.
 * @param key A key that starts with `<prefix>registry:`.
 * @param clustered Whether the key follows the cluster layout (src/layout.ts): a bucket registry
 * `registry:global:{g<b>}`, `registry:tenant:{<id>[#<b>]}` or `registry:tenant:{#<digest>[#<b>]}:<id>`.
 * @returns The scope, with the tenant id exactly as it stands in the key.
 */
export function registryScope(prefix: string, key: string, clustered = false): RegistryScope {
  const rest = key.slice(`${prefix}registry:`.length);
  if (clustered) {
    if (rest.startsWith("global:{") && rest.endsWith("}")) return { kind: "global" };
    const close = rest.indexOf("}");
    if (rest.startsWith("tenant:{") && close > 8) {
      const tag = rest.slice(8, close);
      const after = rest.slice(close + 1);
      // A literal id holds no "#"; a digest tag starts with one and the id follows ":".
      if (!tag.startsWith("#") && after === "") {
        return { kind: "tenant", companyId: tag.split("#")[0] };
      }
      if (tag.startsWith("#") && after.length > 1 && after[0] === ":") {
        return { kind: "tenant", companyId: after.slice(1) };
      }
    }
    return { kind: "other", name: rest };
  }
  if (rest === "global") return { kind: "global" };
  if (rest.startsWith("tenant:")) return { kind: "tenant", companyId: rest.slice(7) };
  return { kind: "other", name: rest };
}

/** The counts of one registry. */
export interface RegistryCounts {
  /** The registry key. */
  registry: string;
  /** Its scope. */
  scope: RegistryScope;
  /** Members of the registry (SCARD). */
  members: number;
  /** Members whose key still exists (not expired, evicted or deleted behind the cache's back). */
  live: number;
}

/**
 * Counts one registry: its members (SCARD) and those whose key exists, page by page with the
 * `count_live_members` script so no call blocks the server for long. A snapshot: under
 * concurrent writes the live count is approximate (bounded by the member count).
 *
 * @param client A connected client.
 * @param script The `count_live_members` script.
 * @param prefix The configured prefix.
 * @param registry The registry key.
 * @param clustered Whether the key follows the cluster layout (see {@linkcode registryScope}).
 * @returns The counts.
 * @throws When the server fails.
 */
export async function countRegistry(
  client: RegistryClient,
  script: Script,
  prefix: string,
  registry: string,
  clustered = false,
): Promise<RegistryCounts> {
  let cursor = "0";
  let live = 0;
  do {
    const [next, count] = await runScript(client, script, [registry], [
      cursor,
      COUNT_PAGE,
    ]) as [string, number];
    cursor = String(next);
    live += count;
  } while (cursor !== "0");
  const members = await client.scard(registry);
  return {
    registry,
    scope: registryScope(prefix, registry, clustered),
    members,
    live: Math.min(live, members),
  };
}
