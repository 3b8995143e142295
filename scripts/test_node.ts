/**
 * Runs the test suite under Node against the built npm package (`deno task test:node`, which
 * builds `npm/` first).
 *
 * - tests/*.ts are compiled by tsc (same options as the package) and the test modules alone are
 *   placed in `npm/test/`; there `../mod.js`, `../src/*.js` and `../lua/*.lua` are the package's
 *   own files, so the library code exercised is exactly the tsc output that ships. `npm/test/` is
 *   not in the package's `files`, so `npm pack` leaves it out.
 * - ioredis and iovalkey are installed into `npm/node_modules` (not saved to package.json),
 *   where the built `src/redis.js` / `src/valkey.js` resolve them; so are `@opentelemetry/api`
 *   (for `src/otel.js`) and the OpenTelemetry SDK packages tests/otel_test.ts uses.
 * - The Python key vectors are passed by path (PYTHON_KEYS_VECTORS): the compiled keys test no
 *   longer sits where its relative path points.
 * - `node --test` runs every `*_test.js`; tests/harness.ts starts redis-server / valkey-server on
 *   free loopback ports, as under Deno.
 *
 * Usage: `deno task test:node`; extra arguments go to `node --test` (e.g. `--test-reporter=spec`).
 * The matrix cells (scripts/test_matrix.sh) pick the client and the runtime:
 * - `CACHE_TEST_IOREDIS=6` (a major version or an npm range): that ioredis instead of deno.json's;
 * - `CACHE_TEST_NODE=/path/to/node`: that Node binary instead of the one on PATH.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  CLIENT_PACKAGES,
  compile,
  compilerOptions,
  installedVersion,
  NPM_DIR,
  npmInstallUnsaved,
  OTEL_PACKAGES,
  otelVersions,
  peerRanges,
  ROOT,
  TOOLS_DIR,
} from "./build_npm.ts";

const TEST_DIR = join(NPM_DIR, "test");
/** tsc's output for the test build; only its `tests/` part is kept. */
const STAGING_DIR = join(TOOLS_DIR, "npm-test-build");
/** Where the Deno suite reads the Python key vectors (tests/keys_test.ts), resolved here. */
const VECTORS = join(ROOT, "tests", "fixtures", "python_keys.json");

/** `true` when `version` satisfies a caret range such as `^5.9.2` or `^0.4.0`. */
function satisfiesCaret(version: string, range: string): boolean {
  const parse = (v: string) => v.replace(/^\^/, "").split("-")[0].split(".").map(Number);
  const [major, minor, patch] = parse(version);
  const [rMajor, rMinor, rPatch] = parse(range);
  if (!range.startsWith("^") || [major, minor, patch, rMajor, rMinor, rPatch].some(isNaN)) {
    return false;
  }
  if (major !== rMajor || (rMajor === 0 && minor !== rMinor)) return false;
  return minor > rMinor || (minor === rMinor && patch >= rPatch);
}

/** `true` when `version` satisfies deno.json's pin of an OpenTelemetry package (`~1.9.1`, `2.12.0`). */
function satisfiesPin(version: string, pin: string): boolean {
  if (!pin.startsWith("~")) return version === pin;
  const [major, minor, patch] = version.split("-")[0].split(".").map(Number);
  const [pMajor, pMinor, pPatch] = pin.slice(1).split(".").map(Number);
  return major === pMajor && minor === pMinor && patch >= pPatch;
}

/**
 * Installs the client packages and the OpenTelemetry packages (the API, an optional peer, and the
 * SDK the tests and the bench use) into `npm/node_modules` unless matching versions are there.
 */
export async function ensureClients(): Promise<void> {
  const ranges = await peerRanges();
  const otel = await otelVersions();
  const ioredis = Deno.env.get("CACHE_TEST_IOREDIS");
  if (ioredis) ranges.ioredis = /^\d+$/.test(ioredis) ? `^${ioredis}.0.0` : ioredis;
  const modules = join(NPM_DIR, "node_modules");
  const missing = [
    ...CLIENT_PACKAGES.filter((name) => {
      const version = installedVersion(modules, name);
      return version === undefined || !satisfiesCaret(version, ranges[name]);
    }),
    ...OTEL_PACKAGES.filter((name) => {
      const version = installedVersion(modules, name);
      return version === undefined || !satisfiesPin(version, otel[name]);
    }),
  ];
  if (missing.length === 0) return;
  console.log(`Installing ${missing.join(", ")} into npm/node_modules (not saved)`);
  // From scratch: npm, asked to replace an unsaved package by another version (ioredis 5 by 6
  // for a matrix cell), removed every unsaved package and installed none.
  await rm(modules, { recursive: true, force: true });
  await npmInstallUnsaved([
    ...CLIENT_PACKAGES.map((name) => `${name}@${ranges[name]}`),
    ...OTEL_PACKAGES.map((name) => `${name}@${otel[name]}`),
  ], NPM_DIR);
}

/** Compiles tests/*.ts and places the test modules (JS + maps) in `npm/test/`. */
async function buildTests(): Promise<string[]> {
  await rm(STAGING_DIR, { recursive: true, force: true });
  await rm(TEST_DIR, { recursive: true, force: true });
  console.log("Compiling tests/ with tsc into npm/test/");
  await compile(
    "tsconfig.npm-test.json",
    {
      ...compilerOptions(STAGING_DIR),
      declaration: false,
      // Absolute, so the maps still find tests/*.ts after the move to npm/test/.
      sourceRoot: pathToFileURL(ROOT).href + "/",
    },
    ["tests/*.ts"],
  );
  await mkdir(TEST_DIR);
  const files = (await readdir(join(STAGING_DIR, "tests"))).filter((f) => /\.js(\.map)?$/.test(f));
  for (const file of files) {
    await copyFile(join(STAGING_DIR, "tests", file), join(TEST_DIR, file));
  }
  await rm(STAGING_DIR, { recursive: true, force: true });
  return files.filter((f) => f.endsWith("_test.js")).sort();
}

async function main(): Promise<number> {
  if (!existsSync(join(NPM_DIR, "package.json"))) {
    console.error("npm/ is not built: run `deno task build:npm` first");
    return 1;
  }
  if (!existsSync(VECTORS)) {
    console.error(`The Python key vectors are missing: ${VECTORS}`);
    return 1;
  }
  const testFiles = await buildTests();
  await ensureClients();
  const node = Deno.env.get("CACHE_TEST_NODE") || "node";
  const nodeVersion = new TextDecoder().decode(
    (await new Deno.Command(node, { args: ["--version"] }).output()).stdout,
  ).trim();
  const clients = CLIENT_PACKAGES.map((name) =>
    `${name} ${installedVersion(join(NPM_DIR, "node_modules"), name)}`
  ).join(", ");
  console.log(
    `Running ${testFiles.length} test files with node --test (Node ${nodeVersion}; ${clients})`,
  );
  const { code } = await new Deno.Command(node, {
    args: [
      "--test",
      "--enable-source-maps",
      ...Deno.args,
      ...testFiles.map((file) => join("test", file)),
    ],
    cwd: NPM_DIR,
    env: { PYTHON_KEYS_VECTORS: VECTORS },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return code;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}
