import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { FakeClock } from '../kube/clock.ts';
import { nullLogger } from '../kube/logger.ts';
import { AgentHttpError, AgentUnreachableError } from '../agent-api/client.ts';
import type { OperationStatus, StartRequest } from '../agent-api/protocol.ts';
import { makeVerdict } from '../verdict.ts';
import type { MigrationProbe, MigrationProbeStatus } from '../api/v1alpha1.ts';
import { ProbeReconciler, type AgentApi } from './reconcile.ts';
import { MapCache } from './map-cache.fixture.ts';

const UIDS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '33333333-3333-4333-8333-333333333333'];

function pod(name: string, node: string, cid = `c-${name}`): V1Pod {
  return {
    metadata: { name, namespace: 'ns' },
    spec: { nodeName: node, containers: [{ name: 'app', image: 'img' }] },
    status: { phase: 'Running', containerStatuses: [{ name: 'app', image: 'img', imageID: '', ready: true, restartCount: 0, containerID: `containerd://${cid}`, state: { running: {} } }] },
  };
}
function node(name: string, ready = true): V1Node {
  return { metadata: { name }, status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } };
}
function agentPod(nodeName: string, ip: string): V1Pod {
  return {
    metadata: { name: `agent-${nodeName}`, namespace: 'migprobe-system', labels: { 'app.kubernetes.io/name': 'migprobe-agent' } },
    spec: { nodeName, containers: [{ name: 'agent', ports: [{ name: 'agent', containerPort: 9443 }] }] },
    status: { phase: 'Running', podIP: ip },
  };
}

interface World {
  clock: FakeClock;
  probes: MapCache<MigrationProbe>;
  pods: MapCache<V1Pod>;
  nodes: MapCache<V1Node>;
  agentPods: MapCache<V1Pod>;
  ops: Map<string, OperationStatus>;
  starts: { url: string; uid: string; req: StartRequest }[];
  deletes: string[];
  events: string[];
  finished: MigrationProbeStatus[];
  agentFault: { start?: Error; get?: Error };
  deleted: string[];
  r: ProbeReconciler;
  add(name: string, spec: Partial<MigrationProbe['spec']>, i?: number): string;
  reconcile(key: string): Promise<{ requeueAfterMs?: number } | void>;
  status(key: string): MigrationProbeStatus | undefined;
}

function world(config: Partial<ProbeReconciler['config']> = {}): World {
  const clock = new FakeClock(Date.UTC(2026, 5, 1));
  const probes = new MapCache<MigrationProbe>();
  const pods = new MapCache<V1Pod>();
  const nodes = new MapCache<V1Node>();
  const agentPods = new MapCache<V1Pod>();
  for (const p of [pod('web', 'a'), pod('db', 'a'), pod('cache', 'a')]) pods.m.set(`ns/${p.metadata!.name!}`, p);
  for (const n of [node('a'), node('b'), node('down', false), node('lonely')]) nodes.m.set(n.metadata!.name!, n);
  agentPods.m.set('a', agentPod('a', '10.0.0.1'));
  agentPods.m.set('b', agentPod('b', '10.0.0.2'));
  let rv = 1;
  const w: Partial<World> = { clock, probes, pods, nodes, agentPods, ops: new Map(), starts: [], deletes: [], events: [], finished: [], agentFault: {}, deleted: [] };
  const agents: AgentApi = {
    start: async (url, uid, req) => {
      if (w.agentFault!.start) throw w.agentFault!.start;
      w.starts!.push({ url, uid, req });
      const op = w.ops!.get(uid) ?? { uid, role: 'source', state: 'Running', stage: 'preflight', startedAt: '' };
      w.ops!.set(uid, op);
      return op;
    },
    get: async (_url, uid) => {
      if (w.agentFault!.get) throw w.agentFault!.get;
      return w.ops!.get(uid);
    },
    delete: async (url, uid) => {
      w.deletes!.push(`${url}/${uid}`);
    },
  };
  const keyOfP = (p: MigrationProbe): string => `${p.metadata.namespace}/${p.metadata.name}`;
  const bump = (p: MigrationProbe): MigrationProbe => ({ ...p, metadata: { ...p.metadata, resourceVersion: String(++rv) } });
  const check = (p: MigrationProbe): MigrationProbe => {
    const cur = probes.get(keyOfP(p));
    if (!cur || cur.metadata.resourceVersion !== p.metadata.resourceVersion) throw Object.assign(new Error('conflict'), { code: 409 });
    return cur;
  };
  const r = new ProbeReconciler({
    probes,
    pods,
    nodes,
    agentPods,
    clock,
    log: nullLogger(),
    config: { agentNamespace: 'migprobe-system', maxDumpsPerNode: 2, agentGraceMs: 10_000, ...config },
    writer: {
      patchStatus: async (p, status) => {
        const cur = check(p);
        probes.m.set(keyOfP(p), bump({ ...cur, status: { ...cur.status, ...status } }));
      },
      addFinalizer: async (p) => {
        const cur = check(p);
        probes.m.set(keyOfP(p), bump({ ...cur, metadata: { ...cur.metadata, finalizers: [...(cur.metadata.finalizers ?? []), 'migprobe.io/cleanup'] } }));
      },
      removeFinalizer: async (p) => {
        probes.m.delete(keyOfP(p));
      },
      delete: async (p) => {
        w.deleted!.push(keyOfP(p));
      },
    },
    agents,
    events: { event: (_p, type, reason) => w.events!.push(`${type}/${reason}`) },
    metrics: { finished: (_p, s) => w.finished!.push(s) },
  });
  w.r = r;
  let n = 0;
  w.add = (name, spec, i) => {
    const uid = UIDS[i ?? n++]!;
    probes.m.set(`ns/${name}`, {
      metadata: { name, namespace: 'ns', uid, generation: 1, resourceVersion: String(++rv), creationTimestamp: new Date(clock.now()).toISOString(), finalizers: ['migprobe.io/cleanup'] },
      spec: { podName: 'web', targetNodeName: 'b', ...spec },
    });
    return `ns/${name}`;
  };
  w.reconcile = (key) => r.reconcile(key);
  w.status = (key) => probes.get(key)?.status;
  return w as World;
}

