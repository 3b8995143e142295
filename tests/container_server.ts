/**
 * Test servers in containers, through the `testcontainers` npm package (the container test
 * mode, `CACHE_TEST_SERVERS=containers`). A container behaves like the harness's local server
 * process in every way a test can see:
 * - host networking: the server listens on a free loopback port picked by the harness, so the
 *   address a cluster announces is the one the client dials, and a restart keeps it;
 * - the harness's temp dir is mounted at the same path, so the arguments (TLS files, log file,
 *   data dir) are exactly the local ones;
 * - kill / restart / pause / resume act on the same server process: SIGKILL and a start of the
 *   same container, SIGSTOP / SIGCONT to its process (its pid on this host);
 * - `cli` runs `redis-cli` / `valkey-cli` inside the container, so no local binary is needed.
 *
 * Every container started is removed by `stop()` (tests call it in `after` hooks and with
 * `await using`, so also when a test fails), and, should the test process end without it, by
 * the exit hook. Ryuk (testcontainers' reaper) is not used: its image cannot be pulled here.
 *
 * The images are `CACHE_TEST_REDIS_IMAGE` / `CACHE_TEST_VALKEY_IMAGE` (default: the official
 * `redis` and `valkey/valkey` images); `scripts/build_test_images.sh` builds Debian-based ones
 * where no registry is reachable.
 *
 * Runs unchanged under Deno and Node 20: `node:` modules and the `testcontainers` package,
 * loaded only in container mode.
 */

import { spawnSync } from "node:child_process";
import process from "node:process";
import { setTimeout as delay } from "node:timers/promises";
import { readFile } from "node:fs/promises";
import type { ServerKind, SpawnOptions, TestServer } from "./harness.ts";
import {
  HOST,
  logTail,
  pingOnce,
  READY_TIMEOUT_MS,
  redisUrl,
  serverArgs,
  startedCliArgs,
} from "./server_start.ts";

/** The image a container of `kind` runs. */
export function containerImage(kind: ServerKind): string {
  const variable = kind === "redis" ? "CACHE_TEST_REDIS_IMAGE" : "CACHE_TEST_VALKEY_IMAGE";
  return process.env[variable] || (kind === "redis" ? "redis" : "valkey/valkey");
}

/** The part of the docker API (dockerode, as testcontainers hands it out) the harness uses. */
interface DockerContainer {
  kill(options?: { signal?: string }): Promise<unknown>;
  start(): Promise<unknown>;
  wait(): Promise<unknown>;
  inspect(): Promise<{ State: { Pid: number; Running: boolean } }>;
  remove(options?: { force?: boolean; v?: boolean }): Promise<unknown>;
  logs(options: { stdout: boolean; stderr: boolean; follow: false }): Promise<Uint8Array>;
}

interface StartedContainer {
  getId(): string;
  exec(command: string[]): Promise<{ output: string; stdout?: string; exitCode: number }>;
}

interface Testcontainers {
  GenericContainer: new (image: string) => {
    withNetworkMode(mode: string): unknown;
  };
  getContainerRuntimeClient(): Promise<
    { container: { getById(id: string): DockerContainer } }
  >;
}

let loaded: Promise<Testcontainers> | undefined;

/** Loads testcontainers once, with its reaper off (its image cannot be pulled here). */
function testcontainers(): Promise<Testcontainers> {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
  // Host networking: the containers' address is this host's loopback. Saying so also spares
  // testcontainers its look-up of the bridge network's gateway, which an engine started
  // without a bridge (scripts/docker_engine.sh) does not have.
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= HOST;
  // A computed specifier: the Node test build (tsc) then needs no testcontainers types, and
  // local mode never loads the package.
  const specifier = ["test", "containers"].join("");
  loaded ??= import(specifier) as Promise<Testcontainers>;
  return loaded;
}

