/**
 * The JSON lines a bench's child process prints, read as they come (scripts/bench.ts's near-cache
 * worker, scripts/bench_tracking.ts's readers): a child reports by printing one JSON object per
 * line on stdout, and the parent waits for the first line that carries a given field. Uses only
 * `node:` modules, so it runs unchanged under Node (bench:node).
 *
 * @module
 */

import type { ChildProcess } from "node:child_process";

/** A child process's JSON lines, its stdin and its end. */
export interface ChildLines {
  /** The process. */
  readonly process: ChildProcess;
  /**
   * The value of `field` in the first line that has it; rejects (and kills the child) when the
   * child exits without one or `timeoutMs` passes, with the end of its stderr.
   */
  line<T>(field: string, timeoutMs: number): Promise<T>;
  /** Writes `text` and a newline to the child's stdin. */
  send(text: string): void;
  /** Kills the child. */
  kill(): void;
}

/**
 * Follows `child` (spawned with piped stdio), whose JSON lines are named `name` in errors.
 *
 * @example A child that reports once
 * ```ts ignore
 * const worker = childLines(spawn(process.execPath, [file], { stdio: "pipe" }), "worker");
 * const ready = await worker.line<{ entries: number }>("ready", 60_000);
 * ```
 */
export function childLines(child: ChildProcess, name: string): ChildLines {
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  let stderr = "";
  let buffered = "";
  let exited: number | null | undefined;
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line.startsWith("{")) lines.push(JSON.parse(line));
      wake();
    }
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => stderr += chunk);
  child.on("exit", (code) => {
    exited = code;
    wake();
  });
  return {
    process: child,
    async line<T>(field: string, timeoutMs: number): Promise<T> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const found = lines.find((l) => field in l);
        if (found) return found[field] as T;
        if (exited !== undefined || performance.now() > deadline) {
          child.kill();
          throw new Error(`${name}: no "${field}" (exit ${exited}): ${stderr.slice(-2000)}`);
        }
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 100);
        });
      }
    },
    send: (text) => child.stdin!.write(text + "\n"),
    kill: () => child.kill(),
  };
}
