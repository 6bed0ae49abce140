import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Namespace, V1Node, V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import type { MigrationNode, NodeFactsView } from '../../api/migrationnode.ts';
import type { MigrationReadiness, ReadinessStatus } from '../../api/readiness.ts';
import { isActivePhase, isFinalPhase, type MigrationProbe, type MigrationProbeStatus } from '../../api/v1alpha1.ts';
import { FakeClock } from '../../kube/clock.ts';
import { metav1Time } from '../../kube/conditions.ts';
import { nullLogger } from '../../kube/logger.ts';
import { createRegistry } from '../../kube/metrics.ts';
import { readinessMetrics } from './metrics.ts';
import { ReadinessReconciler, runOf } from './reconcile.ts';
import { MapCache } from '../map-cache.fixture.ts';

const facts: NodeFactsView = { arch: 'x86_64', kernelRelease: '6.18.0', criuVersion: '4.2.1', criuFeatures: {}, memAvailableBytes: 8 * 2 ** 30, cpu: { vendor: 'v', model: 'm', flags: [] } };

function appPod(name: string, node: string, owner?: { kind: string; name: string }): V1Pod {
  return {
    metadata: { name, namespace: 'ns', ...(owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: owner.kind, name: owner.name, uid: 'u', controller: true }] } : {}) },
    spec: { nodeName: node, containers: [{ name: 'app' }] },
    status: { phase: 'Running', containerStatuses: [{ name: 'app', image: '', imageID: '', ready: true, restartCount: 0, state: { running: {} } }] },
  };
}

/** A world of caches, with a writer that applies what the reconciler writes (probes appear after `lag` reconciles). */
function world() {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 10, 0, 0));
  const readinesses = new MapCache<MigrationReadiness>();
  const probes = new MapCache<MigrationProbe>();
  const pods = new MapCache<V1Pod>();
  const nodes = new MapCache<V1Node>();
  const agentPods = new MapCache<V1Pod>();
  const migrationNodes = new MapCache<MigrationNode>();
  const replicaSets = new MapCache<V1ReplicaSet>();
  const namespaces = new MapCache<V1Namespace>();
  const events: string[] = [];
  const unseen: MigrationProbe[] = [];
  let rv = 1;
  for (const n of ['a', 'b', 'g']) {
    nodes.m.set(n, { metadata: { name: n }, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    agentPods.m.set(`sys/agent-${n}`, {
      metadata: { name: `agent-${n}`, namespace: 'sys', labels: { 'app.kubernetes.io/name': 'migprobe-agent' } },
      spec: { nodeName: n, containers: [{ name: 'agent' }] },
      status: { phase: 'Running', podIP: '10.0.0.1' },
    });
    migrationNodes.m.set(n, { metadata: { name: n }, status: { observedFacts: n === 'g' ? { ...facts, arch: 'aarch64' } : facts } });
  }
  replicaSets.m.set('ns/web-5d', { metadata: { name: 'web-5d', namespace: 'ns', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: 'd', controller: true }] } });
  for (let i = 0; i < 6; i++) pods.m.set(`ns/web-${i}`, appPod(`web-${i}`, 'a', { kind: 'ReplicaSet', name: 'web-5d' }));
  pods.m.set('ns/lock', appPod('lock', 'a'));
  pods.m.set('ns/ds', appPod('ds', 'a', { kind: 'DaemonSet', name: 'logs' }));
  pods.m.set('ns/elsewhere', appPod('elsewhere', 'b'));
  const registry = createRegistry({ defaultMetrics: false });
  const w = {
    clock,
    readinesses,
    probes,
    pods,
    events,
    registry,
    /** Creations the cache shows only after `flush()`. */
    lagging: false,
    writes: 0,
    r: undefined as unknown as ReadinessReconciler,
    flush() {
      for (const p of unseen.splice(0)) probes.m.set(`${p.metadata.namespace}/${p.metadata.name}`, p);
    },
    readiness(): MigrationReadiness {
      return readinesses.m.get('drain-a')!;
    },
    status(): ReadinessStatus {
      return w.readiness().status ?? {};
    },
    async reconcile() {
      return await w.r.reconcile('drain-a');
    },
    /** Moves every probe one step: Pending -> Dumping (started) -> final by `verdict`. */
    progress(verdict: (p: MigrationProbe) => MigrationProbeStatus) {
      const now = metav1Time(clock.now());
      for (const p of probes.list()) {
        if (p.status?.phase === undefined) p.status = { phase: 'Dumping', startTime: now };
        else if (isActivePhase(p.status.phase)) p.status = { ...p.status, ...verdict(p), completionTime: now };
      }
    },
  };
  const caches = { readinesses, probes, pods, nodes, agentPods, migrationNodes, replicaSets, namespaces };
  w.r = new ReadinessReconciler({
    ...caches,
    writer: {
      async patchStatus(r, patch) {
        w.writes++;
        const cur = readinesses.m.get(r.metadata.name ?? '')!;
        assert.equal(r.metadata.resourceVersion, cur.metadata.resourceVersion, 'written with the cached resourceVersion');
        const status: Record<string, unknown> = { ...(cur.status ?? {}) };
        for (const [k, v] of Object.entries(patch)) {
          if (v === null) delete status[k];
          else status[k] = structuredClone(v);
        }
        readinesses.m.set(cur.metadata.name ?? '', { ...cur, metadata: { ...cur.metadata, resourceVersion: String(++rv) }, status: status });
      },
      async createProbe(p) {
        const made = { ...structuredClone(p), metadata: { ...structuredClone(p.metadata), uid: `uid-${p.metadata.name}`, creationTimestamp: metav1Time(clock.now()) } };
        if (w.lagging) unseen.push(made);
        else probes.m.set(`${p.metadata.namespace}/${p.metadata.name}`, made);
      },
      async deleteProbe(p) {
        probes.m.delete(`${p.metadata.namespace}/${p.metadata.name}`);
      },
    },
    events: { event: (_r, type, reason, message) => events.push(`${type} ${reason}: ${message}`) },
    metrics: readinessMetrics(registry),
    clock,
    log: nullLogger(),
    config: { agentNamespace: 'sys', agentScheme: 'http', agentPort: 9443 },
  });
  return w;
}

