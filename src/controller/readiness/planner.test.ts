import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TargetStatus } from '../../api/readiness.ts';
import { FakeClock } from '../../kube/clock.ts';
import { budgetOf, itemKey, plan, podKey, probeName, workItems, type Budget, type ProbeView, type WorkItem } from './planner.ts';
import type { SelectedPod } from './selection.ts';

const pods = (n: number, owner: string, containers = ['app'], node = 'a'): SelectedPod[] =>
  Array.from({ length: n }, (_, i) => ({ namespace: 'ns', name: `${owner}-${i}`, nodeName: node, containers, ownerKey: `ns/Deployment/${owner}` }));
const targets = (...names: string[]): TargetStatus[] => names.map((n) => ({ sourceNodeName: 'a', nodeName: n, eligible: true }));

/**
 * Runs the fan-out to the end on a fake clock: each reconcile plans; created probes start Pending, run for a
 * pseudo-random time, finish. After every step the invariants are checked on the unfinished probes.
 */
function simulate(items: WorkItem[], budget: Budget, seed = 7): { maxActive: number; maxOwner: number; starts: number[]; created: number } {
  const clock = new FakeClock();
  const probes: (ProbeView & { endAt: number })[] = [];
  let rnd = seed;
  const random = (): number => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let maxActive = 0;
  let maxOwner = 0;
  const starts: number[] = [];
  for (let step = 0; step < 10_000; step++) {
    for (const p of probes) if (p.phase !== 'Succeeded' && clock.now() >= p.endAt) p.phase = 'Succeeded';
    const r = plan({ items, probes, runId: 1, budget, nowMs: clock.now() });
    for (const it of r.create) {
      probes.push({ ...it, name: itemKey(it), runId: 1, createdMs: clock.now(), endAt: clock.now() + 500 + Math.floor(random() * 3000), phase: 'Pending' });
      starts.push(clock.now());
    }
    const active = probes.filter((p) => p.phase !== 'Succeeded');
    maxActive = Math.max(maxActive, active.length);
    const perOwner = new Map<string, Set<string>>();
    const perPod = new Map<string, number>();
    for (const p of active) {
      perOwner.set(p.ownerKey, (perOwner.get(p.ownerKey) ?? new Set()).add(podKey(p)));
      perPod.set(podKey(p), (perPod.get(podKey(p)) ?? 0) + 1);
    }
    for (const s of perOwner.values()) maxOwner = Math.max(maxOwner, s.size);
    for (const [pod, n] of perPod) assert.ok(n <= 1, `pod ${pod} has ${n} unfinished probes at once`);
    assert.ok(active.length <= budget.maxConcurrentProbes, `${active.length} active > ${budget.maxConcurrentProbes}`);
    if (r.remaining === 0 && active.length === 0) break;
    clock.advance(Math.min(r.waitMs ?? 250, 250));
  }
  assert.equal(new Set(probes.map((p) => p.name)).size, items.length, 'every item probed exactly once');
  return { maxActive, maxOwner, starts, created: probes.length };
}

void test('budget: 30 pods of one Deployment, 2 targets, maxFrozenPerOwner 1: never two pods of it at once, every item once', () => {
  const items = workItems(pods(30, 'web'), targets('b', 'c'));
  assert.equal(items.length, 60);
  const r = simulate(items, budgetOf({ source: { nodeName: 'a' }, budget: { maxConcurrentProbes: 5, maxFrozenPerOwner: 1 } }));
  assert.equal(r.maxOwner, 1);
  assert.equal(r.maxActive, 1);
  assert.equal(r.created, 60);
});

void test('budget: several owners and bare pods run in parallel up to maxConcurrentProbes, each owner within its share', () => {
  const bare = pods(6, 'bare').map((p) => ({ ...p, ownerKey: `ns/Pod/${p.name}` }));
  const items = workItems([...pods(10, 'web', ['app', 'sidecar']), ...pods(10, 'api'), ...bare], targets('b', 'c', 'd'));
  const r = simulate(items, { maxConcurrentProbes: 4, maxFrozenPerOwner: 2, minSecondsBetweenProbes: 0 });
  assert.equal(r.maxActive, 4);
  assert.equal(r.maxOwner, 2);
});

void test('minSecondsBetweenProbes spreads creations and says how long to wait', () => {
  const items = workItems(pods(5, 'web').map((p, i) => ({ ...p, ownerKey: `o${i}` })), targets('b'));
  const r = simulate(items, { maxConcurrentProbes: 5, maxFrozenPerOwner: 1, minSecondsBetweenProbes: 2 });
  for (let i = 1; i < r.starts.length; i++) assert.ok(r.starts[i]! - r.starts[i - 1]! >= 2000, `starts ${r.starts.join(',')}`);
  const first = plan({ items, probes: [{ ...items[0]!, name: 'x', runId: 1, createdMs: 1000, phase: 'Pending' }], runId: 1, budget: { maxConcurrentProbes: 5, maxFrozenPerOwner: 1, minSecondsBetweenProbes: 2 }, nowMs: 1500 });
  assert.deepEqual(first.create, []);
  assert.equal(first.waitMs, 1500);
  assert.equal(first.remaining, 4);
});

void test('unfinished probes of an older run hold budget; finished ones of this run are not redone', () => {
  const items = workItems(pods(3, 'web').map((p, i) => ({ ...p, ownerKey: `o${i}` })), targets('b'));
  const old: ProbeView = { ...items[0]!, name: 'old', runId: 1, createdMs: 0, phase: 'Dumping' };
  const r = plan({ items, probes: [old], runId: 2, budget: { maxConcurrentProbes: 2, maxFrozenPerOwner: 1, minSecondsBetweenProbes: 0 }, nowMs: 10 });
  assert.deepEqual(r.create.map((c) => c.podName), ['web-1']); // web-0 still being probed by run 1; one slot left
  const done: ProbeView = { ...items[1]!, name: 'done', runId: 2, createdMs: 0, phase: 'Failed' };
  const r2 = plan({ items, probes: [done], runId: 2, budget: { maxConcurrentProbes: 5, maxFrozenPerOwner: 1, minSecondsBetweenProbes: 0 }, nowMs: 10 });
  assert.deepEqual(r2.create.map((c) => c.podName), ['web-0', 'web-2']);
  assert.equal(r2.remaining, 0);
});

void test('probe names: deterministic, within 63 characters, distinct per item, no trailing dash after truncation', () => {
  const it = { namespace: 'ns', podName: 'web-0', container: 'app', target: 'b' };
  const n = probeName('node-a-drain', 3, it);
  assert.match(n, /^node-a-drain-3-[0-9a-f]{10}$/);
  assert.equal(probeName('node-a-drain', 3, it), n);
  assert.notEqual(probeName('node-a-drain', 3, { ...it, target: 'c' }), n);
  assert.notEqual(probeName('node-a-drain', 4, it), n);
  const long = probeName(`${'x'.repeat(45)}-${'y'.repeat(40)}`, 12345, it); // cut after the dash
  assert.ok(long.length <= 63, long);
  assert.match(long, /^x{45}-12345-[0-9a-f]{10}$/);
});
