// A resilient informer: list, then watch from the list's resourceVersion, keeping a cache of the objects and
// calling handlers on add / update / delete. Handlers should only enqueue keys; reconcilers read the cache.
//
// Why not client-node's `makeInformer`: its ListWatch relists on 410, but on any other error (API server
// restarting, connection refused, 5xx) it fires `error` and stays stopped; it has no resync and no watchdog.
//
// Loop (one at a time, until `stop()`):
//   1. LIST (paged) when there is no usable resourceVersion. The cache is replaced: objects not listed any
//      more are delivered to onDelete, changed ones (other resourceVersion) to onUpdate, new ones to onAdd.
//   2. WATCH from the last resourceVersion with `allowWatchBookmarks=true` and a server-side `timeoutSeconds`
//      drawn from [watchTimeoutSeconds.min, .max]. When the watch ends:
//        - closed by the server (its timeout) or client-node's client-side timeout -> watch again at once
//          from the last resourceVersion (no relist);
//        - 410 Gone (HTTP or an ERROR event)   -> relist at once;
//        - any other error (connection refused, 5xx, an ERROR event) -> watch again from the last
//          resourceVersion after an exponential backoff with jitter (initial 500 ms, cap 30 s; reset once a
//          list succeeds or an event arrives). Changes made meanwhile arrive as watch events; if the server
//          no longer has that resourceVersion (compacted, or a restarted watch cache) it answers 410 and we
//          relist. A failed list is retried with the same backoff;
//        - watchdog: no event (bookmarks count) and no successful list for `watchdogMs` -> abort and relist.
//   3. RESYNC every `resyncPeriodMs`: every cached object is re-delivered to onUpdate(obj, obj), so a
//      reconciler that missed something (or waits on time) is called again.
//
// About client-node 2.0.1's Watch: it aborts a watch after 30 s without any data (`requestTimeoutMs`, an
// inactivity timer since 2.0.1; 2.0.0 aborted every watch after 30 s even with data flowing). An idle
// namespace sends nothing for minutes, so we ask the server to end each watch before that (timeoutSeconds
// 20..28 by default; with bookmarks on, the server also sends a BOOKMARK ~2 s before it ends the watch,
// which keeps our resourceVersion fresh). If the client-side timeout fires anyway, we re-watch at once.
//
// Restarts are logged and counted (`InformerMetricsSink.restarted(reason)`, reasons: closed, timeout, gone,
// error, list_error, watchdog).

import { Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { realClock, type Clock, type TimerHandle } from './clock.ts';
import { kubeRequest, objectKey } from './client.ts';
import { isGone, isWatchTimeout, safeMessage } from './errors.ts';
import { nullLogger, type Logger } from './logger.ts';
import type { InformerMetricsSink } from './metrics.ts';

export interface InformerHandlers<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

/** The watch client, as client-node's `Watch` has it (injectable for tests that want a different client). */
export interface WatchClient {
  watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController>;
}

/** A list page as the API returns it. */
export interface ListPage<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

export interface InformerOptions {
  /** For logs and metrics, e.g. `migrationprobes` or `pods@node-a`. */
  name: string;
  kubeConfig: KubeConfig;
  /** Collection path, e.g. `/api/v1/pods` or `/apis/migprobe.io/v1alpha1/namespaces/ns/migrationprobes`. */
  path: string;
  labelSelector?: string;
  /** e.g. `spec.nodeName=node-a`. */
  fieldSelector?: string;
  /** Re-deliver every cached object to onUpdate this often. 0 = never. Default 10 min. */
  resyncPeriodMs?: number;
  /** Relist when nothing (not even a bookmark) arrived for this long. Default 5 min. */
  watchdogMs?: number;
  /** Server-side watch timeout range, seconds. Default 20..28 (below client-node's 30 s idle abort). */
  watchTimeoutSeconds?: { min: number; max: number };
  /** Ask for BOOKMARK events (keeps the resourceVersion fresh on quiet collections). Default true. */
  allowWatchBookmarks?: boolean;
  /** Backoff after errors. Default 500 ms .. 30 s, with jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** List page size. Default 500. */
  pageSize?: number;
  clock?: Clock;
  /** [0, 1) — injected for tests. */
  random?: () => number;
  logger?: Logger;
  metrics?: InformerMetricsSink;
  watch?: WatchClient;
}

/** Delay before attempt `failures` (>= 1): exponential, capped, with "equal jitter" (half fixed, half random). */
export function backoffDelayMs(failures: number, initialMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** How a fresh list differs from the cache. Pure. */
export function diffList<T extends KubernetesObject>(
  cache: ReadonlyMap<string, T>,
  items: readonly T[],
): { added: T[]; updated: Array<[T, T]>; deleted: T[]; next: Map<string, T> } {
  const next = new Map<string, T>();
  const added: T[] = [];
  const updated: Array<[T, T]> = [];
  for (const obj of items) {
    const key = objectKey(obj);
    next.set(key, obj);
    const old = cache.get(key);
    if (old === undefined) added.push(obj);
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) updated.push([old, obj]);
  }
  const deleted: T[] = [];
  for (const [key, old] of cache) if (!next.has(key)) deleted.push(old);
  return { added, updated, deleted, next };
}

type WatchEnd =
  | { reason: 'closed' | 'timeout' | 'gone' | 'watchdog' | 'stopped' }
  | { reason: 'error'; error: unknown };

export class Informer<T extends KubernetesObject = KubernetesObject> {
  readonly name: string;
  private readonly opts: InformerOptions;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly watchClient: WatchClient;
  private readonly handlers: InformerHandlers<T>[] = [];
  private cache = new Map<string, T>();
  private resourceVersion = '';
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private running = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private currentWatch: AbortController | undefined;
  private endCurrentWatch: ((end: WatchEnd) => void) | undefined;
  private wakeSleep: (() => void) | undefined;
  private listAbort = new AbortController();
  private resyncTimer: TimerHandle | undefined;
  private lastActivity = 0;
  private failures = 0;
  /** Counters for tests and status: restarts by reason, lists done. */
  readonly stats = { lists: 0, watches: 0, events: 0, restarts: {} as Record<string, number> };

  constructor(opts: InformerOptions) {
    this.name = opts.name;
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.logger = (opts.logger ?? nullLogger()).child({ informer: opts.name });
    this.watchClient = opts.watch ?? new Watch(opts.kubeConfig);
  }

  /** Adds handlers. Add them before `start()` so no event is missed. */
  on(handlers: InformerHandlers<T>): this {
    this.handlers.push(handlers);
    return this;
  }

  /** Starts listing and watching in the background. Idempotent. Use `waitForSync()` to wait for the list. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = false;
    this.loop = this.run().catch((err: unknown) => {
      this.logger.error('informer loop crashed', { error: safeMessage(err) });
    });
    this.scheduleResync();
  }

  /** Stops watching; resolves when the loop has exited. The cache stays readable. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer !== undefined) this.clock.clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.endCurrentWatch?.({ reason: 'stopped' });
    this.listAbort.abort();
    this.wakeSleep?.();
    const ws = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of ws) w();
    await this.loop;
    this.running = false;
  }

  /** True once the first list has been delivered. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves true once synced, false if stopped (or `signal` aborted) first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    if (this.stopped || signal?.aborted === true) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => resolve(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.synced);
      });
    });
  }

  /** The cached object with this key (`namespace/name`, or `name` if cluster-scoped). */
  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  keys(): string[] {
    return [...this.cache.keys()];
  }

  /** The resourceVersion the next watch starts from ('' = relist). */
  lastResourceVersion(): string {
    return this.resourceVersion;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.resourceVersion === '') {
        try {
          await this.relist();
        } catch (err) {
          if (this.stopped) break;
          this.restarted('list_error', err);
          await this.backoff();
          continue;
        }
      }
      if (this.stopped) break;
      const startedAt = this.clock.now();
      const end = await this.watchOnce();
      if (this.stopped || end.reason === 'stopped') break;
      // A watch that the server ends at once, again and again, must not spin.
      const quick = this.clock.now() - startedAt < 1000;
      switch (end.reason) {
        case 'closed':
        case 'timeout':
          this.restarted(end.reason);
          if (quick) await this.backoff();
          break;
        case 'gone':
        case 'watchdog':
          this.restarted(end.reason);
          this.resourceVersion = '';
          if (quick) await this.backoff();
          break;
        case 'error':
          this.restarted('error', end.error);
          await this.backoff();
          break;
      }
    }
  }

  private restarted(reason: string, err?: unknown): void {
    this.stats.restarts[reason] = (this.stats.restarts[reason] ?? 0) + 1;
    this.opts.metrics?.restarted(reason);
    const fields: Record<string, unknown> = { reason, resourceVersion: this.resourceVersion };
    if (err !== undefined) fields.error = safeMessage(err);
    if (reason === 'closed' || reason === 'timeout') this.logger.debug('watch ended; watching again', fields);
    else if (reason === 'gone') this.logger.info('resourceVersion too old (410); relisting', fields);
    else this.logger.warn('watch restart', fields);
  }

  private async backoff(): Promise<void> {
    if (this.stopped) return;
    this.failures++;
    const ms = backoffDelayMs(this.failures, this.opts.backoff?.initialMs ?? 500, this.opts.backoff?.maxMs ?? 30_000, this.random);
    this.logger.debug('backing off', { ms, failures: this.failures });
    await new Promise<void>((resolve) => {
      const handle = this.clock.setTimeout(() => {
        this.wakeSleep = undefined;
        resolve();
      }, ms);
      this.wakeSleep = () => {
        this.clock.clearTimeout(handle);
        this.wakeSleep = undefined;
        resolve();
      };
    });
  }

  private async relist(): Promise<void> {
    this.listAbort = new AbortController();
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await kubeRequest<ListPage<T>>(this.opts.kubeConfig, {
        method: 'GET',
        path: this.opts.path,
        signal: this.listAbort.signal,
        query: {
          labelSelector: this.opts.labelSelector,
          fieldSelector: this.opts.fieldSelector,
          limit: this.opts.pageSize ?? 500,
          continue: cont,
        },
      });
      items.push(...(page.items ?? []));
      rv = page.metadata?.resourceVersion ?? rv;
      cont = page.metadata?.continue;
      if (this.stopped) return;
    } while (cont !== undefined && cont !== '');
    this.stats.lists++;
    this.opts.metrics?.relisted();
    const diff = diffList(this.cache, items);
    this.cache = diff.next;
    this.resourceVersion = rv;
    this.lastActivity = this.clock.now();
    this.failures = 0;
    for (const o of diff.deleted) this.emit('delete', o);
    for (const o of diff.added) this.emit('add', o);
    for (const [a, b] of diff.updated) this.emit('update', b, a);
    this.logger.debug('listed', {
      objects: items.length,
      resourceVersion: rv,
      added: diff.added.length,
      updated: diff.updated.length,
      deleted: diff.deleted.length,
    });
    if (!this.synced) {
      this.synced = true;
      this.logger.info('informer synced', { objects: items.length });
      const ws = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of ws) w();
    }
  }

  private emit(kind: 'add' | 'update' | 'delete', obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        if (kind === 'add') h.onAdd?.(obj);
        else if (kind === 'update') h.onUpdate?.(old ?? obj, obj);
        else h.onDelete?.(obj);
      } catch (err) {
        this.logger.error('informer handler threw', { kind, key: objectKey(obj), error: safeMessage(err) });
      }
    }
  }

  private watchOnce(): Promise<WatchEnd> {
    const range = this.opts.watchTimeoutSeconds ?? { min: 20, max: 28 };
    const timeoutSeconds = Math.round(range.min + this.random() * Math.max(0, range.max - range.min));
    const watchdogMs = this.opts.watchdogMs ?? 5 * 60_000;
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      let watchdog: TimerHandle | undefined;
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        if (watchdog !== undefined) this.clock.clearTimeout(watchdog);
        this.endCurrentWatch = undefined;
        const ctrl = this.currentWatch;
        this.currentWatch = undefined;
        ctrl?.abort();
        resolve(end);
      };
      const armWatchdog = (): void => {
        if (watchdog !== undefined) this.clock.clearTimeout(watchdog);
        const left = Math.max(0, this.lastActivity + watchdogMs - this.clock.now());
        watchdog = this.clock.setTimeout(() => {
          this.logger.warn('watchdog: nothing received; forcing a relist', { watchdogMs });
          finish({ reason: 'watchdog' });
        }, left);
      };
      this.endCurrentWatch = finish;
      armWatchdog();
      this.stats.watches++;
      const query: Record<string, string | number | boolean | undefined> = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: this.opts.allowWatchBookmarks ?? true,
        timeoutSeconds,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
      };
      const onEvent = (phase: string, apiObj: unknown): void => {
        if (settled) return;
        this.stats.events++;
        this.opts.metrics?.event(phase);
        this.lastActivity = this.clock.now();
        this.failures = 0;
        armWatchdog();
        if (phase === 'ERROR') {
          finish(isGone(apiObj) ? { reason: 'gone' } : { reason: 'error', error: apiObj });
          return;
        }
        const obj = apiObj as T;
        const rv = obj.metadata?.resourceVersion;
        if (rv !== undefined && rv !== '') this.resourceVersion = rv;
        if (phase === 'BOOKMARK') return;
        const key = objectKey(obj);
        const old = this.cache.get(key);
        if (phase === 'ADDED' || phase === 'MODIFIED') {
          this.cache.set(key, obj);
          if (old === undefined) this.emit('add', obj);
          else this.emit('update', obj, old);
        } else if (phase === 'DELETED') {
          this.cache.delete(key);
          this.emit('delete', old ?? obj);
        }
      };
      const onDone = (err: unknown): void => {
        if (settled) return;
        if (err === null || err === undefined) finish({ reason: 'closed' });
        else if (isGone(err)) finish({ reason: 'gone' });
        else if (isWatchTimeout(err)) finish({ reason: 'timeout' });
        else finish({ reason: 'error', error: err });
      };
      this.watchClient.watch(this.opts.path, query, onEvent, onDone).then(
        (ctrl) => {
          if (settled) ctrl.abort();
          else this.currentWatch = ctrl;
        },
        (err: unknown) => onDone(err ?? new Error('watch failed')),
      );
    });
  }

  private scheduleResync(): void {
    const period = this.opts.resyncPeriodMs ?? 10 * 60_000;
    if (period <= 0 || this.stopped) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      if (this.stopped) return;
      if (this.synced) {
        this.logger.debug('resync', { objects: this.cache.size });
        for (const o of [...this.cache.values()]) this.emit('update', o, o);
      }
      this.scheduleResync();
    }, period);
  }
}

/**
 * Handlers that only enqueue: the object's own key, or the keys `map` returns (e.g. the probes that
 * reference a pod). Resync updates (same resourceVersion) enqueue too, which is the point of resync.
 */
export function enqueueHandlers<T extends KubernetesObject>(
  queue: { add(key: string): void },
  map: (obj: T) => string[] = (obj) => [objectKey(obj)],
): InformerHandlers<T> {
  const add = (obj: T): void => {
    for (const k of map(obj)) queue.add(k);
  };
  return { onAdd: add, onUpdate: (_old, obj) => add(obj), onDelete: add };
}
