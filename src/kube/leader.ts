// Lease-based leader election (coordination.k8s.io/v1 Lease), with client-go's / controller-runtime's
// semantics and defaults: lease 15 s, renew deadline 10 s, retry period 2 s.
//
// - Identity: `<hostname>_<uuid>` unless given.
// - Acquire: every retry period (with up to 20% jitter) read the Lease; take it when it does not exist, has
//   no holder, or its holder has not renewed it for `leaseDuration`, measured on OUR clock from when we last
//   saw the record change (not from the renewTime written by another node, so clock skew does not matter).
//   Writes carry the resourceVersion read (optimistic concurrency): of two contenders only one wins; the
//   other gets 409 and tries again later.
// - Lead: `onStartedLeading(signal)` is called once. Renew every retry period; if no renewal succeeded for
//   `renewDeadline`, leadership is lost: `signal` aborts and `onStoppedLeading()` is called. The process
//   should then stop its controllers (or exit) — it must not keep acting as leader.
// - Release: when `run`'s own signal aborts while leading, the Lease is given up (holderIdentity '',
//   leaseDurationSeconds 1) so a peer takes over at its next retry instead of waiting for expiry.
//
// The decision logic (`decideLease`) is pure and unit-tested with a fake clock; the loop runs against the
// real API in test/kube/leader-integration.test.ts.

import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { realClock, sleep, type Clock } from './clock.ts';
import { kubeRequest } from './client.ts';
import { isConflict, isNotFound, safeMessage } from './errors.ts';
import { nullLogger, type Logger } from './logger.ts';

/** The Lease spec fields we use, as JSON (times are MicroTime strings). */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

/** metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** What we remember about the Lease as last read. */
export interface Observed {
  spec: LeaseSpec;
  /** Our clock when this spec (holder + renewTime) was first seen. */
  observedAtMs: number;
}

export type LeaseDecision =
  | { action: 'wait'; holder: string }
  | { action: 'create' | 'update'; spec: LeaseSpec };

/**
 * Pure: given the Lease as read (undefined if it does not exist) and what we observed before, decide
 * whether to write it and with what. `observed` must already reflect this read (see `observe`).
 */
export function decideLease(
  current: LeaseSpec | undefined,
  observed: Observed | undefined,
  identity: string,
  nowMs: number,
  leaseDurationMs: number,
): LeaseDecision {
  const spec: LeaseSpec = {
    holderIdentity: identity,
    leaseDurationSeconds: Math.round(leaseDurationMs / 1000),
    acquireTime: microTime(nowMs),
    renewTime: microTime(nowMs),
    leaseTransitions: 0,
  };
  if (current === undefined) return { action: 'create', spec };
  const holder = current.holderIdentity ?? '';
  const durationMs = (current.leaseDurationSeconds ?? Math.round(leaseDurationMs / 1000)) * 1000;
  const seenAt = observed?.observedAtMs ?? nowMs;
  if (holder !== '' && holder !== identity && seenAt + durationMs > nowMs) return { action: 'wait', holder };
  if (holder === identity) {
    if (current.acquireTime !== undefined) spec.acquireTime = current.acquireTime;
    spec.leaseTransitions = current.leaseTransitions ?? 0;
  } else {
    spec.leaseTransitions = (current.leaseTransitions ?? 0) + 1;
  }
  return { action: 'update', spec };
}

/** Updates what we observed: the time moves only when holder or renewTime changed. Pure. */
export function observe(prev: Observed | undefined, spec: LeaseSpec | undefined, nowMs: number): Observed | undefined {
  if (spec === undefined) return undefined;
  if (
    prev !== undefined &&
    prev.spec.holderIdentity === spec.holderIdentity &&
    prev.spec.renewTime === spec.renewTime &&
    prev.spec.leaseDurationSeconds === spec.leaseDurationSeconds
  ) {
    return prev;
  }
  return { spec, observedAtMs: nowMs };
}

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Lease name, e.g. `migprobe-controller`. */
  name: string;
  /** Default `<hostname>_<uuid>`. */
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called once when we become leader; `signal` aborts when leadership ends. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /**
   * Called once when leadership ends: `reason` 'lost' (could not renew: stop acting at once, and exit) or
   * 'stopped' (our own shutdown; the Lease was released).
   */
  onStoppedLeading?: (reason: 'lost' | 'stopped') => void | Promise<void>;
  /** Called when the observed leader changes (ours included). */
  onNewLeader?: (identity: string) => void;
  /** Give the Lease up when stopped while leading. Default true. */
  releaseOnCancel?: boolean;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}

export class LeaderElector {
  readonly identity: string;
  private readonly opts: LeaderElectionOptions;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private observed: Observed | undefined;
  private resourceVersion: string | undefined;
  private leading = false;
  private lastLeader = '';

