/**
 * Shared test helpers: build a provider for a harness server, collect log lines, read files of
 * the repository.
 */

import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import process from "node:process";
import { sha1Hex } from "../src/runtime.ts";
import {
  type CacheLogger,
  RedisCache,
  type RedisCacheOptions,
  RedisConfig,
  type RedisConfigOptions,
  ValkeyCache,
  ValkeyConfig,
} from "../mod.ts";
import type { ServerKind, TestServer } from "./harness.ts";

/** A provider of either kind, as the tests drive it. */
export type AnyCache = RedisCache | ValkeyCache;

/** A config pointing at `server`. */
export function configFor(server: TestServer, extra: RedisConfigOptions = {}): RedisConfig {
  const Config = server.kind === "redis" ? RedisConfig : ValkeyConfig;
  return new Config({ url: server.url, ...extra });
}

/** A provider of the server's kind pointing at `server` (not yet connected). */
export function cacheFor(
  server: TestServer,
  options: Omit<RedisCacheOptions, "config"> & { configOptions?: RedisConfigOptions } = {},
): AnyCache {
  const { configOptions, ...rest } = options;
  const config = configFor(server, configOptions);
  return server.kind === "redis"
    ? new RedisCache({ logger: quietLogger(), ...rest, config })
    : new ValkeyCache({ logger: quietLogger(), ...rest, config: config as ValkeyConfig });
}

/** A logger that keeps its lines, for assertions on what was logged. */
export function collectingLogger(): CacheLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (line) => lines.push(line) };
}

/** A logger that drops lines: for tests that provoke faults on purpose and check them otherwise. */
export function quietLogger(): CacheLogger {
  return { warn: () => {} };
}

/** The SHA-1 of a file of `lua/`, as an operator would compute it. */
export async function luaSha(name: string): Promise<string> {
  return sha1Hex(await readFile(new URL(`../lua/${name}.lua`, import.meta.url), "utf8"));
}

/** The number of calls of one command recorded by INFO commandstats. */
export async function commandCalls(server: TestServer, command: string): Promise<number> {
  const info = await server.cli("INFO", "commandstats");
  const match = info.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`));
  return match ? Number(match[1]) : 0;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Every server kind the suites run against. */
export const KINDS: readonly ServerKind[] = ["redis", "valkey"];

/** What a child process run by {@linkcode runProcess} printed, and how it ended. */
export interface ProcessRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall-clock milliseconds from spawn to exit, as this process saw them. */
  elapsedMs: number;
}

/** The variables a runtime needs to start (paths, caches), and none that configure the cache. */
export function runtimeEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "TMPDIR", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * Runs this test's own runtime (`deno` or `node`) with `argv` and stdin closed, collecting stdout
 * and stderr; a run that outlasts `timeoutMs` is killed, so a hung child fails its test instead of
 * hanging the suite. `onStderr` sees stderr as it arrives.
 */
export function runProcess(
  argv: string[],
  options: {
    env?: Record<string, string | undefined>;
    cwd?: string;
    timeoutMs?: number;
    onStderr?: (stderrSoFar: string) => void;
  } = {},
): Promise<ProcessRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk);
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
      options.onStderr?.(stderr);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
}

/**
 * The arguments that run the test worker `name` (tests/<name>.ts under Deno, the compiled
 * tests/<name>.js under Node) with the runtime's executable: Deno gets loopback network, env and
 * read permissions, plus `denoFlags`.
 */
export function workerArgs(name: string, denoFlags: string[] = []): string[] {
  const isDeno = "Deno" in globalThis;
  const file = fileURLToPath(new URL(`./${name}.${isDeno ? "ts" : "js"}`, import.meta.url));
  return isDeno
    ? ["run", "--allow-net=127.0.0.1,localhost", "--allow-env", "--allow-read", ...denoFlags, file]
    : [file];
}

/**
 * Runs the worker `tests/<name>` in a separate process (`deno run` on its .ts under Deno, `node`
 * on its compiled .js under Node) with `spec` as JSON in the environment variable `envName`, and
 * returns the JSON of the last line it printed; a failed or silent worker throws with its output.
 */
export async function runWorkerFile<T>(
  name: string,
  envName: string,
  spec: unknown,
  timeoutMs?: number,
): Promise<T> {
  const run = await runProcess(workerArgs(name, ["--allow-sys"]), {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    env: { ...process.env, [envName]: JSON.stringify(spec) },
    timeoutMs,
  });
  const line = run.stdout.trim().split("\n").pop() ?? "";
  if (run.code !== 0 || !line.startsWith("{")) {
    throw new Error(`worker exited with ${run.code}: ${run.stderr}${run.stdout}`);
  }
  return JSON.parse(line) as T;
}

/**
 * Runtime arguments under which a child process cannot load the `names` packages, as for a user
 * who did not install them: under Deno an import map that keeps deno.json's entries and maps
 * each to a module that throws; under Node a resolve hook that reports them as not found. The
 * files go to `dir`.
 */
export async function hidePackages(dir: string, names: string[]): Promise<string[]> {
  if ("Deno" in globalThis) {
    const denoJson = new URL("../deno.json", import.meta.url);
    const { imports } = JSON.parse(await readFile(denoJson, "utf8"));
    const hidden = Object.fromEntries(names.map((name) => [
      name,
      `data:text/javascript,throw new Error('${name} is not installed (test)')`,
    ]));
    const map = join(dir, "import_map.json");
    await writeFile(map, JSON.stringify({ imports: { ...imports, ...hidden } }));
    return ["--import-map", map];
  }
  const hooks = join(dir, "hooks.mjs");
  await writeFile(
    hooks,
    `const hidden = new Set(${JSON.stringify(names)});
export async function resolve(specifier, context, next) {
  if (hidden.has(specifier)) {
    const error = new Error("Cannot find package '" + specifier + "' (hidden by the test)");
    error.code = "ERR_MODULE_NOT_FOUND";
    throw error;
  }
  return next(specifier, context);
}
`,
  );
  const register = join(dir, "register.mjs");
  await writeFile(
    register,
    `import { register } from "node:module";\nregister(${
      JSON.stringify(pathToFileURL(hooks).href)
    });\n`,
  );
  return ["--import", pathToFileURL(register).href];
}

/**
 * Whether this machine has an IPv6 loopback to listen on. A machine without one may neither
 * fail nor succeed at listening on `::1`: the answer is "no" after a second.
 */
export async function hasIpv6Loopback(): Promise<boolean> {
  const probe = createServer();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), 1_000);
      probe.once("error", () => resolve(false));
      probe.listen(0, "::1", () => resolve(true));
    });
  } finally {
    clearTimeout(timer);
    probe.close();
  }
}
