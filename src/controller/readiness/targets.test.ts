import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import type { MigrationNode, NodeFactsView } from '../../api/migrationnode.ts';
import type { MigrationReadiness } from '../../api/readiness.ts';
import { REASON_CATALOG } from '../../reasons.ts';
import { candidates, eligibleTargets, screenTargets } from './targets.ts';

const facts: NodeFactsView = { arch: 'x86_64', kernelRelease: '6.18.0', criuVersion: '4.2.1', criuFeatures: { uffd: true }, memAvailableBytes: 8 * 2 ** 30, cpu: { vendor: 'v', model: 'm', flags: ['sse2'] } };
const node = (name: string, o: { ready?: boolean; cordoned?: boolean; labels?: Record<string, string> } = {}): V1Node => ({
  metadata: { name, labels: o.labels ?? {} },
  spec: o.cordoned ? { unschedulable: true } : {},
  status: { conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
});
const mn = (name: string, f: NodeFactsView | undefined, override?: NodeFactsView): MigrationNode => ({
  metadata: { name },
  ...(override ? { spec: { factsOverride: override } } : {}),
  ...(f ? { status: { observedFacts: f } } : {}),
});

function world(spec: Partial<MigrationReadiness['spec']> = {}) {
  const nodes = [node('a'), node('b'), node('c', { ready: false }), node('d', { cordoned: true }), node('e'), node('f', { labels: { pool: 'x' } }), node('g')];
  const agents = new Set(['a', 'b', 'c', 'd', 'f', 'g']); // e has no agent
  const mns = new Map<string, MigrationNode>([
    ['a', mn('a', facts)],
    ['b', mn('b', facts)],
    ['c', mn('c', facts)],
    ['d', mn('d', facts)],
    ['e', mn('e', facts)],
    ['f', mn('f', undefined)], // agent, no facts published
    ['g', mn('g', facts, { arch: 'aarch64' })], // made incompatible by spec.factsOverride
  ]);
  return {
    readiness: { spec: { source: { nodeName: 'a' }, ...spec } },
    sources: ['a'],
    nodes,
    hasAgent: (n: string) => agents.has(n),
    migrationNode: (n: string) => mns.get(n),
  };
}

void test('default candidates: every other node with an agent; screening names every reason, before any dump', () => {
  const w = world();
  assert.deepEqual(candidates(w, 'a').map((c) => c.name), ['b', 'c', 'd', 'f', 'g']);
  const t = screenTargets(w);
  const by = new Map(t.map((x) => [x.nodeName, x]));
  assert.equal(by.get('b')?.eligible, true);
  assert.equal(by.get('b')?.reasons, undefined);
  assert.deepEqual(by.get('c')?.reasons?.map((r) => r.code), ['TargetNodeNotReady']);
  assert.deepEqual(by.get('d')?.reasons?.map((r) => r.code), ['TargetNodeUnschedulable']);
  assert.deepEqual(by.get('f')?.reasons?.map((r) => r.code), ['NodeFactsUnknown']);
  assert.match(by.get('f')?.reasons?.[0]?.message ?? '', /no MigrationNode facts for f/);
  assert.deepEqual(by.get('g')?.reasons?.map((r) => r.code), ['ArchMismatch']);
  assert.equal(by.get('g')?.reasons?.[0]?.hint, REASON_CATALOG.ArchMismatch.hint);
  assert.equal(by.get('g')?.reasons?.[0]?.phase, 'compat');
  assert.ok(t.every((x) => x.sourceNodeName === 'a'));
  assert.deepEqual(eligibleTargets(t, 'a'), ['b']);
  assert.deepEqual(eligibleTargets(t, 'z'), []);
});

void test('named targets and a node selector: a missing node, the source itself and a node without an agent say so', () => {
  const w = world({ targets: { nodeNames: ['a', 'e', 'nope'], nodeSelector: { matchLabels: { pool: 'x' } } } });
  const t = screenTargets(w);
  assert.deepEqual(t.map((x) => `${x.nodeName}:${(x.reasons ?? []).map((r) => r.code).join('+') || 'ok'}`), ['a:SameNode', 'e:AgentUnavailable', 'f:NodeFactsUnknown', 'nope:TargetNodeNotFound']);
});

void test('a source without an agent or facts makes every pair ineligible', () => {
  const w = world({ targets: { nodeNames: ['b'] } });
  const t = screenTargets({ ...w, readiness: { spec: { source: { nodeName: 'e' }, targets: { nodeNames: ['b'] } } }, sources: ['e'] });
  assert.deepEqual(t[0]?.reasons?.map((r) => r.code), ['AgentUnavailable']);
  const noFacts = screenTargets({ ...w, readiness: { spec: { source: { nodeName: 'f' }, targets: { nodeNames: ['b'] } } }, sources: ['f'] });
  assert.deepEqual(noFacts[0]?.reasons?.map((r) => r.code), ['NodeFactsUnknown']);
});
