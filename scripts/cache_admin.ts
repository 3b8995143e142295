#!/usr/bin/env -S deno run --allow-net --allow-env --allow-read
/**
 * `core-lib-cache-admin`: the operator's tool for the cache's entries on a Redis or Valkey server
 * (it replaces the Python original's `scripts/clear_cache.py`). Configured by the same
 * environment variables as `setCache()`; see `--help`.
 *
 * - Deno: `deno task admin <command>` (= `deno run --allow-net --allow-env --allow-read
 *   scripts/cache_admin.ts <command>`).
 * - Node: the npm package's `core-lib-cache-admin` bin, compiled from this file by
 *   `scripts/build_npm.ts` (`npx core-lib-cache-admin <command>`).
 *
 * Exit codes: 0 success; 1 the server is unreachable or failed; 2 usage or configuration error
 * (nothing was sent to a server).
 *
 * Only `node:` modules and the library's own sources, so the same file runs on both runtimes.
 * This module is an entry point: importing it runs the CLI.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { backendCandidates } from "../src/backend_choice.ts";
import {
  readBackendSettings,
  type RedisConfig,
  urlHost,
  type ValkeyConfig,
} from "../src/config.ts";
import { CacheConfigError, CacheDependencyError, CacheInputError } from "../src/errors.ts";
import type { CacheLogger } from "../src/log.ts";
import { RedisCache } from "../src/redis.ts";
import {
  countRegistry,
  type RegistryClient,
  type RegistryCounts,
  registryScope,
  scanRegistries,
} from "../src/registries.ts";
import { type EnvRecord, readEnv, readShippedText } from "../src/runtime.ts";
import { loadScriptSources } from "../src/scripts.ts";
import { requireTags } from "../src/tags.ts";
import { SUBSCRIBER_NAME } from "../src/tracking.ts";
import { ValkeyCache } from "../src/valkey.ts";

const PROGRAM = "core-lib-cache-admin";
/** Default: at most two progress lines a second. */
const DEFAULT_PROGRESS_MS = 500;
/**
 * Keys per clear script call unless --batch-size says otherwise: the provider's own default
 * (src/provider_options.ts), at which the benchmark's longest call stays near 3 ms. Passed
 * explicitly, so the number `clear --help` shows is the one that runs.
 */
const DEFAULT_BATCH_SIZE = 500;
/** Registries `stats` counts at the same time. */
const STATS_CONCURRENCY = 8;
/** PINGs timed by `health`; the median is reported. */
const PINGS = 5;

const EXIT_OK = 0;
const EXIT_FAULT = 1;
const EXIT_USAGE = 2;

type Command = "health" | "stats" | "clear" | "prune" | "invalidate-tags";
const COMMANDS: readonly Command[] = ["health", "stats", "clear", "prune", "invalidate-tags"];
const SCOPES = ["all", "global", "company"] as const;
type Scope = typeof SCOPES[number];

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
  json: { type: "boolean" },
  scope: { type: "string" },
  "company-id": { type: "string" },
  company: { type: "string" },
  "batch-size": { type: "string" },
  "progress-interval": { type: "string" },
} as const;
type OptionName = keyof typeof OPTIONS;

/** The options each command accepts besides --help and --json. */
const COMMAND_OPTIONS: Readonly<Record<Command, readonly OptionName[]>> = {
  health: [],
  stats: [],
  clear: ["scope", "company-id", "batch-size", "progress-interval"],
  prune: [],
  "invalidate-tags": ["company", "company-id", "batch-size", "progress-interval"],
};

const ENV_HELP = `Environment (the same variables as setCache()):
  CACHE_BACKEND        redis, valkey or auto (default auto: valkey when VALKEY_* is set,
                       reached through ioredis when iovalkey is not installed);
                       memory is refused (it lives inside one process)
  REDIS_URL            redis://[user[:password]@]host[:port][/db], rediss:// for TLS;
                       an IPv6 host in brackets: redis://[::1]:6379/0
  REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_USERNAME, REDIS_PASSWORD, REDIS_TIMEOUT,
  REDIS_PREFIX, REDIS_TLS, REDIS_TLS_CA
                       explicit variables win over the URL
  REDIS_CLUSTER_NODES  host:port,host:port seeds of a Redis / Valkey Cluster (cluster mode);
  REDIS_CLUSTER_TENANT_BUCKETS, REDIS_CLUSTER_GLOBAL_BUCKETS
                       the bucket counts the application uses (default 1 and 16)
  VALKEY_URL, VALKEY_*  the same for Valkey, each falling back to its REDIS_* twin
  The password is never printed.`;