const verdict = makeVerdict({ reasons: [], timings: { freezeMs: 12, dumpMs: 100, restoreMs: 300, totalMs: 600 }, sizes: { imageBytes: 50_000 }, criu: { source: '4.2.1', target: '4.2.1' } });

test('adds the finalizer before anything else', async () => {
  const w = world();
  const k = w.add('p', {});
  const p = w.probes.get(k)!;
  w.probes.m.set(k, { ...p, metadata: { ...p.metadata, finalizers: [] } });
  await w.reconcile(k);
  assert.deepEqual(w.probes.get(k)?.metadata.finalizers, ['migprobe.io/cleanup']);
  assert.equal(w.starts.length, 0);
});

test('bad input fails with its reason and never calls an agent', async () => {
  const w = world();
  w.pods.m.set('ns/stopped', { ...pod('stopped', 'a'), status: { phase: 'Pending' } });
  w.agentPods.m.delete('b');
  const cases: [Partial<MigrationProbe['spec']>, string][] = [
    [{ podName: 'nope' }, 'PodNotFound'],
    [{ podName: 'stopped' }, 'PodNotRunning'],
    [{ containerName: 'sidecar' }, 'ContainerNotFound'],
    [{ targetNodeName: 'ghost' }, 'TargetNodeNotFound'],
    [{ targetNodeName: 'down' }, 'TargetNodeNotReady'],
    [{ targetNodeName: 'a' }, 'SameNode'],
    [{ targetNodeName: 'b' }, 'AgentUnavailable'],
  ];
  for (const [i, [spec, code]] of cases.entries()) {
    const k = w.add(`p${i}`, spec, 0);
    await w.reconcile(k);
    const st = w.status(k);
    assert.equal(st?.phase, 'Failed', code);
    assert.equal(st?.reasons?.[0]?.code, code);
    assert.ok((st?.reasons?.[0]?.hint ?? '').length > 0, 'catalog hint');
    assert.equal(st?.conditions?.find((c) => c.type === 'Migratable')?.reason, code);
    assert.equal(st?.observedGeneration, 1);
  }
  assert.equal(w.starts.length, 0);
  assert.equal(w.finished.length, cases.length);
});

