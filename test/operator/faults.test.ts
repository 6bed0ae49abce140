// Faults: an agent killed mid-dump, the controller killed mid-probe, the API server restarted under a running
// controller. Real API server, real containers, real agents and controller processes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { restartApiServer, startApiServer, stopApiServer, testbed, type RunningContainer } from '../../testbed/index.ts';
import { startOperator, withOperator } from './harness.ts';
import { createProbe, freezerState, getProbe, isFinal, taskStates, waitProbe, workloadPod } from './lib.ts';

type T = { after(fn: () => Promise<void>): void };

function track(t: T, c: RunningContainer): RunningContainer {
  t.after(() => c.remove());
  return c;
}

function assertRunning(c: RunningContainer): void {
  assert.ok(existsSync(`/proc/${c.pid}`), `workload ${c.pid} gone`);
  assert.ok(!taskStates(c.pid).includes('T'), `workload ${c.pid} is stopped`);
  const fz = freezerState(c.id);
  assert.ok(fz === undefined || fz === 'THAWED', `workload freezer is ${fz}`);
}

async function waitFor<R>(what: string, ms: number, fn: () => R | undefined | Promise<R | undefined>, everyMs = 5): Promise<R> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await fn();
    if (r !== undefined) return r;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, everyMs));
  }
}

test('agent killed mid-dump: the workload is not left frozen, the probe fails with a reason', { timeout: 180_000 }, async (t) => {
  const op = await withOperator(t, 'mp-fault', { agentGraceSeconds: 8 });
  const [a, b] = op.nodes;
  const c = track(t, await workloadPod(op, 'web', a, ['sleep', '100000']));
  const src = op.agents[0];
  const p = await createProbe(op, 'killed', { podName: 'web', targetNodeName: b });
  const uid = p.metadata.uid ?? '';
  // Kill the source agent the moment its operation folder (the dump's work dir) shows up; prefer the moment
  // the workload is frozen (the engine's marker file).
  const opDir = join(src.workDir, uid);
  await waitFor('the dump to start', 60_000, () => (existsSync(opDir) ? true : undefined), 2);
  const frozenAtKill = await waitFor('the freeze marker', 2_000, () => (existsSync(join(opDir, 'frozen-by-migprobe.json')) ? true : undefined), 1).catch(() => false);
  await src.proc.stop('SIGKILL');
  t.diagnostic(`agent killed ${frozenAtKill ? 'while the workload was frozen (marker present)' : 'during the dump, before the freeze marker was seen'}`);
  // Without its agent, nothing may stay frozen: CRIU finishes (or the engine's watchdog thaws).
  await waitFor('the workload to run again', 20_000, () => {
    try {
      assertRunning(c);
      return true;
    } catch {
      return undefined;
    }
  }, 200);
  // The probe does not hang: it fails with AgentUnavailable (agent unreachable past the grace) or Timeout.
  const done = await waitProbe(op, 'killed', isFinal, 60_000);
  assert.equal(done.status?.phase, 'Failed', JSON.stringify(done.status));
  assert.ok(['AgentUnavailable', 'Timeout'].includes(done.status?.reasons?.[0]?.code ?? ''), JSON.stringify(done.status?.reasons));
  // The agent comes back (DaemonSet restart): it thaws leftovers, sweeps its work folder, and serves again.
  await src.proc.start();
  await waitFor('the agent to serve', 30_000, async () => ((await op.agentGet(src, '/healthz').catch(() => 0)) === 200 ? true : undefined), 200);
  assertRunning(c);
  assert.deepEqual(readdirSync(src.workDir).filter((n) => n.startsWith(uid)), [], 'leftovers swept');
  // And a new probe of the same workload works.
  // (The subject here is recovery, not the pause: a 2-core machine under load can pause a workload past the
  // default 2 s budget, so the budget is generous and the freeze is still measured and reported.)
  await createProbe(op, 'after', { podName: 'web', targetNodeName: b, options: { freezeBudgetMilliseconds: 30_000 } });
  const after = await waitProbe(op, 'after', isFinal, 90_000);
  assert.equal(after.status?.phase, 'Succeeded', JSON.stringify(after.status));
  assert.equal(after.status?.migratable, true, JSON.stringify(after.status));
});

test('controller killed mid-probe: the restarted controller finishes it', { timeout: 180_000 }, async (t) => {
  const op = await withOperator(t, 'mp-fault');
  const [a, b] = op.nodes;
  track(t, await workloadPod(op, 'web', a, ['sleep', '100000']));
  await createProbe(op, 'mid', { podName: 'web', targetNodeName: b, options: { freezeBudgetMilliseconds: 30_000 } });
  const active = await waitFor('an active phase', 60_000, async () => {
    const p = await getProbe(op, 'mid');
    const ph = p?.status?.phase;
    return ph !== undefined && ph !== 'Pending' ? ph : undefined;
  }, 20);
  await op.controller.stop('SIGKILL');
  const before = await getProbe(op, 'mid');
  await new Promise((r) => setTimeout(r, 1500));
  await op.controller.start();
  const done = await waitProbe(op, 'mid', isFinal, 90_000);
  assert.equal(done.status?.phase, 'Succeeded', `killed in ${active} (status then ${JSON.stringify(before?.status?.phase)}): ${JSON.stringify(done.status)}`);
  assert.equal(done.status?.migratable, true, JSON.stringify(done.status));
  assert.equal(done.status?.startTime, before?.status?.startTime ?? done.status?.startTime, 'the same run, not a second one');
  // Graceful shutdown: SIGTERM drains, releases the Lease and exits 0.
  await op.controller.stop('SIGTERM', 30_000);
  assert.equal(op.controller.exitCode, 0, op.controller.log().slice(-2000));
  const lease = await op.kubectl(['get', 'lease', '-n', op.agentNamespace, 'migprobe-controller', '-o', 'jsonpath={.spec.holderIdentity}']);
  assert.equal(lease.stdout, '', 'lease released');
});

test('API server restarted under a running controller: the watch recovers', { timeout: 300_000 }, async (t) => {
  const tb = await testbed();
  const dir = mkdtempSync(join(tmpdir(), 'migprobe-private-apiserver-'));
  const st = await startApiServer({ dir });
  t.after(async () => {
    await stopApiServer(st);
    await rm(dir, { recursive: true, force: true });
  });
  const op = await startOperator({ tb, namespace: 'mp-restart', kubeconfigPath: st.kubeconfigPath });
  t.after(() => op.stop());
  const [a, b] = op.nodes;
  const c = track(t, await workloadPod(op, 'web', a, ['sleep', '100000']));
  await createProbe(op, 'first', { podName: 'web', targetNodeName: b });
  const first = await waitProbe(op, 'first', isFinal, 90_000);
  assert.equal(first.status?.phase, 'Succeeded', JSON.stringify(first.status));
  await restartApiServer(st, { downMs: 3000 });
  // After the restart, a new probe is seen (watch re-established) and finished.
  await waitFor('the API server', 60_000, async () => {
    const r = await op.kubectl(['get', '--raw', '/readyz'], { reject: false });
    return r.exitCode === 0 ? true : undefined;
  }, 500);
  await createProbe(op, 'second', { podName: 'web', targetNodeName: b });
  const second = await waitProbe(op, 'second', isFinal, 120_000);
  assert.equal(second.status?.phase, 'Succeeded', JSON.stringify(second.status));
  assert.equal(second.status?.migratable, true);
  assert.ok(existsSync(`/proc/${c.pid}`));
});
