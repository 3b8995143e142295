/**
 * Runs the benchmark under Node against the built npm package (`deno task bench:node`, which
 * builds `npm/` first): scripts/bench.ts and the test harnesses are compiled by tsc with the
 * package's options and placed at `npm/scripts/bench.js` and `npm/tests/`, where their
 * relative imports (`../mod.js`, `../src/keys.js`) are the package's own shipped files. Neither
 * directory is in the package's `files`, so `npm pack` leaves them out.
 *
 * scripts/bench_near_worker.ts (the second process of a near-cache row) is compiled alongside,
 * and so is every module of scripts/ they import (scripts/bench_figures.ts, child_lines.ts).
 *
 * The peer rows (`near cache vs BentoCache`) need npm `bentocache`: it is installed, with the
 * ioredis it drives, into a directory of the bench's own (`.tools/bench-peers/`, gitignored), never
 * into `npm/` nor into the package's dependencies. A small module there (`peers.mjs`, written by
 * this script) builds the BentoCache the rows use; its file URL reaches the bench as
 * CACHE_BENCH_PEERS. Without it (under Deno, or when the install fails) those rows are skipped.
 *
 * Usage: `deno task bench:node [bench flags]` (the flags of scripts/bench.ts).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  compile,
  compilerOptions,
  installedVersion,
  NPM_DIR,
  npmInstallUnsaved,
  peerRanges,
  TOOLS_DIR,
} from "./build_npm.ts";
import { ensureClients } from "./test_node.ts";

const STAGING_DIR = join(TOOLS_DIR, "npm-bench-build");
/** Where the peer libraries the bench compares with are installed (not the package's). */
const PEERS_DIR = join(TOOLS_DIR, "bench-peers");
/** BentoCache, for the peer rows: the version measured in docs/performance.md. */
const BENTOCACHE = "1.6.1";

/**
 * The module the bench imports (CACHE_BENCH_PEERS): BentoCache with a memory tier (L1, its
 * defaults: values stored serialized, parsed per hit), a Redis tier (L2) and its Redis bus.
 */
const PEERS_MODULE = `// Written by scripts/bench_node.ts: the BentoCache of the bench's peer rows.
import { readFileSync } from "node:fs";
import { BentoCache, bentostore } from "bentocache";
import { memoryDriver } from "bentocache/drivers/memory";
import { redisBusDriver, redisDriver } from "bentocache/drivers/redis";

export const version = JSON.parse(
  readFileSync(new URL("./node_modules/bentocache/package.json", import.meta.url), "utf8"),
).version;

export function create(connection) {
  return new BentoCache({
    default: "bench",
    stores: {
      bench: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 100_000 }))
        .useL2Layer(redisDriver({ connection }))
        .useBus(redisBusDriver({ connection })),
    },
  });
}
`;

/**
 * Installs bentocache (and ioredis, its peer) into PEERS_DIR unless it is there, and writes the
 * module the bench imports. Returns that module's file URL, or `undefined` when the install
 * failed (the peer rows are then skipped).
 */
async function ensurePeers(): Promise<string | undefined> {
  const modules = join(PEERS_DIR, "node_modules");
  try {
    if (installedVersion(modules, "bentocache") !== BENTOCACHE) {
      const { ioredis } = await peerRanges();
      console.log(`Installing bentocache@${BENTOCACHE} into .tools/bench-peers/ (bench only)`);
      await mkdir(PEERS_DIR, { recursive: true });
      await writeFile(
        join(PEERS_DIR, "package.json"),
        JSON.stringify({ private: true, type: "module" }, null, 2) + "\n",
      );
      await npmInstallUnsaved([`bentocache@${BENTOCACHE}`, `ioredis@${ioredis}`], PEERS_DIR);
    }
    const file = join(PEERS_DIR, "peers.mjs");
    await writeFile(file, PEERS_MODULE);
    return pathToFileURL(file).href;
  } catch (error) {
    console.error(
      `bentocache could not be installed (${
        error instanceof Error ? error.message : error
      }): the peer rows are skipped`,
    );
    return undefined;
  }
}

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
    ["scripts/bench.ts", "scripts/bench_near_worker.ts"],
  );
  // Every module tsc emitted: the bench, its worker, the scripts they import (bench_figures, child_lines) and
  // the test modules they import (the harness and what it loads).
  for (const dir of ["scripts", "tests"]) {
    await mkdir(join(NPM_DIR, dir), { recursive: true });
    for (const name of await readdir(join(STAGING_DIR, dir))) {
      if (name.endsWith(".js")) {
        await copyFile(join(STAGING_DIR, dir, name), join(NPM_DIR, dir, name));
      }
    }
  }
  await rm(STAGING_DIR, { recursive: true, force: true });
  await ensureClients();
  const peers = await ensurePeers();
  const { code } = await new Deno.Command("node", {
    args: [join("scripts", "bench.js"), ...Deno.args],
    cwd: NPM_DIR,
    env: peers ? { CACHE_BENCH_PEERS: peers } : {},
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
