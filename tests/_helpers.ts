/**
 * Shared test helpers: build a provider for a harness server, collect log lines, read files of
 * the repository.
 */

import { readFile } from "node:fs/promises";
import { sha1Hex } from "../src/runtime.ts";
import {
  type CacheLogger,
  RedisCache,
  type RedisCacheOptions,
  RedisConfig,
  type RedisConfigOptions,
  ValkeyCache,
  ValkeyConfig,
} from "../mod.ts";
import type { ServerKind, TestServer } from "./harness.ts";

/** A provider of either kind, as the tests drive it. */
export type AnyCache = RedisCache | ValkeyCache;

/** A config pointing at `server`. */
export function configFor(server: TestServer, extra: RedisConfigOptions = {}): RedisConfig {
  const Config = server.kind === "redis" ? RedisConfig : ValkeyConfig;
  return new Config({ url: server.url, ...extra });
}

/** A provider of the server's kind pointing at `server` (not yet connected). */
export function cacheFor(
  server: TestServer,
  options: Omit<RedisCacheOptions, "config"> & { configOptions?: RedisConfigOptions } = {},
): AnyCache {
  const { configOptions, ...rest } = options;
  const config = configFor(server, configOptions);
  return server.kind === "redis"
    ? new RedisCache({ logger: quietLogger(), ...rest, config })
    : new ValkeyCache({ logger: quietLogger(), ...rest, config: config as ValkeyConfig });
}

/** A logger that keeps its lines, for assertions on what was logged. */
export function collectingLogger(): CacheLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (line) => lines.push(line) };
}

/** A logger that drops lines: for tests that provoke faults on purpose and check them otherwise. */
export function quietLogger(): CacheLogger {
  return { warn: () => {} };
}

/** The SHA-1 of a file of `lua/`, as an operator would compute it. */
export async function luaSha(name: string): Promise<string> {
  return sha1Hex(await readFile(new URL(`../lua/${name}.lua`, import.meta.url), "utf8"));
}

/** The number of calls of one command recorded by INFO commandstats. */
export async function commandCalls(server: TestServer, command: string): Promise<number> {
  const info = await server.cli("INFO", "commandstats");
  const match = info.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`));
  return match ? Number(match[1]) : 0;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Every server kind the suites run against. */
export const KINDS: readonly ServerKind[] = ["redis", "valkey"];
