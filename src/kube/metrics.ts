// Prometheus metrics in a private prom-client Registry (never the global one, so two controllers or a test
// and a controller in one process never collide), the controller-runtime / client-go metric families, and a
// tiny HTTP server for /metrics, /healthz and /readyz.
//
// Metric names follow controller-runtime so existing dashboards work:
//   controller_runtime_reconcile_total{controller,result}   result = success|error|requeue|requeue_after
//   controller_runtime_reconcile_errors_total{controller}
//   controller_runtime_terminal_reconcile_errors_total{controller}
//   controller_runtime_reconcile_time_seconds{controller}   histogram
//   controller_runtime_active_workers{controller}
//   controller_runtime_max_concurrent_reconciles{controller}
//   workqueue_depth{name}, workqueue_adds_total{name}, workqueue_retries_total{name},
//   workqueue_queue_duration_seconds{name}
// and for informers (ours): migprobe_informer_restarts_total{informer,reason},
//   migprobe_informer_events_total{informer,type}, migprobe_informer_relists_total{informer}.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './logger.ts';
import type { WorkQueueMetricsSink } from './workqueue.ts';

export interface RegistryOptions {
  /** Also export process_* / nodejs_* default metrics. Default true. */
  defaultMetrics?: boolean;
}

export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

interface MetricConfig<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
}

/** The counter `name` in `registry`, created on first use (so several controllers can share families). */
export function counter<L extends string>(registry: Registry, cfg: MetricConfig<L>): Counter<L> {
  const found = registry.getSingleMetric(cfg.name);
  if (found !== undefined) return found as Counter<L>;
  return new Counter<L>({ ...cfg, registers: [registry] });
}

export function gauge<L extends string>(registry: Registry, cfg: MetricConfig<L>): Gauge<L> {
  const found = registry.getSingleMetric(cfg.name);
  if (found !== undefined) return found as Gauge<L>;
  return new Gauge<L>({ ...cfg, registers: [registry] });
}

export function histogram<L extends string>(
  registry: Registry,
  cfg: MetricConfig<L> & { buckets?: number[] },
): Histogram<L> {
  const found = registry.getSingleMetric(cfg.name);
  if (found !== undefined) return found as Histogram<L>;
  return new Histogram<L>({ ...cfg, registers: [registry] });
}

export type ReconcileResult = 'success' | 'error' | 'requeue' | 'requeue_after';

/** controller-runtime's reconcile metrics for one controller. */
export class ControllerMetrics {
  private readonly total: Counter<'controller' | 'result'>;
  private readonly errors: Counter<'controller'>;
  private readonly terminal: Counter<'controller'>;
  private readonly time: Histogram<'controller'>;
  private readonly active: Gauge<'controller'>;
  private readonly maxConcurrent: Gauge<'controller'>;
  readonly controller: string;

