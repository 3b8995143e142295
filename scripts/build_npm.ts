/**
 * Builds the npm package in `npm/` from the same sources as the JSR one: `mod.ts` and `src/`
 * compiled by TypeScript's own compiler (from npm; dnt lives on JSR, which this project cannot
 * reach) to ESM JavaScript, `.d.ts` types and source maps, plus `lua/`, README.md, LICENSE, a
 * generated package.json and the generated CommonJS file `require()` finds (`REQUIRE_STUB`). No
 * source file is copied by hand: everything comes from the repository.
 *
 * The build tools (typescript, @types/node, and ioredis / iovalkey and the OpenTelemetry packages
 * for their types) live in `.tools/` and are installed there with npm when missing. `npm/node_modules` (the client
 * packages the Node tests install) survives a rebuild; everything else in `npm/` is replaced.
 *
 * Usage: `deno task build:npm` (= `deno run -A scripts/build_npm.ts`).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
/** Where the npm package is built. */
export const NPM_DIR: string = join(ROOT, "npm");
/** Where the build tools are installed (gitignored). */
export const TOOLS_DIR: string = join(ROOT, ".tools");
/** The npm package's name. */
export const PACKAGE_NAME = "core-lib-cache";
/** The admin CLI: its bin name, its source and where the build puts it (relative to `npm/`). */
export const ADMIN_BIN = {
  name: "core-lib-cache-admin",
  source: "scripts/cache_admin.ts",
  output: "scripts/cache_admin.js",
} as const;

/**
 * What `require("core-lib-cache")` loads (the `require` condition of `exports`): the package is
 * ESM-only, and without this file Node's answer is ERR_PACKAGE_PATH_NOT_EXPORTED, which names
 * neither the cause nor the fix. It throws an error that says both, with the code
 * ERR_REQUIRE_ESM that loaders such as ts-node and cosmiconfig take as "use import() instead".
 */
export const REQUIRE_STUB = {
  output: "esm_only.cjs",
  message:
    `${PACKAGE_NAME} is ESM-only: use \`import { setCache } from "${PACKAGE_NAME}"\` in an ` +
    `ES module, or \`const { setCache } = await import("${PACKAGE_NAME}")\` from CommonJS; ` +
    "require() cannot load it.",
} as const;

/** The text of the `require` entry: a plain CommonJS file, no build step, no dependencies. */
function requireStubSource(): string {
  return [
    '"use strict";',
    `// ${PACKAGE_NAME} is an ES module package: require() ends here (package.json "exports",`,
    '// "require" condition) to say so and how to load it.',
    `const error = new Error(${JSON.stringify(REQUIRE_STUB.message)});`,
    'error.code = "ERR_REQUIRE_ESM";',
    "throw error;",
    "",
  ].join("\n");
}

/** The compiler, pinned to the TypeScript version Deno 2.9 bundles. */
const TYPESCRIPT = "typescript@~6.0.3";
/** Node's types for the lowest Node the package supports. */
const NODE_TYPES = "@types/node@^20";
/** The client packages: optional peer dependencies of the npm package. */
export const CLIENT_PACKAGES = ["ioredis", "iovalkey"] as const;

/**
 * Peer ranges wider than deno.json's (which pins what the Deno suite runs): the npm build's Node
 * tests run with ioredis 5 and, as a matrix cell (`CACHE_TEST_IOREDIS=6`), with ioredis 6.
 */
export const PEER_RANGES: Partial<Record<(typeof CLIENT_PACKAGES)[number], string>> = {
  ioredis: "^5.9.2 || ^6.0.0",
};

/**
 * OpenTelemetry: the API is an optional peer dependency of the package (src/otel.ts imports it
 * only when the `otel` option is on); the SDK packages are for the tests, the example and the
 * bench. All of them are installed into `.tools/` for their types and, by the Node test runner,
 * into `npm/node_modules`, at the versions deno.json pins.
 */
export const OTEL_PACKAGES = [
  "@opentelemetry/api",
  "@opentelemetry/exporter-prometheus",
  "@opentelemetry/sdk-metrics",
  "@opentelemetry/sdk-trace-base",
] as const;

/** The peer range of `@opentelemetry/api`: its metrics API (1.3); 1.7+ honours bucket advice. */
export const OTEL_API_PEER_RANGE = "^1.3.0";

