// End to end on the real kube-apiserver, real containerd containers bound to fake nodes, two agent processes
// and the real controller process.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { resolveContainer } from '../../src/engine/container.ts';
import { dumpCheck } from '../../src/engine/dump.ts';
import { addressesOf, subjectFromContainer } from '../../src/engine/subject.ts';
import { kube, testbed } from '../../testbed/index.ts';
import { withOperator } from './harness.ts';
import { createProbe, exampleFor, freezerState, getProbe, taskStates, waitProbe, isFinal, workloadPod } from './lib.ts';
import type { RunningContainer } from '../../testbed/index.ts';
import type { Condition } from '../../src/api/v1alpha1.ts';

function track(t: { after(fn: () => Promise<void>): void }, c: RunningContainer): RunningContainer {
  t.after(() => c.remove());
  return c;
}

test('examples: kubectl apply + kubectl wait --for=condition=Migratable; blocked workload gets FileLocks', { timeout: 300_000 }, async (t) => {
  const op = await withOperator(t, 'mp-e2e');
  const [a, b] = op.nodes;
  const web = track(t, await workloadPod(op, 'web', a, ['sleep', '100000']));
  const locked = track(t, await workloadPod(op, 'locked', a, ['/usr/local/bin/flocker', 'flock']));
  const mig = exampleFor('probe-migratable.yaml', b);
  const blk = exampleFor('probe-blocked.yaml', b);
  await op.kubectl(['apply', '-n', op.namespace, '-f', '-'], { input: mig.yaml });
  await op.kubectl(['apply', '-n', op.namespace, '-f', '-'], { input: blk.yaml });
  const w = await op.kubectl(['wait', '-n', op.namespace, '--for=condition=Migratable', `migrationprobe/${mig.name}`, '--timeout=150s'], { reject: false });
  const p1 = await waitProbe(op, mig.name, isFinal, 10_000);
  assert.equal(w.exitCode, 0, `kubectl wait failed: ${w.stderr}\nstatus: ${JSON.stringify(p1.status)}\n${op.agents[0].proc.log().slice(-3000)}`);
  assert.equal(p1.status?.phase, 'Succeeded');
  assert.equal(p1.status?.migratable, true);
  assert.equal(p1.status?.sourceNodeName, a);
  assert.ok((p1.status?.timings?.freezeMilliseconds ?? -1) >= 0, 'freeze time reported');
  assert.ok(p1.metadata.finalizers?.includes('migprobe.io/cleanup'));
  for (const type of ['PreflightPassed', 'DumpChecked', 'RestoreChecked', 'Compatible', 'Migratable']) {
    const cond: Condition | undefined = p1.status?.conditions?.find((x) => x.type === type);
    assert.equal(cond?.status, 'True', `${type}: ${JSON.stringify(cond)}`);
    assert.equal(cond?.observedGeneration, p1.metadata.generation);
  }
  const p2 = await waitProbe(op, blk.name, isFinal, 150_000);
  assert.equal(p2.status?.phase, 'Succeeded', JSON.stringify(p2.status));
  assert.equal(p2.status?.migratable, false);
  assert.ok(p2.status?.reasons?.some((r) => r.code === 'FileLocks'), JSON.stringify(p2.status?.reasons));
  // Workloads keep running, not frozen.
  for (const c of [web, locked]) {
    assert.ok(!taskStates(c.pid).includes('T'), `task ${c.pid} stopped`);
    const fz = freezerState(c.id);
    assert.ok(fz === undefined || fz === 'THAWED', `freezer ${fz}`);
  }
  const wide = await op.kubectl(['get', 'migrationprobes', '-n', op.namespace, '-o', 'wide']);
  assert.match(wide.stdout, /web-to-node-b\s+Succeeded\s+true/);
  const ev = await op.kubectl(['get', 'events', '-n', op.namespace, '--field-selector', `involvedObject.name=${mig.name}`, '-o', 'jsonpath={.items[*].reason}']);
  assert.match(ev.stdout, /Started/);
  assert.match(ev.stdout, /Migratable/);
  // Metrics: controller-runtime's and ours.
  const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(op.controller.log());
  assert.ok(m, 'metrics URL in the controller log');
  const metrics = await (await fetch(`${m[1]}/metrics`)).text();
  assert.match(metrics, /controller_runtime_reconcile_total\{controller="migrationprobe",result="success"\} [1-9]/);
  assert.match(metrics, /migprobe_probe_verdicts_total\{phase="Succeeded",migratable="true",reason=""\} 1/);
  assert.match(metrics, /migprobe_probe_verdicts_total\{phase="Succeeded",migratable="false",reason="FileLocks"\} 1/);
  assert.match(metrics, /migprobe_probe_freeze_seconds_count 1/);
  assert.match(metrics, /migprobe_probe_duration_seconds_count\{phase="Succeeded"\} 2/);
  assert.equal((await fetch(`${m[1]}/readyz`)).status, 200);
  // Logs are JSON lines carrying the probe key.
  const finishedLine = op.controller.log().split('\n').find((l) => l.includes('"message":"probe finished"') && l.includes(`"probe":"${op.namespace}/${mig.name}"`));
  assert.ok(finishedLine, 'a JSON log line with the probe key');
  assert.equal((JSON.parse(finishedLine) as { migratable?: boolean }).migratable, true);
  // Deleting goes through the finalizer.
  await op.kubectl(['delete', '-n', op.namespace, `migrationprobe/${mig.name}`, '--timeout=60s']);
});

