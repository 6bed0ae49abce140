import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, flushMicrotasks } from './clock.ts';
import { RateLimiter, WorkQueue } from './workqueue.ts';

void test('add deduplicates queued keys and keeps FIFO order', async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('a');
  q.add('b');
  q.add('a');
  assert.equal(q.len(), 2);
  assert.equal(await q.get(), 'a');
  assert.equal(await q.get(), 'b');
  assert.equal(q.len(), 0);
});

void test('a key is never handed out twice at once; added while processing, it comes back after done', async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('a');
  const k = await q.get();
  assert.equal(k, 'a');
  q.add('a');
  q.add('a');
  assert.equal(q.len(), 0, 'not queued while a worker holds it');
  let second: string | undefined;
  const p = q.get().then((x) => (second = x));
  await flushMicrotasks();
  assert.equal(second, undefined, 'second worker must wait');
  q.done('a');
  await p;
  assert.equal(second, 'a');
  q.done('a');
  assert.equal(q.len(), 0, 'added twice while processing: queued once');
});

void test('a waiting get() is woken by add', async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  const p = q.get();
  q.add('x');
  assert.equal(await p, 'x');
});

void test('addAfter delivers at the due time; the earliest of several delays wins', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  q.addAfter('a', 1000);
  q.addAfter('a', 300);
  q.addAfter('a', 5000);
  clock.advance(299);
  assert.equal(q.len(), 0);
  clock.advance(1);
  assert.equal(q.len(), 1);
  assert.equal(await q.get(), 'a');
  q.done('a');
  clock.advance(10_000);
  assert.equal(q.len(), 0, 'the later delays were superseded');
  q.addAfter('b', 0);
  assert.equal(q.len(), 1, 'non-positive delay adds at once');
});

void test('per-key backoff doubles from 5 ms and caps at 1000 s; forget resets it', () => {
  const clock = new FakeClock();
  // A huge bucket so only the per-key part shows.
  const rl = new RateLimiter({ qps: 1e9, burst: 1e9 }, clock);
  const delays = Array.from({ length: 6 }, () => rl.when('k'));
  assert.deepEqual(delays, [5, 10, 20, 40, 80, 160]);
  for (let i = 0; i < 40; i++) rl.when('k');
  assert.equal(rl.when('k'), 1_000_000);
  assert.equal(rl.numRequeues('k'), 47);
  assert.equal(rl.when('other'), 5, 'keys back off independently');
  rl.forget('k');
  assert.equal(rl.numRequeues('k'), 0);
  assert.equal(rl.when('k'), 5);
});

void test('global token bucket: burst 100 then 10 qps', () => {
  const clock = new FakeClock();
  const rl = new RateLimiter({}, clock);
  for (let i = 0; i < 100; i++) assert.equal(rl.when(`k${i}`), 5, `burst item ${i}`);
  assert.equal(rl.when('k100'), 100, 'first token past the burst is 100 ms away');
  assert.equal(rl.when('k101'), 200);
  clock.advance(1000);
  // 10 tokens came back, 2 were owed: the next one is free.
  assert.equal(rl.when('k102'), 5);
});

void test('addRateLimited queues after the backoff and counts retries', () => {
  const clock = new FakeClock();
  let retries = 0;
  const q = new WorkQueue({ clock, metrics: { retried: () => retries++ } });
  q.addRateLimited('a');
  assert.equal(q.len(), 0);
  clock.advance(5);
  assert.equal(q.len(), 1);
  q.addRateLimited('b');
  q.addRateLimited('b');
  assert.equal(q.numRequeues('b'), 2);
  clock.advance(5);
  assert.equal(q.len(), 2, 'b due after its first (earliest) delay');
  assert.equal(retries, 3);
});

void test('shutDown wakes waiting workers with undefined and ignores later adds', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  const p1 = q.get();
  const p2 = q.get();
  q.addAfter('later', 100);
  q.shutDown();
  assert.equal(await p1, undefined);
  assert.equal(await p2, undefined);
  q.add('x');
  q.addRateLimited('y');
  clock.advance(1000);
  assert.equal(q.len(), 0);
  assert.equal(clock.pending(), 0, 'delays cancelled');
  assert.equal(await q.get(), undefined);
});

void test('shutDownWithDrain resolves only when in-flight keys are done, and queued keys are not handed out', async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('a');
  q.add('b');
  q.add('c');
  const a = await q.get();
  const b = await q.get();
  assert.equal(a, 'a');
  assert.equal(b, 'b');
  let drained = false;
  const p = q.shutDownWithDrain().then(() => (drained = true));
  assert.equal(await q.get(), undefined, 'c is not started after shutdown');
  q.done('a');
  await flushMicrotasks();
  assert.equal(drained, false);
  q.add('b');
  q.done('b');
  await p;
  assert.equal(drained, true);
  assert.equal(q.len(), 0, 'b added during drain is not re-queued');
});

void test('metrics sink sees adds, depth and queue latency', async () => {
  const clock = new FakeClock();
  const depths: number[] = [];
  const latencies: number[] = [];
  let adds = 0;
  const q = new WorkQueue({
    clock,
    metrics: { added: () => adds++, depth: (n) => depths.push(n), queued: (ms) => latencies.push(ms) },
  });
  q.add('a');
  q.add('a');
  q.add('b');
  clock.advance(7);
  await q.get();
  assert.equal(adds, 2);
  assert.deepEqual(depths, [1, 2, 1]);
  assert.deepEqual(latencies, [7]);
});
