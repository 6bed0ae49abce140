import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import type { MigrationProbe, Phase } from '../api/v1alpha1.ts';
import { keysForNode, keysForPod, pendingKeys, routing } from './routing.ts';

function probe(name: string, podName: string, target: string, phase?: Phase, extra: { ns?: string; source?: string; deleting?: boolean } = {}): MigrationProbe {
  return {
    metadata: { name, namespace: extra.ns ?? 'ns', ...(extra.deleting === true ? { deletionTimestamp: new Date(0) } : {}) },
    spec: { podName, targetNodeName: target },
    ...(phase !== undefined || extra.source !== undefined
      ? { status: { ...(phase !== undefined ? { phase } : {}), ...(extra.source !== undefined ? { sourceNodeName: extra.source } : {}) } }
      : {}),
  };
}
const pod = (name: string, ns = 'ns', nodeName?: string): V1Pod => ({ metadata: { name, namespace: ns }, ...(nodeName !== undefined ? { spec: { nodeName, containers: [] } } : {}) });

const probes = [
  probe('a', 'web', 'node-b', 'Dumping', { source: 'node-a' }),
  probe('b', 'web', 'node-c', 'Succeeded', { source: 'node-a' }),
  probe('c', 'web', 'node-c', 'Failed', { source: 'node-a', deleting: true }),
  probe('d', 'db', 'node-b'),
  probe('e', 'web', 'node-b', 'Pending', { ns: 'other' }),
];

void test('a pod routes to the live probes of that pod in its namespace only', () => {
  assert.deepEqual(keysForPod(probes, pod('web')), ['ns/a', 'ns/c']);
  assert.deepEqual(keysForPod(probes, pod('web', 'other')), ['other/e']);
  assert.deepEqual(keysForPod(probes, pod('nothing')), []);
});

void test('a node routes to live probes that target it or run on it', () => {
  assert.deepEqual(keysForNode(probes, 'node-b'), ['ns/a', 'ns/d', 'other/e']);
  assert.deepEqual(keysForNode(probes, 'node-a'), ['ns/a', 'ns/c']);
  assert.deepEqual(keysForNode(probes, undefined), []);
});

void test('pending keys are the probes without a phase or in Pending', () => {
  assert.deepEqual(pendingKeys(probes), ['ns/d', 'other/e']);
});

void test('handlers only enqueue: a probe reaching a final phase wakes the pending ones; an agent pod routes by its node', () => {
  const added: string[] = [];
  const r = routing(() => probes, { add: (k) => added.push(k) });
  r.probes.onUpdate?.(probes[0]!, { ...probes[0]!, status: { phase: 'Dumping' } });
  assert.deepEqual(added, ['ns/a']);
  added.length = 0;
  r.probes.onUpdate?.(probes[0]!, { ...probes[0]!, status: { phase: 'Succeeded' } });
  assert.deepEqual(added, ['ns/a', 'ns/d', 'other/e']);
  added.length = 0;
  r.probes.onDelete?.(probes[1]!);
  assert.deepEqual(added, ['ns/b', 'ns/d', 'other/e']);
  added.length = 0;
  r.agentPods.onDelete?.(pod('migprobe-agent-x', 'migprobe-system', 'node-a'));
  assert.deepEqual(added, ['ns/a', 'ns/c']);
  added.length = 0;
  r.pods.onUpdate?.(pod('db'), pod('db'));
  r.nodes.onAdd?.({ metadata: { name: 'node-z' } });
  assert.deepEqual(added, ['ns/d']);
});
