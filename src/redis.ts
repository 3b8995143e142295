/**
 * `RedisCache`: the provider over ioredis.
 *
 * @module
 */

import { RedisConfig } from "./config.ts";
import type { ClientConstructor, ClusterConstructor } from "./client_types.ts";
import { type RedisCacheOptions, RedisProtocolCache } from "./provider.ts";

/**
 * A cache over Redis through ioredis (loaded by dynamic import, so Node users install it only
 * when they use it). The constructor does no I/O; call `connect()`.
 *
 * @example Storing and reading a tenant's entry
 * ```ts ignore
 * import { RedisCache, RedisConfig } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const cache = new RedisCache({ config: new RedisConfig({ host: "127.0.0.1", port: 6380 }) });
 * if (await cache.connect()) {
 *   await cache.set({ report: 7 }, { rows: 3 }, { companyId: "acme", ttl: 60 });
 *   assert.deepEqual(await cache.get({ report: 7 }, { companyId: "acme" }), { rows: 3 });
 * }
 * await cache.close();
 * ```
 */
export class RedisCache extends RedisProtocolCache<RedisConfig> {
  /** The npm package this provider drives. */
  protected readonly clientPackage = "ioredis";

  /**
   * Creates the provider; no I/O happens until `connect()`.
   *
   * @param options Connection config (default `RedisConfig.fromEnv()`), name, TTL, timeout and
   * tuning; see `RedisCacheOptions`.
   */
  constructor(options: RedisCacheOptions<RedisConfig> = {}) {
    super(options.config ?? RedisConfig.fromEnv(), options);
  }

  /** Loads ioredis. */
  protected async loadClientClass(): Promise<ClientConstructor> {
    const module = await import("ioredis");
    return module.Redis as unknown as ClientConstructor;
  }

  /** Loads ioredis's `Cluster` class (for `mode: "cluster"`). */
  protected override async loadClusterClass(): Promise<ClusterConstructor> {
    const module = await import("ioredis");
    return module.Cluster as unknown as ClusterConstructor;
  }
}
