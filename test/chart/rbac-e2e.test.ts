// The RBAC the chart grants is enough, and no more: the real controller runs out of cluster, authenticated
// as the chart's controller ServiceAccount (a TokenRequest token, so the API server applies exactly the
// chart's ClusterRole and Role), with the flags the chart renders, during an end-to-end probe of a real
// container between two agent processes (test/operator/harness.ts). Its log must show no RBAC denial.
// The agent's few API calls (GET a pod, a MigrationProbe, a Namespace, a Node; LIST its peers' pods; create a TokenReview;
// create a MigrationNode and patch its status) are checked with `kubectl auth can-i` as its
// ServiceAccount, as are a few things neither may do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, kube, testbed } from '../../testbed/index.ts';
import { run, waitFor } from '../../testbed/proc.ts';
import { AGENT_SA, CONTROLLER_SA, startOperator } from '../operator/harness.ts';
import { createProbe, getProbe, isFinal, workloadPod } from '../operator/lib.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';
import { CHART_DIR, RBAC_DENIAL, ROOT, at, chartControllerArgs, findObject, helmTemplate, parseObjects, tlsPems, tokenKubeconfig } from './lib.ts';

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

test('the agent ServiceAccount may do exactly its few API calls; neither ServiceAccount may do more', async (t) => {
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
    [agent, ['list', 'pods', '-n', ns], true],
    [agent, ['watch', 'pods', '-n', ns], false],
    [agent, ['get', 'nodes'], true],
    [agent, ['list', 'nodes'], false],
    [agent, ['patch', 'nodes'], false],
    [agent, ['get', 'migrationnodes.migprobe.io'], true],
    [agent, ['create', 'migrationnodes.migprobe.io'], true],
    [agent, ['list', 'migrationnodes.migprobe.io'], false],
    [agent, ['patch', 'migrationnodes.migprobe.io'], false],
    [agent, ['update', 'migrationnodes.migprobe.io'], false],
    [agent, ['delete', 'migrationnodes.migprobe.io'], false],
    [agent, ['patch', 'migrationnodes.migprobe.io', '--subresource=status'], true],
    [agent, ['get', 'migrationprobes.migprobe.io', '-n', 'default'], true],
    [agent, ['list', 'migrationprobes.migprobe.io', '-n', 'default'], false],
    [agent, ['patch', 'migrationprobes.migprobe.io', '-n', 'default'], false],
    [agent, ['get', 'namespaces'], true],
    [agent, ['list', 'namespaces'], false],
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
    // A MigrationReadiness's fan-out creates probes; its status and node facts are read, never its spec written.
    [controller, ['create', 'migrationprobes.migprobe.io', '-n', 'default'], true],
    [controller, ['patch', 'migrationreadinesses.migprobe.io', '--subresource=status'], true],
    [controller, ['patch', 'migrationreadinesses.migprobe.io'], false],
    [controller, ['list', 'migrationnodes.migprobe.io'], true],
    [controller, ['patch', 'migrationnodes.migprobe.io'], false],
    [agent, ['create', 'migrationprobes.migprobe.io', '-n', 'default'], false],
    [controller, ['delete', 'pods', '-n', 'default'], false],
    [controller, ['get', 'secrets', '-n', ns], false],
    [controller, ['create', 'tokenreviews.authentication.k8s.io'], false],
    [controller, ['create', 'serviceaccounts/token', '-n', ns], false],
  ];
  for (const [who, args, want] of expectations) {
    assert.equal(await can(who, ...args), want, `${who.split(':').pop() ?? who} ${want ? 'may' : 'may not'} ${args.join(' ')}`);
  }
});

interface AgentAnswer {
  status: number;
  body: { code?: string; message?: string };
}

