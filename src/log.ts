/**
 * Rate-limited logging of infrastructure faults: the first fault of a kind is logged at once,
 * repeats within the interval are counted and summarised in the next line, so a server outage
 * under load writes a handful of lines instead of one per call.
 *
 * @module
 */

/**
 * Where the cache writes its warnings. Defaults to `console.warn`.
 *
 * @example A logger that collects lines
 * ```ts
 * import { MemoryCache, type CacheLogger } from "@core-lib/cache";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const logger: CacheLogger = { warn: (line) => lines.push(line) };
 * const cache = new MemoryCache({ logger });
 * assert.equal(cache.name, "");
 * ```
 */
export interface CacheLogger {
  /** Receives one finished log line. */
  warn(line: string): void;
}

/** The default sink: `console.warn`. */
export const consoleLogger: CacheLogger = { warn: (line) => console.warn(line) };

const DEFAULT_INTERVAL_MS = 30_000;

interface KindState {
  lastLoggedAt: number;
  suppressed: number;
}

/**
 * Logs each kind of fault at most once per interval; `secrets` are masked out of every line so a
 * password that leaked into a driver message never reaches the log.
 */
export class FaultLog {
  readonly #sink: CacheLogger;
  readonly #intervalMs: number;
  readonly #secrets: string[];
  readonly #kinds = new Map<string, KindState>();

  constructor(
    sink: CacheLogger = consoleLogger,
    secrets: (string | undefined)[] = [],
    intervalMs = DEFAULT_INTERVAL_MS,
  ) {
    this.#sink = sink;
    this.#intervalMs = intervalMs;
    this.#secrets = secrets.filter((s): s is string => typeof s === "string" && s.length > 0);
  }

  /** Records a fault of `kind`; writes a line unless one of that kind was written recently. */
  fault(kind: string, message: string, error?: unknown): void {
    const now = Date.now();
    const state = this.#kinds.get(kind);
    if (state && now - state.lastLoggedAt < this.#intervalMs) {
      state.suppressed++;
      return;
    }
    const repeats = state?.suppressed ? ` (${state.suppressed} similar since the last report)` : "";
    this.#kinds.set(kind, { lastLoggedAt: now, suppressed: 0 });
    this.#write(`[core-lib/cache] ${message}${describe(error)}${repeats}`);
  }

  /** Forgets a kind once it has recovered, so the next outage is reported at once. */
  recovered(kind: string): void {
    if (this.#kinds.size > 0) this.#kinds.delete(kind);
  }

  /** Writes an informational line, masked like the fault lines. */
  info(message: string): void {
    this.#write(`[core-lib/cache] ${message}`);
  }

  #write(line: string): void {
    let masked = line;
    for (const secret of this.#secrets) masked = masked.split(secret).join("***");
    try {
      this.#sink.warn(masked);
    } catch {
      // A broken logger must never turn a cache miss into a crash.
    }
  }
}

function describe(error: unknown): string {
  if (error === undefined) return "";
  const text = error instanceof Error ? error.message : String(error);
  return text ? `: ${text}` : "";
}
