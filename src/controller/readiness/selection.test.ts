import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import { matchesSelector, resolveOwner, selectorProblem, selectPods, skipReason } from './selection.ts';

function pod(name: string, node: string, more: { labels?: Record<string, string>; owner?: { kind: string; name: string }; phase?: string; annotations?: Record<string, string>; ns?: string; containers?: string[]; running?: string[] } = {}): V1Pod {
  const containers = more.containers ?? ['app'];
  const running = more.running ?? containers;
  return {
    metadata: {
      name,
      namespace: more.ns ?? 'ns',
      labels: more.labels ?? {},
      ...(more.annotations ? { annotations: more.annotations } : {}),
      ...(more.owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: more.owner.kind, name: more.owner.name, uid: 'u', controller: true }] } : {}),
    },
    spec: { nodeName: node, containers: containers.map((c) => ({ name: c })) },
    status: {
      phase: more.phase ?? 'Running',
      containerStatuses: containers.map((c) => ({ name: c, image: '', imageID: '', ready: true, restartCount: 0, ...(running.includes(c) ? { state: { running: {} } } : { state: { waiting: {} } }) })),
    },
  };
}

const rs = (name: string, deployment?: string): V1ReplicaSet => ({
  metadata: { name, namespace: 'ns', ...(deployment ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment, uid: 'd', controller: true }] } : {}) },
});

void test('label selectors: matchLabels and every operator; empty matches all', () => {
  assert.equal(matchesSelector(undefined, { a: '1' }), true);
  assert.equal(matchesSelector({}, {}), true);
  assert.equal(matchesSelector({ matchLabels: { a: '1' } }, { a: '1', b: '2' }), true);
  assert.equal(matchesSelector({ matchLabels: { a: '1' } }, { a: '2' }), false);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'In', values: ['1', '2'] }] }, { a: '2' }), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'In', values: ['1'] }] }, {}), false);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, {}), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, { a: '1' }), false);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'Exists' }] }, { a: '' }), true);
  assert.equal(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'DoesNotExist' }] }, { a: '' }), false);
  assert.match(selectorProblem({ matchExpressions: [{ key: 'a', operator: 'In' }] }, 'spec.x') ?? '', /spec\.x\.matchExpressions\[0\]: operator In needs values/);
  assert.match(selectorProblem({ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }, 'f') ?? '', /takes no values/);
  assert.equal(selectorProblem({ matchLabels: { a: 'b' } }, 'f'), undefined);
});

void test('owners: ReplicaSet resolves to its Deployment; StatefulSet, Job and orphan ReplicaSets stay; bare pods have none', () => {
  const lookup = (_ns: string, n: string): V1ReplicaSet | undefined => ({ 'web-5d': rs('web-5d', 'web'), lone: rs('lone') })[n];
  assert.deepEqual(resolveOwner(pod('a', 'n', { owner: { kind: 'ReplicaSet', name: 'web-5d' } }), lookup), { kind: 'Deployment', name: 'web' });
  assert.deepEqual(resolveOwner(pod('a', 'n', { owner: { kind: 'ReplicaSet', name: 'lone' } }), lookup), { kind: 'ReplicaSet', name: 'lone' });
  assert.deepEqual(resolveOwner(pod('a', 'n', { owner: { kind: 'ReplicaSet', name: 'not-cached' } }), lookup), { kind: 'ReplicaSet', name: 'not-cached' });
  assert.deepEqual(resolveOwner(pod('a', 'n', { owner: { kind: 'StatefulSet', name: 'db' } }), lookup), { kind: 'StatefulSet', name: 'db' });
  assert.deepEqual(resolveOwner(pod('a', 'n', { owner: { kind: 'Job', name: 'j' } }), lookup), { kind: 'Job', name: 'j' });
  assert.equal(resolveOwner(pod('a', 'n'), lookup), undefined);
});

void test('drain semantics: DaemonSet, mirror, agent, not Running, terminating pods are skipped with a reason', () => {
  assert.match(skipReason(pod('a', 'n', { owner: { kind: 'DaemonSet', name: 'ds' } })) ?? '', /DaemonSet/);
  assert.match(skipReason(pod('a', 'n', { annotations: { 'kubernetes.io/config.mirror': 'x' } })) ?? '', /mirror pod of a static pod/);
  assert.match(skipReason(pod('a', 'n', { labels: { 'app.kubernetes.io/name': 'migprobe-agent' } })) ?? '', /migprobe agent/);
  assert.match(skipReason(pod('a', 'n', { phase: 'Succeeded' })) ?? '', /not Running \(phase Succeeded\)/);
  assert.match(skipReason(pod('a', 'n', { running: [] })) ?? '', /no container is running/);
  const t = pod('a', 'n');
  t.metadata!.deletionTimestamp = new Date();
  assert.equal(skipReason(t), 'terminating');
  assert.equal(skipReason(pod('a', 'n')), undefined);
});

void test('selectPods: the source node only, narrowed by selectors; running containers in spec order; sorted', () => {
  const pods = [
    pod('z', 'node-a', { labels: { app: 'web' }, owner: { kind: 'ReplicaSet', name: 'web-5d' }, containers: ['main', 'side', 'init-like'], running: ['side', 'main'] }),
    pod('b', 'node-a', { labels: { app: 'db' } }),
    pod('c', 'node-b', { labels: { app: 'web' } }),
    pod('d', 'node-a', { labels: { app: 'web' }, owner: { kind: 'DaemonSet', name: 'logs' } }),
    pod('e', 'node-a', { labels: { app: 'web' }, ns: 'other' }),
  ];
  const namespaces = (n: string) => ({ metadata: { name: n, labels: { team: n === 'ns' ? 'blue' : 'red' } } });
  const replicaSet = (_ns: string, n: string) => (n === 'web-5d' ? rs('web-5d', 'web') : undefined);
  const all = selectPods({ readiness: { spec: { source: { nodeName: 'node-a' } } }, pods, namespaces, replicaSet });
  assert.deepEqual(all.pods.map((p) => `${p.namespace}/${p.name}`), ['ns/b', 'ns/z', 'other/e']);
  assert.deepEqual(all.skipped.map((p) => p.name), ['d']);
  const z = all.pods.find((p) => p.name === 'z')!;
  assert.deepEqual(z.containers, ['main', 'side']);
  assert.equal(z.ownerKey, 'ns/Deployment/web');
  assert.equal(all.pods.find((p) => p.name === 'b')!.ownerKey, 'ns/Pod/b');
  const web = selectPods({ readiness: { spec: { source: { nodeName: 'node-a', podSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { team: 'blue' } } } } }, pods, namespaces, replicaSet });
  assert.deepEqual(web.pods.map((p) => p.name), ['z']);
  const anywhere = selectPods({ readiness: { spec: { source: { podSelector: { matchLabels: { app: 'web' } } } } }, pods, namespaces, replicaSet });
  assert.deepEqual(anywhere.pods.map((p) => `${p.name}@${p.nodeName}`), ['c@node-b', 'z@node-a', 'e@node-a']);
});
