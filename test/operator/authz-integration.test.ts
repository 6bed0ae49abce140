// What an authenticated caller may ask of the agents (issue 10, items 1 and 3), on the real kube-apiserver
// with two real agent processes and the real controller: the agent works only for a live MigrationProbe with
// the request's UID in the pod's namespace that names that pod, container and target; it finds the target
// agent itself (a caller's URL is ignored); restore-check is for peer agents only; a restore-only probe may only
// name a checkpoint of its own namespace. Each refusal names its reason and leaves nothing frozen and no file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { kube, testbed } from '../../testbed/index.ts';
import { AGENT_SA, CONTROLLER_SA, startOperator, type Operator } from './harness.ts';
import { createProbe, freezerState, isFinal, taskStates, waitProbe, workloadPod } from './lib.ts';
import { AgentClient, AgentHttpError } from '../../src/agent-api/client.ts';
import type { OperationStatus, StartRequest } from '../../src/agent-api/protocol.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';

async function probeIn(op: Operator, namespace: string, name: string, spec: MigrationProbe['spec']): Promise<string> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  const p = (await api.createNamespacedCustomObject({
    group: 'migprobe.io',
    version: 'v1alpha1',
    namespace,
    plural: 'migrationprobes',
    body: { apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationProbe', metadata: { name, namespace }, spec },
  })) as MigrationProbe;
  return p.metadata.uid ?? '';
}

