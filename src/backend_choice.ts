/**
 * Which provider to build, with which config: the one resolution path shared by `setCache()`
 * (src/facade.ts) and the admin CLI (scripts/cache_admin.ts), so that both reach the same server
 * from the same environment whichever client packages are installed. Internal: not exported from
 * `mod.ts`.
 *
 * @module
 */

import {
  type BackendName,
  hasValkeyEnv,
  readBackendSettings,
  RedisConfig,
  ValkeyConfig,
} from "./config.ts";
import { CacheConfigError } from "./errors.ts";
import type { EnvRecord } from "./runtime.ts";

/** A provider kind `setCache()` can install (`auto` resolved). */
export type ProviderKind = Exclude<BackendName, "auto">;

/** One provider to try: its kind and the config it connects with. */
export interface BackendCandidate {
  /** The provider class to build: `RedisCache` (ioredis), `ValkeyCache` (iovalkey) or memory. */
  readonly kind: ProviderKind;
  /**
   * Where it connects. For `memory`, the config whose TTL and size limit it takes. A `valkey`
   * candidate's config is a `ValkeyConfig` unless the caller passed its own.
   */
  readonly config: RedisConfig;
}

/** Options of {@linkcode backendCandidates}. */
export interface BackendChoiceOptions {
  /** The provider asked for; `undefined` reads `CACHE_BACKEND` (default `auto`). */
  provider?: BackendName;
  /** A config given by the caller: every candidate uses it instead of the environment's. */
  config?: RedisConfig;
}

const PROVIDERS: readonly BackendName[] = ["redis", "valkey", "memory", "auto"];

/**
 * The providers to try, in order: the first whose client package loads is the one to use. An
 * explicit provider is the only candidate. Under `auto`, `VALKEY_*` variables put Valkey first,
 * else Redis comes first, and the other client package is the fallback when the first cannot be
 * loaded (a Node user installs only one of them).
 *
 * Under `auto` the variables pick the server and the installed package only the client: with
 * `VALKEY_*` set, both candidates connect where `ValkeyConfig.fromEnv(env)` points, so a Valkey
 * named by `VALKEY_HOST` is still reached through ioredis when iovalkey is not installed (and not
 * through `REDIS_*`'s default `localhost:6379`).
 *
 * @param env The variables to read.
 * @param options The provider asked for and a config given by the caller, if any.
 * @returns One or two candidates, in the order to try them.
 * @throws {CacheConfigError} When the provider, `CACHE_BACKEND` or a connection variable is
 * malformed.
 */
export function backendCandidates(
  env: EnvRecord,
  options: BackendChoiceOptions = {},
): BackendCandidate[] {
  const requested = options.provider ?? readBackendSettings(env).backend;
  if (!PROVIDERS.includes(requested)) {
    throw new CacheConfigError(
      `Invalid provider "${requested}": use "redis", "valkey", "memory" or "auto"`,
    );
  }
  const given = options.config;
  if (requested !== "auto") {
    const config = given ??
      (requested === "valkey" ? ValkeyConfig.fromEnv(env) : RedisConfig.fromEnv(env));
    return [{ kind: requested, config }];
  }
  if (hasValkeyEnv(env)) {
    const config = given ?? ValkeyConfig.fromEnv(env);
    return [{ kind: "valkey", config }, { kind: "redis", config }];
  }
  // No VALKEY_* variable: ValkeyConfig.fromEnv falls back to every REDIS_* twin, so both
  // candidates name the same server; the fallback's config is of its own class.
  return [
    { kind: "redis", config: given ?? RedisConfig.fromEnv(env) },
    { kind: "valkey", config: given ?? ValkeyConfig.fromEnv(env) },
  ];
}