interface DenoJson {
  version: string;
  license?: string;
  imports: Record<string, string>;
}

/** deno.json, the one place the version and the client version ranges are written. */
export async function readDenoJson(): Promise<DenoJson> {
  return JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
}

/** The version range of each client package, from deno.json's `"ioredis": "npm:ioredis@^5.9.2"`. */
export async function peerRanges(): Promise<Record<(typeof CLIENT_PACKAGES)[number], string>> {
  const { imports } = await readDenoJson();
  const ranges = {} as Record<(typeof CLIENT_PACKAGES)[number], string>;
  for (const name of CLIENT_PACKAGES) {
    const match = imports[name]?.match(/^npm:(?:@[^/@]+\/)?[^@]+@(.+)$/);
    if (!match) throw new Error(`deno.json imports has no "${name}": "npm:${name}@<range>" entry`);
    ranges[name] = match[1];
  }
  return ranges;
}

/** The version (range) deno.json pins for each OpenTelemetry package. */
export async function otelVersions(): Promise<Record<(typeof OTEL_PACKAGES)[number], string>> {
  const { imports } = await readDenoJson();
  const versions = {} as Record<(typeof OTEL_PACKAGES)[number], string>;
  for (const name of OTEL_PACKAGES) {
    const match = imports[name]?.match(/^npm:@[^/@]+\/[^@]+@(.+)$/);
    if (!match) throw new Error(`deno.json imports has no "${name}": "npm:${name}@<range>" entry`);
    versions[name] = match[1];
  }
  return versions;
}

/** Runs a command (inheriting stdout/stderr); throws when it exits non-zero. */
export async function run(cmd: string, args: string[], options: { cwd?: string } = {}): Promise<
  void
> {
  const { code } = await new Deno.Command(cmd, {
    args,
    cwd: options.cwd ?? ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with code ${code}`);
}

/**
 * `npm install`s `packages` into `cwd` without touching its package.json or writing a lock file
 * (the test and bench dependencies, which the package must not declare); throws on failure.
 */
export async function npmInstallUnsaved(packages: string[], cwd: string): Promise<void> {
  await run("npm", [
    "install",
    "--no-save",
    "--no-package-lock",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    ...packages,
  ], { cwd });
}

/** Runs a command and returns its stdout; throws (with its stderr) when it exits non-zero. */
export async function capture(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    cwd: options.cwd ?? ROOT,
    env: options.env,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  if (code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited with code ${code}\n${decoder.decode(stdout)}${
        decoder.decode(stderr)
      }`,
    );
  }
  return decoder.decode(stdout);
}

/** The installed version of `name` under `nodeModules`, or `undefined`. */
export function installedVersion(nodeModules: string, name: string): string | undefined {
  const file = join(nodeModules, name, "package.json");
  if (!existsSync(file)) return undefined;
  return JSON.parse(Deno.readTextFileSync(file)).version;
}

/** Installs the build tools into `.tools/` unless they are there already. */
export async function ensureTools(): Promise<void> {
  const ranges = await peerRanges();
  const otel = await otelVersions();
  const modules = join(TOOLS_DIR, "node_modules");
  const wanted = [
    TYPESCRIPT,
    NODE_TYPES,
    ...CLIENT_PACKAGES.map((n) => `${n}@${ranges[n]}`),
    ...OTEL_PACKAGES.map((n) => `${n}@${otel[n]}`),
  ];
  const missing = wanted.filter((spec) => {
    const name = spec.slice(0, spec.lastIndexOf("@"));
    return installedVersion(modules, name) === undefined;
  });
  if (missing.length === 0) return;
  console.log(`Installing build tools into .tools/: ${missing.join(" ")}`);
  await run("npm", [
    "install",
    "--prefix",
    TOOLS_DIR,
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    ...missing,
  ]);
}

/** tsc, from `.tools/`. */
export function tscPath(): string {
  return join(TOOLS_DIR, "node_modules", "typescript", "bin", "tsc");
}

/**
 * The compiler options shared by the package build and the Node test build: ESM for Node 20,
 * `./x.ts` imports rewritten to `./x.js`, strict, Node's types, and the client packages' types
 * found in `.tools/` (the bare specifiers "ioredis" / "iovalkey" stay as they are in the output).
 */