const EXIT_HELP =
  `Exit codes: 0 success; 1 server unreachable or failed; 2 usage or configuration error.`;

const MAIN_HELP = `Usage: ${PROGRAM} <command> [options]

Administer the @core-lib/cache entries on a Redis or Valkey server.

Commands:
  health                    connect and PING; print the server kind, version, address,
                            latency, near cache settings and circuit breaker state
                            (exit 1 when unreachable)
  stats                     registry members and live keys per scope (global and each tenant),
                            and the processes whose near cache this server keeps coherent
                            and in total
  clear --scope SCOPE       delete entries: --scope all | global | company --company-id ID
  prune                     remove registry members whose key has expired
  invalidate-tags TAG...    delete the entries of one scope carrying any of the tags:
                            the global scope, or --company ID's
  help [COMMAND]            this text, or a command's

Options:
  --json                    one JSON document on stdout instead of text
  -h, --help                show help (also: ${PROGRAM} COMMAND --help)
  --version                 print the version

${ENV_HELP}

${EXIT_HELP}

Examples:
  REDIS_URL=redis://cache.internal:6379/0 ${PROGRAM} health
  ${PROGRAM} stats --json
  ${PROGRAM} clear --scope company --company-id acme
  ${PROGRAM} clear --scope all
`;

const COMMAND_HELP: Readonly<Record<Command, string>> = {
  health: `Usage: ${PROGRAM} health [--json]

Connects, PINGs and prints the server kind and version, the address (never the password) and
the median latency of ${PINGS} PINGs, then the near cache settings an application reading the
same variables gets (CACHE_NEAR_CACHE*; the command itself keeps no near cache), then the
circuit breaker's settings (REDIS_CIRCUIT_BREAKER*) and the targets it holds open. Exit 0 when
healthy, 1 when unreachable (within REDIS_TIMEOUT seconds, default 4).
`,
  stats: `Usage: ${PROGRAM} stats [--json]

For each scope (global, and every tenant found by SCAN of <prefix>registry:*) prints the
registry's member count and its live key count (members whose key still exists), then the
totals. Tenant ids are shown as stored; control characters are printed as \\xNN or \\u{N}
escapes (--json shows them exactly). Members minus live keys is what 'prune' would remove.
Then the near caches this server keeps coherent: one tracking subscriber per process that runs
with CACHE_NEAR_CACHE / the nearCache option (its address and how long it has tracked; --json:
"nearCaches"). Their hits and sizes are in each process's cacheStats().nearCache.
`,
  clear: `Usage: ${PROGRAM} clear --scope all|global|company [--company-id ID] [options]

Deletes entries and prints how many keys were deleted. Asks no questions.
  --scope all               every tenant and the global scope under the prefix (also
                            registries written by the Python original); nothing outside it
  --scope global            the entries stored without a tenant
  --scope company           one tenant's entries; needs --company-id ID
  --company-id ID           the tenant id, exactly as the application passes it
  --batch-size N            keys deleted per script call (default ${DEFAULT_BATCH_SIZE}): smaller batches
                            block the server for less time each
  --progress-interval MS    a long clear prints a progress line (keys deleted so far, rate)
                            to stderr at most every MS milliseconds (default ${DEFAULT_PROGRESS_MS};
                            0 = after every batch)
  --json                    print {"ok", "scope", "companyId"?, "deleted"} on stdout
`,
  "invalidate-tags": `Usage: ${PROGRAM} invalidate-tags TAG... [--company ID] [options]

Deletes every entry of one scope that carries any of the tags (given by the application with
cacheSet / cacheSetMany / cacheGetOrSet), in bounded batches, and prints how many keys were
deleted (an entry carrying several of the tags counts once). Asks no questions.
  --company ID              the tenant whose entries to invalidate, exactly as the application
                            passes it (also --company-id); omitted: the global scope
  --batch-size N            keys deleted per script call (default ${DEFAULT_BATCH_SIZE})
  --progress-interval MS    a progress line (keys deleted so far, rate) on stderr at most every
                            MS milliseconds (default ${DEFAULT_PROGRESS_MS}; 0 = after every batch)
  --json                    print {"ok", "tags", "companyId"?, "deleted"} on stdout
`,
  prune: `Usage: ${PROGRAM} prune [--json]

Walks every registry of the prefix and removes the members whose key no longer exists
(expired or evicted); prints how many were removed.
`,
};

