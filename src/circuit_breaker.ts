/**
 * One circuit breaker per connection target (the server, or one master of a cluster): after a few
 * consecutive faults, or one timeout, the provider stops sending commands there, so a hung or
 * dead server costs one timeout instead of one per call; a background PING every probe interval
 * closes it again at the first answer.
 *
 * The breaker is fed by the watches that already see every command settle (src/stall_watch.ts on
 * a single server, src/deadline_watch.ts in a cluster), so a healthy target pays one assignment
 * per command for it. A timeout opens it at once: a command that waited the whole timeout is the
 * cost the breaker exists to pay only once, and waiting for `threshold` of them would make a
 * sequential caller pay it `threshold` times. Fast faults (a refused or reset connection) count
 * towards `threshold`, so one dropped connection that reconnects at once opens nothing.
 *
 * @module
 */

import { clearInterval, setInterval } from "node:timers";

/** A breaker's settings, resolved. */
export interface BreakerSettings {
  /** Consecutive fast faults (connection errors) that open the breaker. */
  readonly threshold: number;
  /** Milliseconds between the PINGs that probe an open target. */
  readonly probeIntervalMs: number;
}

/** What a breaker reports, and how it probes its target. */
export interface BreakerHooks {
  /**
   * One PING of the target, bounded by the timeout; resolves when it answered. Never called while
   * a probe is still waiting.
   */
  probe(): Promise<unknown>;
  /** The breaker opened: `error` is the fault that opened it. */
  opened(target: string, error: unknown): void;
  /** The breaker closed after being open for `openMs`. */
  closed(target: string, openMs: number): void;
}

/** The error a call gets, at once, while its target's breaker is open. */
export class CircuitOpenError extends Error {
  /** The target whose breaker is open (`host:port`). */
  readonly target: string;

  /** @param target The target whose breaker is open. */
  constructor(target: string) {
    super(`Circuit open for ${target}: not sent; it answered no command recently`);
    this.name = "CircuitOpenError";
    this.target = target;
  }
}

/**
 * Whether `error` is the server's own reply (`WRONGTYPE`, `NOSCRIPT`, `OOM`, ...): the target
 * answered, so the breaker counts it as a success.
 */
export function isServerReply(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === "ReplyError";
}

/** One target's breaker. */
export class CircuitBreaker {
  /** The target, `host:port`. */
  readonly target: string;
  /** `true` while calls to the target are refused. */
  open = false;
  /** Consecutive fast faults since the last answer. */
  #faults = 0;
  #openedAt = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #probing = false;
  /** Set by `stop()`: the cache closed, the breaker neither opens, probes nor reports again. */
  #stopped = false;
  readonly #settings: BreakerSettings;
  readonly #hooks: BreakerHooks;
  /** A rejection handed to every refused call (one object, created once). */
  readonly refusal: Promise<never>;

  /**
   * @param target The target, for messages.
   * @param settings Threshold and probe interval.
   * @param hooks How to probe, and where openings and closings go.
   */
  constructor(target: string, settings: BreakerSettings, hooks: BreakerHooks) {
    this.target = target;
    this.#settings = settings;
    this.#hooks = hooks;
    this.refusal = Promise.reject(new CircuitOpenError(target));
    // Every refused call awaits this promise; it must never count as unhandled.
    this.refusal.catch(() => {});
  }

  /** The target answered a command. */
  succeeded(): void {
    this.#faults = 0;
  }

  /**
   * A command to the target failed. A server reply counts as an answer; a timeout opens the
   * breaker at once; other faults open it after `threshold` in a row.
   */
  failed(error: unknown, timedOut = false): void {
    if (isServerReply(error)) {
      this.#faults = 0;
      return;
    }
    if (error instanceof CircuitOpenError || this.open || this.#stopped) return;
    if (timedOut || ++this.#faults >= this.#settings.threshold) this.#open(error);
  }

  /** The target proved it answers (a probe, a connection that became ready): closes the breaker. */
  answered(): void {
    this.#faults = 0;
    if (!this.open || this.#stopped) return;
    this.open = false;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#hooks.closed(this.target, Date.now() - this.#openedAt);
  }

  /**
   * Stops probing, for good (the cache closes): the commands that closing the connections fails
   * afterwards open nothing, so no probe runs, nothing is logged or reported after `close()`.
   */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #open(error: unknown): void {
    this.open = true;
    this.#openedAt = Date.now();
    this.#hooks.opened(this.target, error);
    this.#timer = setInterval(() => this.#probe(), this.#settings.probeIntervalMs);
    this.#timer.unref();
  }

  #probe(): void {
    if (this.#probing || !this.open || this.#stopped) return;
    this.#probing = true;
    let probe: Promise<unknown>;
    try {
      probe = this.#hooks.probe();
    } catch {
      this.#probing = false;
      return;
    }
    probe.then(
      () => {
        this.#probing = false;
        this.answered();
      },
      () => {
        this.#probing = false;
      },
    );
  }
}
