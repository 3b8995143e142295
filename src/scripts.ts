/**
 * The Lua scripts of `lua/`: read once per process, registered with SCRIPT LOAD when a connection
 * becomes ready, and run with EVALSHA. A NOSCRIPT reply (server restarted, SCRIPT FLUSH) loads the
 * script again and retries once. EVAL is never sent, so the text that runs is always a file of
 * `lua/` as it stands, and `SCRIPT EXISTS <sha1 of the file>` tells an operator what runs.
 *
 * @module
 */

import { readShippedText, sha1Hex } from "./runtime.ts";

/** The scripts of `lua/`, by file name without `.lua`. */
export const SCRIPT_NAMES = [
  "set_and_register",
  "delete_and_unregister",
  "clear_registry",
  "prune_registry",
  "count_live_members",
  "read_or_lock",
  "set_if_generation",
  "release_lock",
  "bump_generation",
  "clear_members",
  "prune_members",
  "set_and_register_tags",
  "invalidate_tag",
  "invalidate_members",
  "read_with_ttl",
  "read_ttls",
] as const;

/** One script's name. */
export type ScriptName = typeof SCRIPT_NAMES[number];

/** A script's source text and the SHA-1 Redis knows it by. */
export interface Script {
  readonly name: ScriptName;
  readonly source: string;
  readonly sha: string;
}

/**
 * The commands of an ioredis / iovalkey client that scripts need.
 *
 * @example An in-memory stand-in for unit tests
 * ```ts
 * import type { ScriptClient } from "@core-lib/cache";
 * import { createHash } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * // An ioredis / iovalkey client fits this shape; this stand-in connects nowhere.
 * const scripts = new Map<string, string>();
 * const client: ScriptClient = {
 *   script: async (_subcommand, source) => {
 *     const sha = createHash("sha1").update(source).digest("hex");
 *     scripts.set(sha, source);
 *     return sha;
 *   },
 *   evalsha: async (sha, numKeys, ...keysAndArgs) => {
 *     if (!scripts.has(sha)) throw new Error("NOSCRIPT No matching script");
 *     return keysAndArgs.slice(0, numKeys); // stands in for running the script
 *   },
 * };
 * const sha = await client.script("LOAD", "return KEYS[1]");
 * assert.equal(sha, "4a2267357833227dd98abdedb8cf24b15a986445");
 * assert.deepEqual(await client.evalsha(String(sha), 1, "cache:k", "arg"), ["cache:k"]);
 * await assert.rejects(client.evalsha("0".repeat(40), 0), /NOSCRIPT/);
 * ```
 */
export interface ScriptClient {
  /** EVALSHA: runs a registered script. */
  evalsha(sha: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  /** SCRIPT LOAD: registers a script's source. */
  script(subcommand: "LOAD", source: string): Promise<unknown>;
}

let loaded: Promise<Record<ScriptName, Script>> | undefined;

/** Reads every script of `lua/` once per process. */
export function loadScriptSources(): Promise<Record<ScriptName, Script>> {
  loaded ??= (async () => {
    const entries = await Promise.all(SCRIPT_NAMES.map(async (name) => {
      const source = await readShippedText(new URL(`../lua/${name}.lua`, import.meta.url));
      return [name, { name, source, sha: sha1Hex(source) }] as const;
    }));
    return Object.fromEntries(entries) as Record<ScriptName, Script>;
  })();
  loaded.catch(() => loaded = undefined);
  return loaded;
}

/** Registers every script on one connection with SCRIPT LOAD. */
export async function registerScripts(
  client: ScriptClient,
  scripts: Record<ScriptName, Script>,
): Promise<void> {
  await Promise.all(SCRIPT_NAMES.map((name) => client.script("LOAD", scripts[name].source)));
}

/**
 * Runs `script` with EVALSHA; on NOSCRIPT, registers it again and retries once. Other errors
 * (server down, timeout, OOM) reach the caller, which degrades them to a miss.
 */
export async function runScript(
  client: ScriptClient,
  script: Script,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  try {
    return await client.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
    await client.script("LOAD", script.source);
    return await client.evalsha(script.sha, keys.length, ...keys, ...args);
  }
}
