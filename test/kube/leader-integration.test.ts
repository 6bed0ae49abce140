// Leader election on a real Lease in the test bed's kube-apiserver, with short timings (lease 3 s, renew
// deadline 2 s, retry 0.5 s) so the tests take seconds; the 15/10/2 s defaults are checked in unit tests.
// - two contenders: exactly one leads; when it stops, it releases and the other takes over at once;
// - a leader that dies without releasing: the other takes over after the lease duration;
// - a leader whose Lease is taken away: it stops leading (signal aborted, onStoppedLeading, run -> 'lost').

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { kube, testbed } from '../../testbed/index.ts';
import { LeaderElector, microTime } from '../../src/kube/leader.ts';
import { createLogger } from '../../src/kube/logger.ts';
import { eventually, sleep } from './util.ts';

const logger = createLogger({ component: 'test', level: process.env.MIGPROBE_TEST_LOG ?? 'error' });
const TIMING = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };

interface Contender {
  el: LeaderElector;
  stop: AbortController;
  leading: boolean;
  startedAt?: number;
  stoppedAt?: number;
  stopReason?: 'lost' | 'stopped';
  leaderSignal?: AbortSignal;
  result: Promise<'lost' | 'stopped'>;
}

function contender(kc: k8s.KubeConfig, namespace: string, name: string, id: string, releaseOnCancel = true): Contender {
  const stop = new AbortController();
  const c = { stop, leading: false } as Contender;
  c.el = new LeaderElector({
    kubeConfig: kc,
    namespace,
    name,
    identity: id,
    ...TIMING,
    releaseOnCancel,
    logger,
    onStartedLeading: (signal) => {
      c.leading = true;
      c.startedAt = Date.now();
      c.leaderSignal = signal;
    },
    onStoppedLeading: (reason) => {
      c.stopReason = reason;
      c.leading = false;
      c.stoppedAt = Date.now();
    },
  });
  c.result = c.el.run(stop.signal);
  return c;
}

async function setup(t: test.TestContext): Promise<{ kc: k8s.KubeConfig; ns: string; coord: k8s.CoordinationV1Api; all: Contender[] }> {
  const tb = await testbed();
  const kc = kube.client(tb);
  const ns = `leader-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(kc, ns);
  const all: Contender[] = [];
  t.after(async () => {
    for (const c of all) c.stop.abort();
    await Promise.all(all.map((c) => c.result));
    await kube.deleteNamespace(kc, ns);
  });
  return { kc, ns, coord: kc.makeApiClient(k8s.CoordinationV1Api), all };
}

void test('leader: two contenders, one leads; on release the other takes over at once', async (t) => {
  const { kc, ns, coord, all } = await setup(t);
  const a = contender(kc, ns, 'lock', 'a');
  const b = contender(kc, ns, 'lock', 'b');
  all.push(a, b);
  await eventually('a leader', 10_000, () => a.leading || b.leading);
  await sleep(2000);
  assert.equal(Number(a.leading) + Number(b.leading), 1, 'exactly one leader');
  const [leader, follower] = a.leading ? [a, b] : [b, a];
  const lease = await coord.readNamespacedLease({ namespace: ns, name: 'lock' });
  assert.equal(lease.spec?.holderIdentity, leader.el.identity);
  const transitions = lease.spec?.leaseTransitions ?? 0;

  const t0 = Date.now();
  leader.stop.abort();
  assert.equal(await leader.result, 'stopped');
  assert.equal(leader.leaderSignal?.aborted, true, 'the leader signal aborted');
  assert.equal(leader.stopReason, 'stopped');
  await eventually('the follower to take over', 5000, () => follower.leading);
  const took = Date.now() - t0;
  assert.ok(took < TIMING.leaseDurationMs, `took over in ${took} ms, before the lease would have expired`);
  const after = await coord.readNamespacedLease({ namespace: ns, name: 'lock' });
  assert.equal(after.spec?.holderIdentity, follower.el.identity);
  assert.equal(after.spec?.leaseTransitions, transitions + 1);
  t.diagnostic(`takeover after release: ${took} ms`);
});

void test('leader: a leader that dies without releasing is replaced after the lease duration', async (t) => {
  const { kc, ns, all } = await setup(t);
  const a = contender(kc, ns, 'lock', 'a', false);
  all.push(a);
  await eventually('a to lead', 10_000, () => a.leading);
  const b = contender(kc, ns, 'lock', 'b');
  all.push(b);
  await sleep(1500);
  assert.equal(b.leading, false);
  const t0 = Date.now();
  a.stop.abort(); // "dies": no release, no more renewals
  await a.result;
  await eventually('b to take over', 10_000, () => b.leading);
  const took = Date.now() - t0;
  assert.ok(took >= TIMING.leaseDurationMs - TIMING.retryPeriodMs * 2, `took over after ${took} ms`);
  assert.ok(took <= TIMING.leaseDurationMs + 3000, `took over after ${took} ms`);
  t.diagnostic(`takeover after death: ${took} ms`);
});

void test('leader: a leader whose Lease is taken away stops leading within the renew deadline', async (t) => {
  const { kc, ns, coord, all } = await setup(t);
  const a = contender(kc, ns, 'lock', 'a');
  all.push(a);
  await eventually('a to lead', 10_000, () => a.leading);
  const lease = await coord.readNamespacedLease({ namespace: ns, name: 'lock' });
  const now = microTime(Date.now());
  await coord.replaceNamespacedLease({
    namespace: ns,
    name: 'lock',
    body: {
      metadata: { name: 'lock', namespace: ns, resourceVersion: lease.metadata?.resourceVersion ?? '' },
      spec: { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 60, renewTime: new k8s.V1MicroTime(now) },
    },
  });
  const t0 = Date.now();
  assert.equal(await a.result, 'lost');
  const took = Date.now() - t0;
  assert.equal(a.leading, false);
  assert.equal(a.leaderSignal?.aborted, true);
  assert.equal(a.stopReason, 'lost');
  assert.ok(took <= TIMING.renewDeadlineMs + 2500, `stopped after ${took} ms`);
  const after = await coord.readNamespacedLease({ namespace: ns, name: 'lock' });
  assert.equal(after.spec?.holderIdentity, 'intruder', 'a lost leader does not release or overwrite the lease');
});
