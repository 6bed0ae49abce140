// Kubernetes Events (core/v1) for an involved object, shown by `kubectl describe` and `kubectl get events`.
//
// - `record(obj, type, reason, message)` never throws and never blocks the caller: the write happens in the
//   background, in order, and failures are logged (an Event is best effort; a reconcile must not fail
//   because of one). `flush()` waits for pending writes (tests, shutdown).
// - Repeats are aggregated like client-go's recorder: the same (object, type, reason, message) within
//   `aggregateWindowMs` (default 10 min) patches the existing Event's `count` and `lastTimestamp` instead of
//   creating a new one. If that Event is gone (expired: the API server keeps Events 1 h by default), a new
//   one is created.
// - Events live in the involved object's namespace (`default` for cluster-scoped objects). Messages are
//   clipped to 1024 characters; pass `safeMessage(err)` for errors, never an ApiException's message.

import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { realClock, type Clock } from './clock.ts';
import { kubeRequest } from './client.ts';
import { metav1Time } from './conditions.ts';
import { isNotFound, safeMessage } from './errors.ts';
import { nullLogger, type Logger } from './logger.ts';

export type EventType = 'Normal' | 'Warning';

/** Enough of an object to point an Event at it. */
export interface InvolvedObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface EventRecorderOptions {
  kubeConfig: KubeConfig;
  /** source.component and reportingComponent, e.g. `migprobe-controller`. */
  component: string;
  /** source.host and reportingInstance, e.g. the pod or node name. */
  host?: string;
  aggregateWindowMs?: number;
  /** Most remembered (object, reason, message) series. Default 4096. */
  maxSeries?: number;
  clock?: Clock;
  logger?: Logger;
}

interface Series {
  name: string;
  namespace: string;
  count: number;
  firstAt: number;
  lastAt: number;
}

interface CoreEvent {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  involvedObject: { apiVersion?: string; kind?: string; name?: string; namespace?: string; uid?: string; resourceVersion?: string };
  reason: string;
  message: string;
  type: EventType;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
  source: { component: string; host?: string };
  reportingComponent: string;
  reportingInstance: string;
}

const MAX_MESSAGE = 1024;

export class EventRecorder {
  private readonly opts: EventRecorderOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly series = new Map<string, Series>();
  private chain: Promise<void> = Promise.resolve();
  private failures = 0;

  constructor(opts: EventRecorderOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.logger = (opts.logger ?? nullLogger()).child({ recorder: opts.component });
  }

  /** Records an Event. Never throws; the write happens in the background. */
  record(obj: InvolvedObject, type: EventType, reason: string, message: string): void {
    try {
      const namespace = obj.metadata?.namespace ?? 'default';
      const clipped = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message;
      const key = [obj.kind, namespace, obj.metadata?.name, obj.metadata?.uid, type, reason, clipped].join('\u0000');
      const at = this.clock.now();
      this.chain = this.chain.then(() => this.write(key, obj, namespace, type, reason, clipped, at));
    } catch (err) {
      this.logger.warn('could not queue an event', { reason, error: safeMessage(err) });
    }
  }

  normal(obj: InvolvedObject, reason: string, message: string): void {
    this.record(obj, 'Normal', reason, message);
  }

  warning(obj: InvolvedObject, reason: string, message: string): void {
    this.record(obj, 'Warning', reason, message);
  }

  /** Resolves when every Event recorded so far has been written (or has failed and been logged). */
  async flush(): Promise<void> {
    await this.chain;
  }

  /** Failed writes so far (for tests and a metric). */
  failedWrites(): number {
    return this.failures;
  }

  private async write(
    key: string,
    obj: InvolvedObject,
    namespace: string,
    type: EventType,
    reason: string,
    message: string,
    at: number,
  ): Promise<void> {
    try {
      const window = this.opts.aggregateWindowMs ?? 10 * 60_000;
      const prev = this.series.get(key);
      if (prev !== undefined && at - prev.lastAt <= window) {
        try {
          await kubeRequest(this.opts.kubeConfig, {
            method: 'PATCH',
            path: `/api/v1/namespaces/${encodeURIComponent(prev.namespace)}/events/${encodeURIComponent(prev.name)}`,
            body: { count: prev.count + 1, lastTimestamp: metav1Time(at) },
            contentType: 'application/merge-patch+json',
            timeoutMs: 10_000,
          });
          prev.count++;
          prev.lastAt = at;
          this.touch(key, prev);
          return;
        } catch (err) {
          if (!isNotFound(err)) throw err;
          // The Event expired: start a new series.
        }
      }
      const name = `${obj.metadata?.name ?? 'unknown'}.${at.toString(16)}${randomBytes(2).toString('hex')}`;
      const involved: CoreEvent['involvedObject'] = {};
      if (obj.apiVersion !== undefined) involved.apiVersion = obj.apiVersion;
      if (obj.kind !== undefined) involved.kind = obj.kind;
      if (obj.metadata?.name !== undefined) involved.name = obj.metadata.name;
      if (obj.metadata?.namespace !== undefined) involved.namespace = obj.metadata.namespace;
      if (obj.metadata?.uid !== undefined) involved.uid = obj.metadata.uid;
      if (obj.metadata?.resourceVersion !== undefined) involved.resourceVersion = obj.metadata.resourceVersion;
      const ev: CoreEvent = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: involved,
        reason,
        message,
        type,
        count: 1,
        firstTimestamp: metav1Time(at),
        lastTimestamp: metav1Time(at),
        source: this.opts.host !== undefined ? { component: this.opts.component, host: this.opts.host } : { component: this.opts.component },
        reportingComponent: this.opts.component,
        reportingInstance: this.opts.host ?? this.opts.component,
      };
      await kubeRequest(this.opts.kubeConfig, {
        method: 'POST',
        path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`,
        body: ev,
        timeoutMs: 10_000,
      });
      this.touch(key, { name, namespace, count: 1, firstAt: at, lastAt: at });
    } catch (err) {
      this.failures++;
      this.logger.warn('could not write an event', {
        object: `${obj.kind ?? '?'} ${namespace}/${obj.metadata?.name ?? '?'}`,
        reason,
        error: safeMessage(err),
      });
    }
  }

  /** Remembers `s` as the newest series, forgetting the oldest beyond `maxSeries`. */
  private touch(key: string, s: Series): void {
    this.series.delete(key);
    this.series.set(key, s);
    const max = this.opts.maxSeries ?? 4096;
    while (this.series.size > max) {
      const oldest = this.series.keys().next();
      if (oldest.done === true) break;
      this.series.delete(oldest.value);
    }
  }
}
