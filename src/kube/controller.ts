// A controller: N workers pulling keys from a WorkQueue and calling a level-based reconciler, with
// controller-runtime's contract (pkg/internal/controller):
//
//   reconcile(key) resolves            -> forget(key)                         result "success"
//   resolves { requeueAfterMs: n > 0 } -> forget(key), addAfter(key, n)       result "requeue_after"
//   resolves { requeue: true }         -> addRateLimited(key)                 result "requeue"
//   throws TerminalError               -> forget(key), log; no retry          result "error" (+ terminal)
//   throws an API error, errors.ts policy:
//     404 -> forget (the object is gone: done)                                result "success"
//     409 -> addRateLimited (first retry after 5 ms: "requeue now")           result "requeue"
//     429 -> addAfter(Retry-After), backoff kept                              result "requeue_after"
//   throws anything else               -> addRateLimited(key) (backoff)       result "error"
//
// A key is never reconciled by two workers at once (the queue's processing set). Informer handlers only
// enqueue keys (`namespace/name`); the reconciler reads the cached object.
//
// Shutdown: `stop(deadlineMs)` stops intake (the queue hands out nothing more), waits for in-flight
// reconciles, and after the deadline aborts the `signal` each reconcile got, then waits once more (briefly)
// and resolves `false` if some reconcile still did not return. `signal` in the options stops it too.

import { realClock, type Clock } from './clock.ts';
import { errorPolicy, safeMessage } from './errors.ts';
import { nullLogger, type Logger } from './logger.ts';
import type { ControllerMetrics, ReconcileResult } from './metrics.ts';
import type { WorkQueue } from './workqueue.ts';

/** Thrown by a reconciler for an error that retrying cannot fix (bad input). The key is not retried. */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export function isTerminalError(err: unknown): err is TerminalError {
  return err instanceof TerminalError;
}

export interface ReconcileResultSpec {
  /** Reconcile again after this many ms (and reset the key's backoff). */
  requeueAfterMs?: number;
  /** Reconcile again soon, with the key's rate-limited backoff. */
  requeue?: boolean;
}

/** What a reconcile gets besides its key. */
export interface ReconcileContext {
  /** Aborted when the controller's stop deadline passes: give up and leave things consistent. */
  signal: AbortSignal;
}

export type Reconciler = (key: string, ctx: ReconcileContext) => Promise<ReconcileResultSpec | void>;

export interface ControllerOptions {
  name: string;
  queue: WorkQueue;
  reconcile: Reconciler;
  /** Concurrent reconciles (different keys). Default 1. */
  workers?: number;
  metrics?: ControllerMetrics;
  logger?: Logger;
  /** Aborting it is `stop(defaultStopDeadlineMs)`. */
  signal?: AbortSignal;
  /** Deadline used when stopped through `signal`. Default 30 s. */
  defaultStopDeadlineMs?: number;
  clock?: Clock;
}

/** How one reconcile outcome maps onto the queue. Pure: exported for tests. */
export type QueueAction =
  | { kind: 'forget' }
  | { kind: 'after'; ms: number; forget: boolean }
  | { kind: 'rateLimited' };

export function outcomeOf(
  outcome: { ok: true; value: ReconcileResultSpec | void } | { ok: false; error: unknown },
): { action: QueueAction; result: ReconcileResult; error?: 'terminal' | 'retry' } {
  if (outcome.ok) {
    const v = outcome.value;
    if (v !== undefined && v.requeueAfterMs !== undefined && v.requeueAfterMs > 0) {
      return { action: { kind: 'after', ms: v.requeueAfterMs, forget: true }, result: 'requeue_after' };
    }
    if (v !== undefined && v.requeue === true) return { action: { kind: 'rateLimited' }, result: 'requeue' };
    return { action: { kind: 'forget' }, result: 'success' };
  }
  if (isTerminalError(outcome.error)) return { action: { kind: 'forget' }, result: 'error', error: 'terminal' };
  const policy = errorPolicy(outcome.error);
  switch (policy.action) {
    case 'done':
      return { action: { kind: 'forget' }, result: 'success' };
    case 'requeue':
      return { action: { kind: 'rateLimited' }, result: 'requeue' };
    case 'retryAfter':
      return { action: { kind: 'after', ms: policy.delayMs, forget: false }, result: 'requeue_after' };
    default:
      return { action: { kind: 'rateLimited' }, result: 'error', error: 'retry' };
  }
}