/** `true` when a Docker engine answers (DOCKER_HOST, or the default socket). */
export async function dockerReachable(): Promise<boolean> {
  try {
    const tc = await testcontainers();
    await tc.getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/** Ids of the containers started and not yet removed, for the exit hook. */
const liveContainers = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const cleanup = () => {
    if (liveContainers.size === 0) return;
    // The process is ending: only a synchronous call can still run. Best effort.
    spawnSync("docker", ["rm", "-f", ...liveContainers], { stdio: "ignore", timeout: 10_000 });
    liveContainers.clear();
  };
  process.on("exit", cleanup);
  const target = globalThis as { addEventListener?: (type: string, fn: () => void) => void };
  if (typeof target.addEventListener === "function") target.addEventListener("unload", cleanup);
}

/**
 * Starts a server of `kind` in a container on `port` (host networking), with the same arguments
 * a local process would get; resolves once it answers PING.
 */
export async function startContainer(
  kind: ServerKind,
  port: number,
  dir: string,
  options: SpawnOptions,
  removeDir: () => Promise<void>,
): Promise<TestServer> {
  installExitHook();
  const tc = await testcontainers();
  const logPath = `${dir}/server.log`;
  // The official images run the server as their own user: it must be able to write the dir.
  spawnSync("chmod", ["-R", "a+rwX", dir]);
  const image = containerImage(kind);
  // deno-lint-ignore no-explicit-any
  const builder = new tc.GenericContainer(image) as any;
  const started: StartedContainer = await builder
    .withNetworkMode("host")
    .withBindMounts([{ source: dir, target: dir, mode: "rw" }])
    .withCommand([`${kind}-server`, ...serverArgs(port, dir, logPath, options)])
    .withStartupTimeout(READY_TIMEOUT_MS)
    .start();
  const id = started.getId();
  liveContainers.add(id);
  const client = await tc.getContainerRuntimeClient();
  const docker = client.container.getById(id);
  const server = new ContainerServer(kind, port, dir, options, started, docker, removeDir);
  try {
    await server.ready();
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

class ContainerServer implements TestServer {
  readonly kind: ServerKind;
  readonly host = HOST;
  readonly port: number;
  readonly url: string;
  readonly tlsCa: string | undefined;
  readonly external = false;
  readonly db = 0;
  readonly #dir: string;
  readonly #options: SpawnOptions;
  readonly #started: StartedContainer;
  readonly #docker: DockerContainer;
  readonly #removeDir: () => Promise<void>;
  #pid: number | undefined;
  #stopped: Promise<void> | undefined;

  constructor(
    kind: ServerKind,
    port: number,
    dir: string,
    options: SpawnOptions,
    started: StartedContainer,
    docker: DockerContainer,
    removeDir: () => Promise<void>,
  ) {
    this.kind = kind;
    this.port = port;
    this.#dir = dir;
    this.#options = options;
    this.#started = started;
    this.#docker = docker;
    this.#removeDir = removeDir;
    this.tlsCa = options.tlsFiles?.ca;
    this.url = redisUrl(HOST, port, options.password, options.tlsFiles !== undefined);
  }

  /** The server process's pid on this host (it is pid 1 inside its container). */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** Waits for PING from pid 1 of the container, then records its host pid. */
  async ready(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const ca = this.tlsCa === undefined ? undefined : await readFile(this.tlsCa, "utf8");
    let last = "";
    while (Date.now() < deadline) {
      // pid 1: the server in our container, not another process that won the port.
      const result = await pingOnce(this.port, this.#options.password, 1, 500, ca);
      last = result.reply;
      if (result.ok) {
        const state = (await this.#docker.inspect()).State;
        if (state.Running) {
          this.#pid = state.Pid;
          return;
        }
      }
      const state = (await this.#docker.inspect()).State;
      if (!state.Running) break;
      await delay(25);
    }
    throw new Error(
      `harness: ${this.kind}-server in container ${
        containerImage(this.kind)
      } on port ${this.port} ` +
        `did not answer PING (last reply ${JSON.stringify(last)}):\n${await this.#tail()}`,
    );
  }

  /** The container's output (config errors come before --logfile applies) and server.log. */
  async #tail(): Promise<string> {
    let output = "";
    try {
      const raw = await this.#docker.logs({ stdout: true, stderr: true, follow: false });
      // The docker log stream frames each chunk with an 8-byte header: keep the text.
      output = [...new TextDecoder().decode(raw)].filter((c) => c >= " " || c === "\n").join("");
    } catch {
      // gone already
    }
    return await logTail(output, `${this.#dir}/server.log`);
  }

  #assertNotStopped(what: string): void {
    if (this.#stopped) throw new Error(`harness: ${what}() after stop()`);
  }

  async kill(): Promise<void> {
    this.#assertNotStopped("kill");
    if (this.#pid === undefined) return;
    await this.#docker.kill({ signal: "SIGKILL" }).catch(() => {});
    await this.#docker.wait();
    this.#pid = undefined;
  }

  async restart(): Promise<void> {
    this.#assertNotStopped("restart");
    await this.kill();
    // The same container, so the same arguments, port (host networking) and mounted dir.
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        await this.#docker.start();
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await delay(50);
      }
    }
    await this.ready();
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
    if (this.#pid === undefined) throw new Error(`harness: ${this.kind}-server is not running`);
    process.kill(this.#pid, signal);
  }

  async cli(...args: string[]): Promise<string> {
    const conn = startedCliArgs(this.port, this.tlsCa, this.#options.password);
    const bin = `${this.kind}-cli`;
    const result = await this.#started.exec([bin, ...conn, ...args]);
    const output = (result.stdout ?? result.output).trim();
    // Like the local cli: an error reply makes redis-cli exit 1 only in some versions, so the
    // output is checked too (the local harness runs redis-cli without a TTY as well).
    if (result.exitCode !== 0) {
      throw new Error(`harness: ${bin} ${args.join(" ")} failed in the container: ${output}`);
    }
    return output;
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    if (this.#pid !== undefined) {
      try {
        process.kill(this.#pid, "SIGCONT"); // a paused server only acts on a signal once it runs
      } catch {
        // exited already
      }
    }
    await this.#docker.remove({ force: true, v: true }).catch(() => {});
    liveContainers.delete(this.#started.getId());
    this.#pid = undefined;
    await this.#removeDir();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
