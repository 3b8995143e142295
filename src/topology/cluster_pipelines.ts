/**
 * The pipelines of a cluster's coalesced commands: the GETs, MGETs and resendable script calls
 * the coalescer sends at the end of a tick (src/coalesce.ts), gathered and sent as one explicit
 * pipeline per master, on the same `Cluster` client as every other command, so that a command
 * sent after them reaches each master after them. Also the commands of work off every caller's
 * path (the registry sample after a write), which wait for the next of those pipelines.
 *
 * A pipeline does not wait out a reshard: at the first redirection (MOVED, ASK, TRYAGAIN,
 * CLUSTERDOWN) or a dropped connection, each command that met it is sent again on its own, which
 * the client follows and retries under the deadline watch, unless half the timeout is spent
 * already. (ioredis would retry a whole pipeline only when every command in it failed the same way
 * and the others were read-only, after a delay, with their deadlines started anew.) A NOSCRIPT
 * reply also sends the script again on its own, which loads it first.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { ClusterClient } from "../client_types.ts";
import { keySlot } from "../slots.ts";
import {
  type ClusterPipeline,
  isResendable,
  lastCommand,
  type PipelinedCommand,
  pipelineOf,
} from "./cluster_client.ts";
import { send } from "./connection.ts";

/** What {@linkcode ClusterPipelines} works with: the pool of its topology. */
export interface ClusterPipelinesContext {
  /** The pool's clients (none before `open()`). */
  clients(): readonly ClusterClient[];
  /** The pool slot of the next client in turn. */
  pick(): number;
  /** The provider's timeout, in milliseconds. */
  timeoutMs: number;
}

/** The commands gathered for one send: one pipeline per master, on one client of the pool. */
interface Cork {
  /** The pool slot of the client. */
  readonly index: number;
  /** When the cork was made: its commands' time for the rule of `#resend`. */
  readonly at: number;
  /**
   * The commands for each master's pipeline, by the node list of the slot table (what ioredis
   * requires one pipeline's keys to share).
   */
  readonly pipelines: Map<string, Gathered[]>;
}

/** A gathered command, and its caller. */
interface Gathered {
  /** Queues the command on its master's pipeline. */
  add(pipeline: ClusterPipeline): void;
  /** Sends the command on its own, on the client of pool slot `index`. */
  alone(index: number): Promise<unknown>;
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/** Gathers commands into one pipeline per master and sends them (see the module doc). */
export class ClusterPipelines {
  readonly #context: ClusterPipelinesContext;
  /** While `together()` or `soon()` runs: where `add` puts commands. */
  #cork: Cork | undefined;
  /** The commands `soon()` gathered, for the next `together()` or the end of the tick. */
  #soon: Cork | undefined;

  /** @param context The pool and the timeout. */
  constructor(context: ClusterPipelinesContext) {
    this.#context = context;
  }

  /** Whether commands are being gathered now: `add` takes them instead of their own send. */
  get gathering(): boolean {
    return this.#cork !== undefined;
  }

  /**
   * Runs `sendAll`, whose commands are gathered with `add`, then sends them: one pipeline per
   * master (one write each; a lone command on its own), all on one client of the pool, before
   * `together` returns. What `soon()` gathered goes with them.
   */
  together(sendAll: () => void): void {
    if (this.#cork !== undefined || this.#context.clients().length === 0) {
      sendAll();
      return;
    }
    const cork = this.#soon ?? this.#newCork();
    this.#soon = undefined;
    this.#gather(cork, sendAll);
    this.#send(cork);
  }

  /**
   * Runs `sendAll`, whose commands are gathered with `add`, to go out in the next `together()`'s
   * pipelines, or at the end of the tick. For work off every caller's path, whose order with other
   * calls does not matter: it then costs its masters no write of its own.
   */
  soon(sendAll: () => void): void {
    if (this.#cork !== undefined || this.#context.clients().length === 0) {
      sendAll();
      return;
    }
    let cork = this.#soon;
    if (cork === undefined) {
      const made = this.#newCork();
      this.#soon = cork = made;
      setImmediate(() => {
        if (this.#soon !== made) return;
        this.#soon = undefined;
        this.#send(made);
      });
    }
    this.#gather(cork, sendAll);
  }

  /**
   * Adds a command on `key`'s slot to its master's pipeline; only while `gathering`.
   *
   * @param key A key of the command (all of its keys share a slot).
   * @param add Queues the command on a pipeline.
   * @param alone Sends the command on its own, on the client of a pool slot.
   * @returns The command's reply.
   */
  add(
    key: string,
    add: (pipeline: ClusterPipeline) => void,
    alone: (index: number) => Promise<unknown>,
  ): Promise<unknown> {
    const cork = this.#cork!;
    const client = this.#context.clients()[cork.index];
    const nodes = (client as unknown as { slots: (string[] | undefined)[] }).slots[keySlot(key)];
    // No slot table yet: on its own, as the client takes it then.
    if (nodes === undefined) return send(() => alone(cork.index));
    const id = nodes.length === 1 ? nodes[0] : nodes.join(",");
    let gathered = cork.pipelines.get(id);
    if (gathered === undefined) {
      gathered = [];
      cork.pipelines.set(id, gathered);
    }
    const commands = gathered;
    return new Promise((resolve, reject) => commands.push({ add, alone, resolve, reject }));
  }

  #gather(cork: Cork, sendAll: () => void): void {
    this.#cork = cork;
    try {
      sendAll();
    } finally {
      this.#cork = undefined;
    }
  }

  #newCork(): Cork {
    return { index: this.#context.pick(), at: Date.now(), pipelines: new Map() };
  }

  /** Sends what `cork` gathered: one pipeline per master, or a lone command on its own. */
  #send(cork: Cork): void {
    for (const commands of cork.pipelines.values()) {
      if (commands.length === 1) {
        // A pipeline of one would only cost its own checks.
        const { alone, resolve, reject } = commands[0];
        send(() => alone(cork.index)).then(resolve, reject);
        continue;
      }
      const pipeline = pipelineOf(this.#context.clients()[cork.index]);
      // A redirection ends the pipeline at once, its commands sent again on their own (see the
      // module doc): ioredis counts redirections down from here, and at zero hands the replies
      // back.
      (pipeline as unknown as { leftRedirections: { value: number } }).leftRedirections = {
        value: 1,
      };
      const queued: PipelinedCommand[] = [];
      for (const { add, alone, resolve, reject } of commands) {
        add(pipeline);
        // The command's own reply, not exec()'s list: after a redirection ioredis may have queued
        // the commands again (with ASKING commands between them) before giving the list back.
        const command = lastCommand(pipeline);
        queued.push(command);
        command.promise.then(
          resolve,
          (error) => this.#resend(error, alone, cork.at).then(resolve, reject),
        );
      }
      // exec() rejects only before sending (the keys' slots no longer share a master): nothing
      // answers the commands then.
      pipeline.exec().catch((error) => {
        for (const command of queued) command.reject(error);
      });
    }
  }

  /**
   * A pipelined command that failed with `error`: sent again on its own when that may help (see
   * the module doc), else the error.
   */
  #resend(
    error: unknown,
    alone: (index: number) => Promise<unknown>,
    sentAt: number,
  ): Promise<unknown> {
    const again = error instanceof Error && (
      error.message.startsWith("NOSCRIPT") ||
      (isResendable(error) && Date.now() - sentAt <= this.#context.timeoutMs / 2)
    );
    return again ? send(() => alone(this.#context.pick())) : Promise.reject(error);
  }
}
