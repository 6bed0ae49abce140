// The chart's ValidatingAdmissionPolicy on the real kube-apiserver: an agent, as the chart's agent
// ServiceAccount with the chart's RBAC, may create and write only the MigrationNode of the node its token is
// bound to. The agent's own publisher (src/agent/nodefacts-publisher.ts, real facts of this machine) runs with
// a TokenRequest token bound to a Pod on node A (so it carries authentication.kubernetes.io/node-name=A): it
// publishes A's MigrationNode and is refused B's; a create that sets spec or names another owner is refused; a
// token bound to no pod (no node name) is refused everything; patching spec is not in its RBAC at all.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { machine, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { kube, testbed } from '../../testbed/index.ts';
import { run } from '../../testbed/proc.ts';
import { collectNodeFacts } from '../../src/engine/index.ts';
import { kubeRequest, loadKubeConfig } from '../../src/kube/client.ts';
import { safeMessage } from '../../src/kube/errors.ts';
import { realClock } from '../../src/kube/clock.ts';
import { nullLogger } from '../../src/kube/logger.ts';
import { kubeMigrationNodeApi } from '../../src/agent/kube-migrationnode.ts';
import { NodeFactsPublisher } from '../../src/agent/nodefacts-publisher.ts';
import { newMigrationNode } from '../../src/agent/nodefacts.ts';
import type { MigrationNode } from '../../src/api/migrationnode.ts';
import { CHART_DIR, tokenKubeconfig } from './lib.ts';

const MN = '/apis/migprobe.io/v1alpha1/migrationnodes';

