// `kubectl migprobe` end to end: the real kubectl finds the plugin launcher on PATH and runs it against the
// test bed's API server. nodes on MigrationNode objects made here (one pair incompatible through
// spec.factsOverride), --context and the context's namespace from a kubeconfig with two contexts, check
// --wait on the operator harness (real controller, real agents, real containers), drain-check against the
// real readiness controller; -o json and -o yaml.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import type { MigrationNode } from '../../src/api/migrationnode.ts';
import { RERUN_ANNOTATION, type MigrationReadiness } from '../../src/api/readiness.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';
import { kube, testbed, type Testbed } from '../../testbed/index.ts';
import { ROOT } from '../../testbed/paths.ts';
import { ensureCrd, startOperator, withOperator } from '../operator/harness.ts';
import { workloadPod } from '../operator/lib.ts';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Plugin {
  /** `kubectl migprobe ARGS` through the real kubectl, KUBECONFIG set (and `env`). */
  run: (args: string[], env?: Record<string, string>) => Promise<Run>;
  /** A PATH with the launcher on it, as npm installs the package's bin. */
  path: string;
}

export function pluginRunner(t: { after(fn: () => void): void }, tb: Testbed, kubeconfig: string): Plugin {
  const bin = mkdtempSync(join(tmpdir(), 'migprobe-plugin-bin-'));
  t.after(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(join(ROOT, 'bin', 'kubectl-migprobe.js'), join(bin, 'kubectl-migprobe'));
  const path = [bin, dirname(process.execPath), process.env.PATH ?? ''].join(':');
  return {
    path,
    run: async (args, env = {}) => {
      const r = await execa(tb.kubectl, ['migprobe', ...args], { env: { PATH: path, KUBECONFIG: kubeconfig, ...env }, extendEnv: false, reject: false, timeout: 300_000 });
      return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
    },
  };
}

/** The matrix cell source -> target of `nodes` output. */
function matrixCell(out: string, source: string, target: string): string | undefined {
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith('SOURCE \\ TARGET'));
  assert.ok(at >= 0, out);
  const split = (l: string): string[] => l.split(/\s{2,}/);
  const cols = split(lines[at] ?? '');
  const rows = lines.slice(at + 1, lines.indexOf('', at));
  return split(rows.find((l) => split(l)[0] === source) ?? '')[cols.indexOf(target)];
}

const FACTS = {
  arch: 'amd64',
  kernelRelease: '6.1.0-test',
  criuVersion: '4.2.1',
  criuFeatures: { uffd: true },
  memAvailableBytes: 8 * 1024 ** 3,
  cpu: { vendor: 'GenuineIntel', model: 'test', flags: ['fpu', 'sse2'] },
};

async function createMigrationNode(tb: Testbed, name: string, override?: Record<string, unknown>): Promise<void> {
  const kubectl = (args: string[], input?: string): Promise<unknown> => execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, ...args], input === undefined ? {} : { input });
  const obj = { apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationNode', metadata: { name }, spec: override === undefined ? {} : { factsOverride: override } };
  await kubectl(['apply', '--server-side', '--field-manager=migprobe-tests', '-f', '-'], JSON.stringify(obj));
  // The facts an agent would publish, through the status subresource.
  await kubectl(['patch', 'migrationnode', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { observedFacts: FACTS, lastUpdateTime: new Date().toISOString() } })]);
}

