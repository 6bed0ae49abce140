import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MigrationNode, NodeFactsView } from '../api/migrationnode.ts';
import { KubeApiError } from '../kube/client.ts';
import { factsIntervalMs, newMigrationNode, publishedStatus, retryDelay, RETRY_BASE_MS, RETRY_MAX_MS } from './nodefacts.ts';
import { goDurationMs } from '../kube/duration.ts';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const facts: NodeFactsView = { arch: 'x86_64', kernelRelease: '6.18.0', criuVersion: '4.2.1', criuFeatures: { uffd: true }, memAvailableBytes: 1 << 30, cpu: { vendor: 'v', model: 'm', flags: ['sse2'] } };

test('newMigrationNode: named after the Node, owned by it for garbage collection, no spec', () => {
  const o = newMigrationNode({ name: 'node-a', uid: 'u-1' });
  assert.equal(o.apiVersion, 'migprobe.io/v1alpha1');
  assert.equal(o.kind, 'MigrationNode');
  assert.equal(o.metadata.name, 'node-a');
  assert.deepEqual(o.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'node-a', uid: 'u-1' }]);
  assert.equal(o.spec, undefined);
  assert.equal('status' in o, false);
});

test('publishedStatus: the facts, the version, the time and Published=True for the generation read', () => {
  const current: MigrationNode = { metadata: { name: 'a', generation: 3 }, spec: { factsOverride: { kernelRelease: '5.10.0' } } };
  const s = publishedStatus({ current, measured: { facts }, agentVersion: '0.1.0', nowMs: T0 });
  assert.deepEqual(s.observedFacts, facts);
  assert.equal(s.agentVersion, '0.1.0');
  assert.equal(s.lastUpdateTime, '2026-01-01T12:00:00Z');
  assert.equal(s.conditions?.length, 1);
  assert.deepEqual(s.conditions?.[0], {
    type: 'Published',
    status: 'True',
    reason: 'FactsPublished',
    message: "agent 0.1.0 measured this node's facts",
    lastTransitionTime: '2026-01-01T12:00:00Z',
    observedGeneration: 3,
  });
  // Nothing of spec is in what the agent writes.
  assert.equal(JSON.stringify(s).includes('5.10.0'), false);
});

test('publishedStatus: lastTransitionTime stays while Published stays True; other conditions are not sent', () => {
  const first = publishedStatus({ current: { metadata: { name: 'a', generation: 1 } }, measured: { facts }, agentVersion: 'v', nowMs: T0 });
  const other = { type: 'Other', status: 'True' as const, reason: 'X', message: '', lastTransitionTime: '2025-01-01T00:00:00Z' };
  const current: MigrationNode = { metadata: { name: 'a', generation: 2 }, status: { ...first, conditions: [...(first.conditions ?? []), other] } };
  const later = publishedStatus({ current, measured: { facts }, agentVersion: 'v', nowMs: T0 + 600_000 });
  assert.deepEqual(later.conditions?.map((c) => c.type), ['Published']);
  assert.equal(later.conditions?.[0]?.lastTransitionTime, '2026-01-01T12:00:00Z');
  assert.equal(later.conditions?.[0]?.observedGeneration, 2);
  assert.equal(later.lastUpdateTime, '2026-01-01T12:10:00Z');
});

test('publishedStatus: a failed measurement keeps the last good facts and time, Published=False with the cause', () => {
  const good = publishedStatus({ current: { metadata: { name: 'a', generation: 1 } }, measured: { facts }, agentVersion: 'v', nowMs: T0 });
  const current: MigrationNode = { metadata: { name: 'a', generation: 1 }, status: good };
  const bad = publishedStatus({ current, measured: { error: 'criu --version timed out' }, agentVersion: 'v', nowMs: T0 + 60_000 });
  assert.deepEqual(bad.observedFacts, facts);
  assert.equal(bad.lastUpdateTime, good.lastUpdateTime);
  assert.equal(bad.conditions?.[0]?.status, 'False');
  assert.equal(bad.conditions?.[0]?.reason, 'FactsUnavailable');
  assert.match(bad.conditions?.[0]?.message ?? '', /criu --version timed out/);
  assert.equal(bad.conditions?.[0]?.lastTransitionTime, '2026-01-01T12:01:00Z');
  // Nothing measured ever: no facts at all rather than made-up ones.
  const none = publishedStatus({ current: { metadata: { name: 'a' } }, measured: { error: 'x' }, agentVersion: 'v', nowMs: T0 });
  assert.equal(none.observedFacts, undefined);
  assert.equal(none.lastUpdateTime, undefined);
  assert.equal(none.conditions?.[0]?.observedGeneration, 0);
});

test('retryDelay: the interval after a success; exponential backoff from 1 s after failures, capped by the interval', () => {
  const interval = 600_000;
  const boom = new Error('connect ECONNREFUSED');
  assert.equal(retryDelay(interval, 0), interval);
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => retryDelay(interval, n, boom)), [1000, 2000, 4000, 8000, 16000]);
  assert.equal(retryDelay(interval, 40, boom), RETRY_MAX_MS);
  assert.equal(retryDelay(3000, 10, boom), 3000, 'never beyond a short interval');
  assert.equal(retryDelay(interval, 5, new KubeApiError(500, { kind: 'Status', code: 500 })), 16000);
});

test('retryDelay: 429 waits the Retry-After; 404 and 409 retry soon', () => {
  const tooMany = new KubeApiError(429, { kind: 'Status', code: 429, details: { retryAfterSeconds: 7 } });
  assert.equal(retryDelay(600_000, 1, tooMany), 7000);
  assert.equal(retryDelay(5000, 1, new KubeApiError(429, { kind: 'Status', code: 429, details: { retryAfterSeconds: 60 } })), 5000);
  assert.equal(retryDelay(600_000, 6, new KubeApiError(404, { kind: 'Status', code: 404 })), RETRY_BASE_MS);
  assert.equal(retryDelay(600_000, 6, new KubeApiError(409, { kind: 'Status', code: 409 })), RETRY_BASE_MS);
});

test('Go-style durations and --facts-interval', () => {
  assert.equal(goDurationMs('10m'), 600_000);
  assert.equal(goDurationMs('90s'), 90_000);
  assert.equal(goDurationMs('1h30m'), 5_400_000);
  assert.equal(goDurationMs('1500ms'), 1500);
  assert.equal(goDurationMs('2.5s'), 2500);
  for (const bad of ['', '10', 'm', '-5s', '5 s', '5d', '1m-1s']) assert.equal(goDurationMs(bad), undefined, bad);
  assert.equal(factsIntervalMs('2s'), 2000);
  assert.throws(() => factsIntervalMs('500ms'), /--facts-interval must be a duration of at least 1s/);
  assert.throws(() => factsIntervalMs('often'), /not 'often'/);
});
