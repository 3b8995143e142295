/**
 * Test harness: starts throw-away redis-server / valkey-server processes on free loopback ports
 * and drives them (kill, restart, pause, resume, redis-cli).
 *
 * Runs unchanged under Deno and Node 20: only `node:` modules, no `Deno.*` APIs.
 *
 * Set `REDIS_URL` / `VALKEY_URL` to point the tests at an existing server instead; such a handle
 * is `external` and cannot be killed, restarted, paused or resumed, and its `cli` refuses every
 * command that would flush, reconfigure or script-flush it (the user's data lives there). A
 * suite that needs such commands asks for a server of its own (`startServer(kind, { own: true
 * })`): it gets a started one even when the variable is set.
 *
 * `startServer(kind, { tls: true })` serves TLS only: it makes a throw-away certificate authority
 * and a server certificate (for `localhost` and `127.0.0.1`) with `openssl` in the server's temp
 * dir; the handle's `tlsCa` is the CA file a client must trust.
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { accessSync, constants, rmSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import { setTimeout as delay } from "node:timers/promises";
import {
  HOST,
  logTail,
  pingOnce,
  READY_TIMEOUT_MS,
  redisUrl,
  respCommand,
  serverArgs,
  startedCliArgs,
} from "./server_start.ts";

/** The server implementations the harness can start. */
export type ServerKind = "redis" | "valkey";

/** Every server kind, in the order the suites run them. */
export const SERVER_KINDS: readonly ServerKind[] = ["redis", "valkey"];

/** Options of {@link startServer}. */
export interface StartOptions {
  /** Extra server arguments, appended last (e.g. `["--maxmemory", "10mb"]`). */
  args?: string[];
  /** Sets `--requirepass`; the handle's `url` and `cli` then carry it. */
  password?: string;
  /** A fixed port (e.g. one from {@link freePort}); by default a free port is picked. */
  port?: number;
  /**
   * Serve TLS only (`--tls-port`, plain port 0) with a certificate signed by a CA the harness
   * makes; `url` is then `rediss://...` and `tlsCa` the CA file.
   */
  tls?: boolean;
  /**
   * The suite flushes, reconfigures, kills or pauses the server: start one even when
   * `REDIS_URL` / `VALKEY_URL` names an existing server, which such a suite must never touch.
   * (`args`, `password`, `tls` and `port` imply it: an existing server cannot be given them.)
   */
  own?: boolean;
}

/** A running (or killed, restartable) server process, or an external server. */
export interface TestServer {
  /** Which implementation this is. */
  readonly kind: ServerKind;
  /** Host to connect to: `"127.0.0.1"` for started servers. */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  /** `redis://127.0.0.1:PORT` (`rediss://` with TLS), with `:password@` when a password is set. */
  readonly url: string;
  /** The PEM file of the CA that signed the server's certificate; `undefined` without TLS. */
  readonly tlsCa: string | undefined;
  /**
   * The database the tests use: 0 on a started server, the one claimed on an external server
   * (set `<PREFIX>_DB` to it when configuring through host and port variables).
   */
  readonly db: number;
  /** True when `REDIS_URL` / `VALKEY_URL` pointed at an existing server. */
  readonly external: boolean;
  /** The server's process id, `undefined` when external or not running. */
  readonly pid: number | undefined;
  /** SIGKILLs the server and waits for it to exit; port and data dir are kept for `restart()`. */
  kill(): Promise<void>;
  /** Starts the server again on the same port (killing it first if running); waits for PING. */
  restart(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections are accepted but never answered. */
  pause(): void;
  /** Thaws a paused server (SIGCONT). */
  resume(): void;
  /**
   * Runs `redis-cli` / `valkey-cli` against the server with `args`; resolves to its trimmed
   * stdout, rejects on a non-zero exit (connection refused, error reply, 10 s timeout).
   */
  cli(...args: string[]): Promise<string>;
  /** SIGTERM (SIGKILL after 3 s), waits for exit, removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const STOP_GRACE_MS = 3_000;
const CLI_TIMEOUT_MS = 10_000;
const START_ATTEMPTS = 5;

/** Every server process the harness started that has not exited yet. */
const live = new Set<Proc>();
/** Temp dirs not yet removed, for the exit handler. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;

/**
 * Kills every server still running when the test process ends. Node emits process 'exit'; the
 * `deno test` runner does not, but dispatches the web `unload` event (absent from Node 20).
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const cleanup = () => {
    for (const proc of live) proc.signal("SIGKILL");
    for (const dir of liveDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  };
  process.on("exit", cleanup);
  const target = globalThis as { addEventListener?: (type: string, fn: () => void) => void };
  if (typeof target.addEventListener === "function") target.addEventListener("unload", cleanup);
}

/** A free TCP port on 127.0.0.1 (listen on port 0, read the port, close). Never 6379. */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, HOST, () => resolve());
    });
    const address = server.address();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (address && typeof address === "object" && address.port !== 6379) return address.port;
  }
}