test('happy path: Pending -> Preflight -> Dumping -> Succeeded, with events, metrics and cleanup', async () => {
  const w = world();
  const k = w.add('p', { options: { tcpEstablished: true } });
  const r1 = await w.reconcile(k);
  assert.equal(w.starts.length, 1);
  assert.equal(w.starts[0]!.url, 'http://10.0.0.1:9443');
  assert.equal(w.starts[0]!.req.containerId, 'c-web');
  // Protocol 2: names only; the agent reads the probe (its options) and finds the target agent itself.
  assert.deepEqual(w.starts[0]!.req, { protocol: 2, probeName: 'p', namespace: 'ns', podName: 'web', containerName: 'app', containerId: 'c-web', target: { nodeName: 'b' } });
  assert.equal(w.status(k)?.phase, 'Preflight');
  assert.equal(w.status(k)?.sourceNodeName, 'a');
  assert.ok(w.status(k)?.startTime);
  assert.deepEqual(r1, { requeueAfterMs: 1000 });
  w.ops.get(UIDS[0]!)!.stage = 'dump';
  w.clock.advance(1000);
  await w.reconcile(k);
  assert.equal(w.status(k)?.phase, 'Dumping');
  // Idempotent: same state, no new write or event.
  const rv = w.probes.get(k)?.metadata.resourceVersion;
  await w.reconcile(k);
  assert.equal(w.probes.get(k)?.metadata.resourceVersion, rv);
  Object.assign(w.ops.get(UIDS[0]!)!, { state: 'Done', stage: 'done', verdict });
  await w.reconcile(k);
  const st = w.status(k)!;
  assert.equal(st.phase, 'Succeeded');
  assert.equal(st.migratable, true);
  assert.equal(st.timings?.freezeMilliseconds, 12);
  assert.ok(st.completionTime);
  assert.deepEqual(st.conditions?.map((c) => c.status), ['True', 'True', 'True', 'True', 'True']);
  assert.deepEqual(w.events, ['Normal/Started', 'Normal/Dumping', 'Normal/Migratable']);
  assert.equal(w.finished.length, 1);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(w.deletes.sort(), [`http://10.0.0.1:9443/${UIDS[0]}`, `http://10.0.0.2:9443/${UIDS[0]}`]);
  // Final: nothing more happens (no TTL set).
  assert.equal(await w.reconcile(k), undefined);
  assert.equal(w.finished.length, 1);
});

test('per-node limit and one probe per pod', async () => {
  const w = world({ maxDumpsPerNode: 2 });
  const k1 = w.add('p1', { podName: 'web' });
  const k2 = w.add('p2', { podName: 'web' });
  const k3 = w.add('p3', { podName: 'db' });
  await w.reconcile(k1);
  await w.reconcile(k2);
  assert.equal(w.status(k2)?.phase, 'Pending', 'same pod waits');
  assert.match(w.status(k2)?.conditions?.[0]?.message ?? '', /same pod/);
  await w.reconcile(k3);
  assert.equal(w.status(k3)?.phase, 'Preflight');
  w.pods.m.set('ns/cache', pod('cache', 'a'));
  const k4 = w.add('p4', { podName: 'cache' }, 2);
  w.probes.m.get(k4)!.metadata.uid = '44444444-4444-4444-8444-444444444444';
  const r4 = await w.reconcile(k4);
  assert.equal(w.status(k4)?.phase, 'Pending', 'node limit');
  assert.deepEqual(r4, { requeueAfterMs: 1000 });
  assert.equal(w.r.activeOnNode('a'), 2);
  // p1 finishes: p2 may start.
  Object.assign(w.ops.get(UIDS[0]!)!, { state: 'Done', stage: 'done', verdict });
  await w.reconcile(k1);
  await w.reconcile(k2);
  assert.equal(w.status(k2)?.phase, 'Preflight');
});

test('a slot taken but not yet visible in the cache still counts (stale cache)', async () => {
  const w = world({ maxDumpsPerNode: 1 });
  const k1 = w.add('p1', { podName: 'web' });
  const k2 = w.add('p2', { podName: 'db' });
  const before = w.probes.get(k1)!;
  await w.reconcile(k1);
  // The informer has not delivered p1's new status yet.
  w.probes.m.set(k1, before);
  await w.reconcile(k2);
  assert.equal(w.status(k2)?.phase, 'Pending');
});

test('agent lost the operation (restarted): Failed/AgentUnavailable', async () => {
  const w = world();
  const k = w.add('p', {});
  await w.reconcile(k);
  w.ops.clear();
  await w.reconcile(k);
  assert.equal(w.status(k)?.phase, 'Failed');
  assert.equal(w.status(k)?.reasons?.[0]?.code, 'AgentUnavailable');
});

test('agent unreachable: retried, then AgentUnavailable after the grace', async () => {
  const w = world({ agentGraceMs: 10_000 });
  const k = w.add('p', {});
  await w.reconcile(k);
  w.agentFault.get = new AgentUnreachableError('connect ECONNREFUSED');
  const r = await w.reconcile(k);
  assert.ok(r && (r.requeueAfterMs ?? 0) > 0);
  assert.equal(w.status(k)?.phase, 'Preflight');
  w.clock.advance(10_001);
  await w.reconcile(k);
  assert.equal(w.status(k)?.phase, 'Failed');
  assert.equal(w.status(k)?.reasons?.[0]?.code, 'AgentUnavailable');
});