test('kubectl finds the plugin; nodes prints the matrix with the incompatible pair and its reason; -o json / yaml', { timeout: 120_000 }, async (t) => {
  const tb = await testbed();
  await ensureCrd(tb);
  const plugin = pluginRunner(t, tb, tb.kubeconfigPath);
  const kmp = plugin.run;
  const p = `pl${randomBytes(3).toString('hex')}`;
  const [a, b, c] = [`${p}-a`, `${p}-b`, `${p}-c`];
  t.after(async () => {
    await execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'delete', 'migrationnode', a, b, c, '--ignore-not-found'], { reject: false });
  });
  await createMigrationNode(tb, a);
  await createMigrationNode(tb, b);
  await createMigrationNode(tb, c, { kernelRelease: '6.1.0-test', arch: 'arm64' });

  const list = await execa(tb.kubectl, ['plugin', 'list'], { env: { PATH: plugin.path }, extendEnv: false, reject: false });
  assert.match(String(list.stdout), /kubectl-migprobe/, `kubectl plugin list: ${String(list.stdout)} ${String(list.stderr)}`);
  const r = await kmp(['nodes']);
  assert.equal(r.code, 0, r.stderr);
  // Our three nodes in the matrix (other MigrationNodes of the test bed may be listed too).
  assert.equal(matrixCell(r.stdout, a, b), 'ok', r.stdout);
  assert.equal(matrixCell(r.stdout, b, a), 'ok');
  assert.equal(matrixCell(r.stdout, a, c), 'ArchMismatch', r.stdout);
  assert.equal(matrixCell(r.stdout, c, b), 'ArchMismatch');
  assert.equal(matrixCell(r.stdout, a, a), '-');
  assert.match(r.stdout, new RegExp(`\\n${c}\\s+arm64\\s+6\\.1\\.0-test\\s+4\\.2\\.1\\s+GenuineIntel \\(2 flags\\)\\s+arch,kernelRelease\\s`));
  assert.match(r.stdout, new RegExp(`Incompatible pairs:[\\s\\S]*\\n  ${a} -> ${c}: ArchMismatch: [^\\n]*arm64`));

  const j = await kmp(['nodes', '-o', 'json']);
  assert.equal(j.code, 0, j.stderr);
  const items = (JSON.parse(j.stdout) as { kind: string; items: MigrationNode[] }).items;
  assert.deepEqual(items.find((i) => i.metadata.name === c)?.spec?.factsOverride, { kernelRelease: '6.1.0-test', arch: 'arm64' });
  assert.equal(items.find((i) => i.metadata.name === a)?.status?.observedFacts?.criuVersion, '4.2.1');
  const y = await kmp(['nodes', '-o', 'yaml']);
  assert.equal((parseYaml(y.stdout) as { kind: string }).kind, 'List');
  const w = await kmp(['nodes', '-o', 'wide']);
  assert.match(w.stdout, /FEATURES\s+MISSING/);
  const h = await kmp(['nodes', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /node x node compatibility matrix/);
  const bad = await kmp(['nodes', '-o', 'table']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /use -o json, -o yaml or -o wide/);
});

