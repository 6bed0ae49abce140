// The informer against real kube-apiservers:
// - its connection cut (a TCP proxy drops every connection and refuses new ones): it backs off, watches again
//   from its resourceVersion, and ends with the objects created, changed and deleted during the outage;
//   label and field selectors hold;
// - a private kube-apiserver restarted under it, with etcd compacted meanwhile: its resourceVersion is gone
//   (410), it relists, and sees what changed; it then keeps watching;
// - a private kube-apiserver restarted under it (no compaction): it recovers and sees later objects.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { freePort, kube, restartApiServer, testbed } from '../../testbed/index.ts';
import { Informer } from '../../src/kube/informer.ts';
import { createLogger } from '../../src/kube/logger.ts';
import { CuttableProxy, compactEtcd, eventually, kubeConfigVia, privateApiServer, sleep } from './util.ts';

const logger = createLogger({ component: 'test', level: process.env.MIGPROBE_TEST_LOG ?? 'error' });

interface Seen {
  log: string[];
}

function watchLog(inf: Informer<k8s.V1ConfigMap>): Seen {
  const seen: Seen = { log: [] };
  inf.on({
    onAdd: (o) => seen.log.push(`add ${o.metadata?.name}`),
    onUpdate: (a, b) => {
      if (a.metadata?.resourceVersion !== b.metadata?.resourceVersion) seen.log.push(`update ${b.metadata?.name}`);
    },
    onDelete: (o) => seen.log.push(`delete ${o.metadata?.name}`),
  });
  return seen;
}

const names = (inf: Informer<k8s.V1ConfigMap>): string[] => inf.list().map((o) => o.metadata?.name ?? '').sort();