function apply(w: ReturnType<typeof world>, spec: MigrationReadiness['spec'], generation = 1, annotations?: Record<string, string>): void {
  const old = w.readinesses.m.get('drain-a');
  w.readinesses.m.set('drain-a', {
    metadata: { name: 'drain-a', uid: 'r-uid', generation, resourceVersion: old?.metadata.resourceVersion ?? '1', ...(annotations ? { annotations } : {}) },
    spec,
    ...(old?.status ? { status: old.status } : {}),
  });
}

const verdictOf = (blocked: Set<string>) => (p: MigrationProbe): MigrationProbeStatus =>
  blocked.has(p.spec.podName)
    ? { phase: 'Succeeded', migratable: false, reasons: [{ code: 'FileLocks', message: `${p.spec.podName} holds a flock`, phase: 'preflight' }] }
    : { phase: 'Succeeded', migratable: true, timings: { freezeMilliseconds: 40 } };

/** Reconciles and progresses until the run completes; checks the budget after every step on the cache. */
async function runToEnd(w: ReturnType<typeof world>, blocked: Set<string>): Promise<{ maxActive: number; maxWeb: number }> {
  let maxActive = 0;
  let maxWeb = 0;
  for (let i = 0; i < 200 && w.status().phase !== 'Completed'; i++) {
    await w.reconcile();
    const unfinished = w.probes.list().filter((p) => !isFinalPhase(p.status?.phase));
    maxActive = Math.max(maxActive, unfinished.length);
    maxWeb = Math.max(maxWeb, unfinished.filter((p) => p.spec.podName.startsWith('web-')).length);
    w.clock.advance(1000);
    w.progress(verdictOf(blocked));
  }
  assert.equal(w.status().phase, 'Completed');
  return { maxActive, maxWeb };
}

