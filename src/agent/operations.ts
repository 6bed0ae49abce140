// The agent's operation registry: every source and target operation by key (the probe UID; `<uid>.target` for
// the target side), remembered for `retainFinishedMs` after it finishes (expiry through the injected clock), and
// the work folder each one owns under the work root. State is in memory: a restarted agent answers 404 for an
// old UID, and the controller fails that probe.

import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../kube/clock.ts';
import type { OperationStatus } from './protocol.ts';

export interface Operation {
  status: OperationStatus;
  /** The operation's work folder (removed when it finishes). */
  dir: string;
  /** Settles when the operation has finished and cleaned up. */
  done: Promise<void>;
}

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
    this.clock.setTimeout(() => {
      const key = keyOf(op);
      if (this.ops.get(key) === op) this.ops.delete(key);
    }, this.retainMs);
  }

  /** DELETE: forget the UID and remove its artifacts. A running operation is left to finish (it thaws and cleans). */
  async forget(uid: string): Promise<void> {
    for (const key of [uid, targetKey(uid)]) {
      const op = this.ops.get(key);
      if (op && op.status.state === 'Running') continue;
      this.ops.delete(key);
      await rm(this.dirOf(key), { recursive: true, force: true });
    }
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
