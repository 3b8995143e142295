/**
 * What a Redis-protocol provider's log lines say about its servers: a failed call
 * (`Cache get failed at <where>: <cause>; served as a miss`), a failed connect, a circuit breaker
 * opening and closing, and the environment variables (`REDIS_*` or `VALKEY_*`) the advice in them
 * names. The lines go through the provider's rate-limited {@linkcode FaultLog} (src/log.ts); the
 * causes are named by src/faults.ts.
 *
 * @module
 */

import { CircuitOpenError } from "./circuit_breaker.ts";
import { faultCause } from "./faults.ts";
import type { FaultLog } from "./log.ts";
import type { Metrics } from "./stats.ts";

/** What a {@linkcode ProviderLog} works with. */
export interface ProviderLogContext {
  /** The provider's rate-limited log. */
  log: FaultLog;
  /** The provider's metrics (fault and circuit counters, the OpenTelemetry error type). */
  metrics: Metrics;
  /** The client library; read when a line is written (a subclass sets it after construction). */
  clientPackage(): "ioredis" | "iovalkey";
  /** Where the servers are, as the lines name them; read when a line is written. */
  where(): string;
  /** The circuit breaker's probe interval, which its opening line names. */
  probeIntervalMs: number | undefined;
}

/** One provider's lines about its servers' faults, connects and circuit breakers. */
export class ProviderLog {
  readonly #ctx: ProviderLogContext;

  /** @param context The provider's log, metrics, client library and servers' address. */
  constructor(context: ProviderLogContext) {
    this.#ctx = context;
  }

  /** `REDIS` or `VALKEY`: the environment variables a fault message points at. */
  get envPrefix(): string {
    return this.#ctx.clientPackage() === "iovalkey" ? "VALKEY" : "REDIS";
  }

  /** A call of `operation` failed and is served as a miss: noted, and one line (rate-limited). */
  fault(operation: string, error: unknown): void {
    const { log, metrics } = this.#ctx;
    // The OpenTelemetry recorder names the failed call's error.type after it.
    metrics.noteFault(error);
    // A call refused by an open breaker: the breaker's opening line said it once.
    if (error instanceof CircuitOpenError) return;
    const cause = faultCause(error, this.envPrefix);
    const where = this.#ctx.where();
    log.fault(
      operation,
      cause
        ? `Cache ${operation} failed at ${where}: ${cause.summary}; served as a miss`
        : `Cache ${operation} failed at ${where}; served as a miss`,
      error,
    );
  }

  /**
   * `connect()` failed with `error`. The connect promise often only says "Connection is closed":
   * the connection's own last error (`lastConnectionError`: WRONGPASS, an untrusted certificate)
   * tells the operator what to fix, so the line names that cause when `error` has none.
   */
  connectFailed(error: unknown, lastConnectionError: unknown): void {
    const prefix = this.envPrefix;
    const own = faultCause(error, prefix);
    const cause = own ?? faultCause(lastConnectionError, prefix);
    const client = this.#ctx.clientPackage();
    const where = this.#ctx.where();
    this.#ctx.log.fault(
      "connect",
      cause
        ? `Cannot connect to the ${client} server at ${where}: ${cause.summary}; caching is off until it answers (retrying in the background)`
        : `Cannot reach ${client} server at ${where}; caching is off until it answers (retrying in the background)`,
      own || !cause ? error : lastConnectionError,
    );
  }

  /** A breaker opened or closed: one line each, a counter and an event. */
  circuit(target: string, open: boolean, error: unknown, openMs = 0): void {
    const { log, metrics, probeIntervalMs } = this.#ctx;
    metrics.circuit(target, open, openMs);
    if (open) {
      const why = error instanceof Error && error.message ? ` (${error.message})` : "";
      log.info(
        `Circuit breaker opened for ${target}${why}: its calls are served as misses at once, ` +
          `without being sent, until it answers a PING (probed every ${probeIntervalMs} ms)`,
      );
    } else {
      log.info(
        `Circuit breaker closed for ${target}: it answered again after ${Math.round(openMs)} ms`,
      );
    }
  }
}
