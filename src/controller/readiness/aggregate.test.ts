import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TargetStatus } from '../../api/readiness.ts';
import type { MigrationProbe, MigrationProbeStatus } from '../../api/v1alpha1.ts';
import { aggregate, measureBudget, unionReasons } from './aggregate.ts';
import type { Selection, SelectedPod } from './selection.ts';

const sp = (name: string, containers = ['app'], owner = `ns/Pod/${name}`): SelectedPod => ({ namespace: 'ns', name, nodeName: 'a', containers, ownerKey: owner });
const probe = (pod: string, container: string, target: string, status?: MigrationProbeStatus): MigrationProbe => ({
  metadata: { name: `p-${pod}-${container}-${target}`, namespace: 'ns', labels: { 'migprobe.io/readiness': 'r', 'migprobe.io/readiness-run': '1' } },
  spec: { podName: pod, containerName: container, targetNodeName: target },
  ...(status ? { status } : {}),
});
const ok = (freeze: number): MigrationProbeStatus => ({ phase: 'Succeeded', migratable: true, timings: { freezeMilliseconds: freeze } });
const blocked = (code: string, message = 'x'): MigrationProbeStatus => ({ phase: 'Succeeded', migratable: false, reasons: [{ code, message }] });
const targets: TargetStatus[] = [
  { sourceNodeName: 'a', nodeName: 'b', eligible: true },
  { sourceNodeName: 'a', nodeName: 'c', eligible: true },
  { sourceNodeName: 'a', nodeName: 'g', eligible: false, reasons: [{ code: 'ArchMismatch', message: 'source a is x86_64, target g is aarch64' }] },
];

void test('per pod: every container migratable to a target; the best target has the lowest freeze; blocked pods give each code once with its targets', () => {
  const sel: Selection = { pods: [sp('web'), sp('two', ['app', 'side']), sp('lock'), sp('wait')], skipped: [{ namespace: 'ns', name: 'ds', nodeName: 'a', skipped: 'owned by a DaemonSet' }] };
  const probes = [
    probe('web', 'app', 'b', ok(90)),
    probe('web', 'app', 'c', ok(40)),
    probe('two', 'app', 'b', ok(10)),
    probe('two', 'side', 'b', blocked('TCPEstablished')),
    probe('two', 'app', 'c', ok(30)),
    probe('two', 'side', 'c', ok(50)),
    probe('lock', 'app', 'b', blocked('FileLocks', 'pid 1 holds a flock')),
    probe('lock', 'app', 'c', { phase: 'Failed', migratable: false, reasons: [{ code: 'FileLocks', message: 'pid 1 holds a flock' }, { code: 'Timeout', message: 't' }] }),
    probe('wait', 'app', 'b', ok(5)),
    probe('wait', 'app', 'c', { phase: 'Dumping' }),
  ];
  const a = aggregate(sel, targets, probes);
  const by = new Map(a.pods.map((p) => [p.name, p]));
  assert.deepEqual({ m: by.get('web')?.migratable, best: by.get('web')?.bestTarget, all: by.get('web')?.compatibleTargets }, { m: true, best: 'c', all: ['c', 'b'] });
  assert.equal(by.get('two')?.bestTarget, 'c');
  assert.deepEqual(by.get('two')?.compatibleTargets, ['c']);
  assert.equal(by.get('two')?.targets?.find((t) => t.nodeName === 'c')?.freezeMilliseconds, 50, 'the slowest container');
  assert.match(by.get('two')?.targets?.find((t) => t.nodeName === 'b')?.reasons?.[0]?.message ?? '', /^container side: /);
  const lock = by.get('lock')!;
  assert.equal(lock.migratable, false);
  assert.deepEqual(lock.reasons?.map((r) => r.code), ['FileLocks', 'Timeout']);
  assert.equal(lock.reasons?.[0]?.message, 'to b, c: pid 1 holds a flock');
  assert.equal(by.get('wait')?.migratable, undefined, 'pending until every probe of the pod finished');
  assert.equal(by.get('ds')?.skipped, 'owned by a DaemonSet');
  assert.deepEqual(a.totals, { pods: 5, migratable: 2, blocked: 1, pending: 1, skipped: 1, probes: 10 });
  assert.equal(a.complete, false);
  assert.equal(a.drainable.status, 'Unknown');
  assert.deepEqual(a.reasonCounts, [{ code: 'FileLocks', pods: 1 }, { code: 'Timeout', pods: 1 }]);
});

