/**
 * TLS against redis-server and valkey-server serving TLS only, with a certificate signed by a CA
 * the harness makes with openssl: `rediss://` URLs, `REDIS_TLS=true` with `REDIS_TLS_CA` (and the
 * `VALKEY_*` twins), a set/get round trip, and an untrusted certificate failing cleanly. The
 * servers have no plain port (`--port 0`), so every connection that works is a TLS one.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CacheConfigError,
  cacheGet,
  cacheSet,
  closeCache,
  getCacheClient,
  setCache,
} from "../mod.ts";
import { makeTlsFiles, startServer, type TestServer } from "./harness.ts";
import { collectingLogger, KINDS } from "./_helpers.ts";

function prefixOf(server: TestServer): string {
  return server.kind === "redis" ? "REDIS" : "VALKEY";
}

for (const kind of KINDS) {
  describe(`${kind} over TLS`, () => {
    afterEach(async () => {
      await closeCache();
    });

    it("a rediss:// URL with the CA file: set/get round trip", async () => {
      await using server = await startServer(kind, { tls: true });
      assert.match(server.url, /^rediss:\/\//);
      const prefix = prefixOf(server);
      const logger = collectingLogger();
      const ok = await setCache({
        env: {
          CACHE_BACKEND: kind,
          [`${prefix}_URL`]: `rediss://127.0.0.1:${server.port}/0`,
          [`${prefix}_TLS_CA`]: server.tlsCa!,
          [`${prefix}_TIMEOUT`]: "2",
        },
        logger,
      });
      assert.equal(ok, true, logger.lines.join("\n"));
      assert.equal(await cacheSet({ secure: 1 }, { over: "tls" }, { companyId: "acme" }), true);
      assert.deepEqual(await cacheGet({ secure: 1 }, { companyId: "acme" }), { over: "tls" });
      const client = getCacheClient() as { options?: { tls?: unknown } };
      assert.ok(client.options?.tls, "the client was given TLS options");
      assert.deepEqual(logger.lines, []);
    });

    it("TLS=true with TLS_CA and a host name: set/get round trip", async () => {
      await using server = await startServer(kind, { tls: true });
      const prefix = prefixOf(server);
      const logger = collectingLogger();
      const ok = await setCache({
        env: {
          CACHE_BACKEND: kind,
          [`${prefix}_HOST`]: "localhost", // checked against the certificate's DNS name
          [`${prefix}_PORT`]: String(server.port),
          [`${prefix}_TLS`]: "true",
          [`${prefix}_TLS_CA`]: server.tlsCa!,
          [`${prefix}_TIMEOUT`]: "2",
        },
        logger,
      });
      assert.equal(ok, true, logger.lines.join("\n"));
      assert.equal(await cacheSet("k", [1, 2, 3]), true);
      assert.deepEqual(await cacheGet("k"), [1, 2, 3]);
    });

    it("a CA that did not sign the certificate: setCache false, logged, misses", async () => {
      await using server = await startServer(kind, { tls: true });
      const prefix = prefixOf(server);
      const otherDir = await mkdtemp(join(tmpdir(), "cache-test-other-ca-"));
      try {
        const other = await makeTlsFiles(otherDir);
        const logger = collectingLogger();
        const started = Date.now();
        const ok = await setCache({
          env: {
            CACHE_BACKEND: kind,
            [`${prefix}_URL`]: `rediss://127.0.0.1:${server.port}`,
            [`${prefix}_TLS_CA`]: other.ca,
            [`${prefix}_TIMEOUT`]: "1",
          },
          logger,
        });
        assert.equal(ok, false);
        assert.ok(Date.now() - started < 1500, "fails within the timeout");
        assert.equal(await cacheSet("k", 1), false);
        assert.equal(await cacheGet("k"), null);
        assert.ok(
          logger.lines.some((line) => /TLS handshake failed/.test(line)),
          logger.lines.join("\n"),
        );
        assert.ok(logger.lines.some((line) => line.includes(`${prefix}_TLS_CA`)));
        assert.equal(await server.cli("DBSIZE"), "0");
      } finally {
        await rm(otherDir, { recursive: true, force: true });
      }
    });

    it("a plain redis:// URL to the TLS port fails within the timeout, never hangs", async () => {
      await using server = await startServer(kind, { tls: true });
      const prefix = prefixOf(server);
      const started = Date.now();
      const ok = await setCache({
        env: {
          CACHE_BACKEND: kind,
          [`${prefix}_URL`]: `redis://127.0.0.1:${server.port}`,
          [`${prefix}_TIMEOUT`]: "1",
        },
        logger: collectingLogger(),
      });
      assert.equal(ok, false);
      assert.ok(Date.now() - started < 1500);
      assert.equal(await cacheGet("k"), null);
    });

    it("an unreadable TLS_CA file is a CacheConfigError naming the variable", async () => {
      const prefix = kind === "redis" ? "REDIS" : "VALKEY";
      await assert.rejects(
        () =>
          setCache({
            env: {
              CACHE_BACKEND: kind,
              [`${prefix}_URL`]: "rediss://127.0.0.1:1",
              [`${prefix}_TLS_CA`]: "/nonexistent/ca.pem",
            },
            logger: collectingLogger(),
          }),
        (error: Error) => error instanceof CacheConfigError && /TLS_CA/.test(error.message),
      );
    });
  });
}
