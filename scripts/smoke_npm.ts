/**
 * Pack-install smoke test of the npm build (`deno task smoke:npm`, which builds `npm/` first):
 *
 * 1. `npm pack` the `npm/` dir; check what the tarball holds and report its size.
 * 2. Install the tarball into a temporary project with only ioredis (no iovalkey).
 * 3. Start a redis-server on a free loopback port (tests/harness.ts; never 6379) and run the
 *    README's Node example (examples/node_example.mjs) twice: configured by REDIS_HOST /
 *    REDIS_PORT in the environment, then by `node --env-file=.env`.
 * 4. Ask for the valkey provider: without iovalkey it must be a CacheDependencyError that says
 *    `npm install iovalkey`; with `auto` and VALKEY_* set, the server those name must be used
 *    through ioredis.
 * 5. Type-check a TypeScript consumer of the installed package (`exports` → `types`).
 * 6. Run the admin CLI bin: `npx core-lib-cache-admin --help`, then `health`, `stats` and
 *    `clear --scope all` through `node_modules/.bin/core-lib-cache-admin` against the server;
 *    `health` again configured by VALKEY_* only (no iovalkey): it must go where `setCache()`
 *    goes, the server VALKEY_* names, through ioredis.
 * 7. `require("core-lib-cache")` from CommonJS: an error that says the package is ESM-only and
 *    how to import it (not ERR_PACKAGE_PATH_NOT_EXPORTED); `import()` from CommonJS works.
 *
 * Everything happens in a temp dir that is removed afterwards, as is the server.
 *
 * @module
 */

import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { entryKey, hashInput } from "../src/keys.ts";
import { freePort, startServer, type TestServer } from "../tests/harness.ts";
import {
  ADMIN_BIN,
  capture,
  installedVersion,
  NPM_DIR,
  PACKAGE_NAME,
  peerRanges,
  REQUIRE_STUB,
  ROOT,
  run,
  tscPath,
} from "./build_npm.ts";

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string }[];
}

/** Files the tarball must hold (besides every `src/*.js`, checked below). */
const REQUIRED = [
  "package.json",
  "README.md",
  "LICENSE",
  "mod.js",
  "mod.d.ts",
  "mod.js.map",
  "lua/set_and_register.lua",
  "lua/delete_and_unregister.lua",
  "lua/clear_registry.lua",
  "lua/prune_registry.lua",
  "lua/count_live_members.lua",
  ADMIN_BIN.output,
  REQUIRE_STUB.output,
];

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`smoke: ${message}`);
}

/** Packs `npm/` into `dest`; checks the file list. */
async function pack(dest: string): Promise<PackResult> {
  const [result] = JSON.parse(
    await capture("npm", ["pack", "--json", "--pack-destination", dest], { cwd: NPM_DIR }),
  ) as PackResult[];
  const paths = new Set(result.files.map((file) => file.path));
  for (const path of REQUIRED) check(paths.has(path), `the tarball lacks ${path}`);
  for (const path of paths) {
    check(
      !path.startsWith("test/") && !path.startsWith("node_modules/") && !path.endsWith(".ts") ||
        path.endsWith(".d.ts"),
      `the tarball holds ${path}, which is not part of the package`,
    );
  }
  for (const module of ["facade", "provider", "redis", "valkey", "scripts", "runtime"]) {
    check(paths.has(`src/${module}.js`), `the tarball lacks src/${module}.js`);
    check(paths.has(`src/${module}.d.ts`), `the tarball lacks src/${module}.d.ts`);
  }
  return result;
}

/** The environment of a Node process in the app: PATH and HOME, and nothing cache-related. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Runs `node args` in `cwd` with exactly `env` (plus PATH/HOME); returns stdout + stderr. */
function node(
  cwd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  return exec("node", cwd, args, env);
}

/** Runs `cmd args` in `cwd` with exactly `env` (plus PATH/HOME); returns stdout + stderr. */
async function exec(
  cmd: string,
  cwd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    cwd,
    env: { ...baseEnv(), ...env },
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout) + decoder.decode(stderr) };
}

