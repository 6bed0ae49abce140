// The chart on a real kube-apiserver (a private one, so that installing and uninstalling cluster-scoped
// objects and CRDs cannot disturb other tests): every values case passes `kubectl apply --dry-run=server`;
// `helm install`, `helm upgrade` and `helm uninstall` work with Helm 4 and with Helm 3; the CRD is served;
// Pod Security admission accepts the controller as `restricted` and the agent only as `privileged`.
// No kubelet runs: pods are never started, the objects are checked on the API server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testbed, startApiServer, stopApiServer, type ApiServerState } from '../../testbed/index.ts';
import { run, type RunResult } from '../../testbed/proc.ts';
import { CHART_DIR, CRDS_DIR, FIXTURES, ROOT, at, findObject, helmTemplate, parseObjects, tlsHandshake, tlsPems, valuesArgs, valuesCases } from './lib.ts';

let api: ApiServerState | undefined;
let dir = '';
let kubectlBin = '';

function kubeconfig(): string {
  if (!api) throw new Error('the private kube-apiserver did not start');
  return api.kubeconfigPath;
}

async function kubectl(args: string[], opts: { input?: string; allowFail?: boolean } = {}): Promise<RunResult> {
  return await run(kubectlBin, ['--kubeconfig', kubeconfig(), ...args], { timeoutMs: 60_000, ...opts });
}

async function helm(bin: string, args: string[], allowFail = false): Promise<RunResult> {
  return await run(bin, [...args, '--kubeconfig', kubeconfig()], { timeoutMs: 120_000, allowFail });
}

async function createNamespace(name: string, enforce: string): Promise<void> {
  const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': enforce } } };
  await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(ns) });
}