/** One HTTPS call to an agent, verifying its certificate against `ca` for the chart's server name. */
async function callAgent(url: string, ca: string, method: string, token: string | undefined, body?: unknown): Promise<AgentAnswer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return await new Promise<AgentAnswer>((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        ca,
        servername: 'migprobe-agent',
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}),
        },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: AgentAnswer['body'] = {};
          try {
            parsed = JSON.parse(text) as AgentAnswer['body'];
          } catch {
            parsed = { message: text };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

test('the agent as its ServiceAccount, with the chart\'s flags, certificate and RBAC: TokenReview and pod checks work', { timeout: 120_000 }, async (t) => {
  const tb = await testbed();
  const id = randomBytes(3).toString('hex');
  const ns = `mp-agent-${id}`;
  const release = `ag${id}`;
  const node = `mp-agent-node-${id}`;
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-agent-sa-'));
  const kc = kube.client(tb);
  const kubectl = async (args: string[]) => await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, ...args], { timeoutMs: 60_000 });
  const procs: { agent?: ChildProcess } = {};
  t.after(async () => {
    const a = procs.agent;
    if (a && a.exitCode === null && a.signalCode === null) {
      a.kill('SIGTERM');
      const killer = setTimeout(() => a.kill('SIGKILL'), 15_000);
      await new Promise((r) => a.once('exit', r));
      clearTimeout(killer);
    }
    await run(tb.helm, ['uninstall', release, '-n', ns, '--ignore-not-found', '--kubeconfig', tb.kubeconfigPath], { allowFail: true });
    await kube.deletePod(kc, ns, 'elsewhere');
    await kube.deletePod(kc, ns, 'here');
    await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'delete', 'migrationprobes', '--all', '-n', ns, '--wait=false'], { allowFail: true });
    await kube.deleteNamespace(kc, ns);
    rmSync(tmp, { recursive: true, force: true });
  });

  await run(tb.helm, ['install', release, CHART_DIR, '-n', ns, '--create-namespace', '--kubeconfig', tb.kubeconfigPath], { timeoutMs: 120_000 });
  const objs = parseObjects(await helmTemplate(tb.helm, { release, namespace: ns }));
  const ds = findObject(objs, 'DaemonSet', '-agent');
  const agentSa = at(ds, 'spec', 'template', 'spec', 'serviceAccountName') as string;
  const controllerSa = at(findObject(objs, 'Deployment', '-controller'), 'spec', 'template', 'spec', 'serviceAccountName') as string;

  // What the agent pod would have: its API token, its projected agent-audience token, the TLS Secret's files.
  const token = async (sa: string, audience?: string): Promise<string> =>
    (await kubectl(['create', 'token', sa, '-n', ns, '--duration=3600s', ...(audience ? [`--audience=${audience}`] : [])])).stdout.trim();
  writeFileSync(join(tmp, 'kubeconfig'), tokenKubeconfig(tb, await token(agentSa)), { mode: 0o600 });
  writeFileSync(join(tmp, 'token'), await token(agentSa, 'migprobe-agent'), { mode: 0o600 });
  const secret = JSON.parse((await kubectl(['-n', ns, 'get', 'secret', `${release}-migprobe-agent-tls`, '-o', 'json'])).stdout) as { data?: Record<string, string> };
  const pems = tlsPems(secret);
  writeFileSync(join(tmp, 'ca.crt'), pems.ca);
  writeFileSync(join(tmp, 'tls.crt'), pems.cert);
  writeFileSync(join(tmp, 'tls.key'), pems.key, { mode: 0o600 });

  // The chart's agent flags, with the pod's paths replaced by this test's files.
  const port = await freePort();
  const replace: Record<string, string> = {
    '--node-name': node,
    '--listen': `127.0.0.1:${port}`,
    '--work-dir': join(tmp, 'work'),
    '--token-file': join(tmp, 'token'),
    '--tls-cert-file': join(tmp, 'tls.crt'),
    '--tls-key-file': join(tmp, 'tls.key'),
    '--agent-ca-file': join(tmp, 'ca.crt'),
    '--containerd-address': tb.containerd.address,
  };
  const chartArgs = at(ds, 'spec', 'template', 'spec', 'containers', 0, 'args') as string[];
  const args = chartArgs.map((a) => {
    const flag = a.split('=')[0] ?? a;
    const v = replace[flag];
    return v === undefined ? a : `${flag}=${v}`;
  });
  for (const flag of Object.keys(replace)) assert.ok(chartArgs.some((a) => a.startsWith(`${flag}=`)), `the chart passes ${flag}`);
  const logFile = join(tmp, 'agent.log');
  const fd = openSync(logFile, 'a');
  const agent = spawn(process.execPath, [join(ROOT, 'src', 'agent', 'main.ts'), ...args, '--kubeconfig', join(tmp, 'kubeconfig')], {
    cwd: ROOT,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, MIGPROBE_CRIU: tb.criu },
  });
  procs.agent = agent;
  closeSync(fd);
  const log = (): string => readFileSync(logFile, 'utf8');
  const url = `https://127.0.0.1:${port}`;
  await waitFor('the agent to answer /healthz over TLS', 30_000, async () => {
    if (agent.exitCode !== null) throw new Error(`the agent exited: ${log().slice(-3000)}`);
    return (await callAgent(`${url}/healthz`, pems.ca, 'GET', undefined)).status === 200 ? true : undefined;
  });

  // A pod on another node: the agent must read the probe (GET migrationprobes) and the pod (GET pods), and refuse.
  await kube.createRunningPod(kc, { namespace: ns, name: 'elsewhere', nodeName: `${node}-other`, containerName: 'app', containerId: 'c0ffee', image: tb.image.ref });
  await kube.createRunningPod(kc, { namespace: ns, name: 'here', nodeName: node, containerName: 'app', containerId: 'c0ffee', image: tb.image.ref });
  const probeFor = async (name: string, podName: string): Promise<string> => {
    const body = { apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationProbe', metadata: { name, namespace: ns }, spec: { podName, targetNodeName: `${node}-other` } };
    const created = await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'create', '-f', '-', '-o', 'jsonpath={.metadata.uid}'], { input: JSON.stringify(body), timeoutMs: 60_000 });
    return created.stdout.trim();
  };
  const start = (podName: string, probeName = podName): unknown => ({
    protocol: 2,
    probeName,
    namespace: ns,
    podName,
    containerName: 'app',
    containerId: 'c0ffee',
    target: { nodeName: `${node}-other`, url: 'https://127.0.0.1:1' },
  });
  const elsewhereUrl = `${url}/v1/probes/${await probeFor('elsewhere', 'elsewhere')}`;
  const probeUrl = `${url}/v1/probes/${randomUUID()}`;
  const controllerToken = await token(controllerSa, 'migprobe-agent');

  const refused = await callAgent(elsewhereUrl, pems.ca, 'PUT', controllerToken, start('elsewhere'));
  assert.equal(refused.body.code, 'PodNotOnNode', `${JSON.stringify(refused)}\n${log().slice(-3000)}`);
  const noProbe = await callAgent(probeUrl, pems.ca, 'PUT', controllerToken, start('elsewhere'));
  assert.equal(noProbe.body.code, 'ProbeNotFound', `${JSON.stringify(noProbe)}\n${log().slice(-3000)}`);
  // A pod on this node: the agent looks for the target node's agent pod (LIST pods in its namespace): none there.
  const noPeer = await callAgent(`${url}/v1/probes/${await probeFor('here', 'here')}`, pems.ca, 'PUT', controllerToken, start('here'));
  assert.equal(noPeer.status, 409, `${JSON.stringify(noPeer)}\n${log().slice(-3000)}`);
  assert.match(noPeer.body.message ?? '', /no running migprobe agent pod on the target node .* in namespace /);
  // Authentication: no token, a token for another audience, and a ServiceAccount not on the allow-list.
  const anonymous = await callAgent(probeUrl, pems.ca, 'PUT', undefined, start('elsewhere'));
  assert.equal(anonymous.status, 401);
  const apiAudience = await callAgent(probeUrl, pems.ca, 'PUT', await token(controllerSa), start('elsewhere'));
  assert.ok(apiAudience.status === 401 || apiAudience.status === 403, `a token for the API server's audience is refused: ${JSON.stringify(apiAudience)}`);
  await kubectl(['create', 'serviceaccount', 'intruder', '-n', ns]);
  const intruder = await callAgent(probeUrl, pems.ca, 'PUT', await token('intruder', 'migprobe-agent'), start('elsewhere'));
  assert.ok(intruder.status === 401 || intruder.status === 403, `an unlisted ServiceAccount is refused: ${JSON.stringify(intruder)}`);

  const denials = log()
    .split('\n')
    .filter((l) => RBAC_DENIAL.test(l));
  assert.deepEqual(denials, [], 'RBAC denials in the agent log');
});