/** Starts a server of `kind` (or returns a handle for `REDIS_URL` / `VALKEY_URL` when set). */
export async function startServer(
  kind: ServerKind,
  options: StartOptions = {},
): Promise<TestServer> {
  const envUrl = process.env[kind === "redis" ? "REDIS_URL" : "VALKEY_URL"];
  // A server with settings of its own (arguments, a password, TLS, a port) is always started:
  // an existing server cannot be given them.
  const plain = !options.own && options.args === undefined && options.password === undefined &&
    !options.tls && options.port === undefined;
  if (envUrl && plain) return await ExternalServer.open(kind, envUrl);
  const dir = await mkdtemp(join(tmpdir(), `cache-test-${kind}-`));
  liveDirs.add(dir);
  try {
    const spawnOptions: SpawnOptions = {
      ...options,
      tlsFiles: options.tls ? await makeTlsFiles(dir) : undefined,
    };
    if (options.port === 6379) throw new Error("harness: refusing to use port 6379");
    if (await serverMode(kind) === "containers") {
      return await startInContainer(kind, dir, spawnOptions);
    }
    if (options.port !== undefined) {
      const server = new SpawnedServer(kind, options.port, dir, spawnOptions);
      await server.start(false);
      return server;
    }
    let lastError: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const server = new SpawnedServer(kind, await freePort(), dir, spawnOptions);
      try {
        await server.start(false);
        return server;
      } catch (error) {
        if (!(error instanceof BindError)) throw error;
        lastError = error;
      }
    }
    throw new Error(`harness: ${kind}-server could not bind after ${START_ATTEMPTS} attempts`, {
      cause: lastError,
    });
  } catch (error) {
    liveDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The server exited because its port was taken. */
class BindError extends Error {}

/** Where the harness runs servers: local processes, or containers (tests/container_server.ts). */
export type ServerMode = "local" | "containers";

const modes = new Map<ServerKind, Promise<ServerMode>>();

/**
 * The mode for `kind`: `CACHE_TEST_SERVERS` (`local` or `containers`) when set; else local when
 * `<kind>-server` is on PATH, else containers when a Docker engine answers, else local (whose
 * start failure then says how to install the server).
 */
export function serverMode(kind: ServerKind): Promise<ServerMode> {
  let mode = modes.get(kind);
  if (!mode) {
    mode = chooseMode(kind);
    modes.set(kind, mode);
  }
  return mode;
}

async function chooseMode(kind: ServerKind): Promise<ServerMode> {
  const asked = process.env.CACHE_TEST_SERVERS;
  if (asked === "local" || asked === "containers") return asked;
  if (asked) {
    throw new Error(`harness: CACHE_TEST_SERVERS=${asked}: use "local" or "containers"`);
  }
  if (onPath(`${kind}-server`)) return "local";
  const { dockerReachable } = await import("./container_server.ts");
  return await dockerReachable() ? "containers" : "local";
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** A container on a free port (a few tries, as for local processes, should a port be taken). */
async function startInContainer(
  kind: ServerKind,
  dir: string,
  options: SpawnOptions,
): Promise<TestServer> {
  const { startContainer } = await import("./container_server.ts");
  const removeDir = async () => {
    liveDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
  };
  let lastError: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = options.port ?? await freePort();
    try {
      return await startContainer(kind, port, dir, options, removeDir);
    } catch (error) {
      lastError = error;
      const taken = /address already in use|could not create server tcp listening socket/i
        .test(String((error as Error).message));
      if (!taken || options.port !== undefined) throw error;
    }
  }
  throw new Error(`harness: ${kind}-server could not bind after ${START_ATTEMPTS} attempts`, {
    cause: lastError,
  });
}

/** The PEM files of a TLS test setup. */
export interface TlsFiles {
  /** The certificate authority's certificate: what a client trusts. */
  ca: string;
  /** The server's certificate, signed by the CA, for `localhost` and `127.0.0.1`. */
  cert: string;
  /** The server certificate's private key. */
  key: string;
}

/** Internal: the start options with the generated TLS files. */
export interface SpawnOptions extends StartOptions {
  tlsFiles?: TlsFiles;
}

function run(bin: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { cwd, timeout: CLI_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error) {
        const hint = (error as NodeJS.ErrnoException).code === "ENOENT" ? " (install openssl)" : "";
        reject(new Error(`harness: ${bin} ${args[0]} failed${hint}: ${String(stderr)}`.trim()));
      } else resolve();
    });
  });
}

