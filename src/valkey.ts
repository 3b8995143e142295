/**
 * `ValkeyCache`: the provider over iovalkey.
 *
 * @module
 */

import { ValkeyConfig } from "./config.ts";
import type { ClientConstructor, ClusterConstructor } from "./client_types.ts";
import { type RedisCacheOptions, RedisProtocolCache } from "./provider.ts";

/**
 * A cache over Valkey through iovalkey (loaded by dynamic import, so Node users install it only
 * when they use it). Same behaviour as `RedisCache`; reads `VALKEY_*` variables, each falling
 * back to its `REDIS_*` twin. The constructor does no I/O; call `connect()`.
 *
 * @example Storing and reading a global entry
 * ```ts ignore
 * import { ValkeyCache, ValkeyConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new ValkeyCache({ config: new ValkeyConfig({ host: "127.0.0.1", port: 6381 }) });
 * if (await cache.connect()) {
 *   await cache.set("greeting", "hello", { ttl: 60 });
 *   assert.equal(await cache.get("greeting"), "hello");
 * }
 * await cache.close();
 * ```
 */
export class ValkeyCache extends RedisProtocolCache<ValkeyConfig> {
  /** The npm package this provider drives. */
  protected readonly clientPackage = "iovalkey";

  /**
   * Creates the provider; no I/O happens until `connect()`.
   *
   * @param options Connection config (default `ValkeyConfig.fromEnv()`), name, TTL, timeout and
   * tuning; see `RedisCacheOptions`.
   */
  constructor(options: RedisCacheOptions<ValkeyConfig> = {}) {
    super(options.config ?? ValkeyConfig.fromEnv(), options);
  }

  /** Loads iovalkey. */
  protected async loadClientClass(): Promise<ClientConstructor> {
    const module = await import("iovalkey");
    return module.Redis as unknown as ClientConstructor;
  }

  /** Loads iovalkey's `Cluster` class (for `mode: "cluster"`). */
  protected override async loadClusterClass(): Promise<ClusterConstructor> {
    const module = await import("iovalkey");
    return module.Cluster as unknown as ClusterConstructor;
  }
}
