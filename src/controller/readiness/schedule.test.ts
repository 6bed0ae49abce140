import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MigrationReadiness } from '../../api/readiness.ts';
import { FakeClock } from '../../kube/clock.ts';
import { nextRunMs, nextTick, runTrigger, scheduleProblem } from './schedule.ts';

void test('cron: 5 fields, UTC; a clear problem otherwise', () => {
  assert.equal(scheduleProblem('*/15 2-4 * * 1-5'), undefined);
  assert.match(scheduleProblem('* * * *') ?? '', /has 4 fields; it needs 5/);
  assert.match(scheduleProblem('0 * * * * *') ?? '', /has 6 fields/);
  assert.match(scheduleProblem('61 * * * *') ?? '', /is not a cron expression/);
  assert.match(scheduleProblem('0 0 31 2 *') ?? '', /is not a cron expression/);
});

void test('cron: the next tick strictly after a time, in UTC', () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 10, 2, 30));
  assert.equal(new Date(nextTick('*/5 * * * *', clock.now())).toISOString(), '2026-01-01T10:05:00.000Z');
  assert.equal(new Date(nextTick('* * * * *', Date.UTC(2026, 0, 1, 10, 3, 0))).toISOString(), '2026-01-01T10:04:00.000Z');
  assert.equal(new Date(nextTick('0 3 * * *', clock.now())).toISOString(), '2026-01-02T03:00:00.000Z');
  clock.advance(3 * 60_000);
  assert.equal(new Date(nextTick('*/5 * * * *', clock.now())).toISOString(), '2026-01-01T10:10:00.000Z');
});

void test('run triggers: first run, spec change, rerun annotation, a due tick (not while running); suspend holds all', () => {
  const now = Date.UTC(2026, 0, 1, 10, 0, 0);
  const base = (over: Partial<MigrationReadiness> = {}): MigrationReadiness => ({ metadata: { name: 'r', generation: 2 }, spec: { source: { nodeName: 'a' } }, ...over });
  assert.equal(runTrigger(base(), now), 'FirstRun');
  assert.equal(runTrigger(base({ spec: { source: { nodeName: 'a' }, suspend: true } }), now), undefined);
  const done = { runId: 1, observedGeneration: 2, phase: 'Completed' as const, observedRerun: '' };
  assert.equal(runTrigger(base({ status: done }), now), undefined);
  assert.equal(runTrigger(base({ status: { ...done, observedGeneration: 1 } }), now), 'SpecChanged');
  assert.equal(runTrigger(base({ metadata: { name: 'r', generation: 2, annotations: { 'migprobe.io/rerun': 'x' } }, status: done }), now), 'RerunRequested');
  assert.equal(runTrigger(base({ metadata: { name: 'r', generation: 2, annotations: { 'migprobe.io/rerun': 'x' } }, status: { ...done, observedRerun: 'x' } }), now), undefined);
  const sched = { source: { nodeName: 'a' }, schedule: '* * * * *' };
  assert.equal(runTrigger(base({ spec: sched, status: { ...done, nextRunTime: '2026-01-01T10:00:00Z' } }), now), 'Scheduled');
  assert.equal(runTrigger(base({ spec: sched, status: { ...done, nextRunTime: '2026-01-01T10:01:00Z' } }), now), undefined);
  assert.equal(runTrigger(base({ spec: sched, status: { ...done, phase: 'Running', nextRunTime: '2026-01-01T10:00:00Z' } }), now), undefined, 'a tick while a run goes is skipped');
  assert.equal(nextRunMs({ spec: sched }, now), now + 60_000);
  assert.equal(nextRunMs({ spec: { ...sched, suspend: true } }, now), undefined);
  assert.equal(nextRunMs({ spec: { source: {} } }, now), undefined);
});