/**
 * Makes a throw-away certificate authority and a server certificate it signs (P-256 keys, valid
 * two days, subjectAltName `localhost` and `127.0.0.1`) with `openssl` in `dir`. A test can call it
 * on a dir of its own to get a CA that did not sign a server's certificate.
 */
export async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  const files = {
    ca: join(dir, "ca.pem"),
    cert: join(dir, "server.pem"),
    key: join(dir, "server.key"),
  };
  const caKey = join(dir, "ca.key");
  const csr = join(dir, "server.csr");
  const ext = join(dir, "server.ext");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    caKey,
    "-out",
    files.ca,
    "-days",
    "2",
    "-subj",
    "/CN=core-lib cache test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  await run(
    "openssl",
    ["req", ...ec, "-keyout", files.key, "-out", csr, "-subj", "/CN=localhost"],
    dir,
  );
  await writeFile(
    ext,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" +
      "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    files.ca,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    files.cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ], dir);
  return files;
}

/** redis-cli's connection arguments for a `redis://` / `rediss://` URL (its db aside). */
function cliConnection(url: URL): string[] {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1") || HOST;
  const conn = ["-h", host, "-p", url.port || "6379"];
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  if (user && user !== "default") conn.push("--user", user);
  if (password) conn.push("-a", password, "--no-auth-warning");
  if (url.protocol === "rediss:") conn.push("--tls");
  return conn;
}

/**
 * Opens a connection to the server at `url` named `name` (CLIENT SETNAME) and reads its CLIENT
 * ID. The socket is unref'd: holding a claim never keeps the test process alive.
 */
function claimConnection(url: URL, name: string): Promise<{ socket: Socket; id: number }> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1") || HOST;
    const port = Number(url.port || 6379);
    const socket: Socket = url.protocol === "rediss:"
      ? tlsConnect({ host, port, rejectUnauthorized: false })
      : connect({ host, port });
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    let reply = "";
    const timer = setTimeout(() => fail(new Error("harness: no reply to the claim")), 5_000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.setEncoding("utf8");
    socket.on(url.protocol === "rediss:" ? "secureConnect" : "connect", () => {
      const auth = password ? respCommand("AUTH", ...(user ? [user] : []), password) : "";
      socket.write(
        `${auth}${respCommand("CLIENT", "SETNAME", name)}${respCommand("CLIENT", "ID")}`,
      );
    });
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (/^-/m.test(reply)) return fail(new Error(`harness: claim refused: ${reply.trim()}`));
      const id = /^:(\d+)\r\n/m.exec(reply);
      if (!id) return;
      clearTimeout(timer);
      socket.unref();
      resolve({ socket, id: Number(id[1]) });
    });
    socket.on("error", fail);
  });
}

/**
 * Commands that would wipe, reconfigure or stop a whole server (or its script cache), as
 * `"NAME"` or `"NAME SUBCOMMAND"`: never sent to an external server.
 */
