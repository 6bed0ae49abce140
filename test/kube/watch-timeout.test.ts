// Does the pinned @kubernetes/client-node (2.0.1) kill healthy watches? Against the real kube-apiserver:
//
// 1. A raw `Watch` on a namespace where NOTHING happens (no events, no bookmarks asked for): client-node
//    2.0.1's Watch has a 30 s *inactivity* timer (`requestTimeoutMs`, reset on every chunk of data; 2.0.0
//    had a 30 s timer on the whole request). So this idle but healthy watch is aborted with a TimeoutError
//    after ~30 s. The test asserts exactly that, so a client-node bump that changes it is noticed.
// 2. A raw `Watch` that receives an event every 5 s stays open past 40 s (the 2.0.0 bug, fixed in 2.0.1).
// 3. Our Informer (src/kube/informer.ts) on an idle namespace: it asks the server to end each watch before
//    30 s (timeoutSeconds) with bookmarks on, so client-node's timer never fires; after 40+ s of silence it
//    still delivers an object created then, without having relisted.
// 4. The same Informer told to use long server-side watches (300 s) and no bookmarks, so client-node's 30 s
//    timer does fire: it re-watches at once from its resourceVersion (no relist) and still delivers.
// All four run at the same time (about 45 s in all).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { kube, testbed } from '../../testbed/index.ts';
import { Informer } from '../../src/kube/informer.ts';
import { createLogger } from '../../src/kube/logger.ts';

const IDLE_MS = 40_000;

interface WatchRecord {
  events: Array<{ type: string; name: string; at: number }>;
  done?: { at: number; err: unknown };
  ctrl?: AbortController;
}

