/**
 * Authentication against real servers, set up through the environment as a service would:
 * `requirepass` (REDIS_PASSWORD / VALKEY_PASSWORD) and an ACL user (REDIS_USERNAME /
 * VALKEY_USERNAME) limited to the cache's key prefix. Wrong credentials make `setCache` resolve
 * false with a log line that says authentication failed; the password never appears in a log
 * line, an error message, or any view of a config or a provider.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import {
  cacheGet,
  cacheSet,
  closeCache,
  getCache,
  getCacheClient,
  RedisCache,
  RedisConfig,
  setCache,
  ValkeyCache,
  ValkeyConfig,
} from "../mod.ts";
import { startServer, type TestServer } from "./harness.ts";
import { collectingLogger, KINDS } from "./_helpers.ts";

const ADMIN_PASSWORD = "Adm1n-s3cret!";
const APP_PASSWORD = "App-pa55word#";
const WRONG_PASSWORD = "Wr0ng-guess%";
const SECRETS = [ADMIN_PASSWORD, APP_PASSWORD, WRONG_PASSWORD];

const denoInspect = (globalThis as {
  Deno?: { inspect(value: unknown, options?: { depth?: number }): string };
}).Deno?.inspect;

/** The environment a service on `server` would have, with the given credentials. */
function envFor(
  server: TestServer,
  credentials: { username?: string; password?: string },
): Record<string, string> {
  const prefix = server.kind === "redis" ? "REDIS" : "VALKEY";
  const env: Record<string, string> = {
    CACHE_BACKEND: server.kind,
    [`${prefix}_HOST`]: server.host,
    [`${prefix}_PORT`]: String(server.port),
    [`${prefix}_TIMEOUT`]: "1",
  };
  if (credentials.username !== undefined) env[`${prefix}_USERNAME`] = credentials.username;
  if (credentials.password !== undefined) env[`${prefix}_PASSWORD`] = credentials.password;
  return env;
}

/** Every view of a value a program might print or ship: none may hold a secret. */
function views(value: unknown): string[] {
  const shown = [
    String(value),
    JSON.stringify(value) ?? "",
    inspect(value),
    inspect(value, { showHidden: true, depth: 10 }),
    inspect({ nested: [value] }, { depth: 10 }),
  ];
  if (denoInspect) shown.push(denoInspect(value), denoInspect({ nested: value }, { depth: 10 }));
  return shown;
}

function assertNoSecret(texts: string[], what: string): void {
  for (const text of texts) {
    for (const secret of SECRETS) {
      assert.ok(!text.includes(secret), `${what} shows a password: ${text}`);
    }
  }
}

