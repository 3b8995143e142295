/**
 * Bounds every command of a cluster client by the timeout, with one interval timer per client
 * instead of one timer per command.
 *
 * A cluster connection cannot use the stall watch of a single server (stall_watch.ts): with one
 * master down and the others answering, replies keep arriving, so "no reply for the timeout"
 * never happens while the commands routed to the dead master wait, retry (ioredis follows
 * MOVED / ASK / TRYAGAIN / CLUSTERDOWN and connection losses with short delays) or sit in a hung
 * socket. This watch records when each command was sent (a Map kept in send order, so a check
 * stops at the first command still within its time) and, a few times per timeout while commands
 * are in flight, rejects those older than the timeout. Each call therefore resolves (as a miss)
 * within the timeout plus one check period, while commands to healthy masters are untouched.
 *
 * Every settled command is also reported to its master's circuit breaker (see
 * src/circuit_breaker.ts and `BreakerFeed`), which a timeout opens.
 *
 * @module
 */

import { clearInterval, setInterval } from "node:timers";
import { checkPeriod, type StallHandler, type StallWatch } from "./stall_watch.ts";

/** A command object of ioredis / iovalkey: rejecting it settles the caller's promise. */
export interface RejectableCommand {
  reject(error: Error): void;
}

/**
 * Where a cluster's settled commands are reported, for the circuit breaker of the master each
 * was routed to. `succeeded` is only called while `watching` is true (no breaker has seen a fault
 * lately), so a healthy cluster pays nothing per command.
 */
export interface BreakerFeed {
  /** `true` while some master's breaker counts faults or is open. */
  readonly watching: boolean;
  /** A command was answered. */
  succeeded(command: RejectableCommand): void;
  /** A command failed; `timedOut` when this watch rejected it for its deadline. */
  failed(command: RejectableCommand, error: unknown, timedOut: boolean): void;
  /**
   * The error to reject a command with instead of sending it, when its master's breaker is open
   * (only asked while `watching`): a command queued before the breaker opened (an
   * auto-pipelined batch waiting for the one in flight) must not wait the timeout after it.
   */
  refusal(command: RejectableCommand): Error | undefined;
}

/** The part of a cluster client the watch drives. */
interface WatchedCluster {
  sendCommand(command: RejectableCommand, ...rest: unknown[]): Promise<unknown>;
}

/**
 * Wraps `client.sendCommand` so every command is rejected once it has waited `timeoutMs`.
 *
 * @param client The cluster client; its `sendCommand` is wrapped in place.
 * @param timeoutMs How long one command may take.
 * @param onTimeout Told once per check that rejected commands (for the fault log).
 * @param feed Where settled commands are reported for the masters' breakers.
 * @returns The watch, to stop on close.
 */
export function watchDeadlines(
  client: WatchedCluster,
  timeoutMs: number,
  onTimeout: StallHandler,
  feed?: BreakerFeed,
): StallWatch {
  const period = checkPeriod(timeoutMs);
  const send = client.sendCommand.bind(client);
  const sentAt = new Map<RejectableCommand, number>();
  let timer: ReturnType<typeof setInterval> | undefined;

  const check = () => {
    if (sentAt.size === 0) {
      clearInterval(timer);
      timer = undefined;
      return;
    }
    const oldest = Date.now() - timeoutMs;
    let error: Error | undefined;
    for (const [command, at] of sentAt) {
      if (at > oldest) break;
      sentAt.delete(command);
      error ??= new Error(`Command timed out: no reply for ${timeoutMs} ms`);
      feed?.failed(command, error, true);
      command.reject(error);
    }
    if (error) onTimeout(error);
  };

  client.sendCommand = (command: RejectableCommand, ...rest: unknown[]) => {
    if (feed?.watching) {
      const refused = feed.refusal(command);
      if (refused !== undefined) {
        command.reject(refused);
        return (command as RejectableCommand & { promise: Promise<unknown> }).promise;
      }
    }
    const promise = send(command, ...rest);
    if (!sentAt.has(command)) {
      sentAt.set(command, Date.now());
      if (feed === undefined) {
        const settle = () => sentAt.delete(command);
        promise.then(settle, settle);
      } else {
        promise.then(() => {
          sentAt.delete(command);
          if (feed.watching) feed.succeeded(command);
        }, (error) => {
          // A command this watch timed out was reported when it rejected it.
          if (sentAt.delete(command)) feed.failed(command, error, false);
        });
      }
      if (timer === undefined) {
        timer = setInterval(check, period);
        timer.unref();
      }
    }
    return promise;
  };

  return {
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
    rejectAll(error: Error, which?: (command: RejectableCommand) => boolean) {
      for (const command of [...sentAt.keys()]) {
        if (which !== undefined && !which(command)) continue;
        sentAt.delete(command);
        command.reject(error);
      }
    },
  };
}