async function rawWatch(kc: k8s.KubeConfig, path: string, query: Record<string, string | boolean | number>): Promise<WatchRecord> {
  const rec: WatchRecord = { events: [] };
  const w = new k8s.Watch(kc);
  const start = Date.now();
  rec.ctrl = await w.watch(
    path,
    query,
    (type, obj: k8s.KubernetesObject) => rec.events.push({ type, name: obj.metadata?.name ?? '', at: Date.now() - start }),
    (err: unknown) => {
      rec.done ??= { at: Date.now() - start, err };
    },
  );
  return rec;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void test('client-node 2.0.1 watch: idle watches are cut after 30 s of silence, busy ones are not; our informer survives idling', async (t) => {
  const tb = await testbed();
  const kc = kube.client(tb);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const suffix = randomBytes(3).toString('hex');
  const idleNs = `wt-idle-${suffix}`;
  const busyNs = `wt-busy-${suffix}`;
  const infNs = `wt-inf-${suffix}`;
  const longNs = `wt-long-${suffix}`;
  const allNs = [idleNs, busyNs, infNs, longNs];
  for (const ns of allNs) await kube.ensureNamespace(kc, ns);
  const informer = new Informer<k8s.V1ConfigMap>({
    name: 'watch-timeout',
    kubeConfig: kc,
    path: `/api/v1/namespaces/${infNs}/configmaps`,
    logger: createLogger({ component: 'test', level: 'warn' }),
  });
  const longInformer = new Informer<k8s.V1ConfigMap>({
    name: 'watch-timeout-long',
    kubeConfig: kc,
    path: `/api/v1/namespaces/${longNs}/configmaps`,
    watchTimeoutSeconds: { min: 300, max: 300 },
    allowWatchBookmarks: false,
    logger: createLogger({ component: 'test', level: 'warn' }),
  });
  const watches: WatchRecord[] = [];
  t.after(async () => {
    for (const w of watches) w.ctrl?.abort();
    await informer.stop();
    await longInformer.stop();
    for (const ns of allNs) {
      const list = await core.listNamespacedConfigMap({ namespace: ns });
      for (const cm of list.items) {
        if (cm.metadata?.name !== 'kube-root-ca.crt') await core.deleteNamespacedConfigMap({ namespace: ns, name: cm.metadata?.name ?? '' });
      }
      await kube.deleteNamespace(kc, ns);
    }
  });

  const rvOf = async (ns: string): Promise<string> =>
    (await core.listNamespacedConfigMap({ namespace: ns })).metadata?.resourceVersion ?? '';

  // 1 and 2: raw watches from "now", so no initial ADDED events.
  const idle = await rawWatch(kc, `/api/v1/namespaces/${idleNs}/configmaps`, { resourceVersion: await rvOf(idleNs) });
  watches.push(idle);
  const busy = await rawWatch(kc, `/api/v1/namespaces/${busyNs}/configmaps`, { resourceVersion: await rvOf(busyNs) });
  watches.push(busy);
  // 3: the informer.
  const added: string[] = [];
  informer.on({ onAdd: (cm) => added.push(cm.metadata?.name ?? '') });
  informer.start();
  assert.equal(await informer.waitForSync(), true);
  const listsAfterSync = informer.stats.lists;
  const longAdded: string[] = [];
  longInformer.on({ onAdd: (cm) => longAdded.push(cm.metadata?.name ?? '') });
  longInformer.start();
  assert.equal(await longInformer.waitForSync(), true);

  const t0 = Date.now();
  let i = 0;
  while (Date.now() - t0 < IDLE_MS) {
    await core.createNamespacedConfigMap({ namespace: busyNs, body: { metadata: { name: `tick-${i++}` }, data: { i: String(i) } } });
    await sleep(5000);
  }

  // After 40 s: an event in every namespace.
  await core.createNamespacedConfigMap({ namespace: idleNs, body: { metadata: { name: 'late' } } });
  await core.createNamespacedConfigMap({ namespace: busyNs, body: { metadata: { name: 'late' } } });
  await core.createNamespacedConfigMap({ namespace: infNs, body: { metadata: { name: 'late' } } });
  await core.createNamespacedConfigMap({ namespace: longNs, body: { metadata: { name: 'late' } } });
  await sleep(3000);

  const report = {
    idle: { done: idle.done ? { atMs: idle.done.at, error: String((idle.done.err as Error | null)?.name ?? idle.done.err) } : 'open', events: idle.events.length },
    busy: { done: busy.done ? { atMs: busy.done.at, error: String((busy.done.err as Error | null)?.name ?? busy.done.err) } : 'open', events: busy.events.length },
    informer: { stats: informer.stats, added },
    longInformer: { stats: longInformer.stats, added: longAdded },
  };
  t.diagnostic(`observed: ${JSON.stringify(report)}`);

  // 1. The idle raw watch was aborted by client-node's own 30 s inactivity timer, and missed the late event.
  assert.ok(idle.done, 'client-node 2.0.1 no longer cuts idle watches: update this test and src/kube/informer.ts docs');
  assert.equal((idle.done.err as Error).name, 'TimeoutError');
  assert.ok(idle.done.at >= 29_000 && idle.done.at <= 36_000, `cut after ${idle.done.at} ms`);
  assert.equal(idle.events.some((e) => e.name === 'late'), false);

  // 2. The busy raw watch is still open after 40+ s and saw every event, the late one included.
  assert.equal(busy.done, undefined, `busy watch ended: ${JSON.stringify(report.busy)}`);
  assert.equal(busy.events.filter((e) => e.type === 'ADDED').length, i + 1);
  assert.ok(busy.events.some((e) => e.name === 'late'));

  // 3. The informer never hit the client-side timeout, never relisted, and delivered the late object.
  assert.deepEqual(added, ['late']);
  assert.equal(informer.stats.lists, listsAfterSync, 'no relist');
  assert.equal(informer.stats.restarts.timeout ?? 0, 0, 'client-side timeout never fired');
  assert.ok((informer.stats.restarts.closed ?? 0) >= 1, 'the server ended at least one watch (timeoutSeconds) and we re-watched');

  // 4. With 300 s watches and no bookmarks, client-node's timer fired; the informer re-watched without relisting.
  assert.deepEqual(longAdded, ['late']);
  assert.ok((longInformer.stats.restarts.timeout ?? 0) >= 1, `expected a client-side timeout: ${JSON.stringify(longInformer.stats)}`);
  assert.equal(longInformer.stats.lists, 1, 'no relist after a client-side timeout');
});