test("the chart's admission policy holds an agent to its own node's MigrationNode", { timeout: 240_000 }, async (t) => {
  const tb = await testbed();
  const id = randomBytes(3).toString('hex');
  const ns = `mp-vap-${id}`;
  const release = `vap${id}`;
  const sa = `${release}-migprobe-agent`;
  const [nodeA, nodeB] = [`vap${id}-a`, `vap${id}-b`];
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-vap-'));
  const admin = kube.client(tb);
  const kubectl = async (args: string[]) => await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, ...args], { timeoutMs: 60_000 });
  t.after(async () => {
    await run(tb.helm, ['uninstall', release, '-n', ns, '--ignore-not-found', '--kubeconfig', tb.kubeconfigPath], { allowFail: true });
    await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'delete', 'migrationnodes', nodeA, nodeB, '--ignore-not-found'], { allowFail: true });
    const core = admin.makeApiClient(k8s.CoreV1Api);
    for (const n of [nodeA, nodeB]) await core.deleteNode({ name: n }).catch(() => undefined);
    await kube.deleteNamespace(admin, ns);
    rmSync(tmp, { recursive: true, force: true });
  });

  await run(tb.helm, ['install', release, CHART_DIR, '-n', ns, '--create-namespace', '--kubeconfig', tb.kubeconfigPath], { timeoutMs: 120_000 });
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/migrationnodes.migprobe.io']);
  const nodeUid = (await kube.createReadyNode(admin, nodeA, '127.0.0.9')).metadata?.uid ?? '';
  await kube.createReadyNode(admin, nodeB, '127.0.0.10');
  // A pod of the agent's ServiceAccount on node A, and two tokens: one bound to it, one bound to nothing.
  await admin.makeApiClient(k8s.CoreV1Api).createNamespacedPod({
    namespace: ns,
    body: { metadata: { name: 'agent-a' }, spec: { nodeName: nodeA, serviceAccountName: sa, automountServiceAccountToken: false, containers: [{ name: 'agent', image: 'migprobe-agent:dev' }] } },
  });
  const kcOf = async (extra: string[], name: string): Promise<k8s.KubeConfig> => {
    const token = (await kubectl(['create', 'token', sa, '-n', ns, '--duration=600s', ...extra])).stdout.trim();
    const file = join(tmp, name);
    writeFileSync(file, tokenKubeconfig(tb, token), { mode: 0o600 });
    return loadKubeConfig({ kubeconfig: file });
  };
  const podKc = await kcOf(['--bound-object-kind=Pod', '--bound-object-name=agent-a'], 'pod.kubeconfig');
  const bareKc = await kcOf([], 'bare.kubeconfig');
  const who = await kubeRequest<{ status: { userInfo: { username: string; extra?: Record<string, string[]> } } }>(podKc, {
    method: 'POST',
    path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
  });
  assert.equal(who.status.userInfo.username, `system:serviceaccount:${ns}:${sa}`);
  assert.deepEqual(who.status.userInfo.extra?.['authentication.kubernetes.io/node-name'], [nodeA], 'the pod-bound token carries node A');

  /** The refusal of `p` (its safe message), failing when it succeeds. */
  const refusal = async (p: Promise<unknown>, what: string): Promise<string> => {
    try {
      await p;
    } catch (e) {
      return safeMessage(e);
    }
    assert.fail(`${what} was admitted`);
  };
  const create = (kc: k8s.KubeConfig, body: MigrationNode): Promise<unknown> => kubeRequest(kc, { method: 'POST', path: MN, body });

  // The policy is in force once the unbound token's create is refused (the API server loads policies
  // asynchronously; until then RBAC alone would let it through).
  for (const end = Date.now() + 30_000; ; ) {
    try {
      await create(bareKc, newMigrationNode({ name: nodeA, uid: nodeUid }));
    } catch (e) {
      assert.match(safeMessage(e), /HTTP 403: .*carry no node name/);
      break;
    }
    await kubectl(['delete', 'migrationnode', nodeA, '--ignore-not-found']);
    if (Date.now() > end) assert.fail('the ValidatingAdmissionPolicy was not in force within 30 s');
    await new Promise((r) => setTimeout(r, 500));
  }

  // The agent's publisher with the pod-bound token: its own node's object is created and written.
  const publisher = (nodeName: string): NodeFactsPublisher =>
    new NodeFactsPublisher({ nodeName, agentVersion: 'test', intervalMs: 600_000, measure: () => collectNodeFacts(tb.criu), api: kubeMigrationNodeApi(podKc), clock: realClock, log: nullLogger() });
  await publisher(nodeA).publishOnce();
  const a = await kubeRequest<MigrationNode>(admin, { method: 'GET', path: `${MN}/${nodeA}` });
  assert.equal(a.status?.observedFacts?.arch, machine());
  assert.match(a.status?.observedFacts?.criuVersion ?? '', /^4\.\d+/);
  assert.deepEqual(a.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.uid]), [['Node', nodeA, nodeUid]]);
  assert.equal(a.status?.conditions?.[0]?.status, 'True');
  // Again, now that it exists (status only).
  await publisher(nodeA).publishOnce();

  // Node B's object: refused whether it must be created or exists already.
  assert.match(await refusal(publisher(nodeB).publishOnce(), 'creating B'), new RegExp(`HTTP 403: .*may write only MigrationNode ${nodeA}, not ${nodeB}`));
  await create(admin, newMigrationNode({ name: nodeB, uid: 'x' }));
  assert.match(await refusal(publisher(nodeB).publishOnce(), 'writing B\'s status'), new RegExp(`HTTP 403: .*not ${nodeB}`));
  const b = await kubeRequest<MigrationNode>(admin, { method: 'GET', path: `${MN}/${nodeB}` });
  assert.equal(b.status, undefined, 'B untouched');

  // A create that sets spec, or names another owner: refused. Patching spec: not in the agent's RBAC.
  await kubectl(['delete', 'migrationnode', nodeA]);
  const withSpec = { ...newMigrationNode({ name: nodeA, uid: nodeUid }), spec: { factsOverride: { kernelRelease: '5.10.0' } } };
  assert.match(await refusal(create(podKc, withSpec), 'a create with spec'), /HTTP 403: .*never sets spec\.factsOverride/);
  const otherOwner = newMigrationNode({ name: nodeA, uid: nodeUid });
  otherOwner.metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'Node', name: nodeB, uid: 'x' }];
  assert.match(await refusal(create(podKc, otherOwner), 'a create owned by B'), /HTTP 403: .*only its own Node/);
  await publisher(nodeA).publishOnce();
  const patchSpec = kubeRequest(podKc, { method: 'PATCH', path: `${MN}/${nodeA}`, body: { spec: { factsOverride: { arch: 'aarch64' } } }, contentType: 'application/merge-patch+json' });
  assert.match(await refusal(patchSpec, 'a spec patch'), /HTTP 403: .*cannot patch resource "migrationnodes"/);

  // A token bound to no pod carries no node name: even node A's status is refused.
  const bare = new NodeFactsPublisher({ nodeName: nodeA, agentVersion: 'test', intervalMs: 600_000, measure: () => collectNodeFacts(tb.criu), api: kubeMigrationNodeApi(bareKc), clock: realClock, log: nullLogger() });
  assert.match(await refusal(bare.publishOnce(), 'an unbound token writing A\'s status'), /HTTP 403: .*carry no node name/);

  // The administrator is not the agent: the policy does not apply to them.
  await kubeRequest(admin, { method: 'PATCH', path: `${MN}/${nodeA}`, body: { spec: { factsOverride: { kernelRelease: '5.10.0' } } }, contentType: 'application/merge-patch+json' });
});
