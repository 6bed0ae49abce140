// MigrationReadiness end to end on the test bed: the real controller and two real agents on fake nodes, real
// containerd containers behind Running pods. One readiness over node A with a migratable pod, a pod holding a
// flock, a DaemonSet pod, towards node B and a third node whose MigrationNode facts (spec.factsOverride) make it
// incompatible; a scheduled re-run (`* * * * *`) that finds a new blocker; a budget run over ten pods of one
// ReplicaSet whose probe phases the test watches itself.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import * as k8s from '@kubernetes/client-node';
import { kube, testbed, type RunningContainer } from '../../testbed/index.ts';
import { watchReadinessProbes } from '../../testbed/readiness-watch.ts';
import type { MigrationNode } from '../../src/api/migrationnode.ts';
import type { MigrationReadiness, ReadinessStatus } from '../../src/api/readiness.ts';
import { waitReady } from '../engine/workloads.ts';
import { startOperator, type Operator } from './harness.ts';
import { listProbes, workloadPod } from './lib.ts';

const GROUP = 'migprobe.io';
const VERSION = 'v1alpha1';

async function createReadiness(op: Operator, name: string, spec: MigrationReadiness['spec']): Promise<void> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  await api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: 'migrationreadinesses', body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'MigrationReadiness', metadata: { name }, spec } });
}

async function getReadiness(op: Operator, name: string): Promise<MigrationReadiness> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  return (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'migrationreadinesses', name })) as MigrationReadiness;
}

