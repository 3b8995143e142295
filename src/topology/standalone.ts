/**
 * The single-server topology: a pool of `Redis` clients of ioredis / iovalkey to one server (or
 * a primary), calls spread over them in turn, each connection under a stall watch that feeds the
 * server's circuit breaker, its scripts registered again whenever it reconnects; the layout of
 * the Python original and the upkeep by scripts that read a registry's members themselves.
 *
 * @module
 */

import { CircuitBreaker, CircuitOpenError } from "../circuit_breaker.ts";
import type { ClientConstructor, ProtocolClient } from "../client_types.ts";
import { urlHost } from "../config.ts";
import { commandName } from "../faults.ts";
import { StandaloneLayout } from "../layout.ts";
import { ScriptUpkeep } from "../registry_upkeep.ts";
import { registerScripts, runScript, type Script, type ScriptName } from "../scripts.ts";
import type { Scanner, Servers, Topology, TopologyOptions, TrackOptions } from "../servers.ts";
import { type StallWatch, watchStalls } from "../stall_watch.ts";
import { TrackingGroup } from "../tracking_group.ts";
import {
  closeAll,
  connectionFault,
  loadOpenParts,
  send,
  untilReady,
  withTimeout,
} from "./connection.ts";

/** The single-server topology for `options` (no I/O until `open()`). */
export function standaloneTopology(options: TopologyOptions): Topology {
  return {
    servers: new StandaloneServers(options),
    layout: new StandaloneLayout(options.config.prefix),
    upkeep: (context) => new ScriptUpkeep(context),
  };
}

/**
 * Connection set-up commands whose failure leaves a connection on the wrong database or
 * protocol: such a connection must never serve a call.
 */
const REFUSED_SETUP = new Set(["select", "hello"]);

/** A pool of connections to one server. */
export class StandaloneServers implements Servers {
  readonly where: string;
  readonly #options: TopologyOptions;
  readonly #autoPipelining: boolean;
  #clients: ProtocolClient[] = [];
  #watches: StallWatch[] = [];
  #next = 0;
  #scripts: Record<ScriptName, Script> | undefined;
  /** The client library's class and the TLS options, from `open()`. */
  #library: { Client: ClientConstructor; tls: Record<string, unknown> | undefined } | undefined;
  #closed = false;
  #lastConnectionError: unknown;
  /** The server's breaker; `undefined` when turned off. */
  readonly #breaker: CircuitBreaker | undefined;

