// Pure parts of the informer. The list/watch loop itself is tested against a real kube-apiserver in
// test/kube/informer-integration.test.ts and test/kube/watch-timeout.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesObject } from '@kubernetes/client-node';
import { backoffDelayMs, diffList, enqueueHandlers } from './informer.ts';

const obj = (ns: string | undefined, name: string, rv: string): KubernetesObject => ({
  metadata: { ...(ns !== undefined ? { namespace: ns } : {}), name, resourceVersion: rv },
});

void test('backoffDelayMs doubles, caps, and jitters within [cap/2, cap]', () => {
  const lo = (): number => 0;
  const hi = (): number => 0.999999;
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelayMs(n, 500, 30_000, lo)), [250, 500, 1000, 2000]);
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelayMs(n, 500, 30_000, hi)), [500, 1000, 2000, 4000]);
  assert.equal(backoffDelayMs(50, 500, 30_000, hi), 30_000);
  assert.equal(backoffDelayMs(50, 500, 30_000, lo), 15_000);
});

void test('diffList finds added, updated (new resourceVersion) and deleted objects', () => {
  const cache = new Map<string, KubernetesObject>([
    ['ns/keep', obj('ns', 'keep', '1')],
    ['ns/change', obj('ns', 'change', '1')],
    ['ns/gone', obj('ns', 'gone', '1')],
    ['node-a', obj(undefined, 'node-a', '1')],
  ]);
  const d = diffList(cache, [obj('ns', 'keep', '1'), obj('ns', 'change', '2'), obj('ns', 'new', '3'), obj(undefined, 'node-a', '1')]);
  assert.deepEqual(d.added.map((o) => o.metadata?.name), ['new']);
  assert.deepEqual(d.updated.map(([a, b]) => `${a.metadata?.resourceVersion}->${b.metadata?.resourceVersion}`), ['1->2']);
  assert.deepEqual(d.deleted.map((o) => o.metadata?.name), ['gone']);
  assert.deepEqual([...d.next.keys()].sort(), ['node-a', 'ns/change', 'ns/keep', 'ns/new']);
  assert.equal(cache.size, 4, 'the old cache is not mutated');
});

void test('enqueueHandlers only enqueue keys, mapped or not', () => {
  const added: string[] = [];
  const q = { add: (k: string) => added.push(k) };
  const h = enqueueHandlers(q);
  h.onAdd?.(obj('ns', 'a', '1'));
  h.onUpdate?.(obj('ns', 'a', '1'), obj('ns', 'a', '2'));
  h.onDelete?.(obj(undefined, 'n', '1'));
  assert.deepEqual(added, ['ns/a', 'ns/a', 'n']);
  const mapped = enqueueHandlers<KubernetesObject>(q, (o) => [`probes-of/${o.metadata?.name ?? ''}`]);
  mapped.onAdd?.(obj('ns', 'pod1', '1'));
  assert.equal(added.at(-1), 'probes-of/pod1');
});
