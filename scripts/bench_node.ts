/**
 * Runs the benchmark under Node against the built npm package (`deno task bench:node`, which
 * builds `npm/` first): scripts/bench.ts and the test harnesses are compiled by tsc with the
 * package's options and placed at `npm/scripts/bench.js` and `npm/tests/`, where their
 * relative imports (`../mod.js`, `../src/keys.js`) are the package's own shipped files. Neither
 * directory is in the package's `files`, so `npm pack` leaves them out.
 *
 * Usage: `deno task bench:node [bench flags]` (the flags of scripts/bench.ts).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { compile, compilerOptions, NPM_DIR, TOOLS_DIR } from "./build_npm.ts";
import { ensureClients } from "./test_node.ts";

const STAGING_DIR = join(TOOLS_DIR, "npm-bench-build");

async function main(): Promise<number> {
  if (!existsSync(join(NPM_DIR, "package.json"))) {
    console.error("npm/ is not built: run `deno task build:npm` first");
    return 1;
  }
  await rm(STAGING_DIR, { recursive: true, force: true });
  console.log("Compiling scripts/bench.ts with tsc into npm/scripts/");
  await compile(
    "tsconfig.npm-bench.json",
    { ...compilerOptions(STAGING_DIR), declaration: false, sourceMap: false },
    ["scripts/bench.ts"],
  );
  // The bench and every test module it imports (the harness and the modules it loads).
  const harness = (await readdir(join(STAGING_DIR, "tests"))).filter((f) => f.endsWith(".js"));
  for (const file of ["scripts/bench.js", ...harness.map((f) => `tests/${f}`)]) {
    await mkdir(join(NPM_DIR, file, ".."), { recursive: true });
    await copyFile(join(STAGING_DIR, file), join(NPM_DIR, file));
  }
  await rm(STAGING_DIR, { recursive: true, force: true });
  await ensureClients();
  const { code } = await new Deno.Command("node", {
    args: [join("scripts", "bench.js"), ...Deno.args],
    cwd: NPM_DIR,
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