void test('informer: connection cut mid-watch; it recovers and sees what changed meanwhile; selectors hold', async (t) => {
  const tb = await testbed();
  const admin = kube.client(tb);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const ns = `inf-cut-${randomBytes(3).toString('hex')}`;
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-inf-'));
  const proxy = new CuttableProxy(tb.apiserver.host, tb.apiserver.port);
  await proxy.start();
  const inf = new Informer<k8s.V1ConfigMap>({
    name: 'cut',
    kubeConfig: kubeConfigVia(tb.kubeconfigPath, proxy.port, tmp),
    path: `/api/v1/namespaces/${ns}/configmaps`,
    labelSelector: 'app=mine',
    fieldSelector: 'metadata.name!=excluded',
    backoff: { initialMs: 200, maxMs: 1000 },
    logger,
  });
  t.after(async () => {
    await inf.stop();
    await proxy.close();
    await kube.deleteNamespace(admin, ns);
    rmSync(tmp, { recursive: true, force: true });
  });
  await kube.ensureNamespace(admin, ns);
  const mk = (name: string, labels: Record<string, string> = { app: 'mine' }): Promise<k8s.V1ConfigMap> =>
    core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels }, data: { v: '1' } } });
  await mk('a');
  await mk('c');
  await mk('other', { app: 'theirs' });
  await mk('excluded');
  const seen = watchLog(inf);
  inf.start();
  assert.equal(await inf.waitForSync(), true);
  assert.deepEqual(names(inf), ['a', 'c'], 'label and field selectors applied to the list');
  assert.ok(inf.get(`${ns}/a`));

  await proxy.cut();
  await sleep(1500);
  await mk('b');
  await core.deleteNamespacedConfigMap({ namespace: ns, name: 'a' });
  await core.patchNamespacedConfigMap(
    { namespace: ns, name: 'c', body: { data: { v: '2' } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await mk('other2', { app: 'theirs' });
  await sleep(1000);
  assert.deepEqual(names(inf), ['a', 'c'], 'nothing seen while cut');
  await proxy.restore();

  await eventually('the informer to catch up after the outage', 20_000, () => names(inf).join() === 'b,c' && inf.get(`${ns}/c`)?.data?.v === '2');
  assert.ok((inf.stats.restarts.error ?? 0) + (inf.stats.restarts.list_error ?? 0) >= 1, JSON.stringify(inf.stats));
  assert.deepEqual(
    seen.log.filter((l) => !l.startsWith('add a') && !l.startsWith('add c')).sort(),
    ['add b', 'delete a', 'update c'],
  );
  // And it keeps watching.
  await mk('d');
  await eventually('d to arrive', 10_000, () => inf.get(`${ns}/d`) !== undefined);
  t.diagnostic(`stats: ${JSON.stringify(inf.stats)}`);
});

void test('informer: kube-apiserver restarted under it, with and without etcd compaction (410 -> relist)', async (t) => {
  const priv = await privateApiServer();
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-inf-'));
  const proxy = new CuttableProxy(priv.st.host, priv.st.port);
  const infs: Informer<k8s.V1ConfigMap>[] = [];
  t.after(async () => {
    for (const i of infs) await i.stop();
    await proxy.close();
    await priv.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });
  await proxy.start();
  const core = priv.kc.makeApiClient(k8s.CoreV1Api);
  const ns = 'inf-restart';
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespace({ body: { metadata: { name: 'noise' } } });
  const mk = (namespace: string, name: string): Promise<k8s.V1ConfigMap> =>
    core.createNamespacedConfigMap({ namespace, body: { metadata: { name } } });
  await mk(ns, 'a');

  // Direct informer (restart only) and one through the proxy (cut + compaction + restart).
  const direct = new Informer<k8s.V1ConfigMap>({
    name: 'direct',
    kubeConfig: priv.kc,
    path: `/api/v1/namespaces/${ns}/configmaps`,
    backoff: { initialMs: 200, maxMs: 1000 },
    logger,
  });
  const viaProxy = new Informer<k8s.V1ConfigMap>({
    name: 'compacted',
    kubeConfig: kubeConfigVia(priv.st.kubeconfigPath, proxy.port, tmp),
    path: `/api/v1/namespaces/${ns}/configmaps`,
    // No bookmarks: its resourceVersion stays at the list's, which compaction then makes too old.
    allowWatchBookmarks: false,
    backoff: { initialMs: 200, maxMs: 1000 },
    logger,
  });
  infs.push(direct, viaProxy);
  const seen = watchLog(viaProxy);
  direct.start();
  viaProxy.start();
  assert.equal(await direct.waitForSync(), true);
  assert.equal(await viaProxy.waitForSync(), true);
  const rv0 = viaProxy.lastResourceVersion();

  await proxy.cut();
  await mk(ns, 'b');
  await core.deleteNamespacedConfigMap({ namespace: ns, name: 'a' });
  for (let i = 0; i < 5; i++) await mk('noise', `n${i}`);
  const compactedAt = await compactEtcd(priv.st.etcdPort);
  assert.ok(compactedAt > Number(rv0), `compacted at ${compactedAt} > ${rv0}`);
  await restartApiServer(priv.st, { downMs: 1000 });
  await proxy.restore();

  await eventually('the compacted informer to relist', 30_000, () => names(viaProxy).join() === 'b');
  assert.ok((viaProxy.stats.restarts.gone ?? 0) >= 1, `expected a 410: ${JSON.stringify(viaProxy.stats)}`);
  assert.ok(viaProxy.stats.lists >= 2, 'relisted');
  assert.deepEqual(seen.log, ['add a', 'delete a', 'add b']);

  await eventually('the direct informer to recover after the restart', 30_000, () => names(direct).join() === 'b');
  await mk(ns, 'c');
  await eventually('both informers to see c', 15_000, () => names(direct).join() === 'b,c' && names(viaProxy).join() === 'b,c');
  t.diagnostic(`direct: ${JSON.stringify(direct.stats)} compacted: ${JSON.stringify(viaProxy.stats)}`);
});

void test('informer: resync re-delivers cached objects; stop() ends the loop', async (t) => {
  const tb = await testbed();
  const admin = kube.client(tb);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const ns = `inf-resync-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(admin, ns);
  await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'x' } } });
  const inf = new Informer<k8s.V1ConfigMap>({
    name: 'resync',
    kubeConfig: admin,
    path: `/api/v1/namespaces/${ns}/configmaps`,
    resyncPeriodMs: 500,
    logger,
  });
  t.after(async () => {
    await inf.stop();
    await kube.deleteNamespace(admin, ns);
  });
  let resyncs = 0;
  inf.on({ onUpdate: (a, b) => (a === b ? resyncs++ : undefined) });
  inf.start();
  assert.equal(await inf.waitForSync(), true);
  await eventually('two resyncs', 5000, () => resyncs >= 2);
  await inf.stop();
  const after = resyncs;
  await sleep(1200);
  assert.equal(resyncs, after, 'no resync after stop');
});

void test('informer: the watchdog relists when nothing arrives for watchdogMs', async (t) => {
  const tb = await testbed();
  const admin = kube.client(tb);
  const ns = `inf-dog-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(admin, ns);
  const inf = new Informer<k8s.V1ConfigMap>({
    name: 'watchdog',
    kubeConfig: admin,
    path: `/api/v1/namespaces/${ns}/configmaps`,
    watchdogMs: 1500,
    allowWatchBookmarks: false,
    logger,
  });
  t.after(async () => {
    await inf.stop();
    await kube.deleteNamespace(admin, ns);
  });
  inf.start();
  assert.equal(await inf.waitForSync(), true);
  await eventually('a watchdog relist', 10_000, () => (inf.stats.restarts.watchdog ?? 0) >= 1 && inf.stats.lists >= 2);
  // Still working afterwards.
  await admin.makeApiClient(k8s.CoreV1Api).createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'y' } } });
  await eventually('y to arrive', 10_000, () => inf.get(`${ns}/y`) !== undefined);
});

void test('informer: with no API server it keeps retrying; stop() returns at once and waitForSync says false', async (t) => {
  const tb = await testbed();
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-inf-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const inf = new Informer<k8s.V1ConfigMap>({
    name: 'dead',
    kubeConfig: kubeConfigVia(tb.kubeconfigPath, await freePort(), tmp),
    path: '/api/v1/configmaps',
    backoff: { initialMs: 50, maxMs: 200 },
    logger,
  });
  const synced = inf.waitForSync();
  inf.start();
  await eventually('a few failed lists', 5000, () => (inf.stats.restarts.list_error ?? 0) >= 3);
  const t0 = Date.now();
  await inf.stop();
  assert.ok(Date.now() - t0 < 1000, `stop took ${Date.now() - t0} ms`);
  assert.equal(await synced, false);
  assert.equal(inf.hasSynced(), false);
});