/** Where the CLI writes; the process's streams by default. */
interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** A bad invocation: reported with a short usage hint, exit 2. */
class UsageError extends Error {}

/** The parsed invocation of a command. */
interface Invocation {
  command: Command;
  json: boolean;
  scope?: Scope;
  companyId?: string;
  /** invalidate-tags: the tags. */
  tags?: string[];
  batchSize: number;
  progressMs: number;
}

/** What a provider of either kind offers the CLI. */
type Provider = RedisCache | ValkeyCache;

/** The client commands the CLI sends beyond the provider's own. */
interface AdminClient extends RegistryClient {
  ping(): Promise<string>;
  info(section: string): Promise<string>;
  call(command: string, ...args: string[]): Promise<unknown>;
}

/**
 * Runs the CLI.
 *
 * @param args The arguments after the program name.
 * @param env The environment to read.
 * @param io Where output goes.
 * @returns The exit code.
 */
async function main(args: string[], env: EnvRecord, io: Io): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`${PROGRAM}: ${error.message}\n${shortUsage()}`);
    return EXIT_USAGE;
  }
  if (parsed.kind === "help") {
    io.stdout(parsed.command ? COMMAND_HELP[parsed.command] : MAIN_HELP);
    return EXIT_OK;
  }
  if (parsed.kind === "version") {
    io.stdout(`${PROGRAM} ${await version()}\n`);
    return EXIT_OK;
  }
  return await run(parsed.invocation, env, io);
}

type Parsed =
  | { kind: "help"; command?: Command }
  | { kind: "version" }
  | { kind: "run"; invocation: Invocation };