test('--context picks a context of a kubeconfig with two; the context namespace is the default', { timeout: 60_000 }, async (t) => {
  const tb = await testbed();
  await ensureCrd(tb);
  const kc = kube.client(tb);
  const ns = `pl-ctx-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(kc, ns);
  t.after(() => kube.deleteNamespace(kc, ns));
  const cfg = parseYaml((await execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'config', 'view', '--raw', '-o', 'yaml'])).stdout) as {
    clusters: { name: string; cluster: Record<string, unknown> }[];
    users: unknown[];
    contexts: { name: string; context: { cluster: string; user: string; namespace?: string } }[];
  };
  const good = cfg.contexts[0]!.context;
  // current-context points at a server that is not there; `good` is the test bed with namespace ns.
  const two = {
    ...cfg,
    clusters: [...cfg.clusters, { name: 'nowhere', cluster: { server: 'https://127.0.0.1:1' } }],
    contexts: [
      { name: 'good', context: { cluster: good.cluster, user: good.user, namespace: ns } },
      { name: 'nowhere', context: { cluster: 'nowhere', user: good.user } },
    ],
    'current-context': 'nowhere',
  };
  const dir = mkdtempSync(join(tmpdir(), 'migprobe-plugin-kc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config');
  writeFileSync(file, toYaml(two), { mode: 0o600 });
  const kmp = pluginRunner(t, tb, file).run;

  const off = await kmp(['check', 'web', '--to', 'node-b']);
  assert.equal(off.code, 2);
  assert.match(off.stderr, /^error: migrationprobes create: .*(ECONNREFUSED|connect)/m);
  const on = await kmp(['--context', 'good', 'check', 'web', '--to', 'node-b', '-c', 'app']);
  assert.equal(on.code, 0, on.stderr);
  assert.match(on.stdout, new RegExp(`^migrationprobe.migprobe.io/(web-to-node-b-[a-z0-9]{5}) created \\(namespace ${ns}\\)`));
  const created = (JSON.parse((await execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'get', 'mprobe', '-n', ns, '-o', 'json'])).stdout) as { items: MigrationProbe[] }).items;
  assert.equal(created.length, 1);
  assert.deepEqual(created[0]?.spec.podName, 'web');
  assert.deepEqual(created[0]?.spec.containerName, 'app');
  // -n wins over the context's namespace; --kubeconfig over KUBECONFIG.
  const other = `${ns}-n`;
  await kube.ensureNamespace(kc, other);
  t.after(() => kube.deleteNamespace(kc, other));
  const n = await kmp(['check', 'web', '--to', 'node-b', '--context=good', '-n', other, '--kubeconfig', file, '-o', 'yaml'], { KUBECONFIG: '/nonexistent' });
  assert.equal(n.code, 0, n.stderr);
  assert.equal((parseYaml(n.stdout) as MigrationProbe).metadata.namespace, other);
  const none = await kmp(['--context', 'staging', 'nodes']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no context "staging" in the kubeconfig \(it has good, nowhere\): pass one of them with --context/);
});

test('check --wait on the operator harness: the real verdict, printed as the CLI prints it, with its exit code', { timeout: 400_000 }, async (t) => {
  const tb = await testbed();
  const op = await withOperator(t, 'pl-chk');
  const namespace = op.namespace;
  const [a, b] = op.nodes;
  const web = await workloadPod(op, 'web', a, ['sleep', '100000']);
  t.after(() => web.remove());
  const locked = await workloadPod(op, 'locked', a, ['/usr/local/bin/flocker', 'flock']);
  t.after(() => locked.remove());
  const kmp = pluginRunner(t, tb, tb.kubeconfigPath).run;

  const ok = await kmp(['check', 'web', '--to', b, '--wait', '--timeout', '3m', '-n', namespace]);
  assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}\n${op.controller.log().slice(-2000)}`);
  assert.match(ok.stdout, /^MIGRATABLE\n\nCRIU\s+source 4\.\d+\.\d+\s+target 4\.\d+\.\d+\nTimings\s+preflight \d+ ms\s+freeze \d+ ms/);
  const blocked = await kmp(['check', 'locked', '--to', b, '--wait', '-n', namespace]);
  assert.equal(blocked.code, 1, blocked.stderr);
  assert.match(blocked.stdout, /^NOT MIGRATABLE \(1 blocker\)\n[\s\S]*\nFileLocks\s+preflight\s+[\s\S]*fix: /);
  const json = await kmp(['check', 'locked', '--to', b, '--wait', '-n', namespace, '-o', 'json']);
  assert.equal(json.code, 1, json.stderr);
  const p = JSON.parse(json.stdout) as MigrationProbe;
  assert.equal(p.status?.phase, 'Succeeded');
  assert.deepEqual(p.status?.reasons?.map((r) => r.code), ['FileLocks']);
  assert.match(p.metadata.name ?? '', /^locked-to-.*-[a-z0-9]{5}$/);
  // A probe that cannot run: Failed with its reason, exit 2.
  const failed = await kmp(['check', 'nosuchpod', '--to', b, '--wait', '-n', namespace]);
  assert.equal(failed.code, 2, failed.stdout);
  assert.match(failed.stdout, /^PROBE FAILED: nosuchpod-to-[\s\S]*PodNotFound/);
  // The probes exist as any MigrationProbe: kubectl get lists them.
  const list = await op.kubectl(['get', 'mprobe', '-n', namespace, '-o', 'name']);
  assert.equal(list.stdout.trim().split('\n').length, 4);
});