  constructor(opts: LeaderElectionOptions) {
    this.opts = opts;
    this.identity = opts.identity ?? defaultIdentity();
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs)) {
      throw new Error('leader election needs leaseDuration > renewDeadline > retryPeriod');
    }
    this.logger = (opts.logger ?? nullLogger()).child({ lease: `${opts.namespace}/${opts.name}`, identity: this.identity });
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until leading, leads until the lease is lost or `signal` aborts, then returns. Returns
   * 'lost' if leadership was lost, 'stopped' if `signal` ended it (or ended the campaign).
   */
  async run(signal: AbortSignal): Promise<'lost' | 'stopped'> {
    // Campaign.
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) break;
      await sleep(this.clock, this.jittered(), signal);
    }
    if (signal.aborted) return 'stopped';
    this.leading = true;
    this.logger.info('became leader');
    const leader = new AbortController();
    let lastRenew = this.clock.now();
    let outcome: 'lost' | 'stopped' = 'stopped';
    try {
      // onStartedLeading runs concurrently with renewals: do not await it before renewing.
      Promise.resolve()
        .then(() => this.opts.onStartedLeading(leader.signal))
        .catch((err: unknown) => this.logger.error('onStartedLeading failed', { error: safeMessage(err) }));
      while (!signal.aborted) {
        await sleep(this.clock, this.retryPeriodMs, signal);
        if (signal.aborted) break;
        if (await this.tryAcquireOrRenew()) {
          lastRenew = this.clock.now();
        } else if (this.clock.now() - lastRenew >= this.renewDeadlineMs) {
          outcome = 'lost';
          this.logger.error('leader lease lost: could not renew within the renew deadline', {
            renewDeadlineMs: this.renewDeadlineMs,
          });
          break;
        }
      }
    } finally {
      this.leading = false;
      leader.abort(new Error(outcome === 'lost' ? 'leader lease lost' : 'leader election stopped'));
      if (outcome === 'stopped' && (this.opts.releaseOnCancel ?? true)) await this.release();
      try {
        await this.opts.onStoppedLeading?.(outcome);
      } catch (err) {
        this.logger.error('onStoppedLeading failed', { error: safeMessage(err) });
      }
    }
    return outcome;
  }

  /** One attempt; true if we hold the lease afterwards. Never throws. */
  async tryAcquireOrRenew(): Promise<boolean> {
    try {
      let current: LeaseObject | undefined;
      try {
        current = await kubeRequest<LeaseObject>(this.opts.kubeConfig, { method: 'GET', path: this.path(), timeoutMs: this.retryPeriodMs * 2 });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const now = this.clock.now();
      this.observed = observe(this.observed, current?.spec, now);
      this.resourceVersion = current?.metadata.resourceVersion;
      this.noteLeader(current?.spec?.holderIdentity ?? '');
      const d = decideLease(current?.spec, this.observed, this.identity, now, this.leaseDurationMs);
      if (d.action === 'wait') return false;
      const body: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.opts.name, namespace: this.opts.namespace },
        spec: d.spec,
      };
      let written: LeaseObject;
      if (d.action === 'create') {
        written = await kubeRequest<LeaseObject>(this.opts.kubeConfig, {
          method: 'POST',
          path: this.path(true),
          body,
          timeoutMs: this.retryPeriodMs * 2,
        });
      } else {
        if (this.resourceVersion !== undefined) body.metadata.resourceVersion = this.resourceVersion;
        written = await kubeRequest<LeaseObject>(this.opts.kubeConfig, {
          method: 'PUT',
          path: this.path(),
          body,
          timeoutMs: this.retryPeriodMs * 2,
        });
      }
      this.observed = observe(this.observed, written.spec, this.clock.now());
      this.resourceVersion = written.metadata.resourceVersion;
      this.noteLeader(this.identity);
      return true;
    } catch (err) {
      if (isConflict(err)) {
        this.logger.debug('lease write conflicted; someone else wrote it first');
      } else {
        this.logger.warn('lease acquire/renew failed', { error: safeMessage(err) });
      }
      return false;
    }
  }

  /** Gives the lease up if we hold it. Never throws. */
  async release(): Promise<void> {
    try {
      const current = await kubeRequest<LeaseObject>(this.opts.kubeConfig, { method: 'GET', path: this.path(), timeoutMs: 5000 });
      if (current.spec?.holderIdentity !== this.identity) return;
      const now = microTime(this.clock.now());
      const body: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name: this.opts.name,
          namespace: this.opts.namespace,
          ...(current.metadata.resourceVersion !== undefined ? { resourceVersion: current.metadata.resourceVersion } : {}),
        },
        spec: {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: current.spec.leaseTransitions ?? 0,
        },
      };
      await kubeRequest(this.opts.kubeConfig, { method: 'PUT', path: this.path(), body, timeoutMs: 5000 });
      this.logger.info('released the leader lease');
    } catch (err) {
      this.logger.warn('could not release the leader lease (a peer takes over when it expires)', { error: safeMessage(err) });
    }
  }

  private noteLeader(holder: string): void {
    if (holder !== '' && holder !== this.lastLeader) {
      this.lastLeader = holder;
      this.logger.info('leader is', { leader: holder });
      try {
        this.opts.onNewLeader?.(holder);
      } catch (err) {
        this.logger.error('onNewLeader failed', { error: safeMessage(err) });
      }
    }
  }

  private jittered(): number {
    return Math.round(this.retryPeriodMs * (1 + 0.2 * this.random()));
  }

  private path(collection = false): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/leases`;
    return collection ? base : `${base}/${encodeURIComponent(this.opts.name)}`;
  }
}

/** A running election: `stop()` ends it (releasing the Lease if we lead) and resolves when it is over. */
export interface LeaderElectionHandle {
  readonly elector: LeaderElector;
  /** Resolves 'lost' or 'stopped' when the election is over. */
  readonly result: Promise<'lost' | 'stopped'>;
  stop(): Promise<void>;
}

/** Creates a LeaderElector and runs it in the background. */
export function startLeaderElection(opts: LeaderElectionOptions): LeaderElectionHandle {
  const elector = new LeaderElector(opts);
  const abort = new AbortController();
  // run() handles API errors itself; anything else escaping it ends leadership as a loss, never silently.
  const result = elector.run(abort.signal).catch(async (err: unknown) => {
    opts.logger?.error('leader election failed', { error: safeMessage(err) });
    await opts.onStoppedLeading?.('lost');
    return 'lost' as const;
  });
  return {
    elector,
    result,
    stop: async () => {
      abort.abort();
      await result;
    },
  };
}