  constructor(registry: Registry, controller: string) {
    this.controller = controller;
    this.total = counter(registry, {
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
    });
    this.errors = counter(registry, {
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'],
    });
    this.terminal = counter(registry, {
      name: 'controller_runtime_terminal_reconcile_errors_total',
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames: ['controller'],
    });
    this.time = histogram(registry, {
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    this.active = gauge(registry, {
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'],
    });
    this.maxConcurrent = gauge(registry, {
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'],
    });
    // Start every series at zero so rate() works from the first scrape.
    for (const result of ['success', 'error', 'requeue', 'requeue_after'] as const) this.total.inc({ controller, result }, 0);
    this.errors.inc({ controller }, 0);
    this.terminal.inc({ controller }, 0);
    this.active.set({ controller }, 0);
  }

  reconciled(result: ReconcileResult, seconds: number): void {
    this.total.inc({ controller: this.controller, result });
    this.time.observe({ controller: this.controller }, seconds);
  }

  error(terminal: boolean): void {
    this.errors.inc({ controller: this.controller });
    if (terminal) this.terminal.inc({ controller: this.controller });
  }

  activeWorkers(delta: number): void {
    this.active.inc({ controller: this.controller }, delta);
  }

  setMaxConcurrent(n: number): void {
    this.maxConcurrent.set({ controller: this.controller }, n);
  }
}

/** client-go's workqueue metrics for one queue, as a sink to pass to `new WorkQueue({ metrics })`. */
export function workQueueMetrics(registry: Registry, name: string): WorkQueueMetricsSink {
  const depth = gauge(registry, { name: 'workqueue_depth', help: 'Current depth of workqueue', labelNames: ['name'] });
  const adds = counter(registry, {
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['name'],
  });
  const retries = counter(registry, {
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['name'],
  });
  const latency = histogram(registry, {
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name'],
    buckets: [0.001, 0.01, 0.1, 1, 10, 100, 1000],
  });
  depth.set({ name }, 0);
  adds.inc({ name }, 0);
  retries.inc({ name }, 0);
  return {
    added: () => adds.inc({ name }),
    retried: () => retries.inc({ name }),
    depth: (n) => depth.set({ name }, n),
    queued: (ms) => latency.observe({ name }, ms / 1000),
  };
}

/** Informer metrics (restarts by reason, events by type, relists). */
export interface InformerMetricsSink {
  restarted(reason: string): void;
  event(type: string): void;
  relisted(): void;
}

export function informerMetrics(registry: Registry, informer: string): InformerMetricsSink {
  const restarts = counter(registry, {
    name: 'migprobe_informer_restarts_total',
    help: 'Watch restarts per informer, by reason (timeout, closed, error, gone, watchdog)',
    labelNames: ['informer', 'reason'],
  });
  const events = counter(registry, {
    name: 'migprobe_informer_events_total',
    help: 'Watch events received per informer, by type',
    labelNames: ['informer', 'type'],
  });
  const relists = counter(registry, {
    name: 'migprobe_informer_relists_total',
    help: 'Full lists per informer',
    labelNames: ['informer'],
  });
  relists.inc({ informer }, 0);
  return {
    restarted: (reason) => restarts.inc({ informer, reason }),
    event: (type) => events.inc({ informer, type }),
    relisted: () => relists.inc({ informer }),
  };
}

export interface HealthServerOptions {
  registry: Registry;
  /** Default 0 (any free port). */
  port?: number;
  /** Default 127.0.0.1; use 0.0.0.0 in a pod. */
  host?: string;
  /** /healthz: is the process alive and not wedged? Default: always. */
  healthy?: () => boolean | Promise<boolean>;
  /** /readyz: should traffic / work be sent here? Default: always. */
  ready?: () => boolean | Promise<boolean>;
  logger?: Logger;
}

export interface HealthServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

async function probe(fn: (() => boolean | Promise<boolean>) | undefined): Promise<boolean> {
  if (fn === undefined) return true;
  try {
    return await fn();
  } catch {
    return false;
  }
}

/** Serves GET /metrics (Prometheus text), /healthz and /readyz ("ok" 200, or 503). */
export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(405, 'method not allowed\n');
      return;
    }
    const handle = async (): Promise<void> => {
      if (path === '/metrics') {
        reply(200, await opts.registry.metrics(), opts.registry.contentType);
      } else if (path === '/healthz' || path === '/livez') {
        const ok = await probe(opts.healthy);
        reply(ok ? 200 : 503, ok ? 'ok\n' : 'unhealthy\n');
      } else if (path === '/readyz') {
        const ok = await probe(opts.ready);
        reply(ok ? 200 : 503, ok ? 'ok\n' : 'not ready\n');
      } else {
        reply(404, 'not found\n');
      }
    };
    handle().catch((err: unknown) => {
      opts.logger?.error('health server request failed', { path, error: String(err) });
      if (!res.headersSent) reply(500, 'internal error\n');
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    port,
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
