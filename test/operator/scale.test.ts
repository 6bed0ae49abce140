// 50 probes created at once all reach a final phase, with the per-node dump limit held throughout.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningContainer } from '../../testbed/index.ts';
import { withOperator } from './harness.ts';
import { createProbe, isFinal, listProbes, workloadPod } from './lib.ts';

const ACTIVE = new Set(['Preflight', 'Dumping', 'Transferring', 'Restoring']);

test('50 probes at once: all final, per-node and per-pod limits held', { timeout: 600_000 }, async (t) => {
  const limit = 2;
  const op = await withOperator(t, 'mp-scale', { maxDumpsPerNode: limit, controllerArgs: ['--poll-interval-ms', '250'] });
  const [a, b] = op.nodes;
  const pods = 5;
  const containers: RunningContainer[] = [];
  t.after(async () => {
    for (const c of containers) await c.remove();
  });
  for (let i = 0; i < pods; i++) containers.push(await workloadPod(op, `w${i}`, a, ['sleep', '100000']));
  const started = Date.now();
  await Promise.all(Array.from({ length: 50 }, (_, i) => createProbe(op, `p${String(i).padStart(2, '0')}`, { podName: `w${i % pods}`, targetNodeName: b })));
  let maxNode = 0;
  let maxPerPod = 0;
  for (;;) {
    const items = await listProbes(op);
    const active = items.filter((p) => ACTIVE.has(p.status?.phase ?? ''));
    maxNode = Math.max(maxNode, active.filter((p) => p.status?.sourceNodeName === a).length);
    const perPod = new Map<string, number>();
    for (const p of active) perPod.set(p.spec.podName, (perPod.get(p.spec.podName) ?? 0) + 1);
    maxPerPod = Math.max(maxPerPod, ...perPod.values(), 0);
    if (items.length === 50 && items.every(isFinal)) {
      const failed = items.filter((p) => p.status?.phase !== 'Succeeded' || p.status.migratable !== true);
      assert.deepEqual(failed.map((p) => `${p.metadata.name}: ${JSON.stringify(p.status?.reasons)} ${p.status?.criuLogExcerpt ?? ''}`), []);
      break;
    }
    if (Date.now() - started > 540_000) assert.fail(`not all final: ${items.filter((p) => !isFinal(p)).map((p) => `${p.metadata.name}=${p.status?.phase}`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.diagnostic(`50 probes in ${Math.round((Date.now() - started) / 1000)} s; max active on the node ${maxNode}, per pod ${maxPerPod}`);
  assert.ok(maxNode <= limit, `per-node limit broken: ${maxNode} > ${limit}`);
  assert.ok(maxPerPod <= 1, `per-pod limit broken: ${maxPerPod}`);
});
