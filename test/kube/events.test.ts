// EventRecorder against the real kube-apiserver: Events are visible through the API (and kubectl), repeats
// are aggregated into one Event with a count, and an unreachable API server never throws into the caller.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { freePort, kube, testbed } from '../../testbed/index.ts';
import { run } from '../../testbed/proc.ts';
import { EventRecorder } from '../../src/kube/events.ts';
import { createLogger } from '../../src/kube/logger.ts';
import { kubeConfigVia } from './util.ts';

const logger = createLogger({ component: 'test', level: process.env.MIGPROBE_TEST_LOG ?? 'error' });

void test('events: written for the involved object, repeats aggregated, visible to kubectl', async (t) => {
  const tb = await testbed();
  const kc = kube.client(tb);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const ns = `events-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(kc, ns);
  t.after(async () => {
    const evs = await core.listNamespacedEvent({ namespace: ns });
    for (const e of evs.items) await core.deleteNamespacedEvent({ namespace: ns, name: e.metadata?.name ?? '' });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'subject' }).catch(() => undefined);
    await kube.deleteNamespace(kc, ns);
  });
  const cm = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'subject' } } });
  const obj = { apiVersion: 'v1', kind: 'ConfigMap', metadata: cm.metadata ?? {} };
  const rec = new EventRecorder({ kubeConfig: kc, component: 'migprobe-test', host: 'node-a', logger });

  rec.normal(obj, 'Dumping', 'dump check started on node-a');
  rec.normal(obj, 'Dumping', 'dump check started on node-a');
  rec.normal(obj, 'Dumping', 'dump check started on node-a');
  rec.warning(obj, 'NotMigratable', 'TCPEstablished: 1 established TCP connection');
  await rec.flush();
  assert.equal(rec.failedWrites(), 0);

  const evs = await core.listNamespacedEvent({ namespace: ns, fieldSelector: `involvedObject.uid=${cm.metadata?.uid ?? ''}` });
  const byReason = new Map(evs.items.map((e) => [e.reason, e]));
  assert.equal(evs.items.length, 2, JSON.stringify(evs.items.map((e) => [e.reason, e.count])));
  const dumping = byReason.get('Dumping');
  assert.equal(dumping?.count, 3);
  assert.equal(dumping?.type, 'Normal');
  assert.equal(dumping?.source?.component, 'migprobe-test');
  assert.equal(dumping?.involvedObject.name, 'subject');
  assert.equal(dumping?.involvedObject.kind, 'ConfigMap');
  assert.equal(byReason.get('NotMigratable')?.type, 'Warning');

  const out = await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, '-n', ns, 'get', 'events', '-o', 'wide'], { timeoutMs: 30_000 });
  assert.match(out.stdout, /Dumping/);
  assert.match(out.stdout, /NotMigratable/);
});

void test('events: an unreachable API server never throws into the caller', async (t) => {
  const tb = await testbed();
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-ev-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const dead = kubeConfigVia(tb.kubeconfigPath, await freePort(), tmp);
  const rec = new EventRecorder({ kubeConfig: dead, component: 'migprobe-test', logger });
  assert.doesNotThrow(() => rec.warning({ kind: 'Pod', metadata: { name: 'x', namespace: 'default' } }, 'Oops', 'nobody listens'));
  await rec.flush();
  assert.equal(rec.failedWrites(), 1);
});
