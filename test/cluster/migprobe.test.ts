// migprobe as it ships, on the test bed's real three-node cluster: the images built from the Dockerfiles
// (hack/images.sh) imported into every node's runtime, `helm install` of charts/migprobe with its default host
// paths, and kubectl as a user runs it. Workloads are Deployments pinned to node-a; every verdict is checked
// against a real migration of the same container by Kubernetes' own means (truth.ts: the kubelet checkpoint
// API on node-a, a restore on node-b). `helm uninstall` must leave nothing on any node (node-c included: the
// agent DaemonSet runs there too).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { cluster, checkpointContainer, runOnNode, hostPathOnNode, type Cluster } from '../../testbed/index.ts';
import { run, waitFor } from '../../testbed/proc.ts';
import { ROOT } from '../chart/lib.ts';
import { codes, helmFor, installRelease, kubectlFor, probeYaml, runWorkload, waitFinal, type Kubectl, type WorkloadSpec } from '../../testbed/kube-kit.ts';
import { realMigration, type Truth } from './truth.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';

const RELEASE = 'migprobe';
const SYSTEM_NS = 'migprobe-system';
const ns = `e2e-${randomBytes(3).toString('hex')}`;
const SOURCE = 'node-a';
const TARGET = 'node-b';
const CHECKPOINTS = '/var/lib/kubelet/checkpoints';

let c: Cluster;
let k: Kubectl;
const timings: Record<string, number> = {};
let controllerNode = '';