const DESTRUCTIVE = new Set([
  "FLUSHALL",
  "FLUSHDB",
  "SWAPDB",
  "SHUTDOWN",
  "DEBUG",
  "REPLICAOF",
  "SLAVEOF",
  "FAILOVER",
  "MIGRATE",
  "MODULE",
  "SCRIPT FLUSH",
  "SCRIPT KILL",
  "FUNCTION FLUSH",
  "FUNCTION DELETE",
  "FUNCTION RESTORE",
  "CONFIG SET",
  "CONFIG RESETSTAT",
  "CONFIG REWRITE",
  "ACL SETUSER",
  "ACL DELUSER",
  "ACL LOAD",
  "CLIENT KILL",
  "CLIENT PAUSE",
  "CLIENT NO-EVICT",
  "CLUSTER",
]);

/** The destructive command `args` starts with (`"SCRIPT FLUSH"`), or `undefined`. */
export function destructiveCommand(args: readonly string[]): string | undefined {
  const name = (args[0] ?? "").toUpperCase();
  const withSub = `${name} ${(args[1] ?? "").toUpperCase()}`;
  if (DESTRUCTIVE.has(withSub)) return withSub;
  return DESTRUCTIVE.has(name) ? name : undefined;
}

function runCli(
  kind: ServerKind,
  connArgs: string[],
  args: string[],
): Promise<string> {
  const bin = `${kind}-cli`;
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      [...connArgs, ...args],
      { timeout: CLI_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const code = (error as NodeJS.ErrnoException).code;
          const hint = code === "ENOENT" ? " (run `bash scripts/install_servers.sh`)" : "";
          reject(
            new Error(
              `harness: ${bin} ${args.join(" ")} failed${hint}: ${error.message}\n` +
                `${String(stdout)}${String(stderr)}`.trim(),
              { cause: error },
            ),
          );
        } else {
          resolve(String(stdout).trim());
        }
      },
    );
  });
}

/**
 * A spawned server process. Exit is tracked from the 'exit' event alone: Deno's child_process
 * sets `signalCode` as soon as `kill()` is called, so that field cannot tell whether it exited.
 */
class Proc {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  /** Resolves on the 'exit' event. */
  readonly exited: Promise<void>;
  running = true;
  status = "running";
  /** Set when the process could not be spawned at all (e.g. ENOENT). */
  spawnError: Error | undefined;

