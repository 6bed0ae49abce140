// Node facts on the real test bed: the two real agent processes of the operator harness (on fake Nodes, real
// CRIU, this machine's kernel and CPU) each publish the MigrationNode named after their node, re-publishing
// every --facts-interval. An administrator's spec.factsOverride makes one node pair incompatible in the
// pairMatrix over the listed objects (KernelMismatch one way only), and the agents' next publish leaves spec
// alone; a deleted MigrationNode is re-created on the agent's next interval.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { machine, release } from 'node:os';
import * as k8s from '@kubernetes/client-node';
import { testbed } from '../../testbed/index.ts';
import { collectNodeFacts } from '../../src/engine/index.ts';
import { pairMatrix, type MigrationNode } from '../../src/api/migrationnode.ts';
import { migprobeVersion } from '../../src/version.ts';
import { startOperator, type Operator } from './harness.ts';

const INTERVAL_S = 2;

async function getNode(op: Operator, name: string): Promise<MigrationNode | undefined> {
  try {
    return (await op.kc.makeApiClient(k8s.CustomObjectsApi).getClusterCustomObject({ group: 'migprobe.io', version: 'v1alpha1', plural: 'migrationnodes', name })) as MigrationNode;
  } catch (e) {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  }
}

async function waitNode(op: Operator, name: string, what: string, pred: (o: MigrationNode) => boolean, timeoutMs = 30_000): Promise<MigrationNode> {
  const end = Date.now() + timeoutMs;
  let last: MigrationNode | undefined;
  for (;;) {
    last = await getNode(op, name);
    if (last !== undefined && pred(last)) return last;
    if (Date.now() > end) {
      const logs = op.agents.map((a) => `agent ${a.node}:\n${a.proc.log().slice(-2000)}`).join('\n');
      assert.fail(`MigrationNode ${name}: ${what} not seen within ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

const published = (o: MigrationNode): boolean => o.status?.conditions?.some((c) => c.type === 'Published' && c.status === 'True') === true;

test('each agent publishes its node\'s MigrationNode; an override makes a pair incompatible and survives the next publish; a deleted one comes back', { timeout: 180_000 }, async (t) => {
  const tb = await testbed();
  const op = await startOperator({ tb, namespace: `mp-nf-${randomBytes(3).toString('hex')}`, agentArgs: ['--facts-interval', `${INTERVAL_S}s`] });
  t.after(() => op.stop());
  const [a, b] = op.nodes;
  const here = await collectNodeFacts(tb.criu);

  // Both objects appear with this machine's real facts, owned by their Nodes.
  const core = op.kc.makeApiClient(k8s.CoreV1Api);
  for (const name of [a, b]) {
    const o = await waitNode(op, name, 'Published=True', published);
    const f = o.status?.observedFacts;
    assert.equal(f?.arch, machine());
    assert.equal(f?.kernelRelease, release());
    assert.equal(f?.criuVersion, here.criuVersion);
    assert.match(f?.criuVersion ?? '', /^4\.\d+\.\d+$/);
    assert.deepEqual(f?.criuFeatures, here.criuFeatures);
    assert.ok(Object.keys(f?.criuFeatures ?? {}).length > 5, JSON.stringify(f?.criuFeatures));
    assert.equal(f?.cpu?.model, here.cpu.model);
    assert.deepEqual(f?.cpu?.flags, here.cpu.flags);
    assert.ok((f?.cpu?.flags ?? []).includes(machine() === 'x86_64' ? 'sse2' : 'fp'), 'real CPU flags');
    assert.ok((f?.memAvailableBytes ?? 0) > 64 * 2 ** 20);
    assert.equal(f?.containerRuntime, 'containerd://1.6', 'the runtime the (fake) Node reports');
    assert.equal(o.spec, undefined, 'the agent writes no spec');
    const uid = (await core.readNode({ name })).metadata?.uid;
    assert.deepEqual(o.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.uid]), [['Node', name, uid]]);
    assert.equal(o.status?.agentVersion, await migprobeVersion());
  }

  const listed = async (): Promise<MigrationNode[]> => {
    const all = (await op.kc.makeApiClient(k8s.CustomObjectsApi).listClusterCustomObject({ group: 'migprobe.io', version: 'v1alpha1', plural: 'migrationnodes' })) as { items: MigrationNode[] };
    return all.items.filter((o) => o.metadata.name === a || o.metadata.name === b);
  };
  assert.deepEqual((await listed()).length, 2);
  assert.deepEqual(pairMatrix(await listed()).map((p) => [p.source, p.target, p.compatible]), [[a, b, true], [b, a, true]]);

  // The supported way to make a node differ: spec.factsOverride, as the README shows it.
  await op.kubectl(['patch', 'migrationnode', b, '--type', 'merge', '-p', '{"spec":{"factsOverride":{"kernelRelease":"5.10.0"}}}']);
  const matrix = pairMatrix(await listed());
  const ab = matrix.find((p) => p.source === a && p.target === b);
  assert.equal(ab?.compatible, false);
  assert.deepEqual(ab?.reasons.map((r) => r.code), ['KernelMismatch']);
  assert.match(ab?.reasons[0]?.message ?? '', /5\.10\.0/);
  assert.equal(matrix.find((p) => p.source === b && p.target === a)?.compatible, true, 'an upgrade is fine');

  // The agent's next publish (it answers the new generation) leaves spec alone.
  const gen = (await getNode(op, b))?.metadata.generation ?? 0;
  assert.ok(gen >= 2, `the spec patch moved the generation (${gen})`);
  const after = await waitNode(op, b, `a publish for generation ${gen}`, (o) => o.status?.conditions?.find((c) => c.type === 'Published')?.observedGeneration === gen, INTERVAL_S * 5000);
  assert.deepEqual(after.spec, { factsOverride: { kernelRelease: '5.10.0' } });
  assert.equal(after.status?.observedFacts?.kernelRelease, release(), 'observed facts stay what the agent measured');

  // kubectl: the printer columns and the schema's explanations.
  const table = (await op.kubectl(['get', 'mpnode', a, b])).stdout;
  assert.match(table.split('\n')[0] ?? '', /^NAME\s+ARCH\s+KERNEL\s+CRIU\s+CPU\s+OVERRIDDEN\s+UPDATED$/);
  const rowB = table.split('\n').find((l) => l.startsWith(`${b} `)) ?? '';
  assert.ok(rowB.includes(machine()) && rowB.includes(release()) && rowB.includes(here.criuVersion) && rowB.includes('{"kernelRelease":"5.10.0"}'), rowB);
  const rowA = table.split('\n').find((l) => l.startsWith(`${a} `)) ?? '';
  assert.ok(rowA.includes(release()) && !rowA.includes('{'), `no override on ${a}: ${rowA}`);
  const explain = (await op.kubectl(['explain', 'migrationnode.spec.factsOverride'])).stdout;
  assert.match(explain, /Facts that replace what the agent observed, field by field/);
  assert.match(explain, /kernelRelease/);

  // Deleted: the agent re-creates it on its next interval.
  const oldUid = (await getNode(op, a))?.metadata.uid;
  await op.kubectl(['delete', 'migrationnode', a]);
  const back = await waitNode(op, a, 're-created', (o) => o.metadata.uid !== oldUid && published(o), INTERVAL_S * 5000);
  assert.equal(back.status?.observedFacts?.kernelRelease, release());

  for (const ag of op.agents) {
    assert.equal(ag.proc.exitCode, null, `agent ${ag.node} still runs`);
    assert.match(ag.proc.log(), /created this node's MigrationNode/);
  }
});