export class Controller {
  readonly name: string;
  private readonly opts: ControllerOptions;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly abort = new AbortController();
  private workers: Promise<void>[] = [];
  private started = false;
  private stopping: Promise<boolean> | undefined;

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.opts = opts;
    this.logger = (opts.logger ?? nullLogger()).child({ controller: opts.name });
    this.clock = opts.clock ?? realClock;
  }

  /** Starts the workers. Idempotent. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const n = Math.max(1, this.opts.workers ?? 1);
    this.opts.metrics?.setMaxConcurrent(n);
    for (let i = 0; i < n; i++) this.workers.push(this.worker());
    const signal = this.opts.signal;
    if (signal !== undefined) {
      const onAbort = (): void => void this.stop(this.opts.defaultStopDeadlineMs ?? 30_000);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    this.logger.info('controller started', { workers: n });
  }

  /** Resolves when every worker has exited (after `stop`). */
  async done(): Promise<void> {
    await Promise.all(this.workers);
  }

  /**
   * Stops intake and drains in-flight reconciles. Resolves true if all finished within `deadlineMs`
   * (or within a short grace period after their signal was aborted at the deadline).
   */
  stop(deadlineMs = 30_000): Promise<boolean> {
    this.stopping ??= this.doStop(deadlineMs);
    return this.stopping;
  }

  private async doStop(deadlineMs: number): Promise<boolean> {
    this.logger.info('controller stopping', { inFlight: this.opts.queue.inFlight(), deadlineMs });
    const drained = this.opts.queue.shutDownWithDrain().then(() => true);
    const timeout = (ms: number): Promise<boolean> =>
      new Promise((resolve) => this.clock.setTimeout(() => resolve(false), ms));
    let ok = await Promise.race([drained, timeout(deadlineMs)]);
    if (!ok) {
      this.logger.warn('stop deadline passed; aborting in-flight reconciles', { inFlight: this.opts.queue.inFlight() });
      this.abort.abort(new Error('controller stop deadline'));
      ok = await Promise.race([drained, timeout(Math.min(5_000, Math.max(100, deadlineMs / 10)))]);
    }
    if (ok) await this.done();
    this.logger.info('controller stopped', { drained: ok });
    return ok;
  }

  private async worker(): Promise<void> {
    const { queue } = this.opts;
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      await this.processOne(key);
    }
  }

  private async processOne(key: string): Promise<void> {
    const { queue, metrics, reconcile } = this.opts;
    const start = performance.now();
    metrics?.activeWorkers(1);
    let outcome: { ok: true; value: ReconcileResultSpec | void } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await reconcile(key, { signal: this.abort.signal }) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    const seconds = (performance.now() - start) / 1000;
    metrics?.activeWorkers(-1);
    const { action, result, error } = outcomeOf(outcome);
    try {
      switch (action.kind) {
        case 'forget':
          queue.forget(key);
          break;
        case 'after':
          if (action.forget) queue.forget(key);
          queue.addAfter(key, action.ms);
          break;
        case 'rateLimited':
          queue.addRateLimited(key);
          break;
      }
      metrics?.reconciled(result, seconds);
      if (error !== undefined) metrics?.error(error === 'terminal');
      if (!outcome.ok) {
        const fields = { key, result, error: safeMessage(outcome.error), retries: queue.numRequeues(key) };
        if (error === 'terminal') this.logger.error('reconcile failed terminally; not retrying', fields);
        else if (error === 'retry') this.logger.error('reconcile failed; will retry with backoff', fields);
        else this.logger.info('reconcile deferred by API policy', fields);
      } else {
        this.logger.debug('reconciled', { key, result, seconds });
      }
    } finally {
      queue.done(key);
    }
  }
}

/** Creates and starts a controller. */
export function runController(opts: ControllerOptions): Controller {
  const c = new Controller(opts);
  c.start();
  return c;
}
