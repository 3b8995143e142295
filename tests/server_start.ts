/**
 * What starting any test server needs, whether as a local process (tests/harness.ts) or in a
 * container (tests/container_server.ts): the loopback address, the server's arguments, and the
 * readiness check (PING on a raw socket).
 *
 * Runs unchanged under Deno and Node 20: only `node:` modules.
 */

import { readFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { SpawnOptions } from "./harness.ts";

/** Every test server listens on loopback only. */
export const HOST = "127.0.0.1";
/** How long a server may take to answer its first PING. */
export const READY_TIMEOUT_MS = 10_000;

/**
 * The server's command-line arguments: its port (or TLS port), loopback bind, no persistence,
 * its log file, a password, then the caller's extra arguments.
 */
export function serverArgs(
  port: number,
  dir: string,
  logPath: string,
  options: SpawnOptions,
): string[] {
  const tls = options.tlsFiles;
  const ports = tls
    ? [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      tls.cert,
      "--tls-key-file",
      tls.key,
      "--tls-ca-cert-file",
      tls.ca,
      "--tls-auth-clients",
      "no",
    ]
    : ["--port", String(port)];
  const args = [
    ...ports,
    "--bind",
    HOST,
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--protected-mode",
    "no",
    "--loglevel",
    "warning",
    "--logfile",
    logPath,
  ];
  if (options.password !== undefined) args.push("--requirepass", options.password);
  args.push(...(options.args ?? []));
  return args;
}

export function redisUrl(
  host: string,
  port: number,
  password: string | undefined,
  tls = false,
): string {
  const auth = password === undefined ? "" : `:${encodeURIComponent(password)}@`;
  return `${tls ? "rediss" : "redis"}://${auth}${host}:${port}`;
}

/**
 * Sends PING and INFO server (after AUTH when `password` is set) on a raw socket. `ok` when the
 * server answers `+PONG` and, if `pid` is given, reports that process id (so a foreign server
 * that won a port race is not taken for ours).
 */
export function pingOnce(
  port: number,
  password: string | undefined,
  pid: number | undefined,
  timeoutMs: number,
  ca?: string, // PEM text of the CA to trust: connect with TLS
): Promise<{ ok: boolean; reply: string }> {
  return new Promise((resolve) => {
    let reply = "";
    let settled = false;
    // With TLS the first write waits for the handshake ("secureConnect"); the CA is checked.
    const socket: Socket = ca === undefined
      ? connect({ host: HOST, port })
      : tlsConnect({ host: HOST, port, ca });
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, reply: reply.slice(0, 200) });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.setEncoding("utf8");
    socket.on(ca === undefined ? "connect" : "secureConnect", () => {
      const auth = password === undefined ? "" : respCommand("AUTH", password);
      socket.write(`${auth}PING\r\nINFO server\r\n`);
    });
    socket.on("data", (chunk: string) => {
      reply += chunk;
      const pong = reply.indexOf("+PONG\r\n");
      if (pong < 0) {
        if (/^-.*\r\n/m.test(reply)) finish(false); // LOADING, NOAUTH, WRONGPASS ...: try again
        return;
      }
      const info = reply.slice(pong + 7);
      if (/^-.*\r\n/.test(info)) return finish(true); // INFO renamed away: cannot check the pid
      const match = info.match(/process_id:(\d+)\r\n/);
      if (match) finish(pid === undefined || Number(match[1]) === pid);
    });
    socket.on("error", () => finish(false));
    socket.on("close", () => finish(false));
  });
}

export function respCommand(...parts: string[]): string {
  let out = `*${parts.length}\r\n`;
  for (const part of parts) out += `$${new TextEncoder().encode(part).length}\r\n${part}\r\n`;
  return out;
}

/**
 * redis-cli's connection arguments for a started server: its loopback port, TLS with the
 * harness's CA, and its password.
 */
export function startedCliArgs(
  port: number,
  tlsCa: string | undefined,
  password?: string,
): string[] {
  const conn = ["-h", HOST, "-p", String(port)];
  if (tlsCa !== undefined) conn.push("--tls", "--cacert", tlsCa);
  if (password !== undefined) conn.push("-a", password, "--no-auth-warning");
  return conn;
}

/**
 * The last 30 non-empty lines of what a server printed (`output`: its stdout / stderr, where
 * config errors go before --logfile applies) followed by its log file, for a failed start.
 */
export async function logTail(output: string, logPath: string): Promise<string> {
  let log = "";
  try {
    log = await readFile(logPath, "utf8");
  } catch {
    // no log yet
  }
  const lines = `${output}\n${log}`.split("\n").filter((l) => l.trim() !== "");
  return lines.slice(-30).join("\n") || "(no output)";
}
