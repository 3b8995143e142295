/**
 * The admin CLI (scripts/cache_admin.ts) as an operator runs it: a real process, configured by
 * environment variables, against redis-server and valkey-server.
 *
 * Under Deno the CLI runs as `deno run --allow-net --allow-env --allow-read
 * scripts/cache_admin.ts`; under Node (the compiled suite in npm/test/) it is the npm package's
 * compiled bin, npm/scripts/cache_admin.js, run by `node`. Both sit at `../scripts/` from here.
 */

import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { entryKey, hashInput, registryKey } from "../src/keys.ts";
import { freePort, startServer, type TestServer } from "./harness.ts";
import {
  type AnyCache,
  cacheFor,
  hasIpv6Loopback,
  hidePackages,
  KINDS,
  type ProcessRun,
  runProcess,
  runtimeEnv,
  sleep,
} from "./_helpers.ts";

const IS_DENO = "Deno" in globalThis;
/** The repository root under Deno, `npm/` under Node. */
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = fileURLToPath(
  new URL(IS_DENO ? "../scripts/cache_admin.ts" : "../scripts/cache_admin.js", import.meta.url),
);
/** Where the version comes from: deno.json in the repository, package.json in the npm build. */
const VERSION_FILE = new URL(IS_DENO ? "../deno.json" : "../package.json", import.meta.url);
/** A run that takes longer than this is a hang. */
const RUN_TIMEOUT_MS = 120_000;
const PASSWORD = "s3cret-Pa55word";

/**
 * Runs the CLI with `args` and exactly `env` (plus the runtime's own variables); `onStderr` sees
 * stderr as it arrives; `runtimeArgs` go to `deno run` / `node` before the script.
 */
function admin(
  args: string[],
  env: Record<string, string> = {},
  onStderr?: (stderrSoFar: string) => void,
  runtimeArgs: string[] = [],
): Promise<ProcessRun> {
  const argv = IS_DENO
    ? ["run", "--allow-net", "--allow-env", "--allow-read", ...runtimeArgs, CLI, ...args]
    : [...runtimeArgs, CLI, ...args];
  return runProcess(argv, {
    cwd: ROOT,
    env: { ...runtimeEnv(), ...env },
    timeoutMs: RUN_TIMEOUT_MS,
    onStderr,
  });
}

/** Shows a run in an assertion message. */
function show(run: ProcessRun): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
}

/** The variables that point the CLI at `server` (a URL, so an external server works too). */
function serverEnv(server: TestServer, extra: Record<string, string> = {}): Record<string, string> {
  return { [server.kind === "redis" ? "REDIS_URL" : "VALKEY_URL"]: server.url, ...extra };
}

/** `REDIS_*` or `VALKEY_*`, by kind. */
function envName(server: TestServer | { kind: string }, suffix: string): string {
  return `${server.kind === "redis" ? "REDIS" : "VALKEY"}_${suffix}`;
}

/**
 * Runtime arguments under which the CLI cannot load iovalkey, as for a Node user who installed
 * only ioredis.
 */
function withoutIovalkey(dir: string): Promise<string[]> {
  return hidePackages(dir, ["iovalkey"]);
}

const IPV6 = await hasIpv6Loopback();

/** Progress lines of a clear on stderr: the running counts. */
function progressCounts(stderr: string): number[] {
  return stderr.split("\n").filter((line) => line.startsWith("clear: ")).map((line) => {
    const match = line.match(/^clear: (\d+) keys? deleted so far \((\d+) keys\/s\)$/);
    assert.ok(match, `malformed progress line: ${JSON.stringify(line)}`);
    return Number(match[1]);
  });
}

