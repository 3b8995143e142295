/**
 * Names the cause of a server fault an operator can act on (wrong credentials, an untrusted TLS
 * certificate, a server out of memory, a missing ACL permission), so the one log line a fault
 * produces says what to fix instead of only echoing a driver message.
 *
 * @module
 */

/** A recognised cause: its kind and a sentence saying what happened and what to check. */
export interface FaultCause {
  /** What kind of fault this is. */
  readonly kind: "auth" | "tls" | "oom" | "noperm" | "database";
  /** What happened and what to check, without any secret. */
  readonly summary: string;
}

const AUTH = /\bWRONGPASS\b|\bNOAUTH\b|invalid username-password|invalid password/i;
const OOM = /\bOOM\b|maxmemory/;
const NOPERM = /\bNOPERM\b/;
const DB_RANGE = /DB index is out of range|invalid DB index|SELECT is not allowed/i;
const TLS_MESSAGE =
  /certificate|\bcert\b|\bSSL\b|\bTLS\b|handshake|altnames|self[- ]signed|UnknownIssuer/i;
const TLS_CODE = /CERT|SSL|TLS/;

/**
 * The cause of `error` when it is one of the recognised kinds, else `undefined`.
 *
 * @param error What the client library rejected with or emitted.
 * @param envPrefix `REDIS` or `VALKEY`: the variables named in the advice.
 */
export function faultCause(error: unknown, envPrefix: string): FaultCause | undefined {
  if (!(error instanceof Error)) return undefined;
  const message = error.message ?? "";
  const code = String((error as { code?: unknown }).code ?? "");
  if (AUTH.test(message)) {
    return {
      kind: "auth",
      summary: `authentication failed: the server refused the user name or password (check ` +
        `${envPrefix}_USERNAME and ${envPrefix}_PASSWORD, or the user:password part of ` +
        `${envPrefix}_URL)`,
    };
  }
  if (OOM.test(message)) {
    return {
      kind: "oom",
      summary: "the server is out of memory (maxmemory reached and its maxmemory-policy evicts " +
        "nothing): nothing was stored; raise maxmemory or use an evicting policy such as " +
        "allkeys-lru",
    };
  }
  if (DB_RANGE.test(message) || commandName(error) === "select") {
    return {
      kind: "database",
      summary: `the server refused to select the configured database (${message.trim()}): ` +
        `nothing was read or written; set ${envPrefix}_DB (or the /db path of ${envPrefix}_URL) ` +
        "to a database the server has (0 to its `databases` setting minus one, 0-15 by default)",
    };
  }
  if (NOPERM.test(message)) {
    return {
      kind: "noperm",
      summary: "the server's ACL denies this user a command or key the cache needs (grant it " +
        "the key pattern <prefix>* and GET, MGET, EXISTS, SCAN, EVALSHA, SCRIPT LOAD, PING)",
    };
  }
  if (TLS_CODE.test(code) || TLS_MESSAGE.test(message)) {
    return {
      kind: "tls",
      summary: `the TLS handshake failed: the server's certificate is not trusted or does not ` +
        `match the host (check ${envPrefix}_TLS_CA, the CA file that signed it, and the host ` +
        `name)`,
    };
  }
  return undefined;
}

/**
 * The command a reply error answered, as ioredis and iovalkey attach it (`error.command.name`),
 * lower case; `undefined` for errors that are not replies.
 *
 * @param error What the client library rejected with or emitted.
 */
export function commandName(error: unknown): string | undefined {
  const command = (error as { command?: { name?: unknown } } | null)?.command;
  return typeof command?.name === "string" ? command.name.toLowerCase() : undefined;
}