export function compilerOptions(outDir: string): Record<string, unknown> {
  const modules = join(TOOLS_DIR, "node_modules");
  return {
    target: "ES2022",
    lib: ["ES2023", "ESNext.Disposable"],
    module: "ESNext",
    moduleResolution: "bundler",
    allowImportingTsExtensions: true,
    rewriteRelativeImportExtensions: true,
    verbatimModuleSyntax: true,
    strict: true,
    noImplicitOverride: true,
    skipLibCheck: true,
    declaration: true,
    sourceMap: true,
    rootDir: ROOT,
    outDir,
    newLine: "lf",
    types: ["node"],
    typeRoots: [join(modules, "@types")],
    paths: Object.fromEntries(
      [...CLIENT_PACKAGES, ...OTEL_PACKAGES].map((name) => [name, [join(modules, name)]]),
    ),
  };
}

/** Runs tsc on a generated tsconfig (kept in `.tools/` for inspection). */
export async function compile(
  configName: string,
  options: Record<string, unknown>,
  include: string[],
): Promise<void> {
  const configPath = join(TOOLS_DIR, configName);
  const config = { compilerOptions: options, include: include.map((p) => join(ROOT, p)) };
  await writeFile(configPath, JSON.stringify(config, null, 2) + "\n");
  await run("node", [tscPath(), "--project", configPath, "--pretty", "false"]);
}

/** Every file under `dir`, as paths relative to it. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

/** Empties `npm/` except `node_modules/`. */
async function cleanNpmDir(): Promise<void> {
  await mkdir(NPM_DIR, { recursive: true });
  for (const entry of await readdir(NPM_DIR)) {
    if (entry !== "node_modules") await rm(join(NPM_DIR, entry), { recursive: true, force: true });
  }
}

/** A line of a comment (JSDoc examples hold import lines that are not code). */
function isCommentLine(line: string): boolean {
  return /^\s*(\*|\/\*|\/\/)/.test(line);
}

/** Relative import specifiers in code: `from "./x"`, `import("./x")`, `import "./x"`. */
const RELATIVE_IMPORT = /((?:from|import)\s*\(?\s*)"(\.{1,2}\/[^"]+)"/g;

/**
 * Two fixes to tsc's output, each on whole lines:
 * - tsc rewrites `./x.ts` to `./x.js` in JavaScript but keeps `.ts` in declaration files; the
 *   `.d.ts` files get `.js` too, so every TypeScript version and resolution mode reads them.
 * - The JSDoc examples import "@core-lib/cache" (the JSR name); in the npm package the name a
 *   user imports is "core-lib-cache".
 */
async function fixOutput(): Promise<void> {
  for (const file of await listFiles(NPM_DIR)) {
    if (file.startsWith("node_modules/") || !/\.(js|d\.ts)$/.test(file)) continue;
    const path = join(NPM_DIR, file);
    const text = await readFile(path, "utf8");
    const fixed = text.split("\n").map((line) => {
      if (isCommentLine(line)) {
        return line.replace(
          /^(\s*\*\s*import .* from )"@core-lib\/cache";$/,
          `$1"${PACKAGE_NAME}";`,
        );
      }
      if (!file.endsWith(".d.ts")) return line;
      return line.replace(
        RELATIVE_IMPORT,
        (all, head, specifier) =>
          specifier.endsWith(".ts") ? `${head}"${specifier.slice(0, -3)}.js"` : all,
      );
    }).join("\n");
    if (fixed !== text) await writeFile(path, fixed);
  }
}

/** Checks the output: every relative import in code names a `.js` file that exists. */
async function checkOutput(): Promise<void> {
  const problems: string[] = [];
  for (const file of await listFiles(NPM_DIR)) {
    if (file.startsWith("node_modules/") || !/\.(js|d\.ts)$/.test(file)) continue;
    const text = await readFile(join(NPM_DIR, file), "utf8");
    for (const line of text.split("\n")) {
      if (isCommentLine(line)) continue;
      for (const [, , specifier] of line.matchAll(RELATIVE_IMPORT)) {
        const target = new URL(specifier, pathToFileURL(join(NPM_DIR, file)));
        if (!specifier.endsWith(".js")) problems.push(`${file}: import "${specifier}" is not .js`);
        else if (!existsSync(target)) problems.push(`${file}: "${specifier}" does not exist`);
      }
    }
  }
  if (problems.length > 0) throw new Error(`Bad npm output:\n${problems.join("\n")}`);
}

