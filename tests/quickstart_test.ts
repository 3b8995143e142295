/**
 * The README's first command: examples/quickstart.ts, run as a user runs it, on the embedded
 * MemoryCache and against a real Redis and Valkey server given by REDIS_HOST / VALKEY_HOST. Deno
 * only (the demo is a Deno program; the Node example is run by the pack-install smoke test).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startServer } from "./harness.ts";
import { commandCalls, KINDS, runProcess, runtimeEnv } from "./_helpers.ts";

const isDeno = "Deno" in globalThis;

/** Runs the demo with exactly the README's permissions; resolves its stdout. */
async function runDemo(env: Record<string, string>): Promise<string> {
  // Only what a fresh shell has, plus the demo's own variables: no REDIS_* of the test run.
  const run = await runProcess(
    ["run", "--allow-net", "--allow-env", "--allow-read", "examples/quickstart.ts"],
    { cwd: fileURLToPath(new URL("..", import.meta.url)), env: { ...runtimeEnv(), ...env } },
  );
  if (run.code !== 0) {
    throw new Error(`quickstart exited with ${run.code}: ${run.stderr}${run.stdout}`);
  }
  return run.stdout;
}

/** The steps every run prints, whatever the backend. */
function assertSteps(out: string): void {
  const lines = out.trim().split("\n");
  assert.match(lines[1], /^1\. Miss, compute, then hit/);
  assert.match(lines[2], /acme +2026-11: \{"total":4011\} \(miss → computed, [\d.]+ ms\)/);
  assert.match(lines[3], /acme +2026-11: \{"total":4011\} \(hit, [\d.]+ ms\)/);
  assert.match(out, /globex 2026-11: \{"total":6011\} \(miss → computed/);
  assert.match(out, /cleared 1 entry of acme/);
  assert.match(out, /globex 2026-11: \{"total":6011\} \(hit/);
  assert.match(lines[lines.length - 1], /^4\. Health check: healthy$/);
}

describe("quickstart demo", { skip: !isDeno && "the demo is a Deno program" }, () => {
  it("runs on the embedded MemoryCache and says so first", async () => {
    const out = await runDemo({});
    assert.match(out.split("\n")[0], /^Using the embedded MemoryCache/);
    assertSteps(out);
  });

  for (const kind of KINDS) {
    it(`runs against ${kind} when ${kind.toUpperCase()}_HOST is set`, async () => {
      await using server = await startServer(kind);
      const name = kind.toUpperCase();
      const out = await runDemo({
        [`${name}_HOST`]: server.host,
        [`${name}_PORT`]: String(server.port),
        [`${name}_DB`]: String(server.db),
        // An external server (REDIS_URL / VALKEY_URL) may need its password.
        [`${name}_PASSWORD`]: decodeURIComponent(new URL(server.url).password),
      });
      const provider = kind === "redis" ? "RedisCache" : "ValkeyCache";
      assert.equal(out.split("\n")[0], `Using ${provider} from the environment (connected)`);
      assertSteps(out);
      // It talked to this server (its writes ran there as scripts) and cleaned up after itself.
      assert.ok((await commandCalls(server, "evalsha")) >= 3);
      assert.equal(await server.cli("DBSIZE"), "0");
    });
  }
});
