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
 * @module
 */

import { clearInterval, setInterval } from "node:timers";
import { checkPeriod, type StallHandler, type StallWatch } from "./stall_watch.ts";

/** A command object of ioredis / iovalkey: rejecting it settles the caller's promise. */
interface RejectableCommand {
  reject(error: Error): void;
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
 * @returns The watch, to stop on close.
 */
export function watchDeadlines(
  client: WatchedCluster,
  timeoutMs: number,
  onTimeout: StallHandler,
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
      command.reject(error);
    }
    if (error) onTimeout(error);
  };

  client.sendCommand = (command: RejectableCommand, ...rest: unknown[]) => {
    const promise = send(command, ...rest);
    if (!sentAt.has(command)) {
      sentAt.set(command, Date.now());
      const settle = () => sentAt.delete(command);
      promise.then(settle, settle);
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
  };
}
