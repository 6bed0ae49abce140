import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PodReadiness, TargetStatus } from '../../api/readiness.ts';
import { appendChanges, baselineOf, drift, isWorse } from './drift.ts';

const pod = (name: string, migratable: boolean | undefined, codes: string[] = []): PodReadiness => ({
  namespace: 'ns',
  name,
  ...(migratable !== undefined ? { migratable } : {}),
  ...(codes.length ? { reasons: codes.map((code) => ({ code, message: 'm' })) } : {}),
});
const pair = (target: string, eligible: boolean, codes: string[] = []): TargetStatus => ({ sourceNodeName: 'a', nodeName: target, eligible, ...(codes.length ? { reasons: codes.map((code) => ({ code, message: 'm' })) } : {}) });

void test('drift: pods migratable<->blocked and pairs eligible<->ineligible between two runs; new or gone ones are not changes', () => {
  const before = baselineOf(1, [pod('web', true), pod('lock', false, ['FileLocks']), pod('gone', true), { ...pod('ds', undefined), skipped: 'DaemonSet' }], [pair('b', true), pair('c', false, ['KernelMismatch'])]);
  assert.deepEqual(before.pods.map((p) => p.name), ['web', 'lock', 'gone']);
  const after = baselineOf(2, [pod('web', false, ['FileLocks', 'Timeout']), pod('lock', true), pod('new', false, ['IoUring'])], [pair('b', false, ['ArchMismatch']), pair('c', true), pair('d', true)]);
  const c = drift(before, after, '2026-01-01T00:05:00Z');
  assert.deepEqual(
    c.map((x) => [x.kind, x.subject, x.from, x.to, (x.reasons ?? []).join('+')]),
    [
      ['Pod', 'ns/web', 'migratable', 'blocked', 'FileLocks+Timeout'],
      ['Pod', 'ns/lock', 'blocked', 'migratable', ''],
      ['NodePair', 'a->b', 'eligible', 'ineligible', 'ArchMismatch'],
      ['NodePair', 'a->c', 'ineligible', 'eligible', ''],
    ],
  );
  assert.ok(c.every((x) => x.runId === 2 && x.time === '2026-01-01T00:05:00Z'));
  assert.deepEqual(c.map(isWorse), [true, false, true, false]);
  assert.deepEqual(drift(undefined, after, 't'), [], 'the first run has nothing to compare with');
  assert.deepEqual(drift(after, after, 't'), []);
});

void test('changes are bounded, newest last', () => {
  const mk = (i: number) => ({ time: 't', runId: i, kind: 'Pod' as const, subject: `ns/p${i}`, from: 'migratable', to: 'blocked' });
  const all = appendChanges(Array.from({ length: 48 }, (_, i) => mk(i)), [mk(48), mk(49), mk(50), mk(51)]);
  assert.equal(all.length, 50);
  assert.equal(all[0]?.runId, 2);
  assert.equal(all.at(-1)?.runId, 51);
});