test('bad input ends Failed with its reason and no side effect', { timeout: 240_000 }, async (t) => {
  const op = await withOperator(t, 'mp-e2e');
  const [a, b] = op.nodes;
  const c = track(t, await workloadPod(op, 'web', a, ['sleep', '100000']));
  const core = op.kc.makeApiClient(k8s.CoreV1Api);
  // A pod that never started (no status): PodNotRunning.
  await core.createNamespacedPod({ namespace: op.namespace, body: { metadata: { name: 'pending' }, spec: { nodeName: a, containers: [{ name: 'app', image: c.image }] } } });
  t.after(() => kube.deletePod(op.kc, op.namespace, 'pending'));
  const notReady = `${a}-notready`;
  const noAgent = `${a}-noagent`;
  await kube.createReadyNode(op.kc, notReady, '127.0.0.9', { ready: false });
  await kube.createReadyNode(op.kc, noAgent, '127.0.0.10');
  t.after(async () => {
    await core.deleteNode({ name: notReady }).catch(() => undefined);
    await core.deleteNode({ name: noAgent }).catch(() => undefined);
  });
  const cases: [string, Parameters<typeof createProbe>[2], string][] = [
    ['nopod', { podName: 'does-not-exist', targetNodeName: b }, 'PodNotFound'],
    ['notrunning', { podName: 'pending', targetNodeName: b }, 'PodNotRunning'],
    ['nocontainer', { podName: 'web', containerName: 'sidecar', targetNodeName: b }, 'ContainerNotFound'],
    ['nonode', { podName: 'web', targetNodeName: 'no-such-node' }, 'TargetNodeNotFound'],
    ['notready', { podName: 'web', targetNodeName: notReady }, 'TargetNodeNotReady'],
    ['samenode', { podName: 'web', targetNodeName: a }, 'SameNode'],
    ['noagent', { podName: 'web', targetNodeName: noAgent }, 'AgentUnavailable'],
  ];
  for (const [name, spec] of cases) await createProbe(op, name, spec);
  for (const [name, , code] of cases) {
    const p = await waitProbe(op, name, isFinal, 60_000);
    assert.equal(p.status?.phase, 'Failed', `${name}: ${JSON.stringify(p.status)}`);
    assert.equal(p.status?.reasons?.[0]?.code, code, `${name}: ${JSON.stringify(p.status?.reasons)}`);
    assert.equal(p.status?.migratable, false);
    assert.equal(p.status?.startTime, undefined, `${name}: no probe was started`);
    const m = p.status?.conditions?.find((x) => x.type === 'Migratable');
    assert.equal(m?.status, 'False');
    assert.equal(m?.reason, code);
  }
  // TTL: a finished probe with ttlSecondsAfterFinished goes away by itself (through its finalizer).
  await createProbe(op, 'ttl', { podName: 'does-not-exist', targetNodeName: b, ttlSecondsAfterFinished: 2 });
  await waitProbe(op, 'ttl', isFinal, 60_000);
  const gone = Date.now() + 30_000;
  while ((await getProbe(op, 'ttl')) !== undefined) {
    assert.ok(Date.now() < gone, 'probe with ttlSecondsAfterFinished: 2 still there after 30 s');
    await new Promise((r) => setTimeout(r, 250));
  }
  // No side effect: the agents never saw an operation (their work folders hold nothing).
  for (const ag of op.agents) assert.deepEqual(await readdir(ag.workDir).catch(() => []), []);
  assert.ok(!taskStates(c.pid).includes('T'));
});

