// One workload, two ways in, one verdict: `migprobe check` on the host (the CLI's one-host flow) and a
// MigrationProbe through the operator (two agent processes and the controller on the test bed) give the same
// verdict field by field: migratable, every reason's code, phase, message and hint (numbers aside: times, PIDs and
// sizes are the run's own), and which timings, sizes and CRIU versions are present. The workloads: a migratable
// one, a preflight blocker, and a freeze budget of 1 ms (FreezeBudgetExceeded, where the cluster used to skip the
// restore check the CLI ran).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';
import type { Verdict } from '../../src/verdict.ts';
import { testbed, type RunningContainer } from '../../testbed/index.ts';
import { withOperator } from './harness.ts';
import { createProbe, isFinal, waitProbe, workloadPod } from './lib.ts';

const BIN = fileURLToPath(new URL('../../bin/migprobe.js', import.meta.url));

/** `migprobe check --json` of a container; resolves the verdict (exit 0 or 1). */
async function cliCheck(args: string[]): Promise<Verdict> {
  const r = await execa(process.execPath, [BIN, 'check', ...args, '--json'], { reject: false, timeout: 180_000 });
  if (r.exitCode !== 0 && r.exitCode !== 1) throw new Error(`migprobe check exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Verdict;
}

/** The comparable part of a verdict: what must not depend on the way in. */
interface Shape {
  migratable: boolean;
  reasons: string[];
  timings: string[];
  sizes: string[];
  criu: string[];
  criuLogExcerpt: boolean;
}

const numbersAside = (s: string | undefined): string => (s ?? '').replace(/\d+/g, 'N');
const reasonLine = (r: { code: string; phase?: string; message: string; hint?: string }): string => `${r.code} | ${r.phase ?? ''} | ${numbersAside(r.message)} | ${numbersAside(r.hint)}`;

function cliShape(v: Verdict): Shape {
  return {
    migratable: v.migratable,
    reasons: v.reasons.map(reasonLine),
    timings: Object.keys(v.timings).map((k) => k.replace(/Ms$/, '')).sort(),
    sizes: Object.keys(v.sizes).sort(),
    criu: Object.keys(v.criu).sort(),
    criuLogExcerpt: v.criuLogExcerpt !== undefined,
  };
}

function probeShape(p: MigrationProbe): Shape {
  const s = p.status ?? {};
  return {
    migratable: s.migratable ?? false,
    reasons: (s.reasons ?? []).map(reasonLine),
    timings: Object.keys(s.timings ?? {}).map((k) => k.replace(/Milliseconds$/, '')).sort(),
    sizes: Object.keys(s.sizes ?? {}).sort(),
    criu: Object.keys(s.criu ?? {}).sort(),
    criuLogExcerpt: s.criuLogExcerpt !== undefined,
  };
}

test('the same workload gets the same verdict from migprobe check and from a MigrationProbe', { timeout: 600_000 }, async (t) => {
  const tb = await testbed();
  const op = await withOperator(t, 'mp-parity');
  const [a, b] = op.nodes;
  const track = (c: RunningContainer): RunningContainer => {
    t.after(() => c.remove());
    return c;
  };
  const cases: { name: string; args: string[]; freezeBudgetMs?: number; expect: string[] }[] = [
    { name: 'sleeper', args: ['/bin/sh', '-c', 'while true; do sleep 0.05; done'], expect: [] },
    { name: 'locked', args: ['/usr/local/bin/flocker', 'flock'], expect: ['FileLocks'] },
    // The dump succeeds and leaves images, over a budget no dump can meet: the restore check still runs on both.
    { name: 'budget', args: ['/bin/sh', '-c', 'while true; do sleep 0.05; done'], freezeBudgetMs: 1, expect: ['FreezeBudgetExceeded'] },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const ctr = track(await workloadPod(op, c.name, a, c.args));
      const budget = c.freezeBudgetMs === undefined ? [] : ['--freeze-budget', String(c.freezeBudgetMs)];
      const cli = await cliCheck(['--container', ctr.id, '--namespace', tb.containerd.namespace, '--address', tb.containerd.address, ...budget]);
      await createProbe(op, c.name, {
        podName: c.name,
        targetNodeName: b,
        ...(c.freezeBudgetMs === undefined ? {} : { options: { freezeBudgetMilliseconds: c.freezeBudgetMs } }),
      });
      const probe = await waitProbe(op, c.name, isFinal, 240_000);
      assert.equal(probe.status?.phase, 'Succeeded', JSON.stringify(probe.status));
      const want = cliShape(cli);
      const got = probeShape(probe);
      assert.deepEqual(want.reasons.map((r) => r.split(' | ')[0]), c.expect, `CLI: ${JSON.stringify(cli)}`);
      assert.deepEqual(got, want, `operator: ${JSON.stringify(probe.status)}\nCLI: ${JSON.stringify(cli)}`);
      if (c.freezeBudgetMs !== undefined) {
        // Both ran the restore check over the budget: a restore time and the target's CRIU version.
        assert.ok(want.timings.includes('restore') && want.criu.includes('target'), JSON.stringify(want));
        const cond = Object.fromEntries((probe.status?.conditions ?? []).map((x) => [x.type, `${x.status}/${x.reason}`]));
        assert.equal(cond['DumpChecked'], 'False/FreezeBudgetExceeded');
        assert.equal(cond['RestoreChecked'], 'True/Passed');
      }
    });
  }
});