/** Resident memory now and at its peak (VmRSS, VmHWM), in bytes, of the main process of a pod on `node`. */
async function podMemory(namespace: string, selector: string, node: string): Promise<{ rss: number; peak: number }> {
  const pods = JSON.parse((await k(['get', 'pods', '-n', namespace, '-l', selector, '--field-selector', `spec.nodeName=${node}`, '-o', 'json'])).stdout) as {
    items: { status: { containerStatuses?: { containerID?: string }[] } }[];
  };
  const id = (pods.items[0]?.status.containerStatuses?.[0]?.containerID ?? '').replace(/^containerd:\/\//, '');
  const tasks = await runOnNode(c, node, 'ctr', ['-n', 'k8s.io', 'tasks', 'ls']);
  const line = tasks.stdout.split('\n').find((l) => id !== '' && l.startsWith(id));
  const pid = Number(line?.trim().split(/\s+/)[1] ?? '0');
  // The pod's main process is the entry point's child when the entry point is a shell script (the agent's).
  const children = (await run('ps', ['-o', 'pid=', '--ppid', String(pid)], { allowFail: true })).stdout.trim().split(/\s+/).filter(Boolean);
  const main = children.length === 1 ? Number(children[0]) : pid;
  const status = readFileSync(`/proc/${main}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? '0') * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

before(async () => {
  c = await cluster();
  k = kubectlFor(c.kubectl, c.kubeconfigPath);
  const r = await installRelease(c, k, { release: RELEASE, namespace: SYSTEM_NS, values: [`agent.hostPaths.checkpointDir=${CHECKPOINTS}`] });
  Object.assign(timings, r.timings);
  await k(['create', 'namespace', ns]);
});

after(async () => {
  await k(['delete', 'namespace', ns, '--wait=false'], { allowFail: true });
  console.log(`cluster e2e timings: ${JSON.stringify(timings)}`);
});

test('helm install: the agent DaemonSet is Ready on every node, the controller Deployment is Ready', async () => {
  const ds = JSON.parse((await k(['get', 'daemonset', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=agent', '-o', 'json'])).stdout) as {
    items: { status: { numberReady?: number; desiredNumberScheduled?: number } }[];
  };
  assert.equal(ds.items[0]?.status.desiredNumberScheduled, c.nodes.length);
  assert.equal(ds.items[0]?.status.numberReady, c.nodes.length);
  const dep = JSON.parse((await k(['get', 'deployment', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=controller', '-o', 'json'])).stdout) as {
    items: { status: { readyReplicas?: number } }[];
  };
  assert.equal(dep.items[0]?.status.readyReplicas, 1);
  for (const node of [SOURCE, TARGET]) timings[`agentRssIdleBytes-${node}`] = (await podMemory(SYSTEM_NS, 'app.kubernetes.io/component=agent', node)).rss;
  controllerNode = (await k(['get', 'pods', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=controller', '-o', 'jsonpath={.items[0].spec.nodeName}'])).stdout.trim();
  assert.ok(c.nodes.some((n) => n.name === controllerNode), `controller on ${controllerNode}`);
});

interface Case {
  name: string;
  workload: Omit<WorkloadSpec, 'namespace' | 'node' | 'image' | 'name'>;
  container: string;
  options?: MigrationProbe['spec']['options'];
  /** The reason codes the verdict must carry (when it must be not migratable). */
  expect: { migratable: true } | { migratable: false; codes: string[] };
}

const sh = (script: string): string[] => ['/bin/sh', '-c', script];

const cases: Case[] = [
  {
    name: 'plain',
    workload: { containers: [{ name: 'app', command: sh('i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done') }] },
    container: 'app',
    expect: { migratable: true },
  },
  {
    name: 'locked',
    workload: { containers: [{ name: 'app', command: ['/usr/local/bin/flocker', 'flock'] }] },
    container: 'app',
    expect: { migratable: false, codes: ['FileLocks'] },
  },
  {
    name: 'tcp',
    workload: { containers: [{ name: 'app', command: ['/usr/local/bin/tcppair', '7001'] }] },
    container: 'app',
    expect: { migratable: false, codes: ['TCPEstablished'] },
  },
];

/** Cases whose verdict is whatever a real migration says, as long as both agree and the reason is named. */
const agreeCases: Omit<Case, 'expect'>[] = [
  {
    name: 'two',
    workload: {
      containers: [
        { name: 'main', command: sh('while true; do sleep 1; done') },
        { name: 'side', command: sh('while true; do date > /tmp/side; sleep 2; done') },
      ],
    },
    container: 'side',
  },
  {
    name: 'volumes',
    workload: {
      containers: [
        {
          name: 'app',
          command: sh('while true; do cat /config/greeting > /scratch/seen; sleep 1; done'),
          volumeMounts: [
            { name: 'scratch', mountPath: '/scratch' },
            { name: 'config', mountPath: '/config' },
          ],
        },
      ],
      volumes: [
        { name: 'scratch', emptyDir: {} },
        { name: 'config', configMap: { name: 'greeting' } },
      ],
    },
    container: 'app',
  },
  {
    name: 'hostnet',
    workload: { hostNetwork: true, containers: [{ name: 'app', command: sh('while true; do sleep 1; done') }] },
    container: 'app',
  },
];

const verdicts = new Map<string, MigrationProbe>();

async function probe(name: string, container: string, options?: MigrationProbe['spec']['options']): Promise<MigrationProbe> {
  const pod = (await runWorkload(k, { name, namespace: ns, node: SOURCE, image: c.images.test, ...(cases.find((x) => x.name === name) ?? agreeCases.find((x) => x.name === name))!.workload })).metadata.name;
  const t = Date.now();
  await k(['apply', '-f', '-'], {
    // The truth (a kubelet checkpoint) has no freeze budget, so the verdict is compared on what a restore needs;
    // the freeze the workload felt is recorded in the timings. A budget still bounds a stuck dump.
    input: probeYaml(ns, `${name}-to-${TARGET}`, {
      podName: pod,
      containerName: container,
      targetNodeName: TARGET,
      timeoutSeconds: 120,
      options: { freezeBudgetMilliseconds: 30_000, ...(options ?? {}) },
    }),
  });
  const p = await waitFinal(k, ns, `${name}-to-${TARGET}`);
  timings[`verdictMs-${name}`] = Date.now() - t;
  timings[`freezeMs-${name}`] = p.status?.timings?.freezeMilliseconds ?? -1;
  verdicts.set(name, p);
  return p;
}

async function truthOf(name: string, container: string): Promise<Truth> {
  const pods = JSON.parse((await k(['get', 'pods', '-n', ns, '-l', `app=${name}`, '-o', 'json'])).stdout) as { items: { metadata: { name: string }; spec: Record<string, unknown> }[] };
  const pod = pods.items[0];
  if (pod === undefined) throw new Error(`no pod for ${name}`);
  return await realMigration(
    { cluster: c, kubectl: k, cacheDir: join(process.env.MIGPROBE_CACHE ?? '/root/.cache/migprobe') },
    { namespace: ns, pod: pod.metadata.name, container, sourceNode: SOURCE, targetNode: TARGET, podSpec: pod.spec },
  );
}

const describeStatus = (p: MigrationProbe): string => JSON.stringify({ phase: p.status?.phase, migratable: p.status?.migratable, reasons: p.status?.reasons, excerpt: p.status?.criuLogExcerpt });

/** The agents' last log lines, for a failure message. */
async function agentLogs(): Promise<string> {
  const r = await k(['logs', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=agent', '--tail=40', '--prefix'], { allowFail: true });
  return `\nagent logs:\n${r.stdout}${r.stderr}`;
}

for (const cs of cases) {
  test(`${cs.name}: verdict ${cs.expect.migratable ? 'migratable' : `not migratable (${cs.expect.codes.join(', ')})`}, and a real kubelet checkpoint + restore on ${TARGET} agrees`, { timeout: 600_000 }, async () => {
    const p = await probe(cs.name, cs.container, cs.options);
    assert.equal(p.status?.phase, 'Succeeded', describeStatus(p) + (await agentLogs()));
    assert.equal(p.status?.migratable, cs.expect.migratable, describeStatus(p) + (await agentLogs()));
    if (!cs.expect.migratable) for (const code of cs.expect.codes) assert.ok(codes(p).includes(code), `${code} in ${describeStatus(p)}`);
    const truth = await truthOf(cs.name, cs.container);
    assert.equal(truth.migratable, cs.expect.migratable, `the real migration: ${JSON.stringify(truth)}`);
  });
}

for (const cs of agreeCases) {
  test(`${cs.name}: the verdict agrees with a real kubelet checkpoint + restore on ${TARGET}, and names its reason`, { timeout: 600_000 }, async () => {
    if (cs.name === 'volumes') {
      await k(['create', 'configmap', 'greeting', '-n', ns, '--from-literal=greeting=hello']);
    }
    const p = await probe(cs.name, cs.container);
    assert.equal(p.status?.phase, 'Succeeded', describeStatus(p));
    assert.ok(!codes(p).includes('InternalError'), describeStatus(p));
    const truth = await truthOf(cs.name, cs.container);
    assert.equal(p.status?.migratable, truth.migratable, `verdict ${describeStatus(p)}\nreal migration ${JSON.stringify(truth)}${await agentLogs()}`);
    if (p.status?.migratable === false) assert.ok(codes(p).length > 0, describeStatus(p));
  });
}

test('memory: the agents\' and the controller\'s resident memory, idle now and at its peak during the probes', async () => {
  for (const node of [SOURCE, TARGET]) {
    const m = await podMemory(SYSTEM_NS, 'app.kubernetes.io/component=agent', node);
    timings[`agentPeakRssBytes-${node}`] = m.peak;
    assert.ok(m.rss > 0 && m.peak >= m.rss, JSON.stringify(m));
  }
  const ctl = await podMemory(SYSTEM_NS, 'app.kubernetes.io/component=controller', controllerNode);
  timings.controllerRssBytes = ctl.rss;
  timings.controllerPeakRssBytes = ctl.peak;
  assert.ok(ctl.rss > 0, JSON.stringify(ctl));
});

test('kubectl describe shows the probe\'s Events', async () => {
  const out = (await k(['describe', 'migrationprobe', '-n', ns, `plain-to-${TARGET}`])).stdout;
  assert.match(out, /Events:/);
  assert.match(out, /Succeeded|Migratable/);
});

test(`RestoreOnly of a real kubelet archive from ${SOURCE}: restores on ${TARGET}, nothing left`, { timeout: 300_000 }, async () => {
  const name = 'plain';
  const pods = JSON.parse((await k(['get', 'pods', '-n', ns, '-l', `app=${name}`, '-o', 'json'])).stdout) as { items: { metadata: { name: string } }[] };
  const pod = pods.items[0]?.metadata.name ?? '';
  const cp = await checkpointContainer(c, SOURCE, ns, pod, 'app');
  assert.ok(cp.path.startsWith(`${CHECKPOINTS}/`), cp.path);
  const t = Date.now();
  await k(['apply', '-f', '-'], {
    input: probeYaml(ns, 'restore-only', { podName: pod, targetNodeName: TARGET, mode: 'RestoreOnly', checkpoint: { path: cp.path }, timeoutSeconds: 120 }),
  });
  const p = await waitFinal(k, ns, 'restore-only');
  timings.restoreOnlyMs = Date.now() - t;
  assert.equal(p.status?.phase, 'Succeeded', describeStatus(p));
  assert.equal(p.status?.migratable, true, describeStatus(p) + (await agentLogs()));
});

/** Every restore sandbox cgroup (/migprobe-sandbox/<id>) in every hierarchy, as hierarchy/id. */
function sandboxCgroups(): Set<string> {
  const out = new Set<string>();
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const dir = `/sys/fs/cgroup/${h}/migprobe-sandbox`;
    if (!existsSync(dir)) continue;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) out.add(`${h}/${e.name}`);
  }
  return out;
}

test(`restore-check (CLI) on ${TARGET} of a real kubelet archive dumped from a frozen cgroup: migratable, nothing left`, { timeout: 300_000 }, async () => {
  const pods = JSON.parse((await k(['get', 'pods', '-n', ns, '-l', 'app=plain', '-o', 'json'])).stdout) as { items: { metadata: { name: string } }[] };
  const cp = await checkpointContainer(c, SOURCE, ns, pods.items[0]?.metadata.name ?? '', 'app');
  // As a user on node-b would: the archive copied over, the CLI with the node's default containerd socket.
  const onTarget = `${CHECKPOINTS}/copied-${randomBytes(3).toString('hex')}.tar`;
  copyFileSync(cp.hostPath, hostPathOnNode(c, TARGET, onTarget));
  const before = sandboxCgroups();
  const t = Date.now();
  const r = await runOnNode(c, TARGET, process.execPath, [join(ROOT, 'bin/migprobe.js'), 'restore-check', '--archive', onTarget, '--json', '--verbose'], {
    allowFail: true,
    timeoutMs: 180_000,
  });
  timings.cliRestoreOnlyMs = Date.now() - t;
  rmSync(hostPathOnNode(c, TARGET, onTarget), { force: true });
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  const v = JSON.parse(r.stdout) as { migratable: boolean; reasons: { code: string }[] };
  assert.equal(v.migratable, true, r.stdout);
  // The kubelet's runtime dumps from a frozen freezer cgroup and the images record it: the restore must not carry
  // it over (the tasks would sit frozen, unkillable), and teardown must leave nothing (the CLI's own proof, and no
  // sandbox cgroup of this run in any hierarchy).
  assert.match(r.stderr, /freeze state in the images, not restored/, r.stderr);
  assert.match(r.stderr, /leftovers after teardown: none/, r.stderr);
  const after = sandboxCgroups();
  assert.deepEqual([...after].filter((x) => !before.has(x)), [], 'sandbox cgroups left by the CLI');
});

test('helm uninstall leaves no migprobe files, mounts, network namespaces or processes on any node', { timeout: 300_000 }, async () => {
  await k(['delete', 'migrationprobes', '--all', '-n', ns, '--wait=true', '--timeout=120s']);
  await helmFor(c)(['uninstall', RELEASE, '-n', SYSTEM_NS, '--wait', '--timeout', '3m']);
  await waitFor('the agent and controller pods to be gone', 120_000, async () => {
    const r = await k(['get', 'pods', '-n', SYSTEM_NS, '-o', 'name']);
    return r.stdout.trim() === '' ? true : undefined;
  });
  for (const { name: node } of c.nodes) {
    const work = hostPathOnNode(c, node, '/var/lib/migprobe/agent');
    const files = existsSync(work) ? readdirSync(work) : [];
    assert.deepEqual(files, [], `${node}: files left in /var/lib/migprobe/agent`);
    const mounts = (await runOnNode(c, node, 'cat', ['/proc/self/mountinfo'])).stdout.split('\n').filter((l) => /migprobe|mp-sbx|criu/.test(l) && !/migprobe-cluster|migprobe-testbed/.test(l));
    assert.deepEqual(mounts, [], `${node}: mounts left`);
    const netns = (await runOnNode(c, node, 'ip', ['netns', 'list'])).stdout.split('\n').filter((l) => /migprobe|mp-/.test(l));
    assert.deepEqual(netns, [], `${node}: network namespaces left`);
  }
  // The agent image's CRIU, the agent's and the controller's Node programs, and any task in a restore sandbox's
  // cgroup (/migprobe-sandbox/<id>). A CRIU of the host's own (another program's) is none of the release's.
  const procs: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      const exe = readlinkSync(`/proc/${pid}/exe`);
      const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (exe === '/usr/local/sbin/criu' || /\/app\/dist\/(agent|controller)\/main\.js/.test(args) || /:\/migprobe-sandbox\//.test(cg)) procs.push(`${pid} ${args}`);
    } catch {
      // gone, or a kernel thread
    }
  }
  assert.deepEqual(procs, [], 'migprobe processes left');
});