test('agents authenticate callers with TokenReview: wrong audience, unknown ServiceAccount and no token refused', { timeout: 120_000 }, async (t) => {
  const op = await withOperator(t, 'mp-e2e');
  const core = op.kc.makeApiClient(k8s.CoreV1Api);
  await core.createNamespacedServiceAccount({ namespace: op.agentNamespace, body: { metadata: { name: 'stranger' } } });
  const token = async (sa: string, audiences: string[]): Promise<string> => {
    const r = await core.createNamespacedServiceAccountToken({ name: sa, namespace: op.agentNamespace, body: { spec: { audiences, expirationSeconds: 600 } } });
    return r.status?.token ?? '';
  };
  assert.match(op.agents[0].url, /^https:/, 'agents serve HTTPS');
  const get = (tok?: string): Promise<number> => op.agentGet(op.agents[0], '/v1/probes/0f8fad5b-d9cb-469f-a165-70867728950e', tok);
  assert.equal(await get(), 401, 'no token');
  assert.equal(await get(await token('migprobe-controller', ['https://kubernetes.default.svc'])), 401, 'API-server audience');
  assert.equal(await get(await token('stranger', ['migprobe-agent'])), 403, 'not on the allow-list');
  assert.equal(await get(await token('migprobe-controller', ['migprobe-agent'])), 404, 'controller: authenticated, unknown UID');
  // A peer agent is authenticated, and may not read probes (test/operator/authz-integration.test.ts: what each caller may do).
  assert.equal(await get(await token('migprobe-agent', ['migprobe-agent'])), 403, 'peer agent: authenticated, not authorized');
});

test('RestoreOnly: an existing checkpoint archive on the source node is checked on the target; a missing one is CheckpointNotFound', { timeout: 240_000 }, async (t) => {
  const op = await withOperator(t, 'mp-e2e');
  const [a, b] = op.nodes;
  const tb = await testbed();
  const c = track(t, await workloadPod(op, 'web', a, ['/bin/sh', '-c', 'while true; do sleep 0.05; done']));
  // A full checkpoint (memory pages included) in the kubelet / CRI-O archive layout, in the agent's checkpoint folder.
  const ci = await resolveContainer({ containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address });
  const work = mkdtempSync(join(tmpdir(), 'migprobe-cp-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const d = await dumpCheck({
    subject: subjectFromContainer(ci, { externalTmpfs: false }),
    options: { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 60_000 },
    workDir: join(work, 'dump'),
    criuVersion: 'test',
    full: true,
    manifest: { rootfs: { lowerdirs: ci.rootfs.lowerdirs }, addresses: addressesOf(ci), fileDigests: [] },
  });
  assert.deepEqual(d.result.reasons, [], d.result.criuLogExcerpt);
  const arch = join(work, 'archive');
  await mkdir(arch);
  await cp(join(work, 'dump', 'bundle', 'images'), join(arch, 'checkpoint'), { recursive: true });
  await writeFile(join(arch, 'config.dump'), JSON.stringify({ id: c.id, rootfsImageName: c.image, rootfsImageRef: c.image }));
  await writeFile(join(arch, 'spec.dump'), JSON.stringify({ ociVersion: '1.0.2', mounts: [] }));
  // The kubelet's name says the namespace (a restore-only probe may only name its own namespace's checkpoints).
  const archive = join(op.agents[0].checkpointDir, `checkpoint-web_${op.namespace}-app-${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}.tar`);
  await execa('tar', ['-c', '-z', '-f', archive, '-C', arch, '.']);

  await createProbe(op, 'ro', { podName: 'web', targetNodeName: b, mode: 'RestoreOnly', checkpoint: { path: archive } });
  await createProbe(op, 'ro-missing', { podName: 'web', targetNodeName: b, mode: 'RestoreOnly', checkpoint: { path: `${op.agents[0].checkpointDir}/${op.namespace}/nope.tar` } });
  const ro = await waitProbe(op, 'ro', isFinal, 180_000);
  assert.equal(ro.status?.phase, 'Succeeded', JSON.stringify(ro.status));
  assert.equal(ro.status?.migratable, true, JSON.stringify(ro.status?.reasons));
  const conds = Object.fromEntries((ro.status?.conditions ?? []).map((x) => [x.type, `${x.status}/${x.reason}`]));
  assert.equal(conds['DumpChecked'], 'Unknown/NotRun');
  assert.equal(conds['RestoreChecked'], 'True/Passed');
  assert.equal(conds['Migratable'], 'True/Migratable');
  const missing = await waitProbe(op, 'ro-missing', isFinal, 60_000);
  assert.equal(missing.status?.phase, 'Failed');
  assert.equal(missing.status?.reasons?.[0]?.code, 'CheckpointNotFound');
  assert.ok(!taskStates(c.pid).includes('T'));
});