test('agent authorization: another namespace, an unknown UID, another pod or target, the controller on restore-check, a caller\'s target URL, another namespace\'s checkpoint', { timeout: 300_000 }, async (t) => {
  const tb = await testbed();
  const namespace = `mp-authz-${randomBytes(3).toString('hex')}`;
  const op = await startOperator({ tb, namespace });
  // Namespaces the controller does not watch: probes there are the test's alone (the agents read them all).
  const podNs = `${namespace}-x`;
  const otherNs = `${namespace}-y`;
  t.after(async () => {
    for (const ns of [podNs, otherNs]) await op.kubectl(['delete', 'migrationprobes', '--all', '-n', ns, '--wait=false'], { reject: false });
    await op.stop();
    for (const ns of [namespace, podNs, otherNs, op.agentNamespace]) await kube.deleteNamespace(op.kc, ns);
  });
  await kube.ensureNamespace(op.kc, podNs);
  await kube.ensureNamespace(op.kc, otherNs);
  const [a, b] = op.nodes;
  const [agentA, agentB] = op.agents;
  const c = await workloadPod(op, 'web', a, ['sleep', '100000']);
  t.after(() => c.remove());
  await kube.createRunningPod(op.kc, { namespace: podNs, name: 'web', nodeName: a, containerName: 'app', containerId: c.id, image: c.image });

  const core = op.kc.makeApiClient(k8s.CoreV1Api);
  const token = async (sa: string): Promise<string> =>
    (await core.createNamespacedServiceAccountToken({ name: sa, namespace: op.agentNamespace, body: { spec: { audiences: ['migprobe-agent'], expirationSeconds: 600 } } })).status?.token ?? '';
  const ca = op.agentCa ? { ca: op.agentCa } : {};
  const controllerToken = await token(CONTROLLER_SA);
  const agentToken = await token(AGENT_SA);
  const ctl = new AgentClient({ tokens: { token: async () => controllerToken }, ...ca });
  const peer = new AgentClient({ tokens: { token: async () => agentToken }, ...ca });
  const req = (probeName: string, over: Partial<StartRequest> = {}): StartRequest => ({
    protocol: 2,
    probeName,
    namespace: podNs,
    podName: 'web',
    containerName: 'app',
    containerId: c.id,
    target: { nodeName: b },
    ...over,
  });
  const refusal = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return 'accepted';
    } catch (e) {
      return e instanceof AgentHttpError ? `${e.status} ${e.body?.code ?? ''}: ${e.body?.message ?? ''}` : String(e);
    }
  };
  const nothingLeft = async (what: string): Promise<void> => {
    assert.ok(!taskStates(c.pid).includes('T'), `${what}: the workload is not stopped`);
    const fz = freezerState(c.id);
    assert.ok(fz === undefined || fz === 'THAWED', `${what}: freezer ${fz}`);
    for (const ag of op.agents) assert.deepEqual(await readdir(ag.workDir).catch(() => []), [], `${what}: nothing in ${ag.node}'s work folder`);
  };

  // A caller whose probe is in another namespace than the pod: the agent looks in the pod's namespace, finds none.
  const crossUid = await probeIn(op, otherNs, 'cross', { podName: 'web', targetNodeName: b });
  assert.match(await refusal(ctl.start(agentA.url, crossUid, req('cross'))), new RegExp(`^404 ProbeNotFound: no MigrationProbe ${podNs}/cross \\(a probe must be in the namespace of the pod it names\\)`));
  // A UID no probe has; the right name with another UID.
  const goodUid = await probeIn(op, podNs, 'good', { podName: 'web', targetNodeName: b });
  assert.match(await refusal(ctl.start(agentA.url, randomUUID(), req('good'))), /^404 ProbeNotFound: MigrationProbe \S+\/good has UID /);
  assert.match(await refusal(ctl.start(agentA.url, randomUUID(), req('no-such-probe'))), /^404 ProbeNotFound: no MigrationProbe /);
  // A live probe that names another pod, another container, or another target node.
  const otherPodUid = await probeIn(op, podNs, 'other-pod', { podName: 'db', targetNodeName: b });
  assert.match(await refusal(ctl.start(agentA.url, otherPodUid, req('other-pod'))), /^403 ProbeMismatch: .* names pod db, not web/);
  const otherCtrUid = await probeIn(op, podNs, 'other-ctr', { podName: 'web', containerName: 'sidecar', targetNodeName: b });
  assert.match(await refusal(ctl.start(agentA.url, otherCtrUid, req('other-ctr'))), /^403 ProbeMismatch: .* names container sidecar, not app/);
  const otherTargetUid = await probeIn(op, podNs, 'other-target', { podName: 'web', targetNodeName: `${b}-z` });
  assert.match(await refusal(ctl.start(agentA.url, otherTargetUid, req('other-target'))), new RegExp(`^403 ProbeMismatch: .* names target node ${b}-z, not ${b}`));
  await nothingLeft('refused starts');

  // Per endpoint: the controller's token on the peer-only restore-check endpoint, a peer's on the controller's.
  const restoreAsController = await refusal(ctl.restoreCheck(agentB.url, goodUid, { namespace: podNs, podName: 'web', sourceNodeName: a, options: { tcpEstablished: false, fileLocks: false, extUnixSockets: false, ghostLimitBytes: 0, freezeBudgetMs: 2000, timeoutMs: 10_000 } }, { path: import.meta.filename, sha256: 'a'.repeat(64) }, 10_000));
  assert.match(restoreAsController, /^403 Forbidden: user system:serviceaccount:\S+:migprobe-controller may not call the restore-check endpoint/);
  assert.match(await refusal(peer.start(agentA.url, goodUid, req('good'))), /^403 Forbidden: user system:serviceaccount:\S+:migprobe-agent may not start, read or delete probes/);
  assert.match(await refusal(peer.get(agentA.url, goodUid)), /^403 Forbidden/);
  await nothingLeft('refused endpoints');

  // A target address from the caller is ignored: a decoy listener named as target.url is never dialled; the
  // probe runs against the target node's agent, found from its pod.
  let decoyHits = 0;
  const decoy = createServer((s) => {
    decoyHits++;
    s.destroy();
  });
  const decoyPort = await new Promise<number>((r) => decoy.listen(0, '127.0.0.1', () => r((decoy.address() as { port: number }).port)));
  t.after(() => new Promise<void>((r) => decoy.close(() => r())));
  const withUrl = { ...req('good'), target: { nodeName: b, url: `https://127.0.0.1:${decoyPort}` } } as StartRequest;
  await ctl.start(agentA.url, goodUid, withUrl);
  let st: OperationStatus | undefined;
  for (const end = Date.now() + 120_000; ; ) {
    st = await ctl.get(agentA.url, goodUid);
    if (st && st.state !== 'Running') break;
    assert.ok(Date.now() < end, `the operation did not finish: ${JSON.stringify(st)}\n${agentA.proc.log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(st?.state, 'Done', `${JSON.stringify(st)}\n${agentA.proc.log().slice(-3000)}`);
  assert.equal(st?.verdict?.migratable, true, JSON.stringify(st?.verdict?.reasons));
  assert.ok((st?.verdict?.sizes.shippedBytes ?? 0) > 0, 'the image set went to the target agent');
  assert.equal(decoyHits, 0, 'the caller\'s target.url was never dialled');
  assert.match(agentA.proc.log(), new RegExp(`"targetUrl":"${agentB.url.replace(/[.]/g, '\\.')}"`), 'the source agent found the target agent from its pod');
  await ctl.delete(agentA.url, goodUid);
  await nothingLeft('the accepted run');

  // RestoreOnly through the controller: a kubelet checkpoint of another namespace is refused by name, before
  // the file is read; nothing is shipped, the file stays. `<ns>-y-app` could also read as namespace <ns>,
  // container y-app: refused as well, because namespace <ns>-y exists.
  await kube.createRunningPod(op.kc, { namespace, name: 'web2', nodeName: a, containerName: 'app', containerId: c.id, image: c.image });
  const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const foreign = join(agentA.checkpointDir, `checkpoint-db_default-app-${ts}.tar`);
  const lookalike = join(agentA.checkpointDir, `checkpoint-db_${otherNs}-app-${ts}.tar`);
  for (const f of [foreign, lookalike]) await writeFile(f, 'another namespace\'s memory');
  await createProbe(op, 'ro-foreign', { podName: 'web2', targetNodeName: b, mode: 'RestoreOnly', checkpoint: { path: foreign } });
  await createProbe(op, 'ro-lookalike', { podName: 'web2', targetNodeName: b, mode: 'RestoreOnly', checkpoint: { path: lookalike } });
  const expect: [string, RegExp][] = [
    ['ro-foreign', new RegExp(`is not of namespace ${namespace} \\(the kubelet names a checkpoint checkpoint-<pod>_<namespace>-<container>-<time>\\.tar\\)`)],
    ['ro-lookalike', new RegExp(`could be of namespace ${otherNs} as well \\(the kubelet's name does not separate namespace and container\\): move it into <checkpoint folder>/${namespace}/`)],
  ];
  for (const [name, message] of expect) {
    const ro = await waitProbe(op, name, isFinal, 60_000);
    assert.equal(ro.status?.phase, 'Failed', JSON.stringify(ro.status));
    const r0 = ro.status?.reasons?.[0];
    assert.equal(r0?.code, 'CheckpointNotAllowed', JSON.stringify(ro.status?.reasons));
    assert.match(r0?.message ?? '', message);
    assert.match(r0?.hint ?? '', /checkpoint-<pod>_<namespace>-<container>-<time>\.tar, or put it in <checkpoint folder>\/<namespace>\/ \(spec\.checkpoint\.path\)/);
    assert.equal(ro.status?.startTime, undefined, `${name}: no operation was started`);
  }
  assert.ok(existsSync(foreign) && existsSync(lookalike), 'the checkpoints are left as they were');
  await nothingLeft('the refused restore-only probes');
});