before(async () => {
  const tb = await testbed();
  kubectlBin = tb.kubectl;
  dir = mkdtempSync(join(tmpdir(), 'migprobe-chart-api-'));
  api = await startApiServer({ dir });
  // The Prometheus Operator's CRD stands in for a cluster that has it. migprobe's own CRD is NOT installed
  // here: the first `helm install` must install it from the chart's crds/.
  await kubectl(['apply', '--server-side', '-f', join(FIXTURES, 'servicemonitor-crd.yaml')]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/servicemonitors.monitoring.coreos.com']);
});

async function ensureCrd(): Promise<void> {
  await kubectl(['apply', '--server-side', '-f', CRDS_DIR]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/migrationprobes.migprobe.io']);
}

/** Every served CRD's versions (schemas, printer columns, subresources) equal those in crds/. */
async function assertServedCrdIsTheFile(): Promise<void> {
  for (const f of readdirSync(CRDS_DIR).filter((x) => x.endsWith('.yaml'))) {
    const file = parseObjects(readFileSync(join(CRDS_DIR, f), 'utf8'))[0] as unknown as {
      metadata: { name: string };
      spec: { group: string; names: Record<string, unknown>; scope: string; versions: unknown[] };
    };
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', `crd/${file.metadata.name}`]);
    const served = JSON.parse((await kubectl(['get', 'crd', file.metadata.name, '-o', 'json'])).stdout) as {
      spec: { group: string; names: unknown; scope: string; versions: unknown[] };
    };
    assert.equal(served.spec.group, file.spec.group);
    assert.equal(served.spec.scope, file.spec.scope);
    assert.deepEqual(served.spec.versions, file.spec.versions, `the served CRD versions differ from crds/${f}`);
  }
}

after(async () => {
  if (api) await stopApiServer(api);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function podFrom(kind: 'Deployment' | 'DaemonSet', objs: ReturnType<typeof parseObjects>, ns: string): string {
  const w = findObject(objs, kind, kind === 'Deployment' ? '-controller' : '-agent');
  const tmpl = at(w, 'spec', 'template') as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...tmpl.metadata, name: `psa-${kind.toLowerCase()}`, namespace: ns },
    spec: tmpl.spec,
  });
}

for (const major of ['Helm 4', 'Helm 3'] as const) {
  test(`${major}: install, upgrade and uninstall on the real API server`, async () => {
    const tb = await testbed();
    const bin = major === 'Helm 4' ? tb.helm : tb.helm3;
    const release = major === 'Helm 4' ? 'mp4' : 'mp3';
    const ns = `migprobe-${release}`;
    await createNamespace(ns, 'privileged');
    const crdBefore = await kubectl(['get', 'crd', 'migrationprobes.migprobe.io', '-o', 'name'], { allowFail: true });
    try {
      const inst = await helm(bin, ['install', release, CHART_DIR, '--namespace', ns], true);
      assert.equal(inst.exitCode, 0, `helm install failed:\n${inst.stderr}`);
      assert.match(inst.stdout, /kubectl -n \S+ wait mprobe\/first-probe --for=condition=Migratable/, 'NOTES tell how to run a first probe');
      assert.match(inst.stdout, /pod-security\.kubernetes\.io\/enforce=privileged/, 'NOTES name the Pod Security label');

      // The first install (Helm 4 runs first) installs the CRD from the chart's crds/.
      if (major === 'Helm 4') assert.notEqual(crdBefore.exitCode, 0, 'the CRD must not exist before the first helm install');
      if (crdBefore.exitCode !== 0) {
        await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/migrationprobes.migprobe.io']);
      }
      await assertServedCrdIsTheFile();

      const name = `${release}-migprobe`;
      for (const [kind, n] of [
        ['deployment', `${name}-controller`],
        ['daemonset', `${name}-agent`],
        ['serviceaccount', `${name}-controller`],
        ['serviceaccount', `${name}-agent`],
        ['role', `${name}-controller`],
        ['rolebinding', `${name}-controller`],
        ['networkpolicy', `${name}-agent`],
        ['service', `${name}-controller-metrics`],
      ] as const) {
        await kubectl(['-n', ns, 'get', kind, n, '-o', 'name']);
      }
      await kubectl(['get', 'clusterrole', `${name}-controller`, `${name}-agent`, '-o', 'name']);
      await kubectl(['get', 'validatingadmissionpolicy,validatingadmissionpolicybinding', `${name}-agent-own-migrationnode`, '-o', 'name']);

      // The CRD is served: kubectl knows the short name and category, and lists, creates and deletes probes.
      const resources = await kubectl(['api-resources', '--api-group=migprobe.io', '-o', 'wide']);
      assert.match(resources.stdout, /migrationprobes\s+mprobe\s+migprobe\.io\/v1alpha1\s+true\s+MigrationProbe/);
      assert.match(resources.stdout, /migrationnodes\s+mpnode\s+migprobe\.io\/v1alpha1\s+false\s+MigrationNode/);
      await kubectl(['get', 'migrationprobes', '--all-namespaces']);
      const probe = {
        apiVersion: 'migprobe.io/v1alpha1',
        kind: 'MigrationProbe',
        metadata: { name: 'chart-smoke', namespace: ns },
        spec: { podName: 'some-pod', targetNodeName: 'some-node' },
      };
      await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(probe) });
      const got = await kubectl(['-n', ns, 'get', 'mprobe', 'chart-smoke', '-o', 'jsonpath={.spec.podName}']);
      assert.equal(got.stdout, 'some-pod');
      await kubectl(['-n', ns, 'delete', 'mprobe', 'chart-smoke', '--wait=false']);

      // The generated TLS Secret: a working certificate for migprobe-agent, kept across upgrades.
      const secretJson = async (): Promise<{ data?: Record<string, string> }> =>
        JSON.parse((await kubectl(['-n', ns, 'get', 'secret', `${name}-agent-tls`, '-o', 'json'])).stdout) as { data?: Record<string, string> };
      const tlsBefore = tlsPems(await secretJson());
      await tlsHandshake(tlsBefore, 'migprobe-agent');

      // Upgrade: two controller replicas and a ServiceMonitor, then the agent with explicit capabilities.
      const up1 = await helm(bin, ['upgrade', release, CHART_DIR, '--namespace', ns, '-f', join(CHART_DIR, 'ci', 'metrics-ha-values.yaml')], true);
      assert.equal(up1.exitCode, 0, `helm upgrade (metrics-ha) failed:\n${up1.stderr}`);
      const replicas = await kubectl(['-n', ns, 'get', 'deployment', `${name}-controller`, '-o', 'jsonpath={.spec.replicas}']);
      assert.equal(replicas.stdout, '2');
      await kubectl(['-n', ns, 'get', 'servicemonitor', `${name}-controller`, '-o', 'name']);
      const up2 = await helm(bin, ['upgrade', release, CHART_DIR, '--namespace', ns, '-f', join(CHART_DIR, 'ci', 'capabilities-values.yaml')], true);
      assert.equal(up2.exitCode, 0, `helm upgrade (capabilities) failed:\n${up2.stderr}`);
      const priv = await kubectl(['-n', ns, 'get', 'daemonset', `${name}-agent`, '-o', 'jsonpath={.spec.template.spec.containers[0].securityContext.privileged}']);
      assert.equal(priv.stdout, 'false');
      const gone = await kubectl(['-n', ns, 'get', 'servicemonitor', `${name}-controller`], { allowFail: true });
      assert.notEqual(gone.exitCode, 0, 'the upgrade without the flag removed the ServiceMonitor');
      assert.deepEqual(tlsPems(await secretJson()), tlsBefore, 'helm upgrade kept the generated CA and certificate');
      const hist = await helm(bin, ['history', release, '--namespace', ns, '-o', 'json']);
      assert.equal((JSON.parse(hist.stdout) as unknown[]).length, 3);

      // Uninstall removes everything the release made; the CRD stays (Helm never deletes crds/).
      const un = await helm(bin, ['uninstall', release, '--namespace', ns, '--wait', '--timeout', '60s'], true);
      assert.equal(un.exitCode, 0, `helm uninstall failed:\n${un.stderr}`);
      const left = await kubectl(['-n', ns, 'get', 'deployment,daemonset,serviceaccount,role,rolebinding,networkpolicy,service,secret', '-l', `app.kubernetes.io/instance=${release}`, '-o', 'name']);
      assert.equal(left.stdout.trim(), '', `left behind: ${left.stdout}`);
      const cr = await kubectl(['get', 'clusterrole,clusterrolebinding', '-l', `app.kubernetes.io/instance=${release}`, '-o', 'name']);
      assert.equal(cr.stdout.trim(), '', `left behind: ${cr.stdout}`);
      await kubectl(['get', 'crd', 'migrationprobes.migprobe.io', '-o', 'name']);
    } finally {
      await helm(bin, ['uninstall', release, '--namespace', ns, '--ignore-not-found'], true);
      await kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
    }
  });
}