async function waitReadiness(op: Operator, name: string, what: string, pred: (s: ReadinessStatus) => boolean, timeoutMs: number): Promise<MigrationReadiness> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await getReadiness(op, name);
    if (pred(r.status ?? {})) return r;
    if (Date.now() > end) throw new Error(`readiness ${name}: ${what} not reached in ${timeoutMs} ms; status: ${JSON.stringify(r.status)}\ncontroller log tail:\n${op.controller.log().slice(-4000)}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function getMigrationNode(op: Operator, name: string): Promise<MigrationNode | undefined> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    return (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'migrationnodes', name })) as MigrationNode;
  } catch (e) {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  }
}

test('MigrationReadiness: per-pod answers, screening before any dump, a scheduled re-run finding a new blocker, the budget held', { timeout: 300_000 }, async (t) => {
  const tb = await testbed();
  const namespace = `mp-ready-${randomBytes(3).toString('hex')}`;
  const op = await startOperator({ tb, namespace, maxDumpsPerNode: 2 });
  const nodeC = `${op.nodes[0]}-c`;
  const readinesses: string[] = [];
  const containers: RunningContainer[] = [];
  t.after(async () => {
    for (const r of readinesses) await op.kubectl(['delete', 'migrationreadiness', r, '--wait=false'], { reject: false });
    await op.stop();
    for (const c of containers) await c.remove();
    await op.kubectl(['delete', 'migrationnode', nodeC, '--wait=false'], { reject: false });
    await op.kc.makeApiClient(k8s.CoreV1Api).deleteNode({ name: nodeC }).catch(() => undefined);
    await kube.deleteNamespace(op.kc, namespace);
    await kube.deleteNamespace(op.kc, op.agentNamespace);
  });
  const [a, b] = op.nodes;

  // Node C: Ready, an agent pod object (never called: the pair is screened out), facts that differ by arch.
  const mnB = await (async () => {
    const end = Date.now() + 60_000;
    for (;;) {
      const m = await getMigrationNode(op, b);
      if (m?.status?.observedFacts?.arch !== undefined) return m;
      if (Date.now() > end) throw new Error(`the agent on ${b} did not publish its MigrationNode: ${op.agents[1].proc.log().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  await kube.createReadyNode(op.kc, nodeC, '127.0.0.4');
  await kube.createRunningPod(op.kc, { namespace: op.agentNamespace, name: `migprobe-agent-${nodeC}`, nodeName: nodeC, containerName: 'agent', containerId: `agent-${nodeC}`, image: 'migprobe-agent:dev', labels: { 'app.kubernetes.io/name': 'migprobe-agent' }, podIP: '127.0.0.4' });
  const otherArch = mnB.status?.observedFacts?.arch === 'aarch64' ? 'x86_64' : 'aarch64';
  await op.kc.makeApiClient(k8s.CustomObjectsApi).createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: 'migrationnodes',
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'MigrationNode', metadata: { name: nodeC }, spec: { factsOverride: { ...mnB.status?.observedFacts, arch: otherArch } } },
  });

  // Node A: a migratable pod that starts holding a flock when told, a pod holding one, a DaemonSet pod.
  const web = await workloadPod(op, 'web', a, ['sh', '-c', 'while [ ! -f /tmp/lock-now ]; do sleep 0.2; done; exec /usr/local/bin/flocker flock']);
  containers.push(web);
  const locked = await workloadPod(op, 'locked', a, ['/usr/local/bin/flocker', 'flock']);
  containers.push(locked);
  await waitReady(locked.pid);
  await kube.createRunningPod(op.kc, { namespace, name: 'logs-agent', nodeName: a, containerName: 'app', containerId: 'not-a-container', image: 'x' });
  await op.kubectl(['patch', 'pod', '-n', namespace, 'logs-agent', '--type=merge', '-p', JSON.stringify({ metadata: { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'logs', uid: '0b0b0b0b-0000-4000-8000-000000000001', controller: true }] } })]);

  // The budget run's pods: ten of one ReplicaSet (no controller-manager here: nothing else makes pods).
  const apps = op.kc.makeApiClient(k8s.AppsV1Api);
  const rs = await apps.createNamespacedReplicaSet({
    namespace,
    body: { metadata: { name: 'fleet-7c' }, spec: { replicas: 10, selector: { matchLabels: { app: 'fleet' } }, template: { metadata: { labels: { app: 'fleet' } }, spec: { containers: [{ name: 'app', image: 'x' }] } } } },
  });
  const fleet: string[] = [];
  for (let i = 0; i < 10; i++) {
    const name = `fleet-7c-${i}`;
    const c = await workloadPod(op, name, a, ['sleep', '100000']);
    containers.push(c);
    await op.kubectl(['patch', 'pod', '-n', namespace, name, '--type=merge', '-p', JSON.stringify({ metadata: { labels: { app: 'fleet' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'fleet-7c', uid: rs.metadata?.uid, controller: true }] } })]);
    fleet.push(name);
  }

  const started = Date.now();
  readinesses.push('drain-a', 'fleet-a');
  await createReadiness(op, 'drain-a', {
    source: { nodeName: a, podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['fleet'] }] } },
    targets: { nodeNames: [b, nodeC] },
    schedule: '* * * * *',
    budget: { maxConcurrentProbes: 2, maxFrozenPerOwner: 1 },
  });
  const watch = watchReadinessProbes(op.kc, op.namespace, 'fleet-a');
  t.after(() => watch.stop());
  await createReadiness(op, 'fleet-a', { source: { nodeName: a, podSelector: { matchLabels: { app: 'fleet' } } }, targets: { nodeNames: [b] }, budget: { maxConcurrentProbes: 3, maxFrozenPerOwner: 1 } });

  // ---- run 1 of drain-a ----
  const r1 = await waitReadiness(op, 'drain-a', 'run 1 Completed', (s) => s.runId === 1 && s.phase === 'Completed', 120_000);
  const s1 = r1.status!;
  const pod = (name: string) => s1.pods?.find((p) => p.name === name);
  assert.deepEqual([pod('web')?.migratable, pod('web')?.bestTarget, pod('web')?.compatibleTargets], [true, b, [b]], JSON.stringify(pod('web')));
  assert.equal(pod('locked')?.migratable, false);
  assert.deepEqual(pod('locked')?.reasons?.map((r) => r.code), ['FileLocks']);
  assert.match(pod('locked')?.reasons?.[0]?.message ?? '', new RegExp(`^to ${b}: `));
  assert.match(pod('logs-agent')?.skipped ?? '', /DaemonSet/);
  assert.deepEqual(s1.totals, { pods: 3, migratable: 1, blocked: 1, pending: 0, skipped: 1, probes: 2 });
  const drainable = s1.conditions?.find((c) => c.type === 'Drainable');
  assert.deepEqual([drainable?.status, drainable?.reason], ['False', 'PodsBlocked']);
  assert.match(drainable?.message ?? '', new RegExp(`${namespace}/locked \\(FileLocks\\)`));
  assert.equal(drainable?.observedGeneration, r1.metadata.generation);
  const pairC = s1.targets?.find((x) => x.nodeName === nodeC);
  assert.equal(pairC?.eligible, false);
  assert.deepEqual(pairC?.reasons?.map((r) => r.code), ['ArchMismatch'], JSON.stringify(pairC));
  assert.equal(s1.targets?.find((x) => x.nodeName === b)?.eligible, true);
  const probes1 = (await listProbes(op)).filter((p) => p.metadata.labels?.['migprobe.io/readiness'] === 'drain-a');
  assert.ok(probes1.length === 2 && probes1.every((p) => p.spec.targetNodeName === b), `no probe towards the screened-out ${nodeC}: ${probes1.map((p) => `${p.metadata.name}->${p.spec.targetNodeName}`).join(', ')}`);
  assert.ok(probes1.every((p) => p.metadata.ownerReferences?.[0]?.kind === 'MigrationReadiness' && p.metadata.labels?.['migprobe.io/readiness-run'] === '1'));
  const table = await op.kubectl(['get', 'mpready', 'drain-a', '-o', 'wide']);
  assert.match(table.stdout.split('\n')[0] ?? '', /NAME\s+NODE\s+PODS\s+MIGRATABLE\s+BLOCKED\s+DRAINABLE\s+LAST RUN\s+PHASE\s+SCHEDULE\s+AGE/);
  assert.match(table.stdout, new RegExp(`drain-a\\s+${a}\\s+3\\s+1\\s+1\\s+False\\s+\\S+\\s+Completed\\s+\\* \\* \\* \\* \\*`));
  const explain = await op.kubectl(['explain', 'migrationreadiness.spec.budget.maxFrozenPerOwner']);
  assert.match(explain.stdout, /PodDisruptionBudget/);

  // ---- the scheduled re-run finds the new blocker ----
  await writeFile(`/proc/${web.pid}/root/tmp/lock-now`, '');
  const r2 = await waitReadiness(op, 'drain-a', 'a change: web blocked', (s) => (s.changes ?? []).some((c) => c.subject === `${namespace}/web` && c.to === 'blocked'), 150_000);
  const change = r2.status?.changes?.find((c) => c.subject === `${namespace}/web`);
  assert.deepEqual([change?.kind, change?.from, change?.to, change?.reasons], ['Pod', 'migratable', 'blocked', ['FileLocks']]);
  assert.ok((change?.runId ?? 0) >= 2);
  assert.equal(r2.status?.conditions?.find((c) => c.type === 'Drainable')?.message.includes(`${namespace}/web (FileLocks)`), true);
  const events = await op.kubectl(['get', 'events', '-n', 'default', '--field-selector', 'involvedObject.name=drain-a,involvedObject.kind=MigrationReadiness', '-o', 'jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\\n"}{end}']);
  assert.match(events.stdout, /Normal RunStarted: run 1 \(FirstRun\)/);
  assert.match(events.stdout, /Normal RunStarted: run \d+ \(Scheduled\)/);
  assert.match(events.stdout, new RegExp(`Warning PodBlocked: pod ${namespace}/web was migratable, is blocked \\(FileLocks\\)`));
  const leftover = (await listProbes(op)).filter((p) => p.metadata.labels?.['migprobe.io/readiness'] === 'drain-a');
  const runs = new Set(leftover.filter((p) => p.metadata.deletionTimestamp === undefined).map((p) => p.metadata.labels?.['migprobe.io/readiness-run']));
  assert.ok(!runs.has('1'), `run 1's probes are deleted once a later run completed: ${[...runs].join(',')}`);

  // ---- the budget: ten pods of one ReplicaSet, maxFrozenPerOwner 1 ----
  const rf = await waitReadiness(op, 'fleet-a', 'Completed', (s) => s.phase === 'Completed', 150_000);
  watch.stop();
  assert.equal(rf.status?.totals?.migratable, 10, JSON.stringify(rf.status?.totals));
  assert.deepEqual(rf.status?.pods?.map((p) => p.owner), fleet.map(() => ({ kind: 'ReplicaSet', name: 'fleet-7c' })));
  assert.equal(watch.seen.size, 10, `ten probes, one per pod: ${[...watch.seen].join('; ')}`);
  assert.equal(watch.max.unfinished, 1, `measured by the test's own watch: at most one probe of the ReplicaSet unfinished at once (saw ${watch.max.unfinished})`);
  assert.equal(watch.max.active, 1);
  assert.deepEqual(rf.status?.budgetObserved, { maxConcurrentProbes: 1, maxFrozenPerOwner: 1 });
  t.diagnostic(`fleet budget: watch max unfinished ${watch.max.unfinished}, active ${watch.max.active}; status.budgetObserved ${JSON.stringify(rf.status?.budgetObserved)}; all done in ${Math.round((Date.now() - started) / 1000)} s`);

  // Metrics: bounded labels, no pod names.
  const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(op.controller.log());
  assert.ok(m, 'metrics URL in the controller log');
  const metrics = await (await fetch(`${m[1]}/metrics`)).text();
  assert.match(metrics, new RegExp(`migprobe_readiness_pods\\{readiness="fleet-a",node="${a}",state="migratable"\\} 10`));
  assert.match(metrics, new RegExp(`migprobe_readiness_drainable\\{readiness="drain-a",node="${a}"\\} 0`));
  assert.match(metrics, new RegExp(`migprobe_node_pair_compatible\\{source="${a}",target="${nodeC}"\\} 0`));
  assert.match(metrics, new RegExp(`migprobe_node_pair_compatible\\{source="${a}",target="${b}"\\} 1`));
  assert.match(metrics, /migprobe_readiness_verdict_changes_total\{readiness="drain-a",kind="Pod",to="blocked",reason="FileLocks"\} 1/);
  assert.match(metrics, /migprobe_readiness_last_run_timestamp_seconds\{readiness="drain-a"\} \d+/);
  assert.match(metrics, /controller_runtime_reconcile_total\{controller="migrationreadiness",result="success"\} \d+/);
  assert.doesNotMatch(metrics, /"(web|locked|fleet-7c-\d)"/, 'no pod names in metric labels');
});
