import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PHASES } from '../api/v1alpha1.ts';
import { canTransition, checkTimeout, DEFAULT_PHASE_CONFIG, PHASE_TABLE, progressPhase } from './phases.ts';

test('the table covers every phase; final phases go nowhere; everything can fail', () => {
  for (const p of PHASES) assert.ok(PHASE_TABLE[p]);
  assert.deepEqual(PHASE_TABLE.Succeeded.next, []);
  assert.deepEqual(PHASE_TABLE.Failed.next, []);
  for (const p of ['Pending', 'Preflight', 'Dumping', 'Transferring', 'Restoring'] as const) assert.ok(canTransition(p, 'Failed'));
  assert.ok(!canTransition('Succeeded', 'Failed'));
  assert.ok(!canTransition('Restoring', 'Dumping'));
  assert.ok(canTransition(undefined, 'Failed'));
});

test('progressPhase follows the agent forward only', () => {
  assert.equal(progressPhase('Preflight', 'dump'), 'Dumping');
  assert.equal(progressPhase('Dumping', 'restore'), 'Restoring');
  assert.equal(progressPhase('Restoring', 'dump'), 'Restoring');
  assert.equal(progressPhase('Transferring', 'done'), 'Restoring');
});

test('checkTimeout: phase timeout, whole-probe timeout, time left', () => {
  const spec = { podName: 'p', targetNodeName: 'n', timeoutSeconds: 30 };
  const cfg = DEFAULT_PHASE_CONFIG;
  const t = 1_000_000;
  assert.deepEqual(checkTimeout('Dumping', spec, cfg, t + 10_000, t, t), { timedOut: false, nextCheckInMs: 35_000 });
  const a = checkTimeout('Dumping', spec, cfg, t + 45_001, t + 40_000, t);
  assert.equal(a.timedOut, true);
  assert.match(a.timedOut ? a.message : '', /timeoutSeconds \(30s\) in phase Dumping/);
  const b = checkTimeout('Preflight', { ...spec, timeoutSeconds: 600 }, cfg, t + 60_001, t, t);
  assert.match(b.timedOut ? b.message : '', /phase Preflight took longer than 60s/);
  const c = checkTimeout('Pending', spec, cfg, t + 5 * 60_000, t, undefined);
  assert.equal(c.timedOut, false);
  assert.equal(checkTimeout('Pending', spec, cfg, t + 11 * 60_000, t, undefined).timedOut, true);
  assert.deepEqual(checkTimeout('Succeeded', spec, cfg, t, t, t), { timedOut: false });
});