describe("admin CLI without a server", () => {
  it("prints help and the version, exit 0", async () => {
    const help = await admin(["--help"]);
    assert.equal(help.code, 0, show(help));
    for (
      const text of ["Usage: core-lib-cache-admin", "health", "stats", "clear --scope", "prune"]
    ) {
      assert.ok(help.stdout.includes(text), `--help lacks ${text}\n${help.stdout}`);
    }
    assert.match(help.stdout, /Exit codes: 0 success; 1 .*; 2 usage/);
    assert.equal((await admin(["-h"])).stdout, help.stdout);

    const clearHelp = await admin(["help", "clear"]);
    assert.equal(clearHelp.code, 0, show(clearHelp));
    assert.match(clearHelp.stdout, /--company-id ID/);
    assert.match(clearHelp.stdout, /--progress-interval MS/);
    assert.equal((await admin(["clear", "--help"])).stdout, clearHelp.stdout);

    const version = await admin(["--version"]);
    assert.equal(version.code, 0, show(version));
    const expected = JSON.parse(await readFile(VERSION_FILE, "utf8")).version;
    assert.equal(version.stdout, `core-lib-cache-admin ${expected}\n`);
  });

  it("rejects a bad invocation with a usage message on stderr, exit 2", async () => {
    const cases: [string[], RegExp][] = [
      [[], /no command given/],
      [["bogus"], /unknown command "bogus"/],
      [["health", "--nope"], /Unknown option '--nope'/],
      [["stats", "extra"], /stats takes no arguments/],
      [["health", "--scope", "all"], /--scope does not apply to health/],
      [["clear"], /clear needs --scope/],
      [["clear", "--scope", "bogus"], /unknown scope "bogus"/],
      [["clear", "--scope", "company"], /--scope company needs --company-id/],
      [["clear", "--scope", "company", "--company-id", ""], /--company-id is empty/],
      [
        ["clear", "--scope", "all", "--company-id", "acme"],
        /--company-id applies to --scope company/,
      ],
      [["clear", "--scope", "global", "--batch-size", "0"], /--batch-size "0"/],
      [["clear", "--scope", "global", "--progress-interval", "soon"], /--progress-interval/],
      [["help", "bogus"], /unknown command "bogus"/],
    ];
    // Pointed at a port where nothing listens: a case that wrongly connected would exit 1.
    const env = { REDIS_HOST: "127.0.0.1", REDIS_PORT: String(await freePort()) };
    const runs = await Promise.all(cases.map(([args]) => admin(args, env)));
    for (const [index, [args, reason]] of cases.entries()) {
      const run = runs[index];
      assert.equal(run.code, 2, `${args.join(" ")}: ${show(run)}`);
      assert.equal(run.stdout, "", `${args.join(" ")}: ${show(run)}`);
      assert.match(run.stderr, reason, `${args.join(" ")}: ${show(run)}`);
      assert.match(run.stderr, /Usage: core-lib-cache-admin/, `${args.join(" ")}: ${show(run)}`);
    }
  });

  it("rejects a configuration it cannot use, exit 2, naming the variable", async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ CACHE_BACKEND: "memory" }, /CACHE_BACKEND=memory/],
      [{ CACHE_BACKEND: "mongo" }, /Invalid CACHE_BACKEND: got "mongo"/],
      [{ REDIS_PORT: "abc" }, /Invalid REDIS_PORT: got "abc"/],
      [{ VALKEY_URL: "http://x" }, /Invalid VALKEY_URL: unsupported scheme/],
    ];
    for (const [env, reason] of cases) {
      const run = await admin(["health"], env);
      assert.equal(run.code, 2, `${JSON.stringify(env)}: ${show(run)}`);
      assert.match(run.stderr, reason, show(run));
    }
  });

  it("shows an IPv6 host of REDIS_HOST / VALKEY_HOST in brackets once, also in fault lines", async () => {
    const port = await freePort();
    for (const prefix of ["REDIS", "VALKEY"]) {
      for (const host of ["[::1]", "::1"]) {
        const env = { [`${prefix}_HOST`]: host, [`${prefix}_PORT`]: String(port) };
        const run = await admin(["health"], { ...env, [`${prefix}_TIMEOUT`]: "1" });
        const output = `${run.stdout}${run.stderr}`;
        assert.equal(run.code, 1, `${prefix}_HOST=${host}: ${show(run)}`);
        assert.match(
          run.stderr,
          /^core-lib-cache-admin: cannot reach the \w+ server at /,
          show(run),
        );
        assert.ok(run.stderr.includes(`server at redis://[::1]:${port}/0 `), show(run));
        // The provider's own fault line (an indented line below) names it the same way.
        assert.ok(run.stderr.includes(` at [::1]:${port}/0`), show(run));
        assert.ok(!output.includes("[["), show(run));
        assert.ok(!output.includes("ENOTFOUND"), show(run));
        if (host === "::1") continue;
        const json = await admin(["health", "--json"], { ...env, [`${prefix}_TIMEOUT`]: "1" });
        assert.equal(JSON.parse(json.stdout).address, `redis://[::1]:${port}/0`, show(json));
      }
    }
  });
});

