// Fleet readiness as it ships, on the test bed's real three-node kubelet cluster: `helm install` of the chart,
// every agent publishing its node's MigrationNode, `kubectl migprobe nodes` with node-c made statically
// incompatible through the supported spec.factsOverride, `kubectl migprobe drain-check node-a` over pods with
// different blockers (node-c screened out before any dump), the budget held over 30 pods of one Deployment
// (measured by this test's own watch of the probes), a scheduled readiness reporting a new blocker (a pod starts
// holding a file lock) within one period, with its Event and metric, and `kubectl migprobe check`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { cluster, kube, type Cluster } from '../../testbed/index.ts';
import { waitFor } from '../../testbed/proc.ts';
import { ROOT } from '../../testbed/paths.ts';
import { deploymentYaml, helmFor, installRelease, kubectlFor, runWorkload, type Kubectl, type WorkloadSpec } from '../../testbed/kube-kit.ts';
import { watchReadinessProbes } from '../../testbed/readiness-watch.ts';
import type { MigrationReadiness } from '../../src/api/readiness.ts';
import type { MigrationNode } from '../../src/api/migrationnode.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';

const RELEASE = 'migprobe-fleet';
const SYSTEM_NS = 'migprobe-fleet-system';
const ns = `fleet-${randomBytes(3).toString('hex')}`;
const NODES = ['node-a', 'node-b', 'node-c'];

let c: Cluster;
let k: Kubectl;
let pluginBin = '';
const numbers: Record<string, number | string> = {};

const sh = (script: string): string[] => ['/bin/sh', '-c', script];

