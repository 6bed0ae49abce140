import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { pairMatrix } from '../api/migrationnode.ts';
import { statusFromVerdict, type MigrationProbe } from '../api/v1alpha1.ts';
import { formatVerdict } from '../cli/format.ts';
import { reason } from '../reasons.ts';
import { makeVerdict } from '../verdict.ts';
import { asList, matrixRows, podRows, progressLine, readinessProgress, renderNodes, renderObjects, renderProbe, renderReadiness } from './render.ts';
import { nodesFixture, readinessFixture } from './testdata.fixture.ts';

test('a finished probe prints exactly as the CLI prints the same verdict', () => {
  const v = makeVerdict({
    reasons: [reason('FileLocks', 'task 7 holds a POSIX lock on /data/db.lock')],
    timings: { preflightMs: 3, totalMs: 40 },
    sizes: { workloadRssBytes: 2 << 20 },
    criu: { source: '4.2.1' },
  });
  const p: MigrationProbe = { metadata: { name: 'db-0-to-node-b-x' }, spec: { podName: 'db-0', targetNodeName: 'node-b' }, status: statusFromVerdict(v) };
  assert.equal(renderProbe(p, 90), formatVerdict(v, 90));
  assert.match(renderProbe(p, 90), /^NOT MIGRATABLE \(1 blocker\)\n[\s\S]*FileLocks\s+preflight\s+task 7[\s\S]*fix: /);
  const failed: MigrationProbe = { ...p, status: { phase: 'Failed', migratable: false, reasons: [{ code: 'PodNotFound', message: 'no pod db-0 in shop' }] } };
  const text = renderProbe(failed, 90);
  assert.match(text, /^PROBE FAILED: db-0-to-node-b-x could not reach a verdict/);
  assert.match(text, /PodNotFound\s+setup\s+no pod db-0 in shop\n\s+fix: fix spec.podName/);
});

test('the per-pod table: owner, verdict, best and compatible targets, reasons; skipped pods say why', () => {
  const rows = podRows(readinessFixture().status?.pods ?? [], false);
  assert.deepEqual(rows, [
    ['NAMESPACE', 'POD', 'OWNER', 'MIGRATABLE', 'BEST TARGET', 'TARGETS', 'REASONS'],
    ['kube-system', 'proxy-abc', 'DaemonSet/proxy', 'skipped', '-', '-', 'DaemonSet pod: it runs on every node'],
    ['shop', 'db-0', 'StatefulSet/db', 'no', '-', '-', 'FileLocks'],
    ['shop', 'web-7d9f', 'Deployment/web', 'yes', 'node-b', 'node-b', '-'],
  ]);
  const wide = podRows(readinessFixture().status?.pods ?? [], true);
  assert.deepEqual(wide[0], ['NAMESPACE', 'POD', 'OWNER', 'MIGRATABLE', 'BEST TARGET', 'TARGETS', 'FREEZE', 'PROBES', 'REASONS']);
  assert.deepEqual(wide[3], ['shop', 'web-7d9f', 'Deployment/web', 'yes', 'node-b', 'node-b', '41 ms', 'web-7d9f-to-node-b-x1', '-']);
  assert.deepEqual(podRows([{ namespace: 'a', name: 'p' }], false)[1], ['a', 'p', '-', 'pending', '-', '-', '-']);
});

