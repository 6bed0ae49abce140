import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';
import { FakeClock, flushMicrotasks } from './clock.ts';
import { Controller, TerminalError, outcomeOf, runController, type Reconciler } from './controller.ts';
import { ControllerMetrics, createRegistry } from './metrics.ts';
import { WorkQueue } from './workqueue.ts';
import type { Registry } from 'prom-client';

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  assert.ok(m, `metric ${name} exists`);
  const data = await m.get();
  const found = data.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return found?.value ?? 0;
}

function setup(reconcile: Reconciler, workers = 1): {
  clock: FakeClock;
  queue: WorkQueue;
  ctrl: Controller;
  registry: Registry;
} {
  const clock = new FakeClock();
  const queue = new WorkQueue({ clock });
  const registry = createRegistry({ defaultMetrics: false });
  const ctrl = runController({
    name: 'test',
    queue,
    reconcile,
    workers,
    metrics: new ControllerMetrics(registry, 'test'),
    clock,
  });
  return { clock, queue, ctrl, registry };
}

void test('outcomeOf maps results and errors onto queue actions', () => {
  assert.deepEqual(outcomeOf({ ok: true, value: undefined }), { action: { kind: 'forget' }, result: 'success' });
  assert.deepEqual(outcomeOf({ ok: true, value: { requeueAfterMs: 500 } }), {
    action: { kind: 'after', ms: 500, forget: true },
    result: 'requeue_after',
  });
  assert.deepEqual(outcomeOf({ ok: true, value: { requeue: true } }), { action: { kind: 'rateLimited' }, result: 'requeue' });
  assert.deepEqual(outcomeOf({ ok: false, error: new TerminalError('bad spec') }), {
    action: { kind: 'forget' },
    result: 'error',
    error: 'terminal',
  });
  assert.deepEqual(outcomeOf({ ok: false, error: new Error('boom') }), {
    action: { kind: 'rateLimited' },
    result: 'error',
    error: 'retry',
  });
  assert.deepEqual(outcomeOf({ ok: false, error: new ApiException(404, 'x', {}, {}) }), {
    action: { kind: 'forget' },
    result: 'success',
  });
  assert.deepEqual(outcomeOf({ ok: false, error: new ApiException(409, 'x', {}, {}) }), {
    action: { kind: 'rateLimited' },
    result: 'requeue',
  });
  assert.deepEqual(outcomeOf({ ok: false, error: new ApiException(429, 'x', {}, { 'retry-after': '2' }) }), {
    action: { kind: 'after', ms: 2000, forget: false },
    result: 'requeue_after',
  });
});

void test('errors retry with growing backoff until success, then the backoff is forgotten', async (t) => {
  let calls = 0;
  const { clock, queue, ctrl, registry } = setup(async () => {
    await Promise.resolve();
    calls++;
    if (calls <= 3) throw new Error(`fail ${calls}`);
  });
  t.after(() => ctrl.stop(100));
  queue.add('ns/a');
  await flushMicrotasks();
  assert.equal(calls, 1);
  assert.equal(queue.numRequeues('ns/a'), 1);
  await clock.advanceAsync(4);
  assert.equal(calls, 1, 'not before 5 ms');
  await clock.advanceAsync(1);
  assert.equal(calls, 2);
  await clock.advanceAsync(10);
  assert.equal(calls, 3);
  await clock.advanceAsync(19);
  assert.equal(calls, 3, 'third retry waits 20 ms');
  await clock.advanceAsync(1);
  assert.equal(calls, 4);
  assert.equal(queue.numRequeues('ns/a'), 0, 'forgotten after success');
  assert.equal(await metricValue(registry, 'controller_runtime_reconcile_total', { result: 'error' }), 3);
  assert.equal(await metricValue(registry, 'controller_runtime_reconcile_total', { result: 'success' }), 1);
  assert.equal(await metricValue(registry, 'controller_runtime_reconcile_errors_total', { controller: 'test' }), 3);
});

