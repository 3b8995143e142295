/** The test harness itself: start, cli, kill, restart, pause, resume, stop, password, external. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import process from "node:process";
import { freePort, SERVER_KINDS, startServer } from "./harness.ts";

/** PING on a raw socket: the first reply line, or "timeout" / "error". */
function rawPing(port: number, timeoutMs: number, auth?: string): Promise<string> {
  return new Promise((resolve) => {
    let reply = "";
    let settled = false;
    const socket = connect({ host: "127.0.0.1", port });
    const finish = (result: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(auth ? `AUTH ${auth}\r\nPING\r\n` : "PING\r\n"));
    socket.on("data", (chunk: string) => {
      reply += chunk;
      const lines = reply.split("\r\n");
      if (lines.length > (auth ? 2 : 1)) finish(lines[auth ? 1 : 0]);
    });
    socket.on("error", () => finish("error"));
  });
}

describe("freePort", () => {
  it("returns a usable port other than 6379", async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536 && port !== 6379);
  });
});

for (const kind of SERVER_KINDS) {
  describe(`${kind} harness`, () => {
    it("start, cli, kill, restart, pause, resume, stop", async () => {
      const server = await startServer(kind, { own: true });
      try {
        assert.equal(server.kind, kind);
        assert.equal(server.external, false);
        assert.equal(server.host, "127.0.0.1");
        assert.notEqual(server.port, 6379);
        assert.equal(server.url, `redis://127.0.0.1:${server.port}`);
        assert.equal(typeof server.pid, "number");
        assert.equal(await server.cli("PING"), "PONG");
        assert.equal(await server.cli("SET", "a", "1"), "OK");
        assert.equal(await server.cli("GET", "a"), "1");

        const pid = server.pid;
        await server.kill();
        assert.equal(server.pid, undefined);
        await assert.rejects(server.cli("PING"));
        assert.equal(await rawPing(server.port, 300), "error");

        await server.restart();
        assert.notEqual(server.pid, pid);
        assert.equal(await server.cli("PING"), "PONG");
        assert.equal(await server.cli("GET", "a"), "", "no persistence: the data is gone");

        server.pause();
        const started = Date.now();
        assert.equal(await rawPing(server.port, 300), "timeout");
        assert.ok(Date.now() - started < 1000);
        server.resume();
        assert.equal(await rawPing(server.port, 2000), "+PONG");
        assert.equal(await server.cli("PING"), "PONG");
      } finally {
        await server.stop();
      }
      await server.stop(); // idempotent
      assert.equal(await rawPing(server.port, 300), "error");
    });

    it("stop() ends a paused server", async () => {
      await using server = await startServer(kind, { own: true });
      server.pause();
      await server.stop();
      assert.equal(server.pid, undefined);
    });

    it("password: url carries it, cli authenticates, raw PING needs AUTH", async () => {
      const password = "s3cret pw/@";
      await using server = await startServer(kind, {
        password,
        args: ["--maxmemory", "10mb"],
      });
      assert.equal(
        server.url,
        `redis://:${encodeURIComponent(password)}@127.0.0.1:${server.port}`,
      );
      assert.equal(decodeURIComponent(new URL(server.url).password), password);
      assert.equal(await server.cli("PING"), "PONG");
      assert.match(await server.cli("CONFIG", "GET", "maxmemory"), /10485760/);
      assert.match(await rawPing(server.port, 1000), /^-NOAUTH/);
      await server.kill();
      await server.restart();
      assert.equal(await server.cli("PING"), "PONG");
    });

    it("external handle when the env URL is set", async () => {
      const env = kind === "redis" ? "REDIS_URL" : "VALKEY_URL";
      await using real = await startServer(kind, { password: "pw" });
      const saved = process.env[env];
      process.env[env] = real.url;
      try {
        const external = await startServer(kind);
        assert.equal(external.external, true);
        assert.equal(external.url, `${real.url}/15`, "the tests run in a database of their own");
        assert.equal(external.host, "127.0.0.1");
        assert.equal(external.port, real.port);
        assert.equal(external.pid, undefined);
        assert.equal(await external.cli("PING"), "PONG");
        await assert.rejects(external.kill(), /needs a server the harness started/);
        await assert.rejects(external.restart(), /needs a server the harness started/);
        assert.throws(() => external.pause(), /needs a server the harness started/);
        assert.throws(() => external.resume(), /needs a server the harness started/);
        await external.stop();
        assert.equal(await real.cli("PING"), "PONG", "stop() left the external server alone");
        const own = await startServer(kind, { own: true });
        try {
          assert.equal(own.external, false, "own: true starts a server despite the env URL");
          assert.notEqual(own.port, real.port);
        } finally {
          await own.stop();
        }
      } finally {
        if (saved === undefined) delete process.env[env];
        else process.env[env] = saved;
      }
    });

    it("an external server is never flushed, reconfigured or script-flushed", async () => {
      const env = kind === "redis" ? "REDIS_URL" : "VALKEY_URL";
      await using real = await startServer(kind, { own: true });
      await real.cli("SET", "users-own-key", "keep me");
      const saved = process.env[env];
      process.env[env] = real.url;
      try {
        const external = await startServer(kind);
        for (
          const command of [
            ["FLUSHALL"],
            ["SCRIPT", "FLUSH"],
            ["CONFIG", "SET", "maxmemory", "1mb"],
            ["CONFIG", "RESETSTAT"],
            ["ACL", "SETUSER", "app", "on"],
            ["SHUTDOWN", "NOSAVE"],
          ]
        ) {
          await assert.rejects(
            external.cli(...command),
            /needs a server the harness started/,
            command.join(" "),
          );
        }
        assert.match(await real.cli("CONFIG", "GET", "maxmemory"), /^maxmemory\n0$/);
        // The handle's database is its own: empty, and a FLUSHDB there flushes only it.
        assert.equal(await external.cli("GET", "users-own-key"), "");
        assert.equal(await external.cli("DBSIZE"), "0");
        await external.cli("SET", "test-key", "1");
        await external.cli("FLUSHDB");
        assert.equal(await real.cli("GET", "users-own-key"), "keep me");
        // A second handle (another test process) gets another database; a database holding
        // data is never taken.
        await real.cli("-n", "14", "SET", "someone-elses", "1");
        const second = await startServer(kind);
        try {
          assert.notEqual(second.url, external.url);
          assert.match(second.url, /\/13$/, "15 is held, 14 holds data: 13");
        } finally {
          await second.stop();
        }
        await external.cli("SET", "written-by-a-test", "1");
        await external.stop();
        assert.equal(await real.cli("-n", "15", "DBSIZE"), "0", "stop() removed what tests wrote");
        assert.equal(await real.cli("-n", "14", "GET", "someone-elses"), "1");
        assert.equal(await real.cli("GET", "users-own-key"), "keep me");
      } finally {
        if (saved === undefined) delete process.env[env];
        else process.env[env] = saved;
      }
    });

    it("a bad option fails fast with the server's own words", async () => {
      await assert.rejects(
        startServer(kind, { args: ["--no-such-option", "1"] }),
        /no-such-option|Bad directive/i,
      );
    });
  });
}