test('agent busy (429) keeps the probe Pending; agent refusal with a code fails with it', async () => {
  const w = world();
  const k = w.add('p', {});
  w.agentFault.start = new AgentHttpError(429, { code: 'Busy', message: 'busy' }, 2000);
  assert.deepEqual(await w.reconcile(k), { requeueAfterMs: 2000 });
  assert.equal(w.status(k)?.phase, 'Pending');
  assert.equal(w.r.activeOnNode('a'), 0, 'slot given back');
  // A conflict that passes (the agent still runs an operation for the UID or the container): 409 with
  // Retry-After keeps the probe Pending too.
  w.agentFault.start = new AgentHttpError(409, { code: 'ContainerBusy', message: 'container cid is being probed by probe x' }, 1000);
  assert.deepEqual(await w.reconcile(k), { requeueAfterMs: 1000 });
  assert.equal(w.status(k)?.phase, 'Pending');
  w.agentFault.start = new AgentHttpError(409, { code: 'ContainerNotFound', message: 'container id differs' });
  await w.reconcile(k);
  assert.equal(w.status(k)?.reasons?.[0]?.code, 'ContainerNotFound');
});

test('phase timeout: Failed/Timeout from persisted times (survives a controller restart)', async () => {
  const w = world();
  const k = w.add('p', { timeoutSeconds: 30 });
  await w.reconcile(k);
  w.ops.get(UIDS[0]!)!.stage = 'dump';
  await w.reconcile(k);
  w.clock.advance(46_000);
  await w.reconcile(k);
  assert.equal(w.status(k)?.phase, 'Failed');
  assert.equal(w.status(k)?.reasons?.[0]?.code, 'Timeout');
  assert.equal(w.status(k)?.reasons?.[0]?.phase, 'dump');
});

test('a restarted controller resumes an active probe from status', async () => {
  const w = world();
  const k = w.add('p', {});
  await w.reconcile(k);
  const w2 = { ...w };
  const r2 = new ProbeReconciler({
    probes: w.probes,
    pods: w.pods,
    nodes: w.nodes,
    agentPods: w.agentPods,
    clock: w.clock,
    log: nullLogger(),
    config: { agentNamespace: 'migprobe-system' },
    writer: {
      patchStatus: async (p, status) => {
        const key = `${p.metadata.namespace}/${p.metadata.name}`;
        const cur = w.probes.get(key)!;
        w.probes.m.set(key, { ...cur, status: { ...cur.status, ...status } });
      },
      addFinalizer: async () => undefined,
      removeFinalizer: async () => undefined,
      delete: async () => undefined,
    },
    agents: { start: async () => assert.fail('must not start again'), get: async (_u, uid) => w2.ops.get(uid), delete: async () => undefined },
    events: { event: () => undefined },
    metrics: { finished: () => undefined },
  });
  Object.assign(w.ops.get(UIDS[0]!)!, { state: 'Done', stage: 'done', verdict });
  await r2.reconcile(k);
  assert.equal(w.status(k)?.phase, 'Succeeded');
});

test('TTL after finishing, and the finalizer asks both agents to clean up', async () => {
  const w = world();
  const k = w.add('p', { ttlSecondsAfterFinished: 60 });
  await w.reconcile(k);
  Object.assign(w.ops.get(UIDS[0]!)!, { state: 'Done', stage: 'done', verdict });
  await w.reconcile(k);
  const r = await w.reconcile(k);
  assert.deepEqual(r, { requeueAfterMs: 60_000 });
  w.clock.advance(60_000);
  await w.reconcile(k);
  assert.deepEqual(w.deleted, [k]);
  // Deletion: the finalizer.
  w.deletes.length = 0;
  const p = w.probes.get(k)!;
  w.probes.m.set(k, { ...p, metadata: { ...p.metadata, deletionTimestamp: new Date(w.clock.now()).toISOString() } });
  await w.reconcile(k);
  assert.equal(w.deletes.length, 2);
  assert.equal(w.probes.get(k), undefined, 'finalizer removed');
});

test('finalizer retries an unreachable agent, then lets go after the grace', async () => {
  const w = world({ finalizerGraceMs: 30_000 });
  const k = w.add('p', {});
  await w.reconcile(k);
  const p = w.probes.get(k)!;
  w.probes.m.set(k, { ...p, metadata: { ...p.metadata, deletionTimestamp: new Date(w.clock.now()).toISOString() } });
  const agents = (w.r as unknown as { d: { agents: AgentApi } }).d.agents;
  agents.delete = async () => {
    throw new AgentUnreachableError('down');
  };
  assert.deepEqual(await w.reconcile(k), { requeueAfterMs: 2000 });
  assert.ok(w.probes.get(k));
  w.clock.advance(30_000);
  await w.reconcile(k);
  assert.equal(w.probes.get(k), undefined);
  assert.ok(w.events.includes('Warning/CleanupFailed'));
});
