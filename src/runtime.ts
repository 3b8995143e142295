/**
 * The only module that knows whether it runs on Deno or Node: environment access and reading the
 * Lua files shipped beside the sources. Hashing uses `node:crypto`, which both runtimes provide
 * natively (`crypto.subtle.digest` is asynchronous and about 15× slower per small key).
 *
 * @module
 */

import * as nodeCrypto from "node:crypto";

/**
 * The one-shot `crypto.hash()` (Node >= 20.12, Deno 2) is about twice as fast per small key as
 * `createHash()`, which allocates a Hash object per call; older Node 20 releases lack it.
 */
const oneShotHash = (nodeCrypto as {
  hash?: (algorithm: string, data: string, encoding: "hex") => string;
}).hash;
const { createHash, randomBytes } = nodeCrypto;

// deno-lint-ignore no-explicit-any
const denoNs: any = (globalThis as any).Deno;

/**
 * A snapshot of environment variables, as `Deno.env.toObject()` or `process.env` give it.
 *
 * @example Configuring from an explicit environment
 * ```ts
 * import { closeCache, type EnvRecord, RedisConfig, setCache } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const env: EnvRecord = { REDIS_HOST: "cache.internal", REDIS_PORT: "6380", REDIS_DB: undefined };
 * const config = RedisConfig.fromEnv(env);
 * assert.equal(config.host, "cache.internal");
 * assert.equal(config.port, 6380);
 * assert.equal(config.db, 0);
 * // With ENABLE_CACHE=false, setCache installs nothing and connects nowhere.
 * assert.equal(await setCache({ env: { ENABLE_CACHE: "false" } }), false);
 * await closeCache();
 * ```
 */
export type EnvRecord = Record<string, string | undefined>;

/**
 * Returns the process environment: `Deno.env.toObject()` on Deno (needs `--allow-env`),
 * `process.env` on Node. Returns an empty record when env access is denied, so a missing
 * permission reads as "nothing configured" instead of crashing the caller.
 */
export function readEnv(): EnvRecord {
  try {
    if (denoNs?.env) return denoNs.env.toObject();
    // deno-lint-ignore no-explicit-any
    return (globalThis as any).process?.env ?? {};
  } catch {
    return {};
  }
}

/** Lowercase hex SHA-256 of the UTF-8 bytes of `text`. */
export function sha256Hex(text: string): string {
  if (oneShotHash) return oneShotHash("sha256", text, "hex");
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Lowercase hex SHA-1 of the UTF-8 bytes of `text`: the digest Redis names a script by. */
export function sha1Hex(text: string): string {
  return createHash("sha1").update(text, "utf8").digest("hex");
}

/** 16 random bytes from the system's CSPRNG as lowercase hex: a lock owner token. */
export function randomToken(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Reads a UTF-8 text file shipped with the library, addressed relative to a module URL.
 * Deno reads `file:` and `https:` URLs (the JSR case) through `fetch`; Node reads the file system.
 */
export async function readShippedText(url: URL): Promise<string> {
  if (denoNs) {
    if (url.protocol === "file:") return await denoNs.readTextFile(url);
    const response = await fetch(url);
    if (!response.ok) throw new Error(`Cannot fetch ${url.href}: HTTP ${response.status}`);
    return await response.text();
  }
  const { readFile } = await import("node:fs/promises");
  return await readFile(url, "utf8");
}

/** Reads a UTF-8 text file named by a path (a TLS CA file, for example). */
export async function readTextFile(path: string): Promise<string> {
  if (denoNs) return await denoNs.readTextFile(path);
  const { readFile } = await import("node:fs/promises");
  return await readFile(path, "utf8");
}
