// The Helm chart without an API server: lint with both Helm majors, render every values case, and check what
// the rendering promises: CRDs identical to crds/, deploy/ identical to a fresh render, exact RBAC without
// wildcards, a restricted controller, and an agent with exactly the privileges values.yaml documents.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { testbed } from '../../testbed/index.ts';
import { run } from '../../testbed/proc.ts';
import {
  CHART_DIR,
  CRDS_DIR,
  ROOT,
  at,
  findObject,
  helmTemplate,
  parseObjects,
  tlsHandshake,
  tlsPems,
  valuesArgs,
  valuesCases,
  type KObject,
} from './lib.ts';

const NS = 'migprobe-system';

test('helm lint passes with Helm 4 and Helm 3 for every values case', async () => {
  const tb = await testbed();
  for (const helm of [tb.helm, tb.helm3]) {
    const ver = await run(helm, ['version', '--short']);
    for (const c of valuesCases()) {
      const res = await run(helm, ['lint', CHART_DIR, '--strict', ...valuesArgs(c)], { allowFail: true });
      assert.equal(res.exitCode, 0, `helm ${ver.stdout} lint (${c.name}) failed:\n${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  }
});

test('Helm 4 and Helm 3 render the same objects', async () => {
  const tb = await testbed();
  for (const c of valuesCases()) {
    // The generated TLS Secret is new on every rendering: compare everything else.
    const withoutKeys = (objs: KObject[]): KObject[] => objs.map((o) => (o.kind === 'Secret' ? { ...o, data: '<generated>' } : o));
    const a = withoutKeys(parseObjects(await helmTemplate(tb.helm, { args: valuesArgs(c) })));
    const b = withoutKeys(parseObjects(await helmTemplate(tb.helm3, { args: valuesArgs(c) })));
    assert.deepEqual(a, b, `Helm 4 and Helm 3 disagree for ${c.name}`);
  }
});

test("the chart's crds/ is an exact copy of the top-level crds/", () => {
  const top = readdirSync(CRDS_DIR).filter((f) => f.endsWith('.yaml')).sort();
  const chart = readdirSync(join(CHART_DIR, 'crds')).sort();
  assert.ok(top.length > 0, 'crds/ holds no CRD');
  assert.deepEqual(chart, top, 'charts/migprobe/crds/ must hold exactly the files of crds/ (cp crds/*.yaml charts/migprobe/crds/)');
  for (const f of top) {
    const a = readFileSync(join(CRDS_DIR, f));
    const b = readFileSync(join(CHART_DIR, 'crds', f));
    assert.ok(a.equals(b), `charts/migprobe/crds/${f} differs from crds/${f}: cp crds/${f} charts/migprobe/crds/`);
  }
});

test('deploy/ is identical to a fresh render of the chart (run hack/render-deploy.sh when this fails)', async (t) => {
  const tb = await testbed();
  const out = mkdtempSync(join(tmpdir(), 'migprobe-deploy-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  await run('bash', [join(ROOT, 'hack', 'render-deploy.sh'), out], { env: { MIGPROBE_HELM: tb.helm } });
  const fresh = readFileSync(join(out, 'migprobe.yaml'), 'utf8');
  const committed = readFileSync(join(ROOT, 'deploy', 'migprobe.yaml'), 'utf8');
  assert.ok(fresh === committed, 'deploy/migprobe.yaml drifted from the chart: run hack/render-deploy.sh and commit deploy/');
  const objs = parseObjects(committed);
  const ns = findObject(objs, 'Namespace', NS);
  assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
  const crds = objs.filter((o) => o.kind === 'CustomResourceDefinition').map((o) => o.metadata.name);
  assert.deepEqual(crds, ['migrationnodes.migprobe.io', 'migrationprobes.migprobe.io', 'migrationreadinesses.migprobe.io'], 'deploy/migprobe.yaml includes the CRDs');
});

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs?: string[];
  nonResourceURLs?: string[];
}

function rulesOf(objs: KObject[], kind: 'ClusterRole' | 'Role', suffix: string): Rule[] {
  return (findObject(objs, kind, suffix)['rules'] as Rule[] | undefined) ?? [];
}

/** "group/resource[names]: verbs", sorted: a readable form that exact comparisons can use. */
function flatten(rules: Rule[]): string[] {
  const out: string[] = [];
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) {
      for (const res of r.resources ?? []) {
        const names = r.resourceNames ? `[${[...r.resourceNames].sort().join(',')}]` : '';
        out.push(`${g || 'core'}/${res}${names}: ${[...(r.verbs ?? [])].sort().join(',')}`);
      }
    }
  }
  return out.sort();
}

function assertRules(actual: Rule[], expected: string[], what: string): void {
  assert.deepEqual(flatten(actual), [...expected].sort(), `${what}: the rules differ from the exact set`);
}

test('RBAC: exact verbs, no wildcards, leases only in the release namespace', async () => {
  const tb = await testbed();
  for (const c of valuesCases()) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: valuesArgs(c) }));
    const roles = objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
    assert.equal(roles.length, 4, 'controller: a ClusterRole and a Role (leases); agent: a ClusterRole and a Role (its peers\' pods)');
    for (const role of roles) {
      for (const r of (role['rules'] as Rule[] | undefined) ?? []) {
        for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs'] as const) {
          for (const v of r[field] ?? []) {
            assert.ok(!v.includes('*'), `${role.kind}/${role.metadata.name} has a wildcard in ${field}: ${JSON.stringify(r)}`);
          }
        }
        assert.equal(r.nonResourceURLs, undefined, `${role.metadata.name}: no nonResourceURLs`);
      }
    }
    assertRules(rulesOf(objs, 'ClusterRole', '-controller'), [
      'apps/replicasets: get,list,watch',
      'core/events: create,patch',
      'core/namespaces: get,list,watch',
      'core/nodes: get,list,watch',
      'core/pods: get,list,watch',
      'migprobe.io/migrationnodes: get,list,watch',
      'migprobe.io/migrationprobes: create,delete,get,list,patch,update,watch',
      'migprobe.io/migrationprobes/finalizers: update',
      'migprobe.io/migrationprobes/status: patch,update',
      'migprobe.io/migrationreadinesses: get,list,watch',
      'migprobe.io/migrationreadinesses/finalizers: update',
      'migprobe.io/migrationreadinesses/status: patch,update',
    ], 'controller ClusterRole');
    assertRules(rulesOf(objs, 'Role', '-controller'), ['coordination.k8s.io/leases: create,get,update'], 'controller Role');
    assertRules(
      rulesOf(objs, 'ClusterRole', '-agent'),
      [
        'authentication.k8s.io/tokenreviews: create',
        'core/pods: get',
        'core/namespaces: get',
        'core/nodes: get',
        'migprobe.io/migrationprobes: get',
        'migprobe.io/migrationnodes: create,get',
        'migprobe.io/migrationnodes/status: get,patch,update',
      ],
      'agent ClusterRole',
    );
    assertRules(rulesOf(objs, 'Role', '-agent'), ['core/pods: list'], 'agent Role');
    for (const o of objs.filter((x) => x.kind === 'Role' || x.kind === 'RoleBinding')) {
      assert.equal(o.metadata.namespace, NS, `${o.kind}/${o.metadata.name} lives in the release namespace`);
    }
    // Every binding names the chart's own ServiceAccounts, in the release namespace.
    const sas = new Set(objs.filter((o) => o.kind === 'ServiceAccount').map((o) => o.metadata.name));
    for (const b of objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
      for (const s of (b['subjects'] as { kind: string; name: string; namespace: string }[]) ?? []) {
        assert.equal(s.kind, 'ServiceAccount');
        assert.ok(sas.has(s.name), `${b.metadata.name} binds ${s.name}, which the chart does not create`);
        assert.equal(s.namespace, NS);
      }
    }
  }
});

test('the agents may write only their own node\'s MigrationNode: a ValidatingAdmissionPolicy bound to their ServiceAccount', async () => {
  const tb = await testbed();
  for (const c of valuesCases()) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: valuesArgs(c) }));
    const policy = findObject(objs, 'ValidatingAdmissionPolicy', '-agent-own-migrationnode');
    const binding = findObject(objs, 'ValidatingAdmissionPolicyBinding', '-agent-own-migrationnode');
    assert.equal(at(binding, 'spec', 'policyName'), policy.metadata.name);
    assert.deepEqual(at(binding, 'spec', 'validationActions'), ['Deny']);
    assert.equal(at(policy, 'spec', 'failurePolicy'), 'Fail');
    const sa = findObject(objs, 'ServiceAccount', '-agent').metadata.name;
    assert.equal(at(policy, 'spec', 'matchConditions', 0, 'expression'), `request.userInfo.username == "system:serviceaccount:${NS}:${sa}"`);
    assert.deepEqual(at(policy, 'spec', 'matchConstraints', 'resourceRules', 0, 'resources'), ['migrationnodes', 'migrationnodes/status']);
  }
  for (const off of [['--set', 'rbac.restrictAgentToOwnNode=false'], ['--set', 'rbac.create=false']]) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: off }));
    assert.deepEqual(objs.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy')), [], off.join(' '));
  }
});

test('the controller is restricted and elects a leader; replicas 2 comes with leader election', async () => {
  const tb = await testbed();
  for (const c of valuesCases()) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: valuesArgs(c) }));
    const dep = findObject(objs, 'Deployment', '-controller');
    const spec = at(dep, 'spec', 'template', 'spec');
    assert.equal(at(spec, 'securityContext', 'runAsNonRoot'), true);
    assert.equal(at(spec, 'securityContext', 'seccompProfile', 'type'), 'RuntimeDefault');
    assert.equal(at(spec, 'hostPID'), undefined);
    assert.equal(at(spec, 'hostNetwork'), undefined);
    const ctr = at(spec, 'containers', 0);
    assert.deepEqual(at(ctr, 'securityContext'), {
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.ok(at(ctr, 'livenessProbe', 'httpGet'), 'liveness probe');
    assert.ok(at(ctr, 'readinessProbe', 'httpGet'), 'readiness probe');
    assert.ok(at(ctr, 'resources', 'requests', 'cpu') && at(ctr, 'resources', 'requests', 'memory'), 'resource requests');
    const args = at(ctr, 'args') as string[];
    assert.ok(args.includes('--leader-elect'), `leader election is on: ${args.join(' ')}`);
    assert.ok(args.includes('--token-file=/var/run/secrets/migprobe/token'), 'the controller shows agents a projected token');
    for (const v of (at(spec, 'volumes') as { hostPath?: unknown }[]) ?? []) assert.equal(v.hostPath, undefined);
  }
  const ha = parseObjects(await helmTemplate(tb.helm, { args: ['-f', join(CHART_DIR, 'ci', 'metrics-ha-values.yaml')] }));
  assert.equal(at(findObject(ha, 'Deployment', '-controller'), 'spec', 'replicas'), 2);
  assert.ok(at(findObject(ha, 'Deployment', '-controller'), 'spec', 'template', 'spec', 'affinity', 'podAntiAffinity'));
  const sm = findObject(ha, 'ServiceMonitor', '-controller');
  assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(at(sm, 'spec', 'endpoints', 0, 'port'), 'http-metrics');
  const svc = findObject(ha, 'Service', '-controller-metrics');
  assert.equal(at(svc, 'spec', 'ports', 0, 'name'), 'http-metrics');
  // Without the flag there is no ServiceMonitor (clusters without the Prometheus Operator).
  const def = parseObjects(await helmTemplate(tb.helm, {}));
  assert.equal(def.filter((o) => o.kind === 'ServiceMonitor').length, 0);
  // The schema refuses two controllers without leader election.
  const bad = await run(
    tb.helm,
    ['template', 'x', CHART_DIR, '--set', 'controller.replicas=2', '--set', 'controller.leaderElection.enabled=false'],
    { allowFail: true },
  );
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stderr, /leaderElection/);
});

interface Volume {
  name: string;
  hostPath?: { path: string; type: string };
  emptyDir?: unknown;
}

test('the agent: hostPID, typed hostPaths, privileges as values.yaml documents them', async () => {
  const tb = await testbed();
  const values = parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as { agent: { capabilities: string[] } };
  for (const c of valuesCases()) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: valuesArgs(c) }));
    const ds = findObject(objs, 'DaemonSet', '-agent');
    const spec = at(ds, 'spec', 'template', 'spec');
    assert.equal(at(ds, 'spec', 'template', 'metadata', 'labels', 'app.kubernetes.io/name'), 'migprobe-agent', 'the controller finds agents by this label');
    assert.equal(at(spec, 'hostPID'), true);
    assert.equal(at(spec, 'hostNetwork'), false);
    assert.equal(at(spec, 'hostIPC'), false);
    assert.equal(at(spec, 'priorityClassName'), 'system-node-critical');
    assert.deepEqual(at(spec, 'tolerations'), [{ operator: 'Exists' }]);
    assert.equal(at(spec, 'securityContext', 'seccompProfile', 'type'), 'Unconfined');
    assert.equal(at(spec, 'securityContext', 'appArmorProfile', 'type'), 'Unconfined');
    const vols = at(spec, 'volumes') as Volume[];
    const hostPaths: Record<string, string> = {};
    for (const v of vols) if (v.hostPath) hostPaths[v.hostPath.path] = v.hostPath.type;
    assert.deepEqual(hostPaths, {
      '/run/containerd/containerd.sock': 'Socket',
      '/var/lib/containerd': 'Directory',
      '/run/containerd/io.containerd.runtime.v2.task': 'Directory',
      '/sys/fs/cgroup': 'Directory',
      '/var/lib/migprobe': 'DirectoryOrCreate',
    });
    assert.ok(!Object.keys(hostPaths).includes('/'), 'never the host root');
    const ctr = at(spec, 'containers', 0);
    const env = at(ctr, 'env') as { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
    assert.equal(env.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
    const mounts = at(ctr, 'volumeMounts') as { name: string; mountPath: string; readOnly?: boolean }[];
    for (const v of vols.filter((x) => x.hostPath)) {
      const m = mounts.find((x) => x.name === v.name);
      assert.equal(m?.mountPath, v.hostPath?.path, `${v.name} is mounted at its host path`);
    }
    assert.equal(mounts.find((m) => m.name === 'containerd-root')?.readOnly, true);
    const sc = at(ctr, 'securityContext') as Record<string, unknown>;
    if (c.name === 'capabilities-values.yaml') {
      assert.equal(sc['privileged'], false);
      assert.equal(sc['allowPrivilegeEscalation'], false);
      assert.deepEqual(at(sc, 'capabilities', 'drop'), ['ALL']);
      assert.deepEqual(at(sc, 'capabilities', 'add'), values.agent.capabilities);
      for (const cap of ['CHECKPOINT_RESTORE', 'SYS_PTRACE', 'SYS_ADMIN', 'NET_ADMIN']) {
        assert.ok(values.agent.capabilities.includes(cap), `${cap} is in the explicit set`);
      }
    } else {
      assert.equal(sc['privileged'], true);
      assert.equal(at(sc, 'capabilities'), undefined);
    }
    // Only the agent is unconfined: nothing else in the chart asks for it.
    for (const o of objs.filter((x) => x.kind === 'Deployment')) {
      assert.notEqual(at(o, 'spec', 'template', 'spec', 'securityContext', 'seccompProfile', 'type'), 'Unconfined');
    }
  }
});

test('values.yaml gives the reason beside every agent capability', () => {
  const text = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
  const values = parseYaml(text) as { agent: { capabilities: string[] } };
  const lines = text.split('\n');
  for (const cap of values.agent.capabilities) {
    const i = lines.findIndex((l) => l.trim() === `- ${cap}`);
    assert.ok(i > 0, `${cap} listed`);
    // The reason is the comment block right above the item (shared by a group of related capabilities).
    let j = i - 1;
    while (j > 0 && /^\s*- [A-Z_]+$/.test(lines[j] ?? '')) j--;
    const comment = lines[j] ?? '';
    assert.match(comment, /^\s*#\s+\S/, `no reason written above ${cap}`);
    const block: string[] = [];
    for (let k = j; k > 0 && /^\s*#/.test(lines[k] ?? ''); k--) block.unshift(lines[k] ?? '');
    assert.ok(block.join(' ').includes(cap), `the comment above ${cap} names it and says why`);
  }
});

test('the NetworkPolicy admits only the controller and peer agents to the agent port', async () => {
  const tb = await testbed();
  const objs = parseObjects(await helmTemplate(tb.helm, {}));
  const np = findObject(objs, 'NetworkPolicy', '-agent');
  const ds = findObject(objs, 'DaemonSet', '-agent');
  const port = at(ds, 'spec', 'template', 'spec', 'containers', 0, 'ports', 0, 'containerPort');
  assert.deepEqual(at(np, 'spec', 'podSelector', 'matchLabels'), at(ds, 'spec', 'selector', 'matchLabels'));
  assert.deepEqual(at(np, 'spec', 'policyTypes'), ['Ingress']);
  const ingress = at(np, 'spec', 'ingress') as unknown[];
  assert.equal(ingress.length, 1);
  assert.deepEqual(at(ingress[0], 'ports'), [{ port, protocol: 'TCP' }]);
  const names = (at(ingress[0], 'from') as unknown[]).map((p) => at(p, 'podSelector', 'matchLabels', 'app.kubernetes.io/name'));
  assert.deepEqual(names, ['migprobe-controller', 'migprobe-agent']);
});

/** The long option names a main.ts declares in its parseArgs options, with their types. */
function declaredFlags(mainTs: string): Map<string, string> {
  const out = new Map<string, string>();
  const block = /parseArgs\(\{\s*options:\s*\{([\s\S]*?)\n\s*\},\n/.exec(mainTs)?.[1] ?? '';
  for (const m of block.matchAll(/^\s*'?([a-z][a-z0-9-]*)'?:\s*\{\s*type:\s*'(string|boolean)'/gm)) {
    if (m[1] && m[2]) out.set(m[1], m[2]);
  }
  return out;
}

test("every flag the chart passes is one the controller's and the agent's main.ts declare", async () => {
  const tb = await testbed();
  const mains = {
    controller: declaredFlags(readFileSync(join(ROOT, 'src', 'controller', 'main.ts'), 'utf8')),
    agent: declaredFlags(readFileSync(join(ROOT, 'src', 'agent', 'main.ts'), 'utf8')),
  };
  assert.ok(mains.controller.size > 5 && mains.agent.size > 5, 'parsed the parseArgs options of both mains');
  for (const c of valuesCases()) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: valuesArgs(c) }));
    for (const [component, kind] of [['controller', 'Deployment'], ['agent', 'DaemonSet']] as const) {
      const args = at(findObject(objs, kind, `-${component}`), 'spec', 'template', 'spec', 'containers', 0, 'args') as string[];
      for (const a of args) {
        const m = /^--([a-z][a-z0-9-]*)(=.*)?$/.exec(a);
        assert.ok(m?.[1], `${component}: ${a} is not a --flag`);
        const type = mains[component].get(m[1]);
        assert.ok(type, `${component}: --${m[1]} is not declared in src/${component}/main.ts`);
        if (type === 'boolean') assert.equal(m[2], undefined, `${component}: boolean --${m[1]} takes no value`);
        else assert.ok(m[2], `${component}: --${m[1]} needs a value`);
      }
    }
  }
});

test('TLS: generated, or from your Secret, or off; the controller mounts the CA only', async () => {
  const tb = await testbed();
  for (const mode of ['generate', 'secret', 'none'] as const) {
    const objs = parseObjects(await helmTemplate(tb.helm, { args: ['--set', `tls.mode=${mode}`] }));
    const secrets = objs.filter((o) => o.kind === 'Secret');
    const ctl = at(findObject(objs, 'Deployment', '-controller'), 'spec', 'template', 'spec');
    const agent = at(findObject(objs, 'DaemonSet', '-agent'), 'spec', 'template', 'spec');
    const ctlArgs = at(ctl, 'containers', 0, 'args') as string[];
    const agentArgs = at(agent, 'containers', 0, 'args') as string[];
    const probeScheme = at(agent, 'containers', 0, 'livenessProbe', 'httpGet', 'scheme');
    if (mode === 'none') {
      assert.equal(secrets.length, 0);
      assert.ok(ctlArgs.includes('--agent-scheme=http'));
      assert.ok(!agentArgs.some((x) => x.startsWith('--tls-')));
      assert.equal(probeScheme, 'HTTP');
      continue;
    }
    assert.equal(secrets.length, mode === 'generate' ? 1 : 0, `${mode}: the chart renders the Secret only when it generates it`);
    if (mode === 'generate') await tlsHandshake(tlsPems(secrets[0] as { data?: Record<string, string> }), 'migprobe-agent');
    assert.ok(ctlArgs.includes('--agent-scheme=https') && ctlArgs.includes('--agent-ca-file=/etc/migprobe/tls/ca.crt'));
    for (const f of ['--tls-cert-file=/etc/migprobe/tls/tls.crt', '--tls-key-file=/etc/migprobe/tls/tls.key', '--agent-ca-file=/etc/migprobe/tls/ca.crt']) {
      assert.ok(agentArgs.includes(f), `agent ${f}`);
    }
    assert.equal(probeScheme, 'HTTPS');
    const ctlTls = (at(ctl, 'volumes') as { name: string; secret?: { secretName: string; items?: { key: string }[] } }[]).find((v) => v.secret);
    assert.deepEqual(ctlTls?.secret?.items?.map((i) => i.key), ['ca.crt'], 'the controller never sees the agents\' private key');
    const agentTls = (at(agent, 'volumes') as { name: string; secret?: { secretName: string } }[]).find((v) => v.secret);
    assert.equal(agentTls?.secret?.secretName, ctlTls?.secret?.secretName);
  }
});

test('checkpointDir (RestoreOnly): a read-only typed hostPath and the agent flag, only when set', async () => {
  const tb = await testbed();
  const objs = parseObjects(await helmTemplate(tb.helm, { args: ['--set', 'agent.hostPaths.checkpointDir=/var/lib/kubelet/checkpoints'] }));
  const spec = at(findObject(objs, 'DaemonSet', '-agent'), 'spec', 'template', 'spec');
  const vol = (at(spec, 'volumes') as Volume[]).find((v) => v.name === 'checkpoints');
  assert.deepEqual(vol?.hostPath, { path: '/var/lib/kubelet/checkpoints', type: 'Directory' });
  const mount = (at(spec, 'containers', 0, 'volumeMounts') as { name: string; mountPath: string; readOnly?: boolean }[]).find((m) => m.name === 'checkpoints');
  assert.deepEqual(mount, { name: 'checkpoints', mountPath: '/var/lib/kubelet/checkpoints', readOnly: true });
  assert.ok((at(spec, 'containers', 0, 'args') as string[]).includes('--checkpoint-dir=/var/lib/kubelet/checkpoints'));
  const def = parseObjects(await helmTemplate(tb.helm, {}));
  const defSpec = at(findObject(def, 'DaemonSet', '-agent'), 'spec', 'template', 'spec');
  assert.ok(!(at(defSpec, 'volumes') as Volume[]).some((v) => v.name === 'checkpoints'));
  assert.ok(!(at(defSpec, 'containers', 0, 'args') as string[]).some((a) => a.startsWith('--checkpoint-dir')));
});

test('values.schema.json refuses values that could never work', async () => {
  const tb = await testbed();
  const bad: [string[], RegExp][] = [
    [['--set', 'tls.mode=maybe'], /tls/],
    [['--set', 'agent.privileged=false', '--set', 'agent.capabilities={NET_ADMIN}'], /capabilities/],
    [['--set', 'agent.capabilities={CAP_SYS_ADMIN}'], /capabilities/],
    [['--set', 'agent.hostPaths.workDir=/'], /workDir/],
    [['--set', 'agent.hostPaths.cgroup=sys/fs/cgroup'], /cgroup/],
    [['--set', 'controller.securityContext.allowPrivilegeEscalation=true'], /allowPrivilegeEscalation/],
    [['--set', 'controller.podSecurityContext.runAsNonRoot=false'], /runAsNonRoot/],
    [['--set', 'agent.port=70000'], /port/],
    [['--set', 'nosuchvalue=1'], /nosuchvalue|additional/i],
  ];
  for (const helm of [tb.helm, tb.helm3]) {
    for (const [args, why] of bad) {
      const res = await run(helm, ['template', 'x', CHART_DIR, ...args], { allowFail: true });
      assert.notEqual(res.exitCode, 0, `${helm} accepted ${args.join(' ')}`);
      assert.match(res.stderr, why, `${args.join(' ')}: ${res.stderr}`);
    }
  }
});