void test('requeueAfter reconciles again after the delay; TerminalError is not retried', async (t) => {
  const calls: string[] = [];
  const { clock, queue, ctrl, registry } = setup(async (key) => {
    await Promise.resolve();
    calls.push(key);
    if (key === 'ns/bad') throw new TerminalError('spec can never work');
    if (calls.filter((k) => k === key).length === 1) return { requeueAfterMs: 1000 };
  });
  t.after(() => ctrl.stop(100));
  queue.add('ns/a');
  queue.add('ns/bad');
  await flushMicrotasks();
  assert.deepEqual(calls, ['ns/a', 'ns/bad']);
  await clock.advanceAsync(999);
  assert.equal(calls.length, 2);
  await clock.advanceAsync(1);
  assert.deepEqual(calls, ['ns/a', 'ns/bad', 'ns/a']);
  await clock.advanceAsync(3_600_000);
  assert.equal(calls.length, 3, 'terminal error never retried, success not requeued');
  assert.equal(await metricValue(registry, 'controller_runtime_terminal_reconcile_errors_total', {}), 1);
  assert.equal(await metricValue(registry, 'controller_runtime_reconcile_total', { result: 'requeue_after' }), 1);
});

void test('the same key is never reconciled concurrently, other keys are', async (t) => {
  const running = new Map<string, number>();
  let maxSameKey = 0;
  let maxTotal = 0;
  const releases: Array<() => void> = [];
  const { queue, ctrl } = setup(async (key) => {
    running.set(key, (running.get(key) ?? 0) + 1);
    maxSameKey = Math.max(maxSameKey, running.get(key) ?? 0);
    maxTotal = Math.max(maxTotal, [...running.values()].reduce((a, b) => a + b, 0));
    await new Promise<void>((r) => releases.push(r));
    running.set(key, (running.get(key) ?? 1) - 1);
  }, 3);
  t.after(() => ctrl.stop(100));
  queue.add('ns/a');
  queue.add('ns/b');
  await flushMicrotasks();
  queue.add('ns/a');
  queue.add('ns/a');
  await flushMicrotasks();
  assert.equal(releases.length, 2, 'a and b running; a again waits although a worker is free');
  releases.shift()?.();
  await flushMicrotasks();
  assert.equal(releases.length, 2, 'a ran again once it was done');
  for (const r of releases.splice(0)) r();
  await flushMicrotasks();
  assert.equal(maxSameKey, 1);
  assert.equal(maxTotal, 2);
});

void test('stop drains in-flight reconciles and starts no new ones', async () => {
  let release: (() => void) | undefined;
  const started: string[] = [];
  const { queue, ctrl } = setup(async (key) => {
    started.push(key);
    if (key === 'ns/slow') await new Promise<void>((r) => (release = r));
  });
  queue.add('ns/slow');
  await flushMicrotasks();
  queue.add('ns/next');
  let stopped: boolean | undefined;
  const p = ctrl.stop(60_000).then((ok) => (stopped = ok));
  await flushMicrotasks();
  assert.equal(stopped, undefined, 'waits for the in-flight reconcile');
  release?.();
  await p;
  assert.equal(stopped, true);
  assert.deepEqual(started, ['ns/slow'], 'queued key not started after stop');
});

void test('stop past its deadline aborts the reconcile signal', async () => {
  let sawAbort = false;
  const { clock, queue, ctrl } = setup(
    (_key, ctx) =>
      new Promise<void>((resolve) => {
        ctx.signal.addEventListener('abort', () => {
          sawAbort = true;
          resolve();
        });
      }),
  );
  queue.add('ns/stuck');
  await flushMicrotasks();
  const p = ctrl.stop(1000);
  await clock.advanceAsync(1000);
  assert.equal(sawAbort, true);
  assert.equal(await p, true, 'the aborted reconcile returned within the grace period');
});

void test('stop resolves false when a reconcile ignores its abort signal', async () => {
  const { clock, queue, ctrl } = setup(() => new Promise<void>(() => {}));
  queue.add('ns/wedged');
  await flushMicrotasks();
  const p = ctrl.stop(1000);
  await clock.advanceAsync(1000 + 5000);
  assert.equal(await p, false);
});