test('Pod Security: the controller passes `restricted`; the agent needs the namespace label `privileged`', async () => {
  const tb = await testbed();
  const ns = 'migprobe-psa';
  await createNamespace(ns, 'privileged');
  try {
    // The ServiceAccounts must exist for pod admission; the rest of the release is not needed.
    const sas = [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'migprobe-controller', namespace: ns } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'migprobe-agent', namespace: ns } },
    ];
    await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: sas }) });
    for (const c of valuesCases()) {
      const objs = parseObjects(await helmTemplate(tb.helm, { namespace: ns, args: valuesArgs(c) }));
      const agentPod = podFrom('DaemonSet', objs, ns);
      const controllerPod = podFrom('Deployment', objs, ns);

      await kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=privileged', '--overwrite']);
      const okAgent = await kubectl(['create', '--dry-run=server', '-f', '-'], { input: agentPod, allowFail: true });
      assert.equal(okAgent.exitCode, 0, `${c.name}: the agent pod is refused in a privileged namespace:\n${okAgent.stderr}`);

      await kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=baseline', '--overwrite']);
      const refused = await kubectl(['create', '--dry-run=server', '-f', '-'], { input: agentPod, allowFail: true });
      assert.notEqual(refused.exitCode, 0, `${c.name}: a baseline namespace must refuse the agent`);
      assert.match(refused.stderr, /violates PodSecurity "baseline/);

      await kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted', '--overwrite']);
      const okController = await kubectl(['create', '--dry-run=server', '-f', '-'], { input: controllerPod, allowFail: true });
      assert.equal(okController.exitCode, 0, `${c.name}: the controller pod is not restricted:\n${okController.stderr}`);
      assert.doesNotMatch(okController.stderr, /Warning/i);
    }
  } finally {
    await kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
  }
});