void test('a run: screening, fan-out within the budget, per-pod answer, Drainable False naming the blocked pod, events and metrics', async () => {
  const w = world();
  apply(w, { source: { nodeName: 'a' }, budget: { maxConcurrentProbes: 3, maxFrozenPerOwner: 1 }, probeOptions: { freezeBudgetMilliseconds: 500 }, probeTimeoutSeconds: 60 });
  await w.reconcile();
  let s = w.status();
  assert.equal(s.phase, 'Running');
  assert.equal(s.runId, 1);
  assert.equal(s.observedGeneration, 1);
  assert.deepEqual(s.targets?.map((t) => `${t.sourceNodeName}->${t.nodeName}:${t.eligible}:${(t.reasons ?? []).map((r) => r.code).join('')}`), ['a->b:true:', 'a->g:false:ArchMismatch']);
  assert.equal(w.probes.list().length, 0, 'the start only writes the run');
  const { maxActive, maxWeb } = await runToEnd(w, new Set(['lock']));
  assert.equal(maxWeb, 1, 'never two pods of the Deployment at once');
  assert.equal(maxActive, 2, 'one web pod and the bare pod');
  s = w.status();
  assert.ok(w.probes.list().every((p) => p.spec.targetNodeName === 'b'), 'nothing probed towards the screened-out node');
  assert.equal(w.probes.list().length, 7);
  const probe = w.probes.list()[0]!;
  assert.deepEqual(probe.metadata.labels, { 'migprobe.io/readiness': 'drain-a', 'migprobe.io/readiness-run': '1' });
  assert.deepEqual(probe.metadata.ownerReferences, [{ apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationReadiness', name: 'drain-a', uid: 'r-uid', controller: true, blockOwnerDeletion: true }]);
  assert.deepEqual([probe.spec.options, probe.spec.timeoutSeconds, probe.spec.containerName], [{ freezeBudgetMilliseconds: 500 }, 60, 'app']);
  assert.deepEqual(s.totals, { pods: 8, migratable: 6, blocked: 1, pending: 0, skipped: 1, probes: 7 });
  const lock = s.pods?.find((p) => p.name === 'lock');
  assert.equal(lock?.migratable, false);
  assert.deepEqual(lock?.reasons?.map((r) => [r.code, r.message]), [['FileLocks', 'to b: lock holds a flock']]);
  const web = s.pods?.find((p) => p.name === 'web-0');
  assert.deepEqual([web?.migratable, web?.bestTarget, web?.owner], [true, 'b', { kind: 'Deployment', name: 'web' }]);
  assert.equal(web?.targets?.[0]?.probes?.length, 1);
  assert.match(s.pods?.find((p) => p.name === 'ds')?.skipped ?? '', /DaemonSet/);
  const drainable = s.conditions?.find((c) => c.type === 'Drainable');
  assert.deepEqual([drainable?.status, drainable?.reason, drainable?.message, drainable?.observedGeneration], ['False', 'PodsBlocked', '1 of 7 pods cannot be live-migrated: ns/lock (FileLocks)', 1]);
  assert.deepEqual(s.budgetObserved, { maxConcurrentProbes: 2, maxFrozenPerOwner: 1 });
  assert.deepEqual(s.reasonCounts, [{ code: 'FileLocks', pods: 1 }]);
  assert.ok(w.events.some((e) => /^Normal RunStarted: run 1 \(FirstRun\): 7 pods to probe \(1 skipped\), 1 of 2 node pairs eligible/.test(e)), w.events.join('\n'));
  assert.ok(w.events.some((e) => e.startsWith('Warning NotDrainable: run 1: 6 of 7 pods migratable')), w.events.join('\n'));
  const text = await w.registry.metrics();
  assert.match(text, /migprobe_readiness_pods\{readiness="drain-a",node="a",state="blocked"\} 1/);
  assert.match(text, /migprobe_readiness_pods\{readiness="drain-a",node="a",state="migratable"\} 6/);
  assert.match(text, /migprobe_readiness_drainable\{readiness="drain-a",node="a"\} 0/);
  assert.match(text, /migprobe_node_pair_compatible\{source="a",target="g"\} 0/);
  assert.match(text, /migprobe_node_pair_compatible\{source="a",target="b"\} 1/);
  assert.match(text, /migprobe_readiness_last_run_timestamp_seconds\{readiness="drain-a"\} 1767261600/);
  assert.doesNotMatch(text, /"web-0"|"lock"/, 'no pod names in metric labels');
  // Level-based: a reconcile with nothing new writes nothing.
  const writes = w.writes;
  assert.equal(await w.reconcile(), undefined);
  assert.equal(w.writes, writes);
});

void test('rerun annotation: a second run finds the drift (a pod blocked, another freed, a pair back), with Events and a counter; older probes go', async () => {
  const w = world();
  apply(w, { source: { nodeName: 'a' }, budget: { maxConcurrentProbes: 4, maxFrozenPerOwner: 2 } });
  await w.reconcile();
  await runToEnd(w, new Set(['lock']));
  const run1 = w.probes.list().map((p) => p.metadata.name);
  // g's facts are fixed (spec.factsOverride), web-3 starts holding a lock, lock lets go.
  const g = (w.r as unknown as { d: { migrationNodes: MapCache<MigrationNode> } }).d.migrationNodes.m.get('g')!;
  g.spec = { factsOverride: { arch: 'x86_64' } };
  apply(w, w.readiness().spec, 1, { 'migprobe.io/rerun': '2026-01-01T10:05:00Z' });
  await w.reconcile();
  assert.equal(w.status().runId, 2);
  assert.equal(w.status().observedRerun, '2026-01-01T10:05:00Z');
  await runToEnd(w, new Set(['web-3']));
  const s = w.status();
  assert.deepEqual(
    s.changes?.map((c) => `${c.kind} ${c.subject} ${c.from}->${c.to} ${(c.reasons ?? []).join(',')} run ${c.runId}`),
    ['Pod ns/lock blocked->migratable  run 2', 'Pod ns/web-3 migratable->blocked FileLocks run 2', 'NodePair a->g ineligible->eligible  run 2'],
  );
  assert.ok(w.events.includes('Warning PodBlocked: pod ns/web-3 was migratable, is blocked (FileLocks) (run 2)'), w.events.join('\n'));
  assert.ok(w.events.includes('Normal PodMigratable: pod ns/lock was blocked, is migratable (run 2)'));
  assert.ok(w.events.includes('Normal NodePairEligible: node pair a->g was ineligible, is eligible (run 2)'));
  assert.equal(s.pods?.find((p) => p.name === 'web-0')?.compatibleTargets?.length, 2, 'two targets now');
  assert.ok(w.probes.list().every((p) => runOf(p) === 2), 'run 1 probes deleted once run 2 completed');
  assert.ok(run1.every((n) => !w.probes.list().some((p) => p.metadata.name === n)));
  const text = await w.registry.metrics();
  assert.match(text, /migprobe_readiness_verdict_changes_total\{readiness="drain-a",kind="Pod",to="blocked",reason="FileLocks"\} 1/);
  assert.match(text, /migprobe_readiness_verdict_changes_total\{readiness="drain-a",kind="NodePair",to="eligible",reason=""\} 1/);
});

void test('schedule: nextRunTime, requeue until the tick, a new run on it; a bad cron or source fails with a reason', async () => {
  const w = world();
  apply(w, { source: { nodeName: 'a' }, schedule: '*/5 * * * *', budget: { maxConcurrentProbes: 8, maxFrozenPerOwner: 6 } });
  await w.reconcile();
  assert.equal(w.status().nextRunTime, '2026-01-01T10:05:00Z');
  await runToEnd(w, new Set());
  const done = w.clock.now();
  const r = await w.reconcile();
  assert.deepEqual(r, { requeueAfterMs: Date.UTC(2026, 0, 1, 10, 5, 0) - done });
  w.clock.advance(Date.UTC(2026, 0, 1, 10, 5, 0) - done);
  await w.reconcile();
  assert.deepEqual([w.status().runId, w.status().phase, w.status().nextRunTime], [2, 'Running', '2026-01-01T10:10:00Z']);
  assert.ok(w.events.some((e) => e.startsWith('Normal RunStarted: run 2 (Scheduled)')));

  apply(w, { source: { nodeName: 'a' }, schedule: '*/5 * * *' }, 2);
  await w.reconcile();
  const c = w.status().conditions?.find((x) => x.type === 'SpecValid');
  assert.deepEqual([w.status().phase, c?.status, c?.reason], ['Failed', 'False', 'InvalidSchedule']);
  assert.match(c?.message ?? '', /has 4 fields; it needs 5/);
  assert.equal(w.status().nextRunTime, undefined);
  assert.ok(w.events.some((e) => e.startsWith('Warning InvalidSchedule:')));
  apply(w, { source: {} }, 3);
  await w.reconcile();
  assert.equal(w.status().conditions?.find((x) => x.type === 'SpecValid')?.reason, 'InvalidSource');
  apply(w, { source: { nodeName: 'a' }, suspend: true }, 4);
  await w.reconcile();
  assert.equal(w.status().runId, 2, 'suspended: no run starts');
});

void test('probes the cache does not show yet still count: no second probe of a pod, no budget overrun', async () => {
  const w = world();
  apply(w, { source: { nodeName: 'a' }, budget: { maxConcurrentProbes: 2, maxFrozenPerOwner: 1 } });
  await w.reconcile();
  w.lagging = true;
  await w.reconcile();
  await w.reconcile();
  await w.reconcile();
  w.flush();
  assert.deepEqual(w.probes.list().map((p) => p.spec.podName).sort(), ['lock', 'web-0']);
  await w.reconcile();
  assert.equal(w.probes.list().length, 2);
});
