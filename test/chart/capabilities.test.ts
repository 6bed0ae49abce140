// The chart's explicit capability set (agent.privileged=false) is enough for a real probe: `migprobe check`
// of a real container (dump check and restore check, real CRIU) runs with exactly the capabilities the chart
// renders into the agent's securityContext as its bounding set, and finds the container migratable. Without
// one of them (SYS_TIME) the restore check fails, which shows the set really bounded the run.
// Seccomp and AppArmor are not part of this: the test bed runs unconfined, as the chart's agent does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runContainer, testbed } from '../../testbed/index.ts';
import { run } from '../../testbed/proc.ts';
import { CHART_DIR, ROOT, at, findObject, helmTemplate, parseObjects } from './lib.ts';

interface CliVerdict {
  migratable: boolean;
  reasons: { code: string; message: string }[];
}

async function checkWithCaps(caps: string[], containerId: string, address: string, criu: string): Promise<{ exitCode: number; verdict?: CliVerdict; stderr: string }> {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const res = await run(
    'setpriv',
    ['--bounding-set', bounding, '--inh-caps', '-all', '--', process.execPath, join(ROOT, 'src', 'cli', 'main.ts'), 'check', '--container', containerId, '--address', address, '--json'],
    { allowFail: true, timeoutMs: 240_000, env: { MIGPROBE_CRIU: criu } },
  );
  let verdict: CliVerdict | undefined;
  try {
    verdict = JSON.parse(res.stdout) as CliVerdict;
  } catch {
    verdict = undefined;
  }
  return { exitCode: res.exitCode, stderr: res.stderr, ...(verdict ? { verdict } : {}) };
}

test("the chart's explicit capabilities suffice for a real dump and restore check; one fewer does not", { timeout: 600_000 }, async (t) => {
  const tb = await testbed();
  const objs = parseObjects(await helmTemplate(tb.helm, { args: ['-f', join(CHART_DIR, 'ci', 'capabilities-values.yaml')] }));
  const sc = at(findObject(objs, 'DaemonSet', '-agent'), 'spec', 'template', 'spec', 'containers', 0, 'securityContext');
  assert.equal(at(sc, 'privileged'), false);
  const caps = at(sc, 'capabilities', 'add') as string[];
  assert.ok(caps.length > 0);

  const c = await runContainer({ args: ['sleep', '100000'] });
  t.after(() => c.remove());

  const ok = await checkWithCaps(caps, c.id, tb.containerd.address, tb.criu);
  assert.equal(ok.exitCode, 0, `with the chart's capabilities: ${JSON.stringify(ok.verdict?.reasons ?? ok.stderr.slice(-2000))}`);
  assert.equal(ok.verdict?.migratable, true);

  const fewer = await checkWithCaps(caps.filter((x) => x !== 'SYS_TIME'), c.id, tb.containerd.address, tb.criu);
  assert.equal(fewer.exitCode, 1, `without SYS_TIME: ${fewer.stderr.slice(-2000)}`);
  assert.ok(fewer.verdict?.reasons.some((r) => r.code === 'RestoreFailed' && /clock offset/.test(r.message)), JSON.stringify(fewer.verdict?.reasons));
});