  constructor(child: ChildProcess) {
    this.child = child;
    this.pid = child.pid;
    live.add(this);
    child.once("error", (error) => {
      this.spawnError = error;
      if (this.pid === undefined) {
        this.running = false;
        live.delete(this);
      }
    });
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.running = false;
        this.status = signal ? `killed by ${signal}` : `exit code ${code}`;
        live.delete(this);
        resolve();
      });
    });
  }

  /** Sends `signal` via process.kill (so Deno's ChildProcess bookkeeping is left alone). */
  signal(signal: NodeJS.Signals): void {
    if (!this.running || this.pid === undefined) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // exited in between
    }
  }

  /** SIGKILLs the process and waits for its exit. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.ref(); // keep the event loop alive until the exit is seen
    this.signal("SIGKILL");
    await this.exited;
  }
}

class SpawnedServer implements TestServer {
  readonly kind: ServerKind;
  readonly host = HOST;
  readonly port: number;
  readonly url: string;
  readonly tlsCa: string | undefined;
  readonly external = false;
  readonly db = 0;
  readonly #dir: string;
  readonly #options: SpawnOptions;
  #proc: Proc | undefined;
  #stopped: Promise<void> | undefined;

  constructor(kind: ServerKind, port: number, dir: string, options: SpawnOptions) {
    this.kind = kind;
    this.port = port;
    this.#dir = dir;
    this.#options = options;
    this.tlsCa = options.tlsFiles?.ca;
    this.url = redisUrl(HOST, port, options.password, options.tlsFiles !== undefined);
  }

  get pid(): number | undefined {
    return this.#proc?.running ? this.#proc.pid : undefined;
  }

  #logPath(): string {
    return join(this.#dir, "server.log");
  }

  #args(): string[] {
    return serverArgs(this.port, this.#dir, this.#logPath(), this.#options);
  }

  /**
   * Spawns the server and waits for PING. A server that dies because its port is taken throws
   * a BindError when `retryBind` is false; with `retryBind` it is spawned again until the
   * deadline (restart on the same port).
   */
  async start(retryBind: boolean): Promise<void> {
    installExitHook();
    const bin = `${this.kind}-server`;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const caPem = this.tlsCa === undefined ? undefined : await readFile(this.tlsCa, "utf8");
    for (;;) {
      const output: string[] = [];
      // Piped only until ready: config errors are printed before --logfile is in effect.
      const child = spawn(bin, this.#args(), { stdio: ["ignore", "pipe", "pipe"] });
      const proc = new Proc(child);
      child.stdout?.setEncoding("utf8").on("data", (s: string) => output.push(s));
      child.stderr?.setEncoding("utf8").on("data", (s: string) => output.push(s));
      let outcome: "ready" | "exited" | "timeout" | Error = "timeout";
      let lastReply = "";
      // Every ping and pause is awaited in full, so a failed start leaves no socket or timer.
      while (Date.now() < deadline) {
        const result = await pingOnce(this.port, this.#options.password, proc.pid, 500, caPem);
        lastReply = result.reply;
        if (result.ok && proc.running) {
          outcome = "ready";
          break;
        }
        if (proc.spawnError) {
          outcome = proc.spawnError;
          break;
        }
        if (!proc.running) {
          outcome = "exited";
          break;
        }
        await delay(25);
      }
      if (outcome instanceof Error) {
        child.stdout?.destroy();
        child.stderr?.destroy();
        const code = (outcome as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          throw new Error(
            `harness: ${bin} not found on PATH; run \`bash scripts/install_servers.sh\``,
          );
        }
        throw new Error(`harness: could not spawn ${bin}: ${outcome.message}`, { cause: outcome });
      }
      if (outcome === "ready") {
        // Let go of the pipes so nothing keeps the test process (or a sanitizer) busy; later
        // logs go to server.log in the temp dir.
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.unref();
        this.#proc = proc;
        return;
      }
      if (outcome === "timeout") {
        await proc.kill();
      }
      // Give the pipes a moment to deliver the last words.
      await delay(20);
      child.stdout?.destroy();
      child.stderr?.destroy();
      const tail = await this.#tail(output.join(""));
      const bindFailure = /address already in use|could not create server tcp listening socket/i
        .test(tail);
      if (outcome === "exited" && bindFailure) {
        if (retryBind && Date.now() < deadline) {
          await delay(100);
          continue;
        }
        throw new BindError(`harness: ${bin} could not bind port ${this.port}:\n${tail}`);
      }
      const why = outcome === "exited"
        ? `exited (${proc.status}) before answering PING`
        : `did not answer PING within ${READY_TIMEOUT_MS} ms (last reply ${
          JSON.stringify(lastReply)
        })`;
      throw new Error(`harness: ${bin} on port ${this.port} ${why}:\n${tail}`);
    }
  }

  #tail(output: string): Promise<string> {
    return logTail(output, this.#logPath());
  }

  #assertNotStopped(what: string): void {
    if (this.#stopped) throw new Error(`harness: ${what}() after stop()`);
  }

  async kill(): Promise<void> {
    this.#assertNotStopped("kill");
    await this.#proc?.kill();
  }

  async restart(): Promise<void> {
    this.#assertNotStopped("restart");
    await this.#proc?.kill();
    await this.start(true);
  }

  pause(): void {
    this.#assertNotStopped("pause");
    this.#signal("SIGSTOP");
  }

  resume(): void {
    this.#assertNotStopped("resume");
    this.#signal("SIGCONT");
  }

  #signal(signal: NodeJS.Signals): void {
    if (!this.#proc?.running) throw new Error(`harness: ${this.kind}-server is not running`);
    this.#proc.signal(signal);
  }

  cli(...args: string[]): Promise<string> {
    const conn = startedCliArgs(this.port, this.tlsCa, this.#options.password);
    return runCli(this.kind, conn, args);
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    const proc = this.#proc;
    if (proc?.running) {
      proc.child.ref(); // keep the event loop alive until the exit is seen
      proc.signal("SIGTERM");
      proc.signal("SIGCONT"); // a paused server only acts on SIGTERM once it runs again
      const ac = new AbortController();
      const forced = delay(STOP_GRACE_MS, undefined, { signal: ac.signal }).then(
        () => proc.signal("SIGKILL"),
        () => {},
      );
      await proc.exited;
      ac.abort();
      await forced;
    }
    liveDirs.delete(this.#dir);
    await rm(this.#dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** The name a harness connection holds while its process uses a database of an external server. */
const CLAIM_NAME = "core-lib-cache-test-db";
/** Databases tried on an external server, highest first (the user's data is usually in 0). */
const CLAIMABLE_DBS = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1];

/**
 * A server named by `REDIS_URL` / `VALKEY_URL`. Its data is the user's: the handle runs the
 * tests in a database of their own, one that was empty when claimed, and claimed by holding a
 * connection named `core-lib-cache-test-db<N>` (several test processes at once each get their
 * own: the connection with the lowest CLIENT ID wins a database). Within it the tests see an
 * exclusive server and FLUSHDB is allowed; `stop()` empties it again and lets it go. What
 * would touch the rest of the server (FLUSHALL, SCRIPT FLUSH, CONFIG SET, ...) is refused.
 */
class ExternalServer implements TestServer {
  readonly kind: ServerKind;
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly tlsCa: string | undefined = undefined;
  readonly external = true;
  readonly pid = undefined;
  /** The database claimed for this handle. */
  readonly db: number;
  readonly #connArgs: string[];
  readonly #claim: Socket;
  #stopped: Promise<void> | undefined;

  private constructor(kind: ServerKind, url: string, db: number, claim: Socket) {
    const parsed = new URL(url);
    this.kind = kind;
    this.db = db;
    parsed.pathname = `/${db}`;
    this.url = parsed.href;
    this.host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || HOST;
    this.port = parsed.port ? Number(parsed.port) : 6379;
    this.#connArgs = [...cliConnection(parsed), "-n", String(db)];
    this.#claim = claim;
  }

  /** A handle on a database of the server at `url` that no one uses. */
  static async open(kind: ServerKind, url: string): Promise<ExternalServer> {
    const parsed = new URL(url);
    const conn = cliConnection(parsed);
    for (const db of CLAIMABLE_DBS) {
      const size = await runCli(kind, [...conn, "-n", String(db)], ["DBSIZE"]).catch(() => "");
      if (size !== "0") continue; // in use, or no such database
      const name = `${CLAIM_NAME}${db}`;
      const claim = await claimConnection(parsed, name);
      const holders = (await runCli(kind, conn, ["CLIENT", "LIST"])).split("\n")
        .filter((line) => line.includes(` name=${name} `))
        .map((line) => Number(/\bid=(\d+)/.exec(line)?.[1]));
      const stillEmpty = await runCli(kind, [...conn, "-n", String(db)], ["DBSIZE"]) === "0";
      if (stillEmpty && Math.min(...holders) === claim.id) {
        return new ExternalServer(kind, url, db, claim.socket);
      }
      claim.socket.destroy();
    }
    throw new Error(
      `harness: no empty database (1-15) to test in on the server of ${
        kind === "redis" ? "REDIS_URL" : "VALKEY_URL"
      }; the tests never write to a database that holds data`,
    );
  }

  #refusal(what: string): Error {
    const env = this.kind === "redis" ? "REDIS_URL" : "VALKEY_URL";
    return new Error(
      `harness: ${what}() needs a server the harness started, but ${env} points at an ` +
        `external server; unset ${env} to run this test`,
    );
  }

  kill(): Promise<void> {
    return Promise.reject(this.#refusal("kill"));
  }

  restart(): Promise<void> {
    return Promise.reject(this.#refusal("restart"));
  }

  pause(): void {
    throw this.#refusal("pause");
  }

  resume(): void {
    throw this.#refusal("resume");
  }

  cli(...args: string[]): Promise<string> {
    const refused = destructiveCommand(args);
    // FLUSHDB stays within the database this handle claimed, empty when claimed.
    if (refused && refused !== "FLUSHDB") {
      return Promise.reject(this.#refusal(`cli("${refused}")`));
    }
    return runCli(this.kind, this.#connArgs, args);
  }

  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      // What the tests wrote goes; the database was empty and held by this handle throughout.
      await runCli(this.kind, this.#connArgs, ["FLUSHDB"]).catch(() => {});
      this.#claim.destroy();
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