/** The server's connection settings as the example reads them. */
function serverEnv(server: TestServer): Record<string, string> {
  const env: Record<string, string> = { REDIS_HOST: server.host, REDIS_PORT: String(server.port) };
  const url = new URL(server.url);
  if (url.password) env.REDIS_PASSWORD = decodeURIComponent(url.password);
  const db = url.pathname.replace(/^\//, "");
  if (db) env.REDIS_DB = db;
  return env;
}

/** Runs the example and checks that the value made the round trip through the server. */
async function runExample(
  app: string,
  server: TestServer,
  label: string,
  args: string[],
  env: Record<string, string>,
): Promise<void> {
  await server.cli("FLUSHDB");
  const { code, out } = await node(app, args, env);
  check(code === 0, `${label}: node exited with ${code}\n${out}`);
  check(out.includes("{ name: 'Ada' }"), `${label}: expected { name: 'Ada' }, got:\n${out}`);
  const keys = await server.cli("KEYS", "cache:*");
  check(
    keys.includes("cache:registry:tenant:acme"),
    `${label}: no registry on the server: ${keys}`,
  );
  console.log(
    `ok   ${label}: printed { name: 'Ada' }; server holds ${keys.split("\n").length} keys`,
  );
}

const VALKEY_CHECK = `
import { CacheDependencyError, setCache } from "${PACKAGE_NAME}";
try {
  await setCache({ provider: "valkey" });
  console.error("setCache({ provider: 'valkey' }) resolved without iovalkey installed");
  process.exit(1);
} catch (error) {
  if (!(error instanceof CacheDependencyError) || !error.message.includes("npm install iovalkey")) {
    console.error("unexpected error:", error);
    process.exit(1);
  }
  console.log(error.name + ": " + error.message);
}
`;

/**
 * `auto` with VALKEY_* set and only ioredis installed: the server the VALKEY_* variables name
 * (here the harness's redis-server), reached through ioredis.
 */
const AUTO_CHECK = `
import { cacheGet, cacheSet, closeCache, getCache, setCache } from "${PACKAGE_NAME}";
const ok = await setCache();
const kind = getCache()?.constructor.name;
const stored = ok && (await cacheSet("auto", 1)) && (await cacheGet("auto")) === 1;
await closeCache();
if (!ok || kind !== "RedisCache" || !stored) {
  console.error("auto without iovalkey:", { ok, kind, stored });
  process.exit(1);
}
console.log(kind + " at " + process.env.VALKEY_HOST + ":" + process.env.VALKEY_PORT);
`;

const TS_CONSUMER = `
import {
  cacheGet,
  cacheSet,
  CacheDependencyError,
  RedisCache,
  RedisConfig,
  type SetCacheOptions,
  setCache,
} from "${PACKAGE_NAME}";

const options: SetCacheOptions = { provider: "redis", config: new RedisConfig({ port: 6380 }) };
export async function demo(): Promise<string | null> {
  await setCache(options);
  const stored: boolean = await cacheSet({ user: 42 }, { name: "Ada" }, { companyId: "acme" });
  const user = await cacheGet<{ name: string }>({ user: 42 }, { companyId: "acme" });
  const cache = new RedisCache({ name: "users", ttl: 60 });
  console.log(stored, cache.prefix, new CacheDependencyError("x") instanceof Error);
  return user?.name ?? null;
}
`;

/** The admin CLI, installed as the package's bin, against the server. */
async function adminBin(app: string, server: TestServer, env: Record<string, string>) {
  const help = await exec("npx", app, ["--no-install", ADMIN_BIN.name, "--help"]);
  check(
    help.code === 0 && help.out.includes(`Usage: ${ADMIN_BIN.name}`),
    `npx ${ADMIN_BIN.name} --help:\n${help.out}`,
  );
  console.log(`ok   npx ${ADMIN_BIN.name} --help`);

  const bin = join(app, "node_modules", ".bin", ADMIN_BIN.name);
  await server.cli("FLUSHDB");
  const example = await node(app, ["node_example.mjs"], env);
  check(example.code === 0, `node_example.mjs before the admin CLI:\n${example.out}`);
  const health = await exec(bin, app, ["health"], env);
  check(
    health.code === 0 && health.out.startsWith("healthy: redis "),
    `${ADMIN_BIN.name} health:\n${health.out}`,
  );
  console.log(`ok   ${ADMIN_BIN.name} health: ${health.out.trim()}`);
  const stats = await exec(bin, app, ["stats", "--json"], env);
  check(stats.code === 0, `${ADMIN_BIN.name} stats --json:\n${stats.out}`);
  const scopes = JSON.parse(stats.out).scopes as { companyId?: string; live: number }[];
  const acme = scopes.find((scope) => scope.companyId === "acme");
  check(acme && acme.live > 0, `${ADMIN_BIN.name} stats shows no live tenant acme:\n${stats.out}`);
  const clear = await exec(bin, app, ["clear", "--scope", "all"], env);
  check(
    clear.code === 0 && /^deleted [1-9]\d* keys? in every scope$/.test(clear.out.trim()),
    `${ADMIN_BIN.name} clear --scope all:\n${clear.out}`,
  );
  const left = await server.cli("KEYS", "cache:*");
  check(left === "", `keys left after clear --scope all: ${left}`);
  const unreachable = await exec(bin, app, ["health"], { ...env, REDIS_PORT: "1" });
  check(unreachable.code === 1, `${ADMIN_BIN.name} health on port 1:\n${unreachable.out}`);
  console.log(
    `ok   ${ADMIN_BIN.name} stats (tenant acme: ${acme.live} live), ${clear.out.trim()}, ` +
      "exit 1 when unreachable",
  );

  // Only ioredis is installed: VALKEY_* still names the server, as it does for setCache()
  // (AUTO_CHECK). REDIS_PORT points where nothing listens, so reading REDIS_* instead fails.
  const valkeyEnv = {
    VALKEY_HOST: server.host,
    VALKEY_PORT: String(server.port),
    VALKEY_PASSWORD: decodeURIComponent(new URL(server.url).password),
    REDIS_PORT: String(await freePort()),
    REDIS_TIMEOUT: "2",
  };
  const viaValkeyEnv = await exec(bin, app, ["health"], valkeyEnv);
  const address = `redis://${server.host}:${server.port}/0`;
  check(
    viaValkeyEnv.code === 0 && viaValkeyEnv.out.includes(` at ${address} `) &&
      viaValkeyEnv.out.includes("client ioredis"),
    `${ADMIN_BIN.name} health with VALKEY_* and no iovalkey:\n${viaValkeyEnv.out}`,
  );
  console.log(`ok   ${ADMIN_BIN.name} health with VALKEY_* and no iovalkey: ${address}`);
}

/** `require()` of the ESM-only package: a clear error, and `import()` from CommonJS works. */
async function commonJs(app: string): Promise<void> {
  const required = await node(app, ["-e", `require(${JSON.stringify(PACKAGE_NAME)})`]);
  check(
    required.code !== 0 && required.out.includes(REQUIRE_STUB.message) &&
      required.out.includes("ERR_REQUIRE_ESM") &&
      !required.out.includes("ERR_PACKAGE_PATH_NOT_EXPORTED"),
    `require("${PACKAGE_NAME}") should fail saying the package is ESM-only:\n${required.out}`,
  );
  const imported = await node(app, [
    "-e",
    `import(${JSON.stringify(PACKAGE_NAME)}).then((m) => console.log(typeof m.setCache))`,
  ]);
  check(
    imported.code === 0 && imported.out.trim() === "function",
    `import("${PACKAGE_NAME}") from CommonJS:\n${imported.out}`,
  );
  console.log(
    `ok   require("${PACKAGE_NAME}") says: ${REQUIRE_STUB.message.split(":")[0]}; ` +
      "import() from CommonJS loads it",
  );
}

async function main(): Promise<void> {
  const ranges = await peerRanges();
  const temp = await mkdtemp(join(tmpdir(), "core-lib-cache-smoke-"));
  let server: TestServer | undefined;
  try {
    const packed = await pack(temp);
    const tarball = join(temp, packed.filename);
    console.log(
      `ok   npm pack: ${packed.filename}, ${packed.size} bytes packed (${
        (packed.size / 1024).toFixed(1)
      } kB), ${packed.unpackedSize} bytes unpacked, ${packed.entryCount} files`,
    );

    const app = join(temp, "app");
    await Deno.mkdir(app);
    await writeFile(
      join(app, "package.json"),
      JSON.stringify({ name: "smoke-app", private: true, type: "module" }, null, 2) + "\n",
    );
    await run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      tarball,
      `ioredis@${ranges.ioredis}`,
    ], { cwd: app });
    const modules = join(app, "node_modules");
    check(installedVersion(modules, PACKAGE_NAME), `${PACKAGE_NAME} is not installed`);
    check(installedVersion(modules, "ioredis"), "ioredis is not installed");
    check(!installedVersion(modules, "iovalkey"), "iovalkey got installed; it must stay optional");
    console.log(
      `ok   installed ${PACKAGE_NAME}@${installedVersion(modules, PACKAGE_NAME)} with ioredis@${
        installedVersion(modules, "ioredis")
      } only`,
    );

    server = await startServer("redis");
    await copyFile(join(ROOT, "examples", "node_example.mjs"), join(app, "node_example.mjs"));
    const env = serverEnv(server);
    await runExample(app, server, "node node_example.mjs (env vars)", ["node_example.mjs"], env);
    const dotenv = Object.entries(env).map(([name, value]) => `${name}=${value}`).join("\n");
    await writeFile(join(app, ".env"), dotenv + "\n");
    await runExample(
      app,
      server,
      "node --env-file=.env node_example.mjs",
      ["--env-file=.env", "node_example.mjs"],
      {},
    );

    await writeFile(join(app, "valkey_check.mjs"), VALKEY_CHECK);
    const valkey = await node(app, ["valkey_check.mjs"], env);
    check(valkey.code === 0, `valkey without iovalkey:\n${valkey.out}`);
    console.log(`ok   provider "valkey" without iovalkey: ${valkey.out.trim()}`);

    await writeFile(join(app, "auto_check.mjs"), AUTO_CHECK);
    const auto = await node(app, ["auto_check.mjs"], {
      VALKEY_HOST: server.host,
      VALKEY_PORT: String(server.port),
      VALKEY_PASSWORD: decodeURIComponent(new URL(server.url).password),
    });
    check(auto.code === 0, `auto with VALKEY_* and without iovalkey:\n${auto.out}`);
    // On the server VALKEY_* names, not on a default localhost:6379.
    const autoEntry = await server.cli("GET", entryKey("cache:", "", hashInput("auto")));
    check(autoEntry === "1", `auto stored its entry elsewhere (got ${JSON.stringify(autoEntry)})`);
    console.log(`ok   auto with VALKEY_* set and no iovalkey: ${auto.out.trim()}`);

    await writeFile(join(app, "consumer.ts"), TS_CONSUMER);
    await capture("node", [
      tscPath(),
      "--noEmit",
      "--strict",
      "--target",
      "ES2022",
      "--module",
      "NodeNext",
      "--moduleResolution",
      "NodeNext",
      "--types",
      "node",
      "--typeRoots",
      join(ROOT, ".tools", "node_modules", "@types"),
      "consumer.ts",
    ], { cwd: app });
    console.log("ok   a TypeScript consumer type-checks against the installed types (NodeNext)");

    await adminBin(app, server, env);
    await commonJs(app);
    console.log(`smoke test passed; tarball ${packed.filename}: ${packed.size} bytes`);
  } finally {
    await server?.stop();
    await rm(temp, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}