for (const kind of KINDS) {
  const Config = kind === "redis" ? RedisConfig : ValkeyConfig;
  const Cache = kind === "redis" ? RedisCache : ValkeyCache;

  describe(`${kind} authentication`, () => {
    afterEach(async () => {
      await closeCache();
    });

    it("requirepass: the password from the environment works", async () => {
      await using server = await startServer(kind, { own: true, password: ADMIN_PASSWORD });
      const logger = collectingLogger();
      assert.equal(
        await setCache({ env: envFor(server, { password: ADMIN_PASSWORD }), logger }),
        true,
      );
      assert.ok(getCache() instanceof Cache);
      assert.equal(await cacheSet({ q: 1 }, "secret-free", { companyId: "acme" }), true);
      assert.equal(await cacheGet({ q: 1 }, { companyId: "acme" }), "secret-free");
      assert.deepEqual(logger.lines, []);
      assertNoSecret(views(getCache()), "the provider");
    });

    it("an ACL user limited to the prefix: user name and password from the environment", async () => {
      await using server = await startServer(kind, { own: true, password: ADMIN_PASSWORD });
      await server.cli("ACL", "SETUSER", "app", "on", `>${APP_PASSWORD}`, "~cache:*", "+@all");
      const logger = collectingLogger();
      const env = envFor(server, { username: "app", password: APP_PASSWORD });
      assert.equal(await setCache({ env, logger }), true);
      assert.equal(await cacheSet("k", { v: 1 }), true);
      assert.deepEqual(await cacheGet("k"), { v: 1 });
      // The connection is the ACL user's, and the ACL holds: nothing outside the prefix.
      const clients = await server.cli("CLIENT", "LIST");
      assert.match(clients, /user=app /);
      const client = getCacheClient() as { get(key: string): Promise<string | null> };
      await assert.rejects(() => client.get("other:key"), /NOPERM/);
      assert.deepEqual(logger.lines, []);
      const config = (getCache() as RedisCache).config;
      assert.equal(config.username, "app");
      assertNoSecret([...views(config), ...views(getCache())], "the config");
    });

    const wrong: [string, { username?: string; password?: string }][] = [
      ["a wrong password", { password: WRONG_PASSWORD }],
      ["no password where one is required", {}],
      ["an ACL user with a wrong password", { username: "app", password: WRONG_PASSWORD }],
      ["an unknown user", { username: "nobody", password: APP_PASSWORD }],
    ];
    for (const [label, credentials] of wrong) {
      it(`${label}: setCache false, "authentication failed" logged, no password shown`, async () => {
        await using server = await startServer(kind, { own: true, password: ADMIN_PASSWORD });
        await server.cli("ACL", "SETUSER", "app", "on", `>${APP_PASSWORD}`, "~cache:*", "+@all");
        const logger = collectingLogger();
        const started = Date.now();
        assert.equal(await setCache({ env: envFor(server, credentials), logger }), false);
        assert.ok(Date.now() - started < 1500, "fails within the timeout");
        assert.equal(await cacheSet("k", 1), false);
        assert.equal(await cacheGet("k"), null);
        assert.ok(
          logger.lines.some((line) => /authentication failed/.test(line)),
          logger.lines.join("\n"),
        );
        const prefix = kind === "redis" ? "REDIS" : "VALKEY";
        assert.ok(logger.lines.some((line) => line.includes(`${prefix}_PASSWORD`)));
        assertNoSecret(logger.lines, "a log line");
        assertNoSecret(views(getCache()), "the provider");
        assert.equal(await server.cli("DBSIZE"), "0", "nothing was written");
      });
    }

    it("the password stays out of configs, providers, errors and logs in every form", async () => {
      await using server = await startServer(kind, { own: true, password: ADMIN_PASSWORD });
      const prefix = kind === "redis" ? "REDIS" : "VALKEY";
      const fromUrl = Config.fromEnv({
        [`${prefix}_URL`]: `redis://app:${encodeURIComponent(WRONG_PASSWORD)}@127.0.0.1:1/0`,
      });
      const fromEnv = Config.fromEnv({ [`${prefix}_PASSWORD`]: ADMIN_PASSWORD });
      const fromOptions = new Config({ username: "app", password: APP_PASSWORD });
      assertNoSecret([...views(fromUrl), ...views(fromEnv), ...views(fromOptions)], "a config");
      // A malformed URL's error message never echoes it (it may carry a password).
      for (
        const url of [
          `redis://:${ADMIN_PASSWORD}@h:notaport`,
          `ftp://app:${ADMIN_PASSWORD}@h`,
          `redis://app:${ADMIN_PASSWORD}%zz@h`,
        ]
      ) {
        assert.throws(
          () => Config.fromEnv({ [`${prefix}_URL`]: url }),
          (error: Error) => !SECRETS.some((secret) => error.message.includes(secret)),
        );
      }
      // A connected provider, then one whose server went away: views and log lines.
      const logger = collectingLogger();
      const cache = new Cache(
        {
          config: new Config({ host: server.host, port: server.port, password: ADMIN_PASSWORD }),
          timeout: 0.5,
          logger,
        } as ConstructorParameters<typeof Cache>[0],
      );
      try {
        assertNoSecret(views(cache), "an unconnected provider");
        assert.equal(await cache.connect(), true);
        assertNoSecret(views(cache), "a connected provider");
        await server.kill();
        assert.equal(await cache.set("k", 1), false);
        assert.equal(await cache.connect(), false);
        assert.ok(logger.lines.length > 0);
        assertNoSecret(logger.lines, "a log line");
      } finally {
        await cache.close();
      }
    });
  });
}