/** Parses the arguments; throws `UsageError` for anything it cannot accept. */
function parse(args: string[]): Parsed {
  let values: Partial<Record<OptionName, string | boolean>>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    // parseArgs explains at length how to pass a positional that starts with "-"; the first
    // sentence ("Unknown option '--x'") is what the user needs.
    throw new UsageError((error as Error).message.split(". ")[0]);
  }
  const [name, ...rest] = positionals;
  if (name === "help") {
    if (rest.length > 1) throw new UsageError(`help takes one command, got ${rest.length}`);
    if (rest.length === 1 && !isCommand(rest[0])) {
      throw new UsageError(`unknown command ${JSON.stringify(rest[0])}`);
    }
    return { kind: "help", command: rest[0] as Command | undefined };
  }
  if (name !== undefined && !isCommand(name)) {
    throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  }
  if (values.help) return { kind: "help", command: name as Command | undefined };
  if (values.version) return { kind: "version" };
  if (name === undefined) throw new UsageError("no command given");
  const command = name as Command;
  if (rest.length > 0 && command !== "invalidate-tags") {
    throw new UsageError(`${command} takes no arguments, got ${JSON.stringify(rest[0])}`);
  }
  for (const option of Object.keys(values) as OptionName[]) {
    if (option !== "json" && !COMMAND_OPTIONS[command].includes(option)) {
      throw new UsageError(`--${option} does not apply to ${command}`);
    }
  }
  const invocation: Invocation = {
    command,
    json: values.json === true,
    batchSize: DEFAULT_BATCH_SIZE,
    progressMs: DEFAULT_PROGRESS_MS,
  };
  if (command === "clear") {
    const scope = values.scope as string | undefined;
    if (scope === undefined) {
      throw new UsageError("clear needs --scope all, --scope global or --scope company");
    }
    if (!(SCOPES as readonly string[]).includes(scope)) {
      throw new UsageError(
        `unknown scope ${JSON.stringify(scope)}: use all, global or company (with --company-id)`,
      );
    }
    invocation.scope = scope as Scope;
    const companyId = values["company-id"] as string | undefined;
    if (scope === "company" && companyId === undefined) {
      throw new UsageError("--scope company needs --company-id ID");
    }
    if (scope !== "company" && companyId !== undefined) {
      throw new UsageError(`--company-id applies to --scope company only, not --scope ${scope}`);
    }
    if (companyId === "") throw new UsageError("--company-id is empty: pass the tenant id");
    invocation.companyId = companyId;
    const batch = values["batch-size"] as string | undefined;
    if (batch !== undefined) invocation.batchSize = wholeNumber("--batch-size", batch, 1);
    const interval = values["progress-interval"] as string | undefined;
    if (interval !== undefined) {
      invocation.progressMs = wholeNumber("--progress-interval", interval, 0);
    }
  }
  if (command === "invalidate-tags") {
    if (rest.length === 0) throw new UsageError("invalidate-tags needs at least one TAG");
    try {
      requireTags(rest);
    } catch (error) {
      if (error instanceof CacheInputError) throw new UsageError(error.message);
      throw error;
    }
    invocation.tags = rest;
    const company = values.company as string | undefined;
    const companyId = values["company-id"] as string | undefined;
    if (company !== undefined && companyId !== undefined && company !== companyId) {
      throw new UsageError("--company and --company-id name two tenants: pass one");
    }
    const id = company ?? companyId;
    if (id === "") throw new UsageError("--company is empty: pass the tenant id");
    invocation.companyId = id;
    const batch = values["batch-size"] as string | undefined;
    if (batch !== undefined) invocation.batchSize = wholeNumber("--batch-size", batch, 1);
    const interval = values["progress-interval"] as string | undefined;
    if (interval !== undefined) {
      invocation.progressMs = wholeNumber("--progress-interval", interval, 0);
    }
  }
  return { kind: "run", invocation };
}

function isCommand(name: string): name is Command {
  return (COMMANDS as readonly string[]).includes(name);
}

function wholeNumber(option: string, text: string, min: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`${option} ${JSON.stringify(text)}: expected a whole number >= ${min}`);
  }
  return value;
}

function shortUsage(): string {
  return `Usage: ${PROGRAM} health|stats|clear|prune|invalidate-tags [options]  (${PROGRAM} --help for more)\n`;
}

/** The package version: package.json beside the npm build, deno.json in the repository. */
async function version(): Promise<string> {
  for (const file of ["../package.json", "../deno.json"]) {
    try {
      const text = await readShippedText(new URL(file, import.meta.url));
      const value = JSON.parse(text).version;
      if (typeof value === "string") return value;
    } catch {
      // try the next file
    }
  }
  return "unknown";
}