for (const kind of KINDS) {
  describe(`${kind} admin CLI`, () => {
    let server: TestServer;
    let cache: AnyCache;

    before(async () => {
      server = await startServer(kind, { own: true });
    });
    after(async () => {
      await server.stop();
    });
    beforeEach(async () => {
      await server.cli("FLUSHALL");
      // pruneSample 0: expired members stay in their registries until `prune` removes them.
      cache = cacheFor(server, { pruneSample: 0 });
      assert.equal(await cache.connect(), true);
    });
    afterEach(async () => {
      await cache.close();
    });

    it("health: exit 0 with the server kind, version, address and latency", async () => {
      const run = await admin(["health"], serverEnv(server));
      assert.equal(run.code, 0, show(run));
      const info = await server.cli("INFO", "server");
      const version = info.match(new RegExp(`${kind}_version:(\\S+)`))![1];
      assert.match(
        run.stdout,
        new RegExp(
          `^healthy: ${kind} ${
            version.replaceAll(".", "\\.")
          } at redis://${server.host}:${server.port}/0 .*PING \\d+\\.\\d{3} ms`,
        ),
      );

      const json = await admin(["health", "--json"], serverEnv(server));
      assert.equal(json.code, 0, show(json));
      const report = JSON.parse(json.stdout);
      assert.deepEqual(report.server, { kind, version });
      assert.equal(report.ok, true);
      assert.equal(report.backend, kind);
      assert.equal(report.address, `redis://${server.host}:${server.port}/0`);
      assert.equal(typeof report.latencyMs, "number");
      assert.ok(report.latencyMs >= 0);
      assert.deepEqual(report.circuitBreaker, {
        on: true,
        threshold: 3,
        probeInterval: 0.1,
        open: [],
      });
      assert.match(
        run.stdout,
        /\ncircuit breaker: on \(.*3 connection faults.*0\.1 s\); open for: none\n$/,
      );
      assert.deepEqual(report.nearCache, {
        on: false,
        maxEntries: 10000,
        maxBytes: 67108864,
        maxStaleness: 1,
      });
      assert.match(run.stdout, /\nnear cache: off\n/);

      const near = await admin(["health"], {
        ...serverEnv(server),
        CACHE_NEAR_CACHE: "on",
        CACHE_NEAR_CACHE_MAX_ENTRIES: "500 # hot keys",
        CACHE_NEAR_CACHE_MAX_STALENESS: "0.5",
      });
      assert.equal(near.code, 0, show(near));
      assert.match(
        near.stdout,
        /\nnear cache: on \(at most 500 entries and 67108864 bytes, max staleness 0\.5 s\)\n/,
      );

      const off = await admin(["health"], {
        ...serverEnv(server),
        [envName(server, "CIRCUIT_BREAKER")]: "off",
      });
      assert.equal(off.code, 0, show(off));
      assert.match(off.stdout, /\ncircuit breaker: off\n$/);
    });

    it("health: exit 1 when unreachable; every command likewise; no password printed", async () => {
      const env = {
        [envName(server, "HOST")]: "127.0.0.1",
        [envName(server, "PORT")]: String(await freePort()),
        [envName(server, "PASSWORD")]: PASSWORD,
        [envName(server, "TIMEOUT")]: "2",
      };
      const commands = [["health"], ["health", "--json"], ["stats"], ["prune"], [
        "clear",
        "--scope",
        "all",
      ]];
      for (const args of commands) {
        const run = await admin(args, env);
        assert.equal(run.code, 1, `${args.join(" ")}: ${show(run)}`);
        assert.match(run.stderr, /cannot reach the .* server at redis:\/\/127\.0\.0\.1:\d+\/0/);
        assert.ok(!`${run.stdout}${run.stderr}`.includes(PASSWORD), show(run));
      }
      const json = await admin(["health", "--json"], env);
      assert.equal(JSON.parse(json.stdout).ok, false);
    });

    it("health: authenticates with the password and never prints it", async () => {
      const secured = await startServer(kind, { own: true, password: PASSWORD });
      try {
        const env = {
          [envName(server, "HOST")]: secured.host,
          [envName(server, "PORT")]: String(secured.port),
          [envName(server, "PASSWORD")]: PASSWORD,
        };
        for (const args of [["health"], ["health", "--json"], ["stats", "--json"]]) {
          const run = await admin(args, env);
          assert.equal(run.code, 0, show(run));
          assert.ok(!`${run.stdout}${run.stderr}`.includes(PASSWORD), show(run));
        }
        const wrong = await admin(["health"], {
          ...env,
          [envName(server, "PASSWORD")]: `${PASSWORD}-wrong`,
          [envName(server, "TIMEOUT")]: "2",
        });
        assert.equal(wrong.code, 1, show(wrong));
        assert.ok(!`${wrong.stdout}${wrong.stderr}`.includes(PASSWORD), show(wrong));
      } finally {
        await secured.stop();
      }
    });

    it("health: VALKEY_* alone names the server, also when only ioredis can be loaded", async () => {
      // As setCache() does: under auto, VALKEY_* picks the server whichever client package
      // loads. REDIS_PORT points where nothing listens, so reading REDIS_* instead exits 1.
      const url = new URL(server.url);
      const env: Record<string, string> = {
        VALKEY_HOST: url.hostname,
        VALKEY_PORT: url.port,
        REDIS_PORT: String(await freePort()),
        REDIS_TIMEOUT: "2",
      };
      if (url.password) env.VALKEY_PASSWORD = decodeURIComponent(url.password);
      const address = `redis://${url.hostname}:${url.port}/0`;
      const both = await admin(["health"], env);
      assert.equal(both.code, 0, show(both));
      assert.ok(both.stdout.includes(` at ${address} `), show(both));
      assert.ok(both.stdout.includes("client iovalkey"), show(both));

      const dir = await mkdtemp(join(tmpdir(), "cache-admin-no-iovalkey-"));
      try {
        const runtimeArgs = await withoutIovalkey(dir);
        const run = await admin(["health"], env, undefined, runtimeArgs);
        assert.equal(run.code, 0, show(run));
        assert.ok(run.stdout.startsWith(`healthy: ${kind} `), show(run));
        assert.ok(run.stdout.includes(` at ${address} `), show(run));
        assert.ok(run.stdout.includes("client ioredis"), show(run));
        const json = JSON.parse(
          (await admin(["health", "--json"], env, undefined, runtimeArgs)).stdout,
        );
        assert.deepEqual([json.ok, json.backend, json.address], [true, "redis", address]);
        // CACHE_BACKEND=valkey asks for iovalkey itself: a usage error that names the package.
        const valkey = await admin(
          ["health"],
          { ...env, CACHE_BACKEND: "valkey" },
          undefined,
          runtimeArgs,
        );
        assert.equal(valkey.code, 2, show(valkey));
        assert.match(valkey.stderr, /npm install iovalkey/, show(valkey));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("health: an IPv6 server reached through [::1] in the host variable or the URL", async (t) => {
      if (server.external || !IPV6) return t.skip("needs an IPv6 loopback and a started server");
      // Appended after the harness's own `--bind 127.0.0.1`: the last bind wins.
      const v6 = await startServer(kind, { args: ["--bind", "127.0.0.1", "::1"] });
      try {
        const address = `redis://[::1]:${v6.port}/0`;
        const envs = [
          { [envName(v6, "HOST")]: "[::1]", [envName(v6, "PORT")]: String(v6.port) },
          { [envName(v6, "HOST")]: "::1", [envName(v6, "PORT")]: String(v6.port) },
          { [envName(v6, "URL")]: address },
        ];
        for (const env of envs) {
          const run = await admin(["health"], env);
          assert.equal(run.code, 0, `${JSON.stringify(env)}: ${show(run)}`);
          assert.ok(run.stdout.includes(` at ${address} `), show(run));
          assert.ok(!run.stdout.includes("[["), show(run));
          const stats = await admin(["stats"], env);
          assert.equal(stats.code, 0, show(stats));
          assert.ok(stats.stdout.startsWith(`prefix "cache:" at ${address}\n`), show(stats));
        }
      } finally {
        await v6.stop();
      }
    });

    it("stats: registry members and live keys per scope, tenant ids exactly", async () => {
      for (const i of [1, 2]) await cache.set(`g${i}`, i);
      await cache.set("g-expiring", 3, { ttl: 0.05 });
      for (const i of [1, 2]) await cache.set(i, i, { companyId: "a:b*c" });
      for (const i of [1, 2, 3]) await cache.set(i, i, { companyId: "ü n" });
      await cache.set("expiring", 4, { companyId: "ü n", ttl: 0.05 });
      await cache.set(1, 1, { companyId: "tab\there" });
      await cache.set(1, 1, { companyId: 0 });
      // Not registries: a non-Set key matching the pattern, and another prefix's registry.
      await server.cli("SET", "cache:registry:not-a-set", "x");
      await server.cli("SADD", "cachex:registry:global", "cachex::1");
      await sleep(150);

      const json = await admin(["stats", "--json"], serverEnv(server));
      assert.equal(json.code, 0, show(json));
      const report = JSON.parse(json.stdout);
      const tenant = (companyId: string, members: number, live: number) => ({
        scope: "tenant",
        companyId,
        registry: registryKey("cache:", companyId),
        members,
        live,
      });
      assert.deepEqual(report.scopes, [
        { scope: "global", registry: "cache:registry:global", members: 3, live: 2 },
        tenant("0", 1, 1),
        tenant("a:b*c", 2, 2),
        tenant("tab\there", 1, 1),
        tenant("ü n", 4, 3),
      ]);
      assert.deepEqual(report.totals, { scopes: 5, tenants: 4, members: 11, live: 9 });
      assert.equal(report.prefix, "cache:");

      const text = await admin(["stats"], serverEnv(server));
      assert.equal(text.code, 0, show(text));
      const lines = text.stdout.trimEnd().split("\n");
      assert.match(lines[0], /^prefix "cache:" at redis:\/\//);
      assert.deepEqual(lines.slice(1).map((line) => line.trim().split(/\s{2,}/)), [
        ["members", "live", "scope"],
        ["3", "2", "global"],
        ["1", "1", "tenant 0"],
        ["2", "2", "tenant a:b*c"],
        ["1", "1", "tenant tab\\x09here"],
        ["4", "3", "tenant ü n"],
        ["11", "9", "total (5 scopes, 4 tenants)"],
      ]);
    });

    it("stats lists the processes whose near cache the server keeps coherent", async () => {
      const near = cacheFor(server, { nearCache: true });
      try {
        assert.equal(await near.connect(), true);
        const json = await admin(["stats", "--json"], serverEnv(server));
        assert.equal(json.code, 0, show(json));
        const report = JSON.parse(json.stdout);
        assert.equal(report.nearCaches.length, 1, show(json));
        assert.equal(report.nearCaches[0].server, `${server.host}:${server.port}`);
        const text = await admin(["stats"], serverEnv(server));
        assert.match(text.stdout, /near caches kept coherent by this server: 1 subscriber\n/);
      } finally {
        await near.close();
      }
      // Gone once the server has seen the subscriber's connection close.
      for (let attempt = 0; attempt < 20; attempt++) {
        const after = await admin(["stats", "--json"], serverEnv(server));
        if (JSON.parse(after.stdout).nearCaches.length === 0) return;
        await sleep(50);
      }
      assert.fail("the closed near cache's subscriber is still listed");
    });

    it("stats and clear --scope all see only their prefix, even one holding glob characters", async () => {
      const prefix = "c[a]*:";
      const own = cacheFor(server, { configOptions: { prefix } });
      // The unescaped pattern c[a]*:registry:* would match these prefixes' registries too.
      const others = [cacheFor(server, { configOptions: { prefix: "ca:" } }), cache];
      try {
        await own.connect();
        await own.set(1, 1);
        await own.set(2, 2, { companyId: "t" });
        for (const other of others) {
          if (other !== cache) await other.connect();
          await other.set(1, 1);
          await other.set(2, 2, { companyId: "t" });
        }
        const env = serverEnv(server, { [envName(server, "PREFIX")]: prefix });
        const stats = JSON.parse((await admin(["stats", "--json"], env)).stdout);
        assert.deepEqual(stats.scopes.map((s: { registry: string }) => s.registry), [
          `${prefix}registry:global`,
          `${prefix}registry:tenant:t`,
        ]);
        const clear = await admin(["clear", "--scope", "all"], env);
        assert.equal(clear.code, 0, show(clear));
        assert.equal(clear.stdout, "deleted 2 keys in every scope\n");
        for (const other of others) {
          assert.equal(await other.get(1), 1);
          assert.equal(await other.get(2, { companyId: "t" }), 2);
        }
        assert.equal(await own.get(1), null);
      } finally {
        await own.close();
        await others[0].close();
      }
    });

    it("clear: each scope deletes exactly its own keys and prints the count", async () => {
      await cache.setMany([["g1", 1], ["g2", 2]]);
      await cache.setMany([[1, 1], [2, 2], [3, 3]], { companyId: "a:b*c" });
      await cache.set(1, 1, { companyId: "a" });
      await cache.setMany([[1, 1], [2, 2]], { companyId: "ü n" });
      await server.cli("SET", "foreign:key", "untouched");
      const env = serverEnv(server);

      const company = await admin(["clear", "--scope", "company", "--company-id", "a:b*c"], env);
      assert.equal(company.code, 0, show(company));
      assert.equal(company.stdout, "deleted 3 keys of tenant a:b*c\n");
      for (const i of [1, 2, 3]) assert.equal(await cache.exists(i, { companyId: "a:b*c" }), false);
      assert.equal(await cache.get(1, { companyId: "a" }), 1);
      assert.equal(await cache.get(2, { companyId: "ü n" }), 2);
      assert.equal(await cache.get("g1"), 1);

      const unicode = await admin(["clear", "--scope", "company", "--company-id", "ü n"], env);
      assert.equal(unicode.stdout, "deleted 2 keys of tenant ü n\n", show(unicode));
      assert.equal(await cache.get(1, { companyId: "a" }), 1);

      const global = await admin(["clear", "--scope", "global", "--json"], env);
      assert.equal(global.code, 0, show(global));
      assert.deepEqual(JSON.parse(global.stdout), { ok: true, scope: "global", deleted: 2 });
      assert.equal(await cache.get("g2"), null);
      assert.equal(await cache.get(1, { companyId: "a" }), 1);

      await cache.set("g3", 3);
      const all = await admin(["clear", "--scope", "all"], env);
      assert.equal(all.code, 0, show(all));
      assert.equal(all.stdout, "deleted 2 keys in every scope\n");
      assert.equal(await server.cli("DBSIZE"), "1");
      assert.equal(await server.cli("GET", "foreign:key"), "untouched");

      const again = await admin(["clear", "--scope", "company", "--company-id", "a"], env);
      assert.equal(again.stdout, "deleted 0 keys of tenant a\n", show(again));
    });

    it("invalidate-tags: one scope's tagged entries, progress, --json, exit codes", async () => {
      await cache.setMany([[1, 1], [2, 2]], { companyId: "a:b", tags: ["user:1", "x"] });
      await cache.set(3, 3, { companyId: "a:b", tags: ["user:2"] });
      await cache.set(1, 1, { companyId: "a", tags: ["b:user:1"] });
      await cache.set(1, 1, { tags: ["user:1"] });
      const env = serverEnv(server);
      const run = await admin(["invalidate-tags", "user:1", "x", "--company", "a:b"], env);
      assert.equal(run.code, 0, show(run));
      assert.equal(run.stdout, "deleted 2 keys of tenant a:b tagged user:1, x\n");
      assert.equal(await cache.get(3, { companyId: "a:b" }), 3);
      assert.equal(await cache.get(1, { companyId: "a" }), 1);
      assert.equal(await cache.get(1), 1);

      const global = await admin(["invalidate-tags", "user:1", "--json"], env);
      assert.equal(global.code, 0, show(global));
      assert.deepEqual(JSON.parse(global.stdout), { ok: true, tags: ["user:1"], deleted: 1 });
      assert.equal(await cache.get(1), null);

      const entries: [number, number][] = Array.from({ length: 2_000 }, (_, i) => [i, i]);
      await cache.setMany(entries, { companyId: "big", tags: ["t"] });
      const progress = await admin([
        "invalidate-tags",
        "t",
        "--company-id",
        "big",
        "--batch-size",
        "500",
        "--progress-interval",
        "0",
        "--json",
      ], env);
      assert.equal(progress.code, 0, show(progress));
      assert.deepEqual(JSON.parse(progress.stdout), {
        ok: true,
        tags: ["t"],
        companyId: "big",
        deleted: 2_000,
      });
      const lines = progress.stderr.split("\n").filter((l) => l.startsWith("invalidate-tags: "));
      assert.deepEqual(
        lines.map((line) => Number(line.match(/^invalidate-tags: (\d+) keys deleted so far/)![1])),
        [500, 1000, 1500, 2000],
      );

      for (
        const args of [
          ["invalidate-tags"],
          ["invalidate-tags", ""],
          ["invalidate-tags", "t", "--company", ""],
          ["invalidate-tags", "t", "--scope", "all"],
          ["invalidate-tags", "x".repeat(1025)],
        ]
      ) {
        const bad = await admin(args, env);
        assert.equal(bad.code, 2, show(bad));
        assert.equal(bad.stdout, "");
      }
      assert.equal(await cache.get(3, { companyId: "a:b" }), 3, "a usage error deletes nothing");
      const down = await admin(["invalidate-tags", "t"], {
        REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
        REDIS_TIMEOUT: "1",
        CACHE_BACKEND: "redis",
      });
      assert.equal(down.code, 1, show(down));
    });

    it("clear: a long clear prints progress lines to stderr, throttled", async () => {
      const entries: [number, number][] = [];
      for (let i = 0; i < 20_000; i++) entries.push([i, i]);
      const key = entryKey("cache:", "", hashInput(19_999), "big");

      // --progress-interval 0: a line after every batch of 500.
      assert.equal(await cache.setMany(entries, { companyId: "big" }), true);
      assert.equal(await server.cli("EXISTS", key), "1");
      const every = await admin([
        "clear",
        "--scope",
        "company",
        "--company-id",
        "big",
        "--batch-size",
        "500",
        "--progress-interval",
        "0",
      ], serverEnv(server));
      assert.equal(every.code, 0, show(every));
      assert.equal(every.stdout, "deleted 20000 keys of tenant big\n");
      const counts = progressCounts(every.stderr);
      assert.deepEqual(counts, Array.from({ length: 40 }, (_, i) => (i + 1) * 500));
      assert.equal(await server.cli("EXISTS", key), "0");

      // Batches of 10 (2000 script calls), at most one line per 200 ms.
      assert.equal(await cache.setMany(entries, { companyId: "big" }), true);
      const throttled = await admin([
        "clear",
        "--scope",
        "all",
        "--batch-size",
        "10",
        "--progress-interval",
        "200",
      ], serverEnv(server));
      assert.equal(throttled.code, 0, show(throttled));
      assert.equal(throttled.stdout, "deleted 20000 keys in every scope\n");
      const lines = progressCounts(throttled.stderr);
      assert.ok(
        lines.length <= Math.floor(throttled.elapsedMs / 200) + 1,
        `${lines.length} progress lines in ${throttled.elapsedMs} ms`,
      );
      for (let i = 1; i < lines.length; i++) assert.ok(lines[i] > lines[i - 1]);
      assert.ok(lines.every((count) => count > 0 && count < 20_000));
      assert.equal(await server.cli("DBSIZE"), "0");
    });

    it("clear: --help states the batch size a clear without --batch-size runs with", async () => {
      const help = await admin(["clear", "--help"]);
      const match = help.stdout.match(
        /--batch-size N +keys deleted per script call \(default (\d+)\)/,
      );
      assert.ok(match, help.stdout);
      const batch = Number(match[1]);
      // Two and a half batches: full batches, then the rest.
      const total = batch * 2 + Math.floor(batch / 2);
      const entries: [number, number][] = Array.from({ length: total }, (_, i) => [i, i]);
      assert.equal(await cache.setMany(entries, { companyId: "t" }), true);
      const run = await admin(
        ["clear", "--scope", "company", "--company-id", "t", "--progress-interval", "0"],
        serverEnv(server),
      );
      assert.equal(run.code, 0, show(run));
      assert.deepEqual(progressCounts(run.stderr), [batch, 2 * batch, total], show(run));
    });

    it("clear: a server killed mid-clear ends it with exit 1 and the count so far", async (t) => {
      if (server.external) return t.skip("needs a server the harness can kill");
      const doomed = await startServer(kind, { own: true });
      const filler = cacheFor(doomed);
      try {
        assert.equal(await filler.connect(), true);
        const entries: [number, number][] = [];
        for (let i = 0; i < 20_000; i++) entries.push([i, i]);
        assert.equal(await filler.setMany(entries, { companyId: "big" }), true);
        await filler.close();
        let killing: Promise<void> | undefined;
        const run = await admin(
          [
            "clear",
            "--scope",
            "company",
            "--company-id",
            "big",
            "--batch-size",
            "10",
            "--progress-interval",
            "0",
          ],
          serverEnv(doomed, { [envName(doomed, "TIMEOUT")]: "2" }),
          (stderr) => {
            if (stderr.includes("deleted so far")) killing ??= doomed.kill();
          },
        );
        await killing;
        assert.equal(run.code, 1, show(run));
        assert.equal(run.stdout, "", show(run));
        const match = run.stderr.match(
          /clear stopped by a server fault after deleting (\d+) keys? of tenant big\n/,
        );
        assert.ok(match, show(run));
        const deleted = Number(match[1]);
        assert.ok(deleted > 0 && deleted < 20_000, show(run));
        assert.equal(deleted, progressCounts(run.stderr).at(-1), show(run));
      } finally {
        await filler.close();
        await doomed.stop();
      }
    });

    it("provider clears report the running count; a throwing onProgress is ignored", async () => {
      const small = cacheFor(server, { clearBatchSize: 2 });
      try {
        assert.equal(await small.connect(), true);
        await small.setMany([[1, 1], [2, 2], [3, 3]], { companyId: "a" });
        await small.setMany([[1, 1], [2, 2]]);
        const seen: number[] = [];
        assert.equal(await small.clearAll({ onProgress: (n) => seen.push(n) }), 5);
        // Two registries, batches of 2: the count runs on across registries.
        assert.deepEqual(
          seen.slice().sort((x, y) => x - y),
          seen,
          `not monotonic: ${seen}`,
        );
        assert.equal(seen.at(-1), 5);
        assert.ok(seen.length >= 3, `${seen.length} calls`);

        await small.setMany([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], { companyId: "b" });
        let calls = 0;
        const deleted = await small.clearCompany("b", {
          onProgress: () => {
            calls++;
            throw new Error("display broke");
          },
        });
        assert.equal(deleted, 5);
        assert.equal(calls, 3);
        assert.equal(await server.cli("EXISTS", registryKey("cache:", "b")), "0");
      } finally {
        await small.close();
      }
    });

    it("prune: removes the registry members of expired keys and prints how many", async () => {
      for (const i of [1, 2, 3]) await cache.set(i, i, { companyId: "t", ttl: 0.05 });
      await cache.setMany([[4, 4], [5, 5]], { companyId: "t" });
      await cache.set("g", 1, { ttl: 0.05 });
      await sleep(150);
      assert.equal(await server.cli("SCARD", registryKey("cache:", "t")), "5");

      const run = await admin(["prune"], serverEnv(server));
      assert.equal(run.code, 0, show(run));
      assert.equal(run.stdout, "removed 4 registry members whose key was gone\n");
      assert.equal(await server.cli("SCARD", registryKey("cache:", "t")), "2");
      assert.equal(await server.cli("EXISTS", registryKey("cache:")), "0");
      assert.equal(await cache.get(4, { companyId: "t" }), 4);

      const again = await admin(["prune", "--json"], serverEnv(server));
      assert.deepEqual(JSON.parse(again.stdout), { ok: true, removed: 0 });
    });
  });
}
