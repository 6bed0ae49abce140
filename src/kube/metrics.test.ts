import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ControllerMetrics, createRegistry, informerMetrics, startHealthServer, workQueueMetrics } from './metrics.ts';
import { WorkQueue } from './workqueue.ts';
import { FakeClock } from './clock.ts';

void test('metric families are created once per registry and named like controller-runtime', async () => {
  const registry = createRegistry({ defaultMetrics: false });
  const a = new ControllerMetrics(registry, 'probes');
  const b = new ControllerMetrics(registry, 'gc');
  a.reconciled('success', 0.01);
  b.reconciled('error', 0.5);
  b.error(true);
  const q = new WorkQueue({ clock: new FakeClock(), metrics: workQueueMetrics(registry, 'probes') });
  q.add('x');
  q.addRateLimited('y');
  informerMetrics(registry, 'pods').restarted('gone');
  const text = await registry.metrics();
  for (const line of [
    'controller_runtime_reconcile_total{controller="probes",result="success"} 1',
    'controller_runtime_reconcile_total{controller="gc",result="error"} 1',
    'controller_runtime_reconcile_total{controller="probes",result="requeue_after"} 0',
    'controller_runtime_reconcile_errors_total{controller="gc"} 1',
    'controller_runtime_terminal_reconcile_errors_total{controller="gc"} 1',
    'controller_runtime_active_workers{controller="probes"} 0',
    'workqueue_depth{name="probes"} 1',
    'workqueue_adds_total{name="probes"} 1',
    'workqueue_retries_total{name="probes"} 1',
    'migprobe_informer_restarts_total{informer="pods",reason="gone"} 1',
  ]) {
    assert.ok(text.includes(line), `missing: ${line}`);
  }
  assert.match(text, /controller_runtime_reconcile_time_seconds_bucket\{le="0\.01",controller="probes"\} 1/);
});

void test('health server: /metrics, /healthz, /readyz with an injectable readiness hook', async (t) => {
  const registry = createRegistry();
  let ready = false;
  const srv = await startHealthServer({ registry, ready: () => ready, healthy: () => Promise.resolve(true) });
  t.after(() => srv.close());
  const get = async (p: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${srv.url}${p}`);
    return { status: res.status, text: await res.text() };
  };
  assert.equal((await get('/healthz')).status, 200);
  assert.deepEqual(await get('/readyz'), { status: 503, text: 'not ready\n' });
  ready = true;
  assert.deepEqual(await get('/readyz'), { status: 200, text: 'ok\n' });
  const m = await get('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /process_cpu_user_seconds_total/);
  assert.equal((await get('/nope')).status, 404);
});