/** Runs one command against the server; every fault ends as exit 1, never as a stack trace. */
async function run(invocation: Invocation, env: EnvRecord, io: Io): Promise<number> {
  const faults: string[] = [];
  const logger: CacheLogger = { warn: (line) => faults.push(line) };
  let provider: Provider;
  let backend: "redis" | "valkey";
  try {
    ({ provider, backend } = await connectProvider(env, logger, invocation.batchSize));
  } catch (error) {
    if (
      error instanceof CacheConfigError || error instanceof CacheDependencyError ||
      error instanceof CacheInputError
    ) {
      io.stderr(`${PROGRAM}: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof Unreachable) {
      if (invocation.json) {
        io.stdout(json({
          ok: false,
          backend: error.backend,
          address: address(error.config),
          error: error.message,
        }));
      }
      io.stderr(`${PROGRAM}: ${error.message}\n${indent(faults)}`);
      return EXIT_FAULT;
    }
    throw error;
  }
  const context: Context = { provider, backend, invocation, io, faults };
  try {
    return await COMMAND_RUNNERS[invocation.command](context);
  } catch (error) {
    // A fault outside the provider's own handling (INFO, SCAN, SCARD, a script of stats).
    io.stderr(`${PROGRAM}: ${invocation.command} failed: ${message(error)}\n${indent(faults)}`);
    return EXIT_FAULT;
  } finally {
    await provider.close();
  }
}

interface Context {
  provider: Provider;
  backend: "redis" | "valkey";
  invocation: Invocation;
  io: Io;
  /** Fault lines the provider logged (masked): any line means the command failed. */
  faults: string[];
}

const COMMAND_RUNNERS: Readonly<Record<Command, (context: Context) => Promise<number>>> = {
  health,
  stats,
  clear,
  prune,
  "invalidate-tags": invalidateTags,
};

/** The server could not be reached within the timeout. */
class Unreachable extends Error {
  constructor(readonly backend: "redis" | "valkey", readonly config: RedisConfig) {
    super(
      `cannot reach the ${backend} server at ${address(config)} (timeout ${config.timeout} s)`,
    );
  }
}

/**
 * Builds the provider the environment selects and connects it: the candidates and their configs
 * are `setCache()`'s own (src/backend_choice.ts), minus `memory`, so the CLI reaches the server
 * an application with the same variables reaches. Under `auto`, a client library that cannot be
 * loaded hands over to the other one, still connecting where the variables point.
 */
async function connectProvider(
  env: EnvRecord,
  logger: CacheLogger,
  clearBatchSize: number,
): Promise<{ provider: Provider; backend: "redis" | "valkey" }> {
  if (readBackendSettings(env).backend === "memory") {
    throw new CacheConfigError(
      "CACHE_BACKEND=memory: the in-process cache has nothing to administer from outside; " +
        "set CACHE_BACKEND to redis, valkey or auto and point REDIS_* / VALKEY_* at the server",
    );
  }
  const candidates = backendCandidates(env);
  let missing: CacheDependencyError | undefined;
  for (const [index, { kind, config }] of candidates.entries()) {
    if (kind === "memory") throw new Error("unreachable: memory was refused above");
    // No near cache whatever CACHE_NEAR_CACHE says: each command reads and writes the server
    // once, so one would only add a tracking connection to a one-shot process.
    const options = { logger, clearBatchSize, nearCache: false };
    const provider = kind === "valkey"
      ? new ValkeyCache({ ...options, config: config as ValkeyConfig })
      : new RedisCache({ ...options, config });
    let connected: boolean;
    try {
      connected = await provider.connect();
    } catch (error) {
      await provider.close();
      if (!(error instanceof CacheDependencyError)) throw error;
      // Report the preferred library when neither can be loaded.
      missing ??= error;
      if (index < candidates.length - 1) continue;
      throw missing;
    }
    if (!connected) {
      await provider.close();
      throw new Unreachable(kind, provider.config);
    }
    return { provider, backend: kind };
  }
  throw new Error("unreachable: no candidate backend");
}

function adminClient(provider: Provider): AdminClient {
  return provider.client as unknown as AdminClient;
}

async function health({ provider, backend, invocation, io }: Context): Promise<number> {
  const client = adminClient(provider);
  const info = parseInfo(await client.info("server"));
  const server = info.valkey_version
    ? { kind: "valkey", version: info.valkey_version }
    : { kind: info.server_name ?? "redis", version: info.redis_version ?? "unknown" };
  const times: number[] = [];
  for (let i = 0; i < PINGS; i++) {
    const start = performance.now();
    await client.ping();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const latencyMs = Math.round(times[Math.floor(PINGS / 2)] * 1000) / 1000;
  const config = provider.config;
  const circuitBreaker = {
    on: config.circuitBreaker,
    threshold: config.circuitBreakerThreshold,
    probeInterval: config.circuitBreakerProbeInterval,
    open: provider.stats().openCircuits,
  };
  // What an application reading these variables gets (the CLI's own provider keeps none).
  const nearCache = {
    on: config.nearCache,
    maxEntries: config.nearCacheMaxEntries,
    maxBytes: config.nearCacheMaxBytes,
    maxStaleness: config.nearCacheMaxStaleness,
  };
  if (invocation.json) {
    io.stdout(json({
      ok: true,
      backend,
      server,
      address: address(config),
      passwordSet: config.password !== undefined,
      prefix: config.prefix,
      latencyMs,
      circuitBreaker,
      nearCache,
    }));
  } else {
    const breaker = circuitBreaker.on
      ? `on (opens on a timeout or ${circuitBreaker.threshold} connection faults in a row, ` +
        `probes every ${circuitBreaker.probeInterval} s); open for: ${
          circuitBreaker.open.length === 0 ? "none" : circuitBreaker.open.join(", ")
        }`
      : "off";
    const near = nearCache.on
      ? `on (at most ${nearCache.maxEntries} entries and ${nearCache.maxBytes} bytes, ` +
        `max staleness ${nearCache.maxStaleness} s)`
      : "off";
    io.stdout(
      `healthy: ${server.kind} ${server.version} at ${address(config)} ` +
        `(prefix ${JSON.stringify(config.prefix)}, client ${
          backend === "valkey" ? "iovalkey" : "ioredis"
        }); PING ${latencyMs.toFixed(3)} ms (median of ${PINGS})\n` +
        `near cache: ${near}\n` +
        `circuit breaker: ${breaker}\n`,
    );
  }
  return EXIT_OK;
}

async function stats({ provider, invocation, io }: Context): Promise<number> {
  const client = adminClient(provider);
  const prefix = provider.prefix;
  const scripts = await loadScriptSources();
  // A cluster: every master holds its own share of the registries (each scope bucket's).
  const clustered = provider.config.mode === "cluster";
  const nodes = clustered
    ? (client as unknown as { nodes(role: "master"): RegistryClient[] }).nodes("master")
    : [client];
  const registries = (await Promise.all(nodes.map((node) => scanRegistries(node, prefix))))
    .flat()
    // Sets of other layouts have members in other slots, which a script may not touch.
    .filter((registry) => !clustered || registryScope(prefix, registry, true).kind !== "other");
  let counts: RegistryCounts[] = [];
  // A few registries at a time: thousands of tenants take round trips, not one long call.
  let next = 0;
  const worker = async () => {
    while (next < registries.length) {
      const registry = registries[next++];
      counts.push(
        await countRegistry(client, scripts.count_live_members, prefix, registry, clustered),
      );
    }
  };
  await Promise.all(Array.from({ length: STATS_CONCURRENCY }, worker));
  counts.sort(compareScopes);
  if (clustered) counts = mergeBuckets(counts);
  const totals = {
    scopes: counts.length,
    tenants: counts.filter((c) => c.scope.kind === "tenant").length,
    members: counts.reduce((sum, c) => sum + c.members, 0),
    live: counts.reduce((sum, c) => sum + c.live, 0),
  };
  const nearCaches = await nearCacheSubscribers(nodes as unknown as AdminClient[]);
  if (invocation.json) {
    io.stdout(json({
      prefix,
      address: address(provider.config),
      nearCaches,
      scopes: counts.map((c) => ({
        scope: c.scope.kind,
        ...(c.scope.kind === "tenant" ? { companyId: c.scope.companyId } : {}),
        ...(c.scope.kind === "other" ? { name: c.scope.name } : {}),
        registry: c.registry,
        members: c.members,
        live: c.live,
      })),
      totals,
    }));
    return EXIT_OK;
  }
  const width = Math.max(7, String(totals.members).length);
  const row = (members: number | string, live: number | string, label: string) =>
    `${String(members).padStart(width)}  ${String(live).padStart(width)}  ${label}\n`;
  let text = `prefix ${JSON.stringify(prefix)} at ${address(provider.config)}\n`;
  text += row("members", "live", "scope");
  for (const c of counts) text += row(c.members, c.live, scopeLabel(c));
  text += row(
    totals.members,
    totals.live,
    `total (${count(totals.scopes, "scope")}, ${count(totals.tenants, "tenant")})`,
  );
  if (nearCaches.length > 0) {
    text += `near caches kept coherent by this server: ${count(nearCaches.length, "subscriber")}\n`;
    for (const near of nearCaches) {
      text += `  ${near.client} on ${near.server}, tracking for ${near.ageSeconds} s\n`;
    }
  }
  io.stdout(text);
  return EXIT_OK;
}

/** A process's near-cache subscriber, as the server lists it. */
interface NearCacheSubscriber {
  /** The server (`host:port`) it tracks. */
  server: string;
  /** The subscriber's address (the process's host and port). */
  client: string;
  /** How long it has been connected. */
  ageSeconds: number;
}

/**
 * The near-cache subscribers connected to `nodes` (CLIENT LIST TYPE pubsub, named
 * `SUBSCRIBER_NAME` and tracking): one per process that keeps a near cache of this server.
 */
async function nearCacheSubscribers(nodes: AdminClient[]): Promise<NearCacheSubscriber[]> {
  const found: NearCacheSubscriber[] = [];
  for (const node of nodes) {
    const options = (node as unknown as { options?: { host?: string; port?: number } }).options;
    const server = `${options?.host ?? "?"}:${options?.port ?? "?"}`;
    const list = String(await node.call("CLIENT", "LIST", "TYPE", "pubsub"));
    for (const line of list.split("\n")) {
      const fields = new Map(
        line.trim().split(" ").map((field) => {
          const at = field.indexOf("=");
          return [field.slice(0, at), field.slice(at + 1)] as const;
        }),
      );
      if (fields.get("name") !== SUBSCRIBER_NAME || !fields.get("flags")?.includes("t")) continue;
      found.push({
        server,
        client: fields.get("addr") ?? "?",
        ageSeconds: Number(fields.get("age") ?? 0),
      });
    }
  }
  return found;
}

async function clear({ provider, invocation, io, faults }: Context): Promise<number> {
  const started = performance.now();
  let lastReport = started;
  const onProgress = (deleted: number) => {
    const now = performance.now();
    if (now - lastReport < invocation.progressMs) return;
    lastReport = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? Math.round(deleted / seconds) : deleted;
    io.stderr(`clear: ${count(deleted, "key")} deleted so far (${rate} keys/s)\n`);
  };
  const scope = invocation.scope!;
  const deleted = scope === "all"
    ? await provider.clearAll({ onProgress })
    : scope === "global"
    ? await provider.clearGlobal({ onProgress })
    : await provider.clearCompany(invocation.companyId!, { onProgress });
  const what = scope === "company"
    ? `of tenant ${printable(invocation.companyId!)}`
    : scope === "global"
    ? "of the global scope"
    : "in every scope";
  if (faults.length > 0) {
    if (invocation.json) {
      io.stdout(json({ ok: false, scope, companyId: invocation.companyId, deleted }));
    }
    io.stderr(
      `${PROGRAM}: clear stopped by a server fault after deleting ${
        count(deleted, "key")
      } ${what}\n` +
        indent(faults),
    );
    return EXIT_FAULT;
  }
  if (invocation.json) {
    io.stdout(json({ ok: true, scope, companyId: invocation.companyId, deleted }));
  } else {
    io.stdout(`deleted ${count(deleted, "key")} ${what}\n`);
  }
  return EXIT_OK;
}

async function invalidateTags(
  { provider, invocation, io, faults }: Context,
): Promise<number> {
  const started = performance.now();
  let lastReport = started;
  const onProgress = (deleted: number) => {
    const now = performance.now();
    if (now - lastReport < invocation.progressMs) return;
    lastReport = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? Math.round(deleted / seconds) : deleted;
    io.stderr(`invalidate-tags: ${count(deleted, "key")} deleted so far (${rate} keys/s)\n`);
  };
  const tags = invocation.tags!;
  const companyId = invocation.companyId;
  const deleted = await provider.invalidateTags(tags, { companyId, onProgress });
  const what = companyId === undefined
    ? "of the global scope"
    : `of tenant ${printable(companyId)}`;
  if (faults.length > 0) {
    if (invocation.json) io.stdout(json({ ok: false, tags, companyId, deleted }));
    io.stderr(
      `${PROGRAM}: invalidate-tags stopped by a server fault after deleting ${
        count(deleted, "key")
      } ${what}\n` + indent(faults),
    );
    return EXIT_FAULT;
  }
  if (invocation.json) io.stdout(json({ ok: true, tags, companyId, deleted }));
  else {
    io.stdout(
      `deleted ${count(deleted, "key")} ${what} tagged ${tags.map(printable).join(", ")}\n`,
    );
  }
  return EXIT_OK;
}

async function prune({ provider, invocation, io, faults }: Context): Promise<number> {
  const removed = await provider.pruneRegistries();
  if (faults.length > 0) {
    if (invocation.json) io.stdout(json({ ok: false, removed }));
    io.stderr(
      `${PROGRAM}: prune stopped by a server fault after removing ${count(removed, "member")}\n` +
        indent(faults),
    );
    return EXIT_FAULT;
  }
  if (invocation.json) io.stdout(json({ ok: true, removed }));
  else {
    io.stdout(
      `removed ${count(removed, "registry member")} whose key was gone\n`,
    );
  }
  return EXIT_OK;
}

/**
 * One row per scope: the buckets of a cluster scope (consecutive after sorting by registry key)
 * summed under the first bucket's registry key.
 */
function mergeBuckets(counts: RegistryCounts[]): RegistryCounts[] {
  const merged = new Map<string, RegistryCounts>();
  for (const c of counts) {
    const id = c.scope.kind === "tenant" ? `tenant:${c.scope.companyId}` : c.scope.kind;
    const row = merged.get(id);
    if (row) {
      row.members += c.members;
      row.live += c.live;
    } else merged.set(id, { ...c });
  }
  return [...merged.values()].sort(compareScopes);
}

/** Global first, then tenants by id (code point order), then other registries. */
function compareScopes(a: RegistryCounts, b: RegistryCounts): number {
  const rank = { global: 0, tenant: 1, other: 2 } as const;
  const byKind = rank[a.scope.kind] - rank[b.scope.kind];
  if (byKind !== 0) return byKind;
  return a.registry < b.registry ? -1 : a.registry > b.registry ? 1 : 0;
}

function scopeLabel(counts: RegistryCounts): string {
  const scope = counts.scope;
  if (scope.kind === "global") return "global";
  if (scope.kind === "tenant") return `tenant ${printable(scope.companyId)}`;
  return `other registry ${printable(counts.registry)}`;
}

/**
 * Text as stored, except characters that would corrupt or disguise a terminal line: C0 and C1
 * controls, DEL, line and paragraph separators and bidirectional overrides, written as `\xNN`
 * or `\u{N}`.
 */
function printable(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (char) => {
      const code = char.codePointAt(0)!;
      return code < 0x100
        ? `\\x${code.toString(16).padStart(2, "0")}`
        : `\\u{${code.toString(16)}}`;
    },
  );
}

/**
 * `redis://[user@]host:port/db` (`rediss://` with TLS; `redis://[user@]seed,seed (cluster)` for a
 * cluster): the address, never the password.
 */
function address(config: RedisConfig): string {
  const user = config.username === undefined ? "" : `${encodeURIComponent(config.username)}@`;
  const scheme = config.tls ? "rediss" : "redis";
  if (config.mode === "cluster") {
    return `${scheme}://${user}${config.clusterNodes.join(",")} (cluster)`;
  }
  return `${scheme}://${user}${urlHost(config.host)}:${config.port}/${config.db}`;
}

/** The `field:value` lines of an INFO reply. */
function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

/** `1 key`, `2 keys`. */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function json(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

function indent(lines: string[]): string {
  return [...new Set(lines)].map((line) => `  ${line}\n`).join("");
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Writes `text` to a stream and resolves once it is handed to the OS. */
function write(
  stream: { write(text: string, done: () => void): unknown },
  text: string,
): Promise<void> {
  return new Promise((resolve) => stream.write(text, () => resolve()));
}

const pending: Promise<void>[] = [];
const processIo: Io = {
  stdout: (text) => void pending.push(write(process.stdout, text)),
  stderr: (text) => void pending.push(write(process.stderr, text)),
};

let code: number;
try {
  code = await main(process.argv.slice(2), readEnv(), processIo);
} catch (error) {
  processIo.stderr(`${PROGRAM}: unexpected error: ${message(error)}\n`);
  code = EXIT_FAULT;
}
await Promise.all(pending);
// Exit now: a client still retrying in the background must not keep the process alive.
process.exit(code);
