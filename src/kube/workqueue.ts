// A rate-limited, delaying work queue of string keys (`namespace/name`), with client-go's workqueue contract:
//
// - **dirty + processing sets.** A key is queued at most once (`add` of a queued key is a no-op), and a key is
//   never handed to two workers at once: a key added while a worker holds it is marked dirty and queued again
//   only when that worker calls `done(key)`.
// - **addAfter(key, ms)** queues a key later; of several pending delays for one key, the earliest wins.
// - **addRateLimited(key)** queues a key after max(per-key exponential backoff, global token bucket delay):
//   per key 5 ms * 2^failures capped at 1000 s; globally 10 qps with a burst of 100 (client-go's
//   DefaultControllerRateLimiter). `forget(key)` resets the key's backoff; `numRequeues(key)` reads it.
// - **Shutdown.** `shutDown()` stops intake: later adds are ignored, pending delays are cancelled, and every
//   `get()` resolves `undefined`, including those waiting. Unlike client-go, keys still queued are NOT handed
//   out after shutdown (we stop intake and only finish what is in flight; level-based reconciling picks the
//   rest up after a restart or on the new leader). `shutDownWithDrain()` also resolves once every key handed
//   out has been `done`.
//
// Time comes from an injected `Clock`, so unit tests are deterministic.

import { realClock, type Clock, type TimerHandle } from './clock.ts';
import { TokenBucket } from './token-bucket.ts';

/** Hooks the controller uses to export workqueue_* metrics. All optional. */
export interface WorkQueueMetricsSink {
  /** A key was accepted by `add` (not a duplicate, not after shutdown). */
  added?(): void;
  /** `addRateLimited` was called. */
  retried?(): void;
  /** The number of keys waiting to be handed out changed. */
  depth?(n: number): void;
  /** A key waited this long (ms) between being queued and handed to a worker. */
  queued?(ms: number): void;
}

export interface RateLimiterOptions {
  /** First per-key delay, ms. Default 5. */
  baseDelayMs?: number;
  /** Largest per-key delay, ms. Default 1_000_000 (1000 s). */
  maxDelayMs?: number;
  /** Global token bucket refill rate. Default 10 per second. */
  qps?: number;
  /** Global token bucket size. Default 100. */
  burst?: number;
}

export interface WorkQueueOptions {
  /** Used in metrics labels and logs. */
  name?: string;
  clock?: Clock;
  rateLimiter?: RateLimiterOptions;
  metrics?: WorkQueueMetricsSink;
}

/** Per-key exponential backoff combined with a global token bucket, like client-go's default limiter. */
export class RateLimiter {
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly failures = new Map<string, number>();
  private readonly bucket: TokenBucket;

  constructor(opts: RateLimiterOptions = {}, clock: Clock = realClock) {
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 1_000_000;
    this.bucket = new TokenBucket({ perSecond: opts.qps ?? 10, burst: opts.burst ?? 100, clock });
  }

  /** The delay before `key` may be retried; counts one more failure for it and takes one global token. */
  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    // 2^n overflows to Infinity long before it matters; the cap handles it.
    const perKey = Math.min(this.baseDelayMs * 2 ** n, this.maxDelayMs);
    return Math.max(perKey, this.reserveToken());
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Reserves one token, possibly in the future; returns how long until it is available (ms). */
  private reserveToken(): number {
    return this.bucket.reserve();
  }
}

export class WorkQueue {
  readonly name: string;
  private readonly clock: Clock;
  private readonly limiter: RateLimiter;
  private readonly metrics: WorkQueueMetricsSink;
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly queuedAt = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; handle: TimerHandle }>();
  private waiters: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.name = opts.name ?? 'default';
    this.clock = opts.clock ?? realClock;
    this.limiter = new RateLimiter(opts.rateLimiter, this.clock);
    this.metrics = opts.metrics ?? {};
  }

  /** Queues `key` unless it is already queued; if a worker holds it, it is queued again after `done`. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.metrics.added?.();
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Queues `key` after `ms`. Of several pending delays for a key the earliest wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing !== undefined) {
      if (existing.at <= at) return;
      this.clock.clearTimeout(existing.handle);
    }
    const handle = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, handle });
  }

  /** Queues `key` after its backoff (and the global rate limit). */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.metrics.retried?.();
    this.addAfter(key, this.limiter.when(key));
  }

  /** Resets `key`'s backoff: call it when the key was handled successfully (or will never succeed). */
  forget(key: string): void {
    this.limiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.limiter.numRequeues(key);
  }

  /** The next key to work on; `undefined` once the queue is shut down. The caller must call `done(key)`. */
  async get(): Promise<string | undefined> {
    for (;;) {
      if (this.shuttingDown) return undefined;
      const key = this.queue.shift();
      if (key !== undefined) {
        this.processing.add(key);
        this.dirty.delete(key);
        const at = this.queuedAt.get(key);
        this.queuedAt.delete(key);
        if (at !== undefined) this.metrics.queued?.(this.clock.now() - at);
        this.metrics.depth?.(this.queue.length);
        return key;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Marks `key` as no longer being worked on; re-queues it if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    if (this.processing.size === 0 && this.drainWaiters.length > 0) {
      const ws = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of ws) w();
    }
  }

  /** Stops intake: adds are ignored, delays cancelled, and every `get()` resolves `undefined`. */
  shutDown(): void {
    if (!this.shuttingDown) {
      this.shuttingDown = true;
      for (const { handle } of this.delayed.values()) this.clock.clearTimeout(handle);
      this.delayed.clear();
      this.queue.length = 0;
      this.dirty.clear();
      this.queuedAt.clear();
      this.metrics.depth?.(0);
    }
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** `shutDown()`, then resolves when every key handed out has been `done`. */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Keys waiting to be handed out (not those being processed, not those delayed). */
  len(): number {
    return this.queue.length;
  }

  /** Keys handed out and not yet `done`. */
  inFlight(): number {
    return this.processing.size;
  }

  private push(key: string): void {
    this.queue.push(key);
    this.queuedAt.set(key, this.clock.now());
    this.metrics.depth?.(this.queue.length);
    const w = this.waiters.shift();
    if (w !== undefined) w();
  }
}