  /** @param options The provider's settings. */
  constructor(options: TopologyOptions) {
    this.#options = options;
    // Off by default: the provider coalesces a tick's calls itself (see
    // RedisCacheOptions.autoPipelining).
    this.#autoPipelining = options.autoPipelining ?? false;
    const config = options.config;
    // `[::1]:6379/0`: a bare IPv6 host would run into its port.
    this.where = `${urlHost(config.host)}:${config.port}/${config.db}`;
    if (options.breaker) {
      const target = `${urlHost(config.host)}:${config.port}`;
      this.#breaker = new CircuitBreaker(target, options.breaker, {
        probe: () => this.#probe(),
        opened: (target, error) => {
          // The calls still waiting on the pool resolve now, as misses, like the later ones.
          const refused = new CircuitOpenError(target);
          for (const watch of this.#watches) watch.rejectAll(refused);
          options.circuit(target, true, { error });
        },
        closed: (target, openMs) => options.circuit(target, false, { openMs }),
      });
    }
  }

  get client(): ProtocolClient | null {
    return this.#clients[0] ?? null;
  }

  get lastConnectionError(): unknown {
    return this.#lastConnectionError;
  }

  async open(): Promise<void> {
    if (this.#closed || this.#clients.length > 0) return;
    const parts = await loadOpenParts(
      this.#options,
      () => this.#options.loadClient(),
      () => this.#closed,
    );
    if (parts === undefined || this.#clients.length > 0) return;
    this.#scripts = parts.scripts;
    this.#library = { Client: parts.Library, tls: parts.tls };
    for (let i = 0; i < this.#options.poolSize; i++) {
      this.#clients.push(this.#createClient(parts.Library, parts.tls));
    }
  }

  async ready(): Promise<void> {
    await withTimeout(
      Promise.all(this.#clients.map((client) => this.#ready(client))),
      this.#options.timeoutMs,
      "connect",
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#breaker?.stop();
    for (const watch of this.#watches) watch.stop();
    await closeAll(this.#clients, this.#options.timeoutMs);
  }

  async ping(): Promise<boolean> {
    if (this.#clients.length === 0) return false;
    const replies = await withTimeout(
      Promise.all(this.#clients.map((client) => client.ping())),
      this.#options.timeoutMs,
      "health check",
    );
    return replies.every((reply) => reply === "PONG");
  }

  openCircuits(): string[] {
    return this.#breaker?.open ? [this.#breaker.target] : [];
  }

  refusal(_key: string): Promise<never> | undefined {
    return this.#breaker?.open ? this.#breaker.refusal : undefined;
  }

  get(key: string): Promise<string | null> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => this.#pick().get(key));
  }

  mget(keys: string[]): Promise<(string | null)[]> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => this.#pick().mget(...keys));
  }

  /** One group: a single server takes any keys in one command. */
  slotGroups(keys: readonly string[]): number[][] {
    return [keys.map((_, i) => i)];
  }

  /** After the tick's microtasks: its callers were all resumed by one reply. */
  endOfTick(flush: () => void): void {
    queueMicrotask(flush);
  }

  /** One MGET; a fault rejects it whole. */
  readMany(keys: string[], _onFault: (error: unknown) => void): Promise<(string | null)[]> {
    return this.mget(keys);
  }

  exists(key: string): Promise<number> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => this.#pick().exists(key));
  }

  pttl(key: string): Promise<number> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => this.#pick().pttl(key));
  }

  run(script: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    // #scripts is set by open(); a call before it finds no connection and faults anyway.
    const scripts = this.#scripts;
    if (!scripts) return Promise.reject(new Error("not connected: call connect() first"));
    return send(() => runScript(this.#pick(), scripts[script], keys, args));
  }

  /** The same as `run`: one connection keeps the calls' order and sends them as they come. */
  runResendable(script: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.run(script, keys, args);
  }

  scanners(): Scanner[] {
    const client = this.#pick();
    const timeoutMs = this.#options.timeoutMs;
    return [{
      scan: (cursor: string, ...args: (string | number)[]) =>
        this.#breaker?.open
          ? this.#breaker.refusal
          : withTimeout(client.scan(cursor, ...args), timeoutMs, "scan"),
    }];
  }

  srandmember(key: string, count: number): Promise<string[]> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => (this.#pick() as unknown as SetCommands).srandmember(key, count));
  }

  srem(key: string, ...members: string[]): Promise<number> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => (this.#pick() as unknown as SetCommands).srem(key, ...members));
  }

  sscan(key: string, cursor: string, count: number): Promise<[string, string[]]> {
    if (this.#breaker?.open) return this.#breaker.refusal;
    return send(() => (this.#pick() as unknown as SetCommands).sscan(key, cursor, "COUNT", count));
  }

  /** One subscriber, to the server, with the data connections' credentials, TLS and database. */
  track(options: TrackOptions): Promise<TrackingGroup | undefined> {
    const library = this.#library;
    if (library === undefined || this.#closed) return Promise.resolve(undefined);
    const { config, timeoutMs } = this.#options;
    const group = new TrackingGroup({
      ...options,
      Client: library.Client,
      clientOptions: {
        db: config.db,
        username: config.username,
        password: config.password,
        tls: library.tls,
        connectTimeout: timeoutMs,
      },
    });
    group.setTargets([`${urlHost(config.host)}:${config.port}`]);
    return Promise.resolve(group);
  }

  /**
   * One PING on a connection that is up (a hung server's stays up until the stall watch drops it;
   * its PONG arrives right after the server resumes). With none up there is nothing to probe: the
   * reconnect's `ready` closes the breaker instead.
   */
  #probe(): Promise<unknown> {
    const client = this.#clients.find((c) => c.status === "ready");
    if (client === undefined) return Promise.reject(new Error("no connection is up"));
    return withTimeout(client.ping(), this.#options.timeoutMs, "probe");
  }

  /** The next connection in turn; throws before `open()`. */
  #pick(): ProtocolClient {
    const count = this.#clients.length;
    if (count === 1) return this.#clients[0];
    if (count === 0) throw new Error("not connected: call connect() first");
    this.#next = (this.#next + 1) % count;
    return this.#clients[this.#next];
  }

  #createClient(
    Client: ClientConstructor,
    tls: Record<string, unknown> | undefined,
  ): ProtocolClient {
    const { config, timeoutMs, log, envPrefix } = this.#options;
    const client = new Client({
      host: config.host,
      port: config.port,
      db: config.db,
      username: config.username,
      password: config.password,
      tls,
      lazyConnect: true,
      connectTimeout: timeoutMs,
      // Memory stays bounded and every call settles within the timeout however long the server
      // is down or hung (tests/faults_test.ts):
      // - no commandTimeout: its per-command timer costs more than the command itself; the stall
      //   watch below (src/stall_watch.ts) rejects every waiting call once the connection has
      //   gone `timeout` without a reply, and drops a silent connection, so a hung server (SIGSTOP,
      //   a network black hole) cannot pile up the calls made during the hang.
      // - enableOfflineQueue false: while the connection is not ready (server down, reconnecting)
      //   a call fails at once and is served as a miss, instead of waiting in an offline queue
      //   that grows with every call for as long as the outage lasts.
      // - maxRetriesPerRequest: with REDIS_RETRY_ON_TIMEOUT (the default) the commands in flight
      //   when a connection drops may be resent once after the reconnect, so a brief reset costs
      //   no miss; with 0 they fail at the first drop. The stall watch bounds the wait either way.
      enableOfflineQueue: false,
      maxRetriesPerRequest: config.retryOnTimeout ? 1 : 0,
      enableAutoPipelining: this.#autoPipelining,
      // Reconnect attempts back off to one per second: cheap for a down server (one refused TCP
      // connect). While the breaker is open they come every probe interval instead, so a
      // restarted server is in use again within about that interval.
      retryStrategy: (attempt: number) =>
        Math.min(
          50 * 2 ** Math.min(attempt, 6),
          this.#breaker?.open ? this.#options.breaker!.probeIntervalMs : 1000,
        ),
    });
    client.on("error", (error) => {
      this.#lastConnectionError = error;
      // ioredis only logs a failed SELECT (or HELLO) of a new connection and goes on, so every
      // later command would run on database 0: another application's data. Ending the stream
      // here, before the connection is ready (its ready check is sent after SELECT's reply),
      // makes every command on it fail, and the reconnect tries the same SELECT again.
      if (REFUSED_SETUP.has(commandName(error) ?? "")) client.disconnect(true);
      connectionFault(log, envPrefix, this.where, error);
    });
    this.#watches.push(watchStalls(
      client as unknown as Parameters<typeof watchStalls>[0],
      timeoutMs,
      (error) => {
        // With a breaker, its opening line says this (once).
        if (this.#breaker) return;
        log.fault(
          "stall",
          `No reply from ${this.where} for ${timeoutMs} ms; calls are served as misses while it reconnects`,
          error,
        );
      },
      this.#breaker,
    ));
    client.on("ready", () => {
      this.#lastConnectionError = undefined;
      log.recovered("connection");
      // A connection that passed its handshake and ready check proves the server answers.
      this.#breaker?.answered();
      // A restarted server has lost its scripts: register them again before calls arrive.
      if (this.#scripts) {
        registerScripts(client, this.#scripts).catch((error) =>
          this.#options.fault("script load", error)
        );
      }
    });
    return client;
  }

  async #ready(client: ProtocolClient): Promise<void> {
    await untilReady(client);
    await client.ping();
    await registerScripts(client, this.#scripts!);
  }
}

/** The Set commands a registry upkeep sends, which both client libraries have. */
interface SetCommands {
  srandmember(key: string, count: number): Promise<string[]>;
  srem(key: string, ...members: string[]): Promise<number>;
  sscan(key: string, cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
}