test('drain-check against the real readiness controller: progress, the per-pod table, exit 1; a re-run of the same readiness', { timeout: 600_000 }, async (t) => {
  const tb = await testbed();
  const namespace = `pl-drn-${randomBytes(3).toString('hex')}`;
  const op = await startOperator({ tb, namespace });
  const [a, b] = op.nodes;
  const name = `drain-${a}`;
  t.after(async () => {
    await op.kubectl(['delete', 'migrationreadiness', name, '--ignore-not-found', '--timeout=60s'], { reject: false });
    await op.stop();
    await kube.deleteNamespace(op.kc, namespace);
    await kube.deleteNamespace(op.kc, op.agentNamespace);
  });
  const web = await workloadPod(op, 'web', a, ['sleep', '100000']);
  t.after(() => web.remove());
  const locked = await workloadPod(op, 'locked', a, ['/usr/local/bin/flocker', 'flock']);
  t.after(() => locked.remove());
  const kmp = pluginRunner(t, tb, tb.kubeconfigPath).run;

  const r = await kmp(['drain-check', a, '--timeout', '5m']);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}\n${op.controller.log().slice(-3000)}`);
  // stderr is not a terminal here: plain progress lines, the last one the finished run.
  const progress = r.stderr.split('\n').filter((l) => l !== '');
  assert.ok(progress.length >= 1, r.stderr);
  assert.match(progress.at(-1) ?? '', new RegExp(`^${name}: Completed, run 1: probes 2/2 done, pods 2/2 decided \\(\\d+s\\)$`));
  assert.match(r.stdout, /^NAMESPACE\s+POD\s+OWNER\s+MIGRATABLE\s+BEST TARGET\s+TARGETS\s+REASONS\n/);
  assert.match(r.stdout, new RegExp(`\\n${namespace}\\s+locked\\s+-\\s+no\\s+-\\s+-\\s+FileLocks\\n`));
  assert.match(r.stdout, new RegExp(`\\n${namespace}\\s+web\\s+-\\s+yes\\s+${b}\\s+${b}\\s+-\\n`));
  assert.match(r.stdout, new RegExp(`Eligible targets: ${b}\\n`));
  assert.match(r.stdout, /Blockers:\n {2}FileLocks \(1 pod\): fix: /);
  assert.match(r.stdout, /Pods 2: 1 migratable, 1 blocked, 0 pending, 0 skipped; 2 probes \(run 1\)\n/);
  assert.match(r.stdout, /Drainable: False \(PodsBlocked\): /);

  // The same readiness again: a re-run (run 2) through the rerun annotation, -o json prints the object.
  const again = await kmp(['drain-check', a, '--to-nodes', b, '-o', 'json']);
  assert.equal(again.code, 1, again.stderr);
  const obj = JSON.parse(again.stdout) as MigrationReadiness;
  assert.equal(obj.metadata.name, name);
  assert.equal(obj.status?.runId, 2);
  assert.equal(obj.status?.observedRerun, obj.metadata.annotations?.[RERUN_ANNOTATION]);
  assert.deepEqual(obj.spec.targets, { nodeNames: [b] });
  assert.deepEqual(obj.status?.pods?.map((p) => [p.name, p.migratable]), [['locked', false], ['web', true]]);
  // Once the blocker is gone, the node is drainable: exit 0.
  await locked.remove();
  await kube.deletePod(op.kc, namespace, 'locked');
  const ok = await kmp(['drain-check', a, '-o', 'wide']);
  assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}`);
  assert.match(ok.stdout, /FREEZE\s+PROBES\s+REASONS\n/);
  assert.match(ok.stdout, /Drainable: True \(AllPodsMigratable\)/);
});