void test('Drainable: False names the blocked pods; True when every pod has a target or there is none to move', () => {
  const probes = [probe('web', 'app', 'b', ok(5)), probe('web', 'app', 'c', ok(5)), probe('lock', 'app', 'b', blocked('FileLocks')), probe('lock', 'app', 'c', blocked('FileLocks'))];
  const f = aggregate({ pods: [sp('web'), sp('lock')], skipped: [] }, targets, probes);
  assert.equal(f.complete, true);
  assert.equal(f.drainable.status, 'False');
  assert.equal(f.drainable.reason, 'PodsBlocked');
  assert.equal(f.drainable.message, '1 of 2 pods cannot be live-migrated: ns/lock (FileLocks)');
  const t = aggregate({ pods: [sp('web')], skipped: [] }, targets, probes);
  assert.deepEqual([t.drainable.status, t.drainable.reason], ['True', 'AllPodsMigratable']);
  const none = aggregate({ pods: [], skipped: [] }, targets, []);
  assert.deepEqual([none.drainable.status, none.drainable.reason], ['True', 'NoPodsToMove']);
});

void test('no eligible target: the pod is blocked at once by the screening reasons, with no probe', () => {
  const only: TargetStatus[] = [targets[2]!, { sourceNodeName: 'a', nodeName: 'd', eligible: false, reasons: [{ code: 'TargetNodeNotReady', message: 'node d is not Ready' }] }];
  const a = aggregate({ pods: [sp('web')], skipped: [] }, only, []);
  assert.equal(a.pods[0]?.migratable, false);
  assert.deepEqual(a.pods[0]?.reasons?.map((r) => r.message), ['to g: source a is x86_64, target g is aarch64', 'to d: node d is not Ready']);
  const nothing = aggregate({ pods: [sp('web')], skipped: [] }, [], []);
  assert.match(nothing.pods[0]?.reasons?.[0]?.message ?? '', /no candidate target node for a/);
});

void test('unionReasons keeps the first message of a code and lists its targets once', () => {
  const u = unionReasons([
    { target: 'b', reasons: [{ code: 'X', message: 'm1' }, { code: 'X', message: 'm2' }] },
    { target: 'c', reasons: [{ code: 'Y', message: 'y' }, { code: 'X', message: 'm3' }] },
  ]);
  assert.deepEqual(u.map((r) => r.message), ['to b, c: m1', 'to c: y']);
});

void test('measureBudget: overlap of [start, end) intervals, per owner, the live count, never below the earlier measure', () => {
  const at = (s: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  const p = (pod: string, s: number, e?: number, phase: MigrationProbeStatus['phase'] = e === undefined ? 'Dumping' : 'Succeeded'): MigrationProbe =>
    probe(pod, 'app', 'b', { phase, startTime: at(s), ...(e !== undefined ? { completionTime: at(e) } : {}) });
  const owner = (x: MigrationProbe): string => (x.spec.podName.startsWith('w') ? 'web' : x.spec.podName);
  const now = Date.UTC(2026, 0, 1, 0, 1, 0);
  // w1 [0,5) w2 [5,9) back to back: one at a time for web; x [3,20) overlaps both.
  assert.deepEqual(measureBudget([p('w1', 0, 5), p('w2', 5, 9), p('x', 3, 20)], owner, now), { maxConcurrentProbes: 2, maxFrozenPerOwner: 1 });
  assert.deepEqual(measureBudget([p('w1', 0, 6), p('w2', 5, 9)], owner, now), { maxConcurrentProbes: 2, maxFrozenPerOwner: 2 });
  assert.deepEqual(measureBudget([p('w1', 0), p('w2', 1)], owner, now), { maxConcurrentProbes: 2, maxFrozenPerOwner: 2 }, 'still running');
  assert.deepEqual(measureBudget([probe('w1', 'app', 'b', { phase: 'Pending' })], owner, now, { maxConcurrentProbes: 3, maxFrozenPerOwner: 1 }), { maxConcurrentProbes: 3, maxFrozenPerOwner: 1 });
});