test('the drain-check report: table, ruled-out targets, blockers with their fix, totals, Drainable', () => {
  const text = renderReadiness(readinessFixture(), false);
  const lines = text.split('\n');
  assert.match(lines[0] ?? '', /^NAMESPACE\s+POD\s+OWNER\s+MIGRATABLE\s+BEST TARGET\s+TARGETS\s+REASONS$/);
  assert.match(text, /\nshop\s+db-0\s+StatefulSet\/db\s+no\s+-\s+-\s+FileLocks\n/);
  assert.match(text, /Targets ruled out before any dump:\n {2}node-a -> node-c: ArchMismatch: source amd64, target arm64\n/);
  assert.match(text, /Eligible targets: node-b\n/, 'each once');
  assert.match(text, /Blockers:\n {2}FileLocks \(1 pod\): fix: set options.fileLocks: true\n/, 'the hint the pod carries');
  assert.match(text, /Pods 3: 1 migratable, 1 blocked, 0 pending, 1 skipped; 2 probes \(run 3\)\n/);
  assert.match(text, /Drainable: False \(PodsBlocked\): 1 pod has no target\n$/);
  // Without a hint on any pod the catalog's fix is printed.
  const r = readinessFixture();
  for (const p of r.status?.pods ?? []) delete p.reasons;
  assert.match(renderReadiness(r, false), /FileLocks \(1 pod\): fix: set options.fileLocks: true \(CLI --file-locks/);
  assert.match(renderReadiness({ metadata: { name: 'x' }, spec: { source: { nodeName: 'n1' } } }, false), /^No pods selected on n1\.\nDrainable: Unknown\n$/);
});

test('progress: probes done and pods decided out of their totals', () => {
  const r = readinessFixture();
  assert.deepEqual(readinessProgress(r), { podsDecided: 3, pods: 3, probesDone: 2, probes: 2 });
  const running = readinessFixture();
  running.status = { ...running.status, phase: 'Running', totals: { pods: 3, migratable: 0, blocked: 0, pending: 2, skipped: 1, probes: 4 } };
  const pods = running.status.pods ?? [];
  running.status.pods = [pods[0] ?? { namespace: '', name: '' }, { namespace: 'shop', name: 'db-0' }, pods[2] ?? { namespace: '', name: '' }];
  assert.equal(progressLine(running, 12_345), 'drain-node-a: Running, run 3: probes 1/4 done, pods 2/3 decided (12s)');
  assert.equal(progressLine({ metadata: { name: 'drain-x' }, spec: { source: {} } }, 1000), 'drain-x: waiting for the controller (1s)');
});

test('nodes: the facts table, the matrix from pairMatrix, every incompatible pair with its reasons', () => {
  const nodes = nodesFixture();
  assert.deepEqual(matrixRows(pairMatrix(nodes)), [
    ['SOURCE \\ TARGET', 'node-a', 'node-b', 'node-c'],
    ['node-a', '-', 'ok', 'ArchMismatch'],
    ['node-b', 'ok', '-', 'ArchMismatch'],
    ['node-c', 'ArchMismatch', 'ArchMismatch', '-'],
  ]);
  const text = renderNodes(nodes, false);
  assert.match(text, /^NODE\s+ARCH\s+KERNEL\s+CRIU\s+CPU\s+OVERRIDE\s+UPDATED\n/);
  assert.match(text, /\nnode-c\s+arm64\s+6\.1\.0-18-amd64\s+4\.2\.1\s+GenuineIntel \(2 flags\)\s+arch\s+2025-01-01T00:00:00Z\n/);
  assert.match(text, /\nnode-a\s+-\s+ok\s+ArchMismatch\n/);
  assert.match(text, /Incompatible pairs:\n {2}node-a -> node-c: ArchMismatch: [^\n]*amd64[^\n]*arm64/);
  assert.equal(text.match(/ -> /g)?.length, 4);
  assert.match(renderNodes(nodes, true), /FEATURES\s+MISSING\n[\s\S]*mem_dirty_track,uffd\s+-\n/);
  assert.match(renderNodes([], false), /No MigrationNodes/);
  assert.match(renderNodes([nodes[0]!], false), /One node: no pair to compare/);
});

test('-o json and -o yaml print the objects themselves; several as a List', () => {
  const r = readinessFixture();
  assert.deepEqual(JSON.parse(renderObjects(r, 'json')), r);
  assert.deepEqual(parseYaml(renderObjects(asList(nodesFixture()), 'yaml')), { apiVersion: 'v1', kind: 'List', items: nodesFixture() });
});
