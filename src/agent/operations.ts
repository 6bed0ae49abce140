// The agent's operation registry: every source and target operation by key (the probe UID; `<uid>.target` for
// the target side), remembered for `retainFinishedMs` after it finishes (expiry through the injected clock), and
// the work folder each one owns under the work root. One operation per key and per container at a time: `claim`
// registers synchronously (the caller calls it before its first await, so two concurrent PUTs cannot both pass a
// check). DELETE cancels a running operation through its AbortController and waits for it to clean up. State is
// in memory: a restarted agent answers 404 for an old UID, and the controller fails that probe.

import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep, type Clock } from '../kube/clock.ts';
import { HttpError } from './errors.ts';
import type { OperationStatus } from '../agent-api/protocol.ts';

export interface Operation {
  status: OperationStatus;
  /** The operation's work folder (removed when it finishes). */
  dir: string;
  /** Settles when the operation has finished and cleaned up. */
  done: Promise<void>;
  /** Cancels it (DELETE); the operation stops at its next step and leaves the workload running. */
  abort?: AbortController;
  /** The container it dumps: one operation per container at a time. */
  container?: string;
  /** Its PUT's checks are still running: a second PUT for the UID is refused (409), not answered with it. */
  admitting?: boolean;
  /** DELETE came while it ran: forgotten as soon as it has finished. */
  forgotten?: boolean;
}

/** How long a DELETE waits for a cancelled operation to finish (CRIU interrupted, workload thawed, folder gone). */
export const CANCEL_WAIT_MS = 8_000;

/** The registry key of a target-side operation (a node can be source and target of one probe in tests). */
export function targetKey(uid: string): string {
  return `${uid}.target`;
}

function keyOf(op: Operation): string {
  return op.status.role === 'target' ? targetKey(op.status.uid) : op.status.uid;
}

export class OperationRegistry {
  private readonly ops = new Map<string, Operation>();
  private readonly workRoot: string;
  private readonly retainMs: number;
  private readonly clock: Clock;

  constructor(o: { workRoot: string; retainFinishedMs: number; clock: Clock }) {
    this.workRoot = o.workRoot;
    this.retainMs = o.retainFinishedMs;
    this.clock = o.clock;
  }

  get(key: string): Operation | undefined {
    return this.ops.get(key);
  }

  /** Registers a new operation (replacing a finished one with the same key). */
  add(op: Operation): void {
    this.ops.set(keyOf(op), op);
  }

  /**
   * Registers `op` unless an operation with its key is running, or one for its container (409 with the reason
   * and Retry-After either way). Synchronous: call it before the first await of the request.
   */
  claim(op: Operation): void {
    const key = keyOf(op);
    const same = this.ops.get(key);
    if (same !== undefined && same.status.state === 'Running') {
      throw new HttpError(409, 'OperationInProgress', `an operation for probe ${op.status.uid} is already running on this agent (started ${same.status.startedAt}); GET /v1/probes/${op.status.uid} for its state`, 1);
    }
    if (op.container !== undefined) {
      for (const o of this.ops.values()) {
        if (o.container === op.container && o.status.state === 'Running') {
          throw new HttpError(409, 'ContainerBusy', `container ${op.container} is being probed by probe ${o.status.uid}; one operation per container at a time`, 1);
        }
      }
    }
    this.ops.set(key, op);
  }

  /** Removes an operation whose admission failed (when it is still the registered one). */
  release(op: Operation): void {
    const key = keyOf(op);
    if (this.ops.get(key) === op) this.ops.delete(key);
  }

  /** The work folder of the operation with this key. */
  dirOf(key: string): string {
    return join(this.workRoot, key);
  }

  /** What every running operation's `done` is, for a graceful shutdown. */
  running(): Promise<void>[] {
    return [...this.ops.values()].filter((o) => o.status.state === 'Running').map((o) => o.done);
  }

  /** A finished operation is forgotten `retainFinishedMs` later (unless replaced meanwhile). */
  expireLater(op: Operation): void {
    if (op.forgotten === true) {
      this.release(op);
      return;
    }
    this.clock.setTimeout(() => {
      const key = keyOf(op);
      if (this.ops.get(key) === op) this.ops.delete(key);
    }, this.retainMs);
  }

  /**
   * DELETE: cancel the UID's running operations, forget them and remove their artifacts. Waits up to `waitMs` for a
   * cancelled operation to finish (it interrupts CRIU, makes the workload run, removes its folder); resolves true
   * when one is still finishing (it is forgotten when it has).
   */
  async forget(uid: string, waitMs = CANCEL_WAIT_MS): Promise<boolean> {
    let pending = false;
    for (const key of [uid, targetKey(uid)]) {
      const op = this.ops.get(key);
      if (op === undefined) {
        await rm(this.dirOf(key), { recursive: true, force: true });
        continue;
      }
      if (op.status.state === 'Running') {
        op.forgotten = true;
        op.abort?.abort(new Error(`probe ${uid} was deleted`));
        const stop = new AbortController();
        const finished = await Promise.race([op.done.then(() => true, () => true), sleep(this.clock, waitMs, stop.signal).then(() => false)]);
        stop.abort();
        if (!finished || op.status.state === 'Running') {
          pending = true;
          continue;
        }
      }
      this.release(op);
      await rm(this.dirOf(key), { recursive: true, force: true });
    }
    return pending;
  }

  /** Deletes what a previous run of the agent left in the work folder (after recoverFrozen has thawed it). */
  async sweep(): Promise<string[]> {
    await mkdir(this.workRoot, { recursive: true, mode: 0o700 });
    const removed: string[] = [];
    for (const n of await readdir(this.workRoot)) {
      if (this.ops.has(n)) continue;
      await rm(join(this.workRoot, n), { recursive: true, force: true });
      removed.push(n);
    }
    return removed;
  }
}
