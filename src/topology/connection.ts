/**
 * What both topologies do the same way with a connection: load the scripts, the client library and
 * the TLS options before the first client is made, wait for a client to be ready, bound a call by
 * the timeout, word a connection fault, and drop a connection at once.
 *
 * @module
 */

import { isIP } from "node:net";
import type { ProtocolClient } from "../client_types.ts";
import type { RedisConfig } from "../config.ts";
import { CacheConfigError, CacheDependencyError } from "../errors.ts";
import { faultCause } from "../faults.ts";
import type { FaultLog } from "../log.ts";
import { readTextFile } from "../runtime.ts";
import { loadScriptSources, type Script, type ScriptName } from "../scripts.ts";
import type { TopologyOptions } from "../servers.ts";

/** What a topology's `open()` needs before it makes its clients. */
export interface OpenParts<C> {
  /** The Lua scripts' sources. */
  scripts: Record<ScriptName, Script>;
  /** The TLS options, when the config asks for TLS. */
  tls: Record<string, unknown> | undefined;
  /** The client library's class. */
  Library: C;
}

/**
 * Loads what a topology's `open()` needs: the scripts' sources, the TLS options (an unreadable CA
 * file is a `CacheConfigError`) and the client library's class (a missing package is a
 * `CacheDependencyError`). `undefined` when `closed()` became true during one of the awaits: a
 * `close()` then found no connection to close, so none may be opened.
 */
export async function loadOpenParts<C>(
  options: TopologyOptions,
  load: () => Promise<C>,
  closed: () => boolean,
): Promise<OpenParts<C> | undefined> {
  const scripts = await loadScriptSources();
  const { config, envPrefix } = options;
  const tls = config.tls ? await tlsOptions(config, envPrefix) : undefined;
  if (closed()) return undefined;
  const Library = await loadLibrary(load, options.clientPackage);
  if (closed()) return undefined;
  return { scripts, tls, Library };
}

/** Loads a class of the client library; a missing package is a `CacheDependencyError`. */
export async function loadLibrary<C>(load: () => Promise<C>, name: string): Promise<C> {
  try {
    return await load();
  } catch (error) {
    throw new CacheDependencyError(
      `Cannot load the "${name}" package: install it (npm install ${name}) or pick another provider`,
      { cause: error },
    );
  }
}

/** The TLS options of a client; an unreadable CA file is a `CacheConfigError`. */
export async function tlsOptions(
  config: RedisConfig,
  envPrefix: string,
): Promise<Record<string, unknown>> {
  // `servername` (SNI) lets certificate checks match the configured host name. An IP address is
  // not a valid SNI name (RFC 6066; Node rejects it): the certificate is then checked against the
  // IP address, which must be among its subjectAltNames.
  const options: Record<string, unknown> = isIP(config.host) === 0
    ? { servername: config.host }
    : {};
  if (config.tlsCa) {
    try {
      options.ca = await readTextFile(config.tlsCa);
    } catch (error) {
      throw new CacheConfigError(
        `Cannot read the TLS CA file ${config.tlsCa} (${envPrefix}_TLS_CA): ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }
  return options;
}

/** Connects a lazy client, or waits for one already connecting; rejects if it ends first. */
export async function untilReady(client: ProtocolClient): Promise<void> {
  if (client.status === "wait") await client.connect();
  else if (client.status !== "ready") {
    await new Promise<void>((resolve, reject) => {
      client.once("ready", () => resolve());
      client.once("end", () => reject(new Error("connection closed")));
    });
  }
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Logs a connection's fault, with its cause when the error names one. */
export function connectionFault(
  log: FaultLog,
  envPrefix: string,
  where: string,
  error: unknown,
): void {
  const cause = faultCause(error, envPrefix);
  log.fault(
    "connection",
    cause ? `Connection to ${where} failed: ${cause.summary}` : `Connection to ${where} failed`,
    error,
  );
}

/**
 * Closes a connection now. `disconnect()` alone only half-closes the socket (FIN) and waits for
 * the server's side, which a hung server (SIGSTOP, a black hole) never sends: the socket, and
 * a `connect()` waiting on it, would live on and keep the process from exiting. Destroying the
 * stream ends both at once. A cluster client has no stream of its own: its `disconnect()`
 * closes every node's.
 */
export function dropConnection(client: ProtocolClient): void {
  client.disconnect();
  (client as { stream?: { destroy?: () => void } }).stream?.destroy?.();
}

/** Quits every client (drops one that is not ready or does not answer within the timeout). */
export async function closeAll(clients: ProtocolClient[], timeoutMs: number): Promise<void> {
  await Promise.all(clients.map(async (client) => {
    if (client.status !== "ready") return dropConnection(client);
    try {
      await withTimeout(client.quit(), timeoutMs, "quit");
    } catch {
      dropConnection(client);
    }
  }));
}

/**
 * Calls `command`; a throw before it goes out ("not connected") becomes a rejection, served as a
 * miss like any fault. Not an async function: a read on the hot path saves its promise.
 */
export function send<T>(command: () => Promise<T>): Promise<T> {
  try {
    return command();
  } catch (error) {
    return Promise.reject(error);
  }
}
