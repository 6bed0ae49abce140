// The RBAC the chart grants is enough, and no more: the real controller runs out of cluster, authenticated
// as the chart's controller ServiceAccount (a TokenRequest token, so the API server applies exactly the
// chart's ClusterRole and Role), with the flags the chart renders, during an end-to-end probe of a real
// container between two agent processes (test/operator/harness.ts). Its log must show no RBAC denial.
// The agent's few API calls (GET a pod, create a TokenReview) are checked with `kubectl auth can-i` as its
// ServiceAccount, as are a few things neither may do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kube, testbed } from '../testbed/index.ts';
import { run } from '../testbed/proc.ts';
import { AGENT_SA, CONTROLLER_SA, startOperator } from '../operator/harness.ts';
import { createProbe, getProbe, isFinal, workloadPod } from '../operator/lib.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';
import { CHART_DIR, RBAC_DENIAL, chartControllerArgs, helmTemplate, parseObjects, tokenKubeconfig } from './lib.ts';

test('the controller as its ServiceAccount, with only the chart\'s RBAC, runs a probe end to end without a 403', { timeout: 300_000 }, async (t) => {
  const tb = await testbed();
  const id = randomBytes(3).toString('hex');
  const namespace = `mp-rbac-${id}`;
  const agentNs = `${namespace}-sys`;
  const release = `rbac${id}`;
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-rbac-'));
  const kubectl = async (args: string[], opts: { allowFail?: boolean; kubeconfig?: string } = {}) =>
    await run(tb.kubectl, ['--kubeconfig', opts.kubeconfig ?? tb.kubeconfigPath, ...args], { timeoutMs: 60_000, allowFail: opts.allowFail ?? false });
  t.after(async () => {
    await run(tb.helm, ['uninstall', release, '-n', agentNs, '--ignore-not-found', '--kubeconfig', tb.kubeconfigPath], { allowFail: true });
    const kc = kube.client(tb);
    await kube.deleteNamespace(kc, namespace);
    await kube.deleteNamespace(kc, agentNs);
    rmSync(tmp, { recursive: true, force: true });
  });

  // The chart's ServiceAccounts carry the names the harness's agents allow.
  const set = ['--set', `controller.serviceAccount.name=${CONTROLLER_SA}`, '--set', `agent.serviceAccount.name=${AGENT_SA}`];
  const inst = await run(tb.helm, ['install', release, CHART_DIR, '-n', agentNs, '--create-namespace', '--kubeconfig', tb.kubeconfigPath, ...set], {
    allowFail: true,
    timeoutMs: 120_000,
  });
  assert.equal(inst.exitCode, 0, `helm install failed:\n${inst.stderr}`);
  const objs = parseObjects(await helmTemplate(tb.helm, { release, namespace: agentNs, args: set }));

  // Credentials of the controller's ServiceAccount: an API token, and the audience-bound token agents check.
  const apiToken = (await kubectl(['create', 'token', CONTROLLER_SA, '-n', agentNs, '--duration=3600s'])).stdout.trim();
  const agentToken = (await kubectl(['create', 'token', CONTROLLER_SA, '-n', agentNs, '--duration=3600s', '--audience=migprobe-agent'])).stdout.trim();
  const saKubeconfig = join(tmp, 'controller.kubeconfig');
  const tokenFile = join(tmp, 'token');
  writeFileSync(saKubeconfig, tokenKubeconfig(tb, apiToken), { mode: 0o600 });
  writeFileSync(tokenFile, agentToken, { mode: 0o600 });
  const who = await kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig: saKubeconfig });
  assert.equal(who.stdout, `system:serviceaccount:${agentNs}:${CONTROLLER_SA}`, 'the controller authenticates as its ServiceAccount');

  const op = await startOperator({
    tb,
    namespace,
    agentNamespace: agentNs,
    controllerArgs: [
      ...chartControllerArgs(objs, agentNs),
      // Last wins: these replace the harness's admin kubeconfig and TokenRequest-based token.
      '--kubeconfig',
      saKubeconfig,
      '--token-file',
      tokenFile,
    ],
  });
  t.after(() => op.stop());

  const [a, b] = op.nodes;
  const c = await workloadPod(op, 'app', a, ['sleep', '100000']);
  t.after(() => c.remove());
  await createProbe(op, 'rbac', { podName: 'app', targetNodeName: b });
  const log = (): string => op.controller.log();
  const logs = (): string =>
    [`controller log:\n${log().slice(-3000)}`, ...op.agents.map((x) => `agent ${x.node} log:\n${x.proc.log().slice(-3000)}`)].join('\n');
  let p: MigrationProbe | undefined;
  for (const end = Date.now() + 150_000; ; ) {
    p = await getProbe(op, 'rbac');
    if (p && isFinal(p)) break;
    const ctl = op.controller.child;
    if (ctl && (ctl.exitCode !== null || ctl.signalCode !== null)) assert.fail(`the controller exited:\n${logs()}`);
    if (Date.now() > end) assert.fail(`the probe did not finish in 150 s: ${JSON.stringify(p?.status)}\n${logs()}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(p?.status?.phase, 'Succeeded', `status: ${JSON.stringify(p?.status)}\n${logs()}`);
  assert.equal(p?.status?.migratable, true, JSON.stringify(p?.status?.reasons));

  // Events were written by the controller (create on events).
  const ev = await kubectl(['get', 'events', '-n', namespace, '--field-selector', 'involvedObject.name=rbac', '-o', 'name']);
  assert.ok(ev.stdout.trim() !== '', 'the controller recorded Events on the probe');
  // Deletion goes through the controller's finalizer (patch on migrationprobes).
  await kubectl(['delete', 'migrationprobe', 'rbac', '-n', namespace, '--timeout=60s']);

  // The lease, when the chart turns leader election on.
  const args = chartControllerArgs(objs, agentNs);
  if (args.includes('--leader-elect')) {
    const lease = args.find((x) => x.startsWith('--lease-name='))?.split('=')[1] ?? '';
    const holder = await kubectl(['get', 'lease', lease, '-n', agentNs, '-o', 'jsonpath={.spec.holderIdentity}']);
    assert.notEqual(holder.stdout, '', 'the controller holds the Lease');
  }

  const denials = log()
    .split('\n')
    .filter((l) => RBAC_DENIAL.test(l));
  assert.deepEqual(denials, [], 'RBAC denials in the controller log');
});

test('the agent ServiceAccount may do exactly its two API calls; neither ServiceAccount may do more', async (t) => {
  const tb = await testbed();
  const id = randomBytes(3).toString('hex');
  const ns = `mp-rbac-cani-${id}`;
  const release = `cani${id}`;
  t.after(async () => {
    await run(tb.helm, ['uninstall', release, '-n', ns, '--ignore-not-found', '--kubeconfig', tb.kubeconfigPath], { allowFail: true });
    await kube.deleteNamespace(kube.client(tb), ns);
  });
  await run(tb.helm, ['install', release, CHART_DIR, '-n', ns, '--create-namespace', '--kubeconfig', tb.kubeconfigPath], { timeoutMs: 120_000 });
  const sa = (name: string): string => `system:serviceaccount:${ns}:${release}-migprobe-${name}`;
  const can = async (who: string, ...args: string[]): Promise<boolean> => {
    const r = await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'auth', 'can-i', `--as=${who}`, ...args], { allowFail: true });
    return r.stdout.trim() === 'yes';
  };
  const agent = sa('agent');
  const controller = sa('controller');
  const expectations: [string, string[], boolean][] = [
    [agent, ['create', 'tokenreviews.authentication.k8s.io'], true],
    [agent, ['get', 'pods', '-n', 'default'], true],
    [agent, ['list', 'pods', '-n', 'default'], false],
    [agent, ['get', 'nodes'], false],
    [agent, ['get', 'migrationprobes.migprobe.io', '-n', 'default'], false],
    [agent, ['create', 'serviceaccounts/token', '-n', ns], false],
    [agent, ['get', 'secrets', '-n', ns], false],
    [controller, ['list', 'pods', '--all-namespaces'], true],
    [controller, ['watch', 'nodes'], true],
    [controller, ['patch', 'migrationprobes.migprobe.io', '--subresource=status', '-n', 'default'], true],
    [controller, ['update', 'migrationprobes.migprobe.io', '--subresource=finalizers', '-n', 'default'], true],
    [controller, ['delete', 'migrationprobes.migprobe.io', '-n', 'default'], true],
    [controller, ['create', 'events', '-n', 'default'], true],
    [controller, ['update', 'leases.coordination.k8s.io', '-n', ns], true],
    [controller, ['update', 'leases.coordination.k8s.io', '-n', 'kube-system'], false],
    [controller, ['create', 'migrationprobes.migprobe.io', '-n', 'default'], false],
    [controller, ['delete', 'pods', '-n', 'default'], false],
    [controller, ['get', 'secrets', '-n', ns], false],
    [controller, ['create', 'tokenreviews.authentication.k8s.io'], false],
    [controller, ['create', 'serviceaccounts/token', '-n', ns], false],
  ];
  for (const [who, args, want] of expectations) {
    assert.equal(await can(who, ...args), want, `${who.split(':').pop() ?? who} ${want ? 'may' : 'may not'} ${args.join(' ')}`);
  }
});