/** `kubectl migprobe ARGS` through the real kubectl, which finds the launcher on PATH as npm installs it. */
async function migprobe(args: string[], timeoutMs = 600_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = [pluginBin, dirname(process.execPath), process.env.PATH ?? ''].join(':');
  const r = await execa(c.kubectl, ['migprobe', ...args], { env: { PATH: path, KUBECONFIG: c.kubeconfigPath }, extendEnv: false, reject: false, timeout: timeoutMs });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function getJson<T>(args: string[]): Promise<T> {
  return JSON.parse((await k([...args, '-o', 'json'])).stdout) as T;
}

async function readiness(name: string): Promise<MigrationReadiness> {
  return await getJson<MigrationReadiness>(['get', 'migrationreadiness', name]);
}

const workload = (name: string, command: string[], extra: Partial<WorkloadSpec> = {}): WorkloadSpec => ({
  name,
  namespace: ns,
  node: 'node-a',
  image: c.images.test,
  containers: [{ name: 'app', command }],
  ...extra,
});

before(async () => {
  c = await cluster();
  k = kubectlFor(c.kubectl, c.kubeconfigPath);
  pluginBin = mkdtempSync(join(tmpdir(), 'migprobe-fleet-bin-'));
  symlinkSync(join(ROOT, 'bin', 'kubectl-migprobe.js'), join(pluginBin, 'kubectl-migprobe'));
  // The controller runs on node-b, so that draining node-a asks about the workloads only (a controller pod on
  // node-a would be probed too, and is not migratable: it holds TCP connections to the API server).
  const r = await installRelease(c, k, {
    release: RELEASE,
    namespace: SYSTEM_NS,
    values: ['controller.nodeSelector.kubernetes\\.io/hostname=node-b'],
  });
  numbers.helmInstallMs = r.timings.helmInstallMs ?? 0;
  await k(['create', 'namespace', ns]);
});

after(async () => {
  await k(['delete', 'migrationreadiness', '--all', '--wait=true', '--timeout=120s'], { allowFail: true });
  await k(['delete', 'namespace', ns, '--wait=true', '--timeout=180s'], { allowFail: true });
  await k(['patch', 'migrationnode', 'node-c', '--type', 'json', '-p', '[{"op":"remove","path":"/spec"}]'], { allowFail: true });
  await helmFor(c)(['uninstall', RELEASE, '-n', SYSTEM_NS, '--wait', '--timeout', '3m']).catch(() => undefined);
  await k(['delete', 'namespace', SYSTEM_NS, '--wait=false'], { allowFail: true });
  rmSync(pluginBin, { recursive: true, force: true });
  console.log(`fleet numbers: ${JSON.stringify(numbers)}`);
});

test('every agent publishes its MigrationNode; `kubectl migprobe nodes` shows node-c incompatible once its facts are overridden', { timeout: 180_000 }, async () => {
  const t0 = Date.now();
  const nodes = await waitFor('a MigrationNode with facts for each of the three nodes', 120_000, async () => {
    const list = (await getJson<{ items: MigrationNode[] }>(['get', 'migrationnodes'])).items;
    const withFacts = list.filter((n) => (n.status?.observedFacts?.criuVersion ?? '') !== '');
    return NODES.every((name) => withFacts.some((n) => n.metadata.name === name)) ? withFacts : undefined;
  });
  numbers.factsPublishedMs = Date.now() - t0;
  // What the agents said about publishing (their first attempts, and any failure).
  const logs = await k(['logs', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=agent', '--tail=400', '--prefix'], { allowFail: true });
  console.log(logs.stdout.split('\n').filter((l) => /MigrationNode|facts|publish/i.test(l)).slice(0, 30).join('\n'));
  for (const n of nodes.filter((x) => NODES.includes(x.metadata.name ?? ''))) {
    assert.equal(n.status?.observedFacts?.arch, 'x86_64');
    assert.match(n.status?.observedFacts?.criuVersion ?? '', /^4\.2/);
  }
  const before = await migprobe(['nodes']);
  assert.equal(before.code, 0, before.stderr);
  assert.doesNotMatch(before.stdout, /KernelMismatch/, before.stdout);

  // The supported way to make a node's facts differ: the administrator's spec.factsOverride.
  await k(['patch', 'migrationnode', 'node-c', '--type', 'merge', '-p', JSON.stringify({ spec: { factsOverride: { kernelRelease: '5.10.0' } } })]);
  const after = await migprobe(['nodes']);
  assert.equal(after.code, 0, after.stderr);
  console.log(`$ kubectl migprobe nodes\n${after.stdout}`);
  assert.match(after.stdout, /^node-a\s+-\s+ok\s+KernelMismatch\s*$/m, `the matrix row of node-a: node-b ok, node-c KernelMismatch\n${after.stdout}`);
  assert.match(after.stdout, /node-a -> node-c: KernelMismatch: [^\n]*5\.10\.0/, after.stdout);
  assert.match(after.stdout, /^node-c\s+ok\s+ok\s+-\s*$/m, `node-c -> node-a and node-c -> node-b stay fine (a newer kernel on the target is):\n${after.stdout}`);
  const json = JSON.parse((await migprobe(['nodes', '-o', 'json'])).stdout) as unknown;
  assert.ok(JSON.stringify(json).includes('5.10.0'), 'the -o json output carries the overridden facts');
});

test('`kubectl migprobe drain-check node-a`: a correct per-pod table, node-c screened out before any dump', { timeout: 420_000 }, async () => {
  await runWorkload(k, workload('web', sh('i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done')));
  await runWorkload(k, workload('locked', ['/usr/local/bin/flocker', 'flock']));
  await runWorkload(k, workload('tcp', ['/usr/local/bin/tcppair', '7001']));
  const started = Date.now();
  const r = await migprobe(['drain-check', 'node-a', '--timeout', '6m']);
  numbers.drainCheckMs = Date.now() - started;
  console.log(`$ kubectl migprobe drain-check node-a\n${r.stdout}`);
  assert.equal(r.code, 1, `not drainable: exit 1\n${r.stdout}\n${r.stderr}`);
  const line = (pod: string): string => r.stdout.split('\n').find((l) => new RegExp(`^${ns}\\s+${pod}-`).test(l)) ?? '';
  assert.match(line('web'), /\byes\b[^\n]*node-b/, `web is migratable to node-b:\n${r.stdout}`);
  assert.match(line('locked'), /\bno\b[^\n]*FileLocks/, `locked is blocked by FileLocks:\n${r.stdout}`);
  assert.match(line('tcp'), /\bno\b[^\n]*TCPEstablished/, `tcp is blocked by TCPEstablished:\n${r.stdout}`);
  assert.match(r.stdout, /node-c[^\n]*KernelMismatch/, `node-c is ruled out with its reason:\n${r.stdout}`);

  const rd = await readiness('drain-node-a');
  assert.equal(rd.status?.phase, 'Completed');
  const drainable = rd.status?.conditions?.find((x) => x.type === 'Drainable');
  assert.equal(drainable?.status, 'False');
  const pods = (rd.status?.pods ?? []).filter((p) => p.namespace === ns);
  const byApp = (app: string) => pods.find((p) => p.name.startsWith(`${app}-`));
  assert.equal(byApp('web')?.migratable, true);
  assert.equal(byApp('web')?.bestTarget, 'node-b');
  assert.deepEqual(byApp('web')?.compatibleTargets, ['node-b']);
  assert.equal(byApp('web')?.owner?.kind, 'Deployment');
  assert.equal(byApp('web')?.owner?.name, 'web');
  assert.deepEqual(byApp('locked')?.reasons?.map((x) => x.code), ['FileLocks']);
  assert.deepEqual(byApp('tcp')?.reasons?.map((x) => x.code), ['TCPEstablished']);
  const c3 = rd.status?.targets?.find((x) => x.nodeName === 'node-c');
  assert.equal(c3?.eligible, false);
  assert.ok(c3?.reasons?.some((x) => x.code === 'KernelMismatch'), JSON.stringify(c3));
  // Screened before any dump: no probe ever targeted node-c.
  const probes = (await getJson<{ items: MigrationProbe[] }>(['get', 'migrationprobes', '-n', ns, '-l', 'migprobe.io/readiness=drain-node-a'])).items;
  assert.ok(probes.length >= 3, `one probe per pod: ${probes.length}`);
  assert.deepEqual([...new Set(probes.map((p) => p.spec.targetNodeName))], ['node-b']);
  // The printer columns a user sees.
  const table = (await k(['get', 'migrationreadiness', 'drain-node-a'])).stdout;
  assert.match(table, /NODE\s+PODS\s+MIGRATABLE\s+BLOCKED\s+DRAINABLE/, table);
  const t = rd.status?.totals;
  assert.ok(t !== undefined);
  // Other tests' pods may share node-a: the counts must agree with the pods listed, whatever they are.
  assert.equal(t.migratable, (rd.status?.pods ?? []).filter((p) => p.migratable === true && p.skipped === undefined).length);
  assert.match(table, new RegExp(`drain-node-a\\s+node-a\\s+${t.pods}\\s+${t.migratable}\\s+${t.blocked}\\s+False`), table);
  await k(['delete', 'deployment', '-n', ns, 'web', 'locked', 'tcp', '--wait=true']);
});

test('the budget holds over 30 pods of one Deployment: never more of its pods frozen at once than allowed (measured)', { timeout: 600_000 }, async () => {
  const spec = workload('many', sh('while true; do sleep 1; done'));
  const yaml = JSON.parse(deploymentYaml(spec)) as { spec: { replicas: number } };
  yaml.spec.replicas = 30;
  await k(['apply', '-f', '-'], { input: JSON.stringify(yaml) });
  await waitFor('30 pods of deployment many running', 240_000, async () => {
    const pods = (await getJson<{ items: { status: { phase?: string } }[] }>(['get', 'pods', '-n', ns, '-l', 'app=many'])).items;
    return pods.filter((p) => p.status.phase === 'Running').length === 30 ? true : undefined;
  });
  const kc = kube.client({ kubeconfigPath: c.kubeconfigPath });
  const watch = watchReadinessProbes(kc, ns, 'many');
  try {
    const started = Date.now();
    await k(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'migprobe.io/v1alpha1',
        kind: 'MigrationReadiness',
        metadata: { name: 'many' },
        spec: {
          source: { nodeName: 'node-a', podSelector: { matchLabels: { app: 'many' } } },
          targets: { nodeNames: ['node-b'] },
          budget: { maxFrozenPerOwner: 2, maxConcurrentProbes: 4 },
        },
      }),
    });
    const rd = await waitFor('readiness many to complete', 540_000, async () => {
      const x = await readiness('many');
      return x.status?.phase === 'Completed' || x.status?.phase === 'Failed' ? x : undefined;
    });
    numbers.budgetRunMs = Date.now() - started;
    assert.equal(rd.status?.phase, 'Completed');
    assert.equal(rd.status?.totals?.pods, 30);
    const notMigratable = (rd.status?.pods ?? []).filter((p) => p.migratable !== true).map((p) => ({ pod: p.name, reasons: p.reasons, targets: p.targets }));
    for (const p of notMigratable) {
      for (const name of (p.targets ?? []).flatMap((x) => x.probes ?? [])) {
        const probe = await getJson<MigrationProbe>(['get', 'migrationprobe', '-n', ns, name]);
        console.log(`probe ${name}: ${JSON.stringify(probe.status?.reasons)}\nCRIU log excerpt:\n${probe.status?.criuLogExcerpt ?? '(none)'}`);
      }
    }
    if (notMigratable.length > 0) {
      const logs = await k(['logs', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=agent', '--tail=2000', '--prefix'], { allowFail: true });
      console.log(logs.stdout.split('\n').filter((l) => /"level":"(warn|error)"/.test(l)).slice(-40).join('\n'));
    }
    assert.equal(rd.status?.totals?.migratable, 30, JSON.stringify(notMigratable, null, 1));
    assert.equal(rd.status?.conditions?.find((x) => x.type === 'Drainable')?.status, 'True');
    numbers.budgetMaxUnfinished = watch.max.unfinished;
    numbers.budgetMaxActive = watch.max.active;
    numbers.budgetObserved = JSON.stringify(rd.status?.budgetObserved);
    assert.equal(watch.seen.size, 30, 'one probe per pod');
    assert.ok(watch.max.unfinished <= 2, `measured by this test's watch: at most 2 pods of the Deployment unfinished at once (saw ${watch.max.unfinished})`);
    assert.equal(watch.max.unfinished, 2, 'the budget is used, not only respected');
    assert.ok((rd.status?.budgetObserved?.maxFrozenPerOwner ?? 99) <= 2, JSON.stringify(rd.status?.budgetObserved));
  } finally {
    watch.stop();
  }
  await k(['delete', 'migrationreadiness', 'many', '--wait=true']);
  await k(['delete', 'deployment', '-n', ns, 'many', '--wait=true']);
});

test('a scheduled readiness reports a new blocker within one period: status.changes, an Event and the metric', { timeout: 300_000 }, async () => {
  // Takes a file lock once /tmp/lock-now exists.
  const pod = await runWorkload(k, workload('later', sh('touch /tmp/ready; while [ ! -f /tmp/lock-now ]; do sleep 0.2; done; exec /usr/local/bin/flocker flock')));
  await k(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'migprobe.io/v1alpha1',
      kind: 'MigrationReadiness',
      metadata: { name: 'nightly' },
      spec: { source: { nodeName: 'node-a', podSelector: { matchLabels: { app: 'later' } } }, targets: { nodeNames: ['node-b'] }, schedule: '* * * * *' },
    }),
  });
  const first = await waitFor('the first run to complete', 150_000, async () => {
    const x = await readiness('nightly');
    return x.status?.phase === 'Completed' ? x : undefined;
  });
  assert.equal(first.status?.pods?.[0]?.migratable, true, JSON.stringify(first.status?.pods));
  assert.ok((first.status?.nextRunTime ?? '') !== '', 'the next run is announced');
  await k(['exec', '-n', ns, pod.metadata.name, '--', 'touch', '/tmp/lock-now']);
  const touched = Date.now();
  const drift = await waitFor('a run after the lock to report the change', 150_000, async () => {
    const x = await readiness('nightly');
    const ch = (x.status?.changes ?? []).find((y) => y.kind === 'Pod' && y.to === 'blocked');
    return ch !== undefined && x.status?.phase === 'Completed' ? { x, ch } : undefined;
  });
  numbers.driftDetectedMs = Date.now() - touched;
  assert.ok(Date.now() - touched < 60_000 + 60_000, 'within one period (60 s) plus the run itself');
  assert.deepEqual(drift.ch.reasons, ['FileLocks']);
  assert.equal(drift.ch.subject, `${ns}/${pod.metadata.name}`);
  const events = (await getJson<{ items: { reason: string; type: string; message: string; involvedObject: { name: string } }[] }>(['get', 'events', '-A', '--field-selector', 'involvedObject.name=nightly'])).items;
  assert.ok(events.some((e) => e.type === 'Warning' && e.message.includes(pod.metadata.name)), JSON.stringify(events.map((e) => `${e.type} ${e.reason}: ${e.message}`)));
  // The metric an alert would fire on, scraped from the controller pod as Prometheus would.
  const ctl = (await getJson<{ items: { status: { podIP?: string }; spec: { containers: { ports?: { name?: string; containerPort: number }[] }[] } }[] }>(['get', 'pods', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=controller'])).items[0];
  const port = ctl?.spec.containers[0]?.ports?.find((p) => p.name === 'http')?.containerPort ?? 8080;
  const metrics = await (await fetch(`http://${ctl?.status.podIP}:${port}/metrics`)).text();
  assert.match(metrics, /migprobe_readiness_verdict_changes_total\{[^}]*readiness="nightly"[^}]*to="blocked"[^}]*\} [1-9]/, metrics.split('\n').filter((l) => l.includes('readiness')).join('\n'));
  await k(['delete', 'migrationreadiness', 'nightly', '--wait=true']);
});

test('`kubectl migprobe check POD --to node-b --wait` prints the verdict as the CLI does', { timeout: 240_000 }, async () => {
  const pod = await runWorkload(k, workload('single', sh('while true; do sleep 1; done')));
  const r = await migprobe(['check', pod.metadata.name, '-n', ns, '--to', 'node-b', '--wait', '--timeout', '3m']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /migratable/i, r.stdout);
  const probes = (await getJson<{ items: MigrationProbe[] }>(['get', 'migrationprobes', '-n', ns])).items.filter((p) => p.spec.podName === pod.metadata.name);
  assert.equal(probes.length, 1);
  assert.equal(probes[0]?.status?.migratable, true);
});