/**
 * Makes the compiled admin CLI a Node executable: its Deno shebang (kept by tsc) becomes
 * `#!/usr/bin/env node`, on the same line so the source map stays right, and it gets mode 755.
 */
async function makeBin(): Promise<void> {
  const path = join(NPM_DIR, ADMIN_BIN.output);
  const lines = (await readFile(path, "utf8")).split("\n");
  if (!lines[0].startsWith("#!")) throw new Error(`${ADMIN_BIN.output} has no shebang line`);
  lines[0] = "#!/usr/bin/env node";
  await writeFile(path, lines.join("\n"));
  await chmod(path, 0o755);
  // The CLI is not an importable module of the package: no declarations for it.
  await rm(join(NPM_DIR, ADMIN_BIN.output.replace(/\.js$/, ".d.ts")), { force: true });
}

/** The npm package's package.json. */
async function packageJson(): Promise<Record<string, unknown>> {
  const deno = await readDenoJson();
  const ranges = await peerRanges();
  return {
    name: PACKAGE_NAME,
    version: deno.version,
    description:
      "A tenant-aware cache for Redis and Valkey (ioredis / iovalkey): hashed keys, per-tenant clears by Lua scripts, faults degrade to misses. Key layout compatible with Python core_lib.cache.",
    license: deno.license ?? "MIT",
    // The project's name as a GitHub path: the repository has no remote URL recorded yet.
    repository: { type: "git", url: "github:core-lib/cache" },
    bugs: { url: "https://github.com/core-lib/cache/issues" },
    keywords: ["cache", "redis", "valkey", "ioredis", "iovalkey", "multi-tenant"],
    type: "module",
    exports: {
      ".": { types: "./mod.d.ts", import: "./mod.js", require: `./${REQUIRE_STUB.output}` },
      "./package.json": "./package.json",
    },
    types: "./mod.d.ts",
    bin: { [ADMIN_BIN.name]: `./${ADMIN_BIN.output}` },
    files: [
      "mod.js",
      "mod.js.map",
      "mod.d.ts",
      "src/",
      "lua/",
      ADMIN_BIN.output,
      `${ADMIN_BIN.output}.map`,
      REQUIRE_STUB.output,
      "README.md",
      "LICENSE",
    ],
    sideEffects: false,
    engines: { node: ">=20" },
    peerDependencies: {
      ...Object.fromEntries(
        CLIENT_PACKAGES.map((name) => [name, PEER_RANGES[name] ?? ranges[name]]),
      ),
      [OTEL_PACKAGES[0]]: OTEL_API_PEER_RANGE,
    },
    peerDependenciesMeta: Object.fromEntries(
      [...CLIENT_PACKAGES, OTEL_PACKAGES[0]].map((name) => [name, { optional: true }]),
    ),
  };
}

/** Builds `npm/`. */
export async function buildNpm(): Promise<void> {
  await ensureTools();
  await cleanNpmDir();
  console.log(`Compiling mod.ts, src/ and ${ADMIN_BIN.source} with tsc into npm/`);
  await compile(
    "tsconfig.npm.json",
    // The shipped maps carry their sources: the .ts files are not in the package.
    { ...compilerOptions(NPM_DIR), inlineSources: true },
    ["mod.ts", "src/*.ts", ADMIN_BIN.source],
  );
  await fixOutput();
  await makeBin();
  // src/scripts.ts reads `../lua/<name>.lua` relative to itself: npm/src/scripts.js -> npm/lua/.
  await mkdir(join(NPM_DIR, "lua"));
  for (const file of await readdir(join(ROOT, "lua"))) {
    if (file.endsWith(".lua")) await copyFile(join(ROOT, "lua", file), join(NPM_DIR, "lua", file));
  }
  for (const file of ["README.md", "LICENSE"]) {
    await copyFile(join(ROOT, file), join(NPM_DIR, file));
  }
  await writeFile(join(NPM_DIR, REQUIRE_STUB.output), requireStubSource());
  await writeFile(
    join(NPM_DIR, "package.json"),
    JSON.stringify(await packageJson(), null, 2) + "\n",
  );
  await checkOutput();
  const files = (await listFiles(NPM_DIR)).filter((f) => !f.startsWith("node_modules/"));
  console.log(`Built npm/ (${files.length} files): ${PACKAGE_NAME}`);
}

if (import.meta.main) {
  try {
    await buildNpm();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}