test('kubectl apply --dry-run=server accepts the rendering of every values case; deploy/ applies for real', async () => {
  const tb = await testbed();
  await ensureCrd();
  await createNamespace('migprobe-system', 'privileged');
  // Where a monitoring stack runs Grafana: ci/grafana-dashboard-values.yaml puts the dashboard there.
  await createNamespace('monitoring', 'baseline');
  for (const c of valuesCases()) {
    const rendered = await helmTemplate(tb.helm, { args: valuesArgs(c) });
    const objs = parseObjects(rendered);
    const res = await kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], { input: rendered, allowFail: true });
    assert.equal(res.exitCode, 0, `${c.name}: the API server refused the rendering:\n${res.stderr}`);
    const applied = res.stdout.split('\n').filter((l) => l.includes('(server dry run)'));
    assert.equal(applied.length, objs.length, `${c.name}: every object was applied:\n${res.stdout}`);
    assert.doesNotMatch(res.stderr, /Warning/i, `${c.name}: the API server warned:\n${res.stderr}`);
  }
  // deploy/ for real: it carries its own labelled Namespace and the CRD, and applies in one go.
  const deploy = join(CHART_DIR, '..', '..', 'deploy', 'migprobe.yaml');
  // As the README says (client-side apply of the folder), then server-side apply over it.
  const count = parseObjects(readFileSync(deploy, 'utf8')).length;
  const csa = await kubectl(['apply', '-f', join(CHART_DIR, '..', '..', 'deploy')], { allowFail: true });
  assert.equal(csa.exitCode, 0, `kubectl apply -f deploy/ failed:\n${csa.stderr}`);
  assert.equal(csa.stdout.split('\n').filter((l) => / (created|configured|unchanged)$/.test(l)).length, count, csa.stdout);
  const res = await kubectl(['apply', '--server-side', '--force-conflicts', '-f', deploy], { allowFail: true });
  assert.equal(res.exitCode, 0, `kubectl apply --server-side -f deploy/migprobe.yaml failed:\n${res.stderr}`);
  assert.equal(res.stdout.split('\n').filter((l) => l.includes('serverside-applied')).length, count);
  const ds = await kubectl(['-n', 'migprobe-system', 'get', 'daemonset', 'migprobe-agent', '-o', 'jsonpath={.spec.template.spec.hostPID}']);
  assert.equal(ds.stdout, 'true');
  const label = await kubectl(['get', 'namespace', 'migprobe-system', '-o', 'jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}']);
  assert.equal(label.stdout, 'privileged');
  // The certificate its header tells users to create.
  const secret = await run('bash', [join(ROOT, 'hack', 'agent-tls.sh'), 'migprobe-system', 'migprobe-agent-tls']);
  await kubectl(['apply', '--server-side', '-f', '-'], { input: secret.stdout });
  const stored = JSON.parse((await kubectl(['-n', 'migprobe-system', 'get', 'secret', 'migprobe-agent-tls', '-o', 'json'])).stdout) as { data?: Record<string, string> };
  await tlsHandshake(tlsPems(stored), 'migprobe-agent');
  const del = await kubectl(['delete', '-f', deploy, '--wait=false'], { allowFail: true });
  assert.equal(del.exitCode, 0, del.stderr);
});
