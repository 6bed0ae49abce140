// The dump check on real containers with real CRIU: no page contents written, the workload keeps running, the
// freeze is measured and bounded, and a killed CRIU never leaves the workload frozen.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat, writeFile, readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { dumpCheck, recoverFrozen, MARKER_NAME } from '../../src/engine/dump.ts';
import type { DumpCheckInput } from '../../src/engine/dump.ts';
import { subjectFromContainer, addressesOf } from '../../src/engine/subject.ts';
import { readDumpStats } from '../../src/engine/images.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import type { ProbeOptions } from '../../src/engine/api.ts';
import { testbed } from '../../testbed/index.ts';
import { startWorkload } from './workloads.ts';
import { counter, counterAdvances, info, taskStates, tempDir } from './engine-helpers.ts';
import type { ContainerInfo } from '../../src/engine/container.ts';

function input(ci: ContainerInfo, workDir: string, options: Partial<ProbeOptions> = {}): DumpCheckInput {
  return {
    subject: subjectFromContainer(ci),
    options: { ...DEFAULT_PROBE_OPTIONS, ...options },
    workDir,
    criuVersion: 'test',
    manifest: { rootfs: { lowerdirs: ci.rootfs.lowerdirs }, addresses: addressesOf(ci), fileDigests: [] },
  };
}

async function pageBytes(imagesDir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(imagesDir)) if (/^pages-/.test(f)) n += (await stat(join(imagesDir, f))).size;
  return n;
}

void test('dump check of a 64 MiB workload writes no page contents and the workload keeps running', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '64'], { ip: '10.77.2.2' });
  const ci = await info(c);
  const work = await tempDir(t);
  const before = await counter(c);
  const out = await dumpCheck(input(ci, work));
  assert.deepEqual(out.result.reasons, [], JSON.stringify(out.result));
  const images = join(work, 'bundle', 'images');
  const rss = 64 * 1024 * 1024;
  const imageBytes = out.result.sizes.imageBytes ?? Infinity;
  assert.ok(imageBytes < rss / 100, `image bytes ${imageBytes} should be << RSS ${rss}`);
  assert.ok((await pageBytes(images)) < 1024 * 1024, 'no memory contents in pages-*.img');
  assert.ok((out.info.pagemap?.lazyPages ?? 0) >= (64 * 256) / 2, `lazy pages dropped: ${JSON.stringify(out.info.pagemap)}`);
  assert.ok(out.info.freeze !== undefined && out.info.freeze.longestMs > 0, 'a freeze was seen from the workload side');
  assert.equal(out.result.timings.freezeMs, Math.round(out.info.freeze.longestMs));
  assert.ok(!existsSync(join(work, MARKER_NAME)), 'freeze marker removed after thaw');
  const manifest = JSON.parse(await readFile(join(work, 'bundle', 'manifest.json'), 'utf8')) as { kind: string; netnsExternal: boolean; addresses: unknown[] };
  assert.equal(manifest.kind, 'lazy');
  assert.equal(manifest.netnsExternal, true);
  assert.deepEqual(manifest.addresses, [{ ifname: 'eth0', cidr: '10.77.2.2/24' }]);
  await counterAdvances(c, before + 1n);
  const states = await taskStates(ci.pids);
  assert.ok(!states.some((s) => s === 't' || s === 'T' || s === 'gone'), `states after: ${states.join(',')}`);
});

void test('a freeze over the budget is a FreezeBudgetExceeded blocker', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '4']);
  const out = await dumpCheck(input(await info(c), await tempDir(t), { freezeBudgetMs: 0 }));
  assert.deepEqual(out.result.reasons.map((r) => r.code), ['FreezeBudgetExceeded']);
  assert.equal(out.result.reasons[0]?.phase, 'dump');
});

void test('the timeout firing while the workload is frozen stops CRIU, and the workload lives on, running', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const ci = await info(c);
  // Several rounds: the timeout lands at different points of the dump (seizing, parasite inside, writing).
  for (let round = 0; round < 5; round++) {
    const work = await tempDir(t);
    const out = await dumpCheck({ ...input(ci, work), hooks: { timeoutWhenFrozen: true } });
    assert.deepEqual(out.result.reasons.map((r) => r.code), ['Timeout'], `round ${round}: ${JSON.stringify(out.result.reasons)}`);
    assert.ok(out.info.timedOut);
    t.diagnostic(`round ${round}: criu exit ${out.info.criuExitCode ?? 'signal'}; recovery: ${out.info.recovery.join('; ') || 'none'}`);
    assert.ok(existsSync(`/proc/${c.pid}`) && (await taskStates([c.pid])).every((s) => s !== 'Z'), `round ${round}: the workload died`);
    const states = await taskStates(ci.pids);
    assert.ok(!states.some((s) => s === 't' || s === 'T'), `round ${round}: states after the timeout: ${states.join(',')}`);
    await counterAdvances(c, await counter(c));
    assert.ok(!existsSync(join(work, MARKER_NAME)));
    assert.deepEqual(await processesMentioning(work), [], 'CRIU and every helper it forked are gone');
  }
});

void test('a CRIU call over the timeout is killed, reported as Timeout, and the workload keeps running', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const ci = await info(c);
  // Several timeouts, to hit CRIU at different points (its start-up checks fork helpers that stop themselves).
  for (const timeoutMs of [5, 15, 30, 60]) {
    const work = await tempDir(t);
    const out = await dumpCheck(input(ci, work, { timeoutMs }));
    if (out.info.criuExitCode === 0) continue; // finished first: fine
    assert.deepEqual(out.result.reasons.map((r) => r.code), ['Timeout'], `timeout ${timeoutMs}`);
    assert.ok(out.info.timedOut);
    const states = await taskStates(ci.pids);
    assert.ok(!states.some((s) => s === 't' || s === 'T'), `states: ${states.join(',')}`);
    assert.deepEqual(await processesMentioning(work), [], 'CRIU and every helper it forked are gone');
  }
  await counterAdvances(c, await counter(c));
});

void test('recoverFrozen thaws what a crashed run left frozen (freezer cgroup and stopped tasks)', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '1']);
  const ci = await info(c);
  const subject = subjectFromContainer(ci);
  assert.ok(subject.freezerCgroupDir !== undefined);
  const root = await tempDir(t);
  const probeDir = join(root, 'probe-1');
  await import('node:fs/promises').then((fs) => fs.mkdir(probeDir));
  // A crashed agent: freezer FROZEN and the marker it wrote before freezing.
  const stateFile = join(subject.freezerCgroupDir, 'freezer.state');
  t.after(async () => await writeFile(stateFile, 'THAWED').catch(() => undefined));
  await writeFile(join(probeDir, MARKER_NAME), JSON.stringify({ pid: ci.initPid, pids: ci.pids, freezerCgroupDir: subject.freezerCgroupDir, since: new Date().toISOString() }), { mode: 0o600 });
  await writeFile(stateFile, 'FROZEN');
  const frozenAt = await counter(c);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await counter(c), frozenAt, 'frozen for real');
  const rec = await recoverFrozen(root, (n) => n === 'probe-1');
  assert.equal(rec.length, 1);
  assert.ok(rec[0]?.actions.some((a) => a.includes('THAWED')), JSON.stringify(rec));
  assert.equal((await readFile(stateFile, 'utf8')).trim(), 'THAWED');
  await counterAdvances(c, frozenAt);
  assert.ok(!existsSync(join(probeDir, MARKER_NAME)));
  // A task left in a job-control stop is continued too.
  process.kill(ci.initPid, 'SIGSTOP');
  for (let i = 0; i < 200 && !(await taskStates([ci.initPid])).includes('T'); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok((await taskStates([ci.initPid])).includes('T'), 'stopped for real');
  await writeFile(join(probeDir, MARKER_NAME), JSON.stringify({ pid: ci.initPid, pids: ci.pids, since: new Date().toISOString() }), { mode: 0o600 });
  const rec2 = await recoverFrozen(root, (n) => n === 'probe-1');
  assert.ok(rec2[0]?.actions.some((a) => a.startsWith('SIGCONT')), JSON.stringify(rec2));
  await counterAdvances(c, await counter(c));
});

void test('a paused container is not dumped and stays paused', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '1']);
  const ci = await info(c);
  const subject = subjectFromContainer(ci);
  assert.ok(subject.freezerCgroupDir !== undefined);
  const stateFile = join(subject.freezerCgroupDir, 'freezer.state');
  t.after(async () => await writeFile(stateFile, 'THAWED').catch(() => undefined));
  await writeFile(stateFile, 'FROZEN');
  const out = await dumpCheck(input(ci, await tempDir(t)));
  assert.deepEqual(out.result.reasons.map((r) => r.code), ['DumpFailed']);
  assert.match(out.result.reasons[0]?.message ?? '', /paused/);
  assert.equal((await readFile(stateFile, 'utf8')).trim(), 'FROZEN', 'left as it was');
});

void test('the process running the dump dies mid-dump (a dying agent): the workload runs on, recoverFrozen cleans up', async (t) => {
  const tb = await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '256']);
  const ci = await info(c);
  const root = await tempDir(t);
  const workDir = join(root, 'probe-1');
  const child = spawn(process.execPath, [join(import.meta.dirname, 'dump-child.ts'), tb.containerd.address, c.id, workDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    child.kill('SIGKILL');
  });
  // Kill the agent the moment CRIU holds the workload.
  const held = async (): Promise<boolean> => {
    const s = await readFile(`/proc/${ci.initPid}/status`, 'utf8');
    return !/\nTracerPid:\s+0\n/.test(s);
  };
  const deadline = Date.now() + 20_000;
  let killedWhileHeld = false;
  while (Date.now() < deadline && child.exitCode === null) {
    if (await held()) {
      child.kill('SIGKILL');
      killedWhileHeld = true;
      break;
    }
  }
  assert.ok(killedWhileHeld, 'the agent was killed while CRIU held the workload');
  // CRIU finishes on its own (the page server's CLOSE was queued before the dump began) and lets go.
  const until = Date.now() + 15_000;
  while (Date.now() < until && (await held())) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await held(), false, 'no tracer holds the workload');
  const states = await taskStates(ci.pids);
  assert.ok(!states.some((s) => s === 't' || s === 'T'), states.join(','));
  await counterAdvances(c, await counter(c));
  // The agent's restart finds the marker it left and makes sure, then removes it.
  assert.ok(existsSync(join(workDir, MARKER_NAME)), 'the dead agent left its marker');
  const rec = await recoverFrozen(root, (n) => n === 'probe-1');
  assert.equal(rec.length, 1);
  assert.ok(!existsSync(join(workDir, MARKER_NAME)));
  await counterAdvances(c, await counter(c));
});

void test('the freeze measured from the workload side agrees with CRIU\'s own frozen time (full dump)', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '128']);
  const ci = await info(c);
  const work = await tempDir(t);
  const out = await dumpCheck({ ...input(ci, work), full: true });
  assert.deepEqual(out.result.reasons, []);
  const stats = await readDumpStats(join(work, 'bundle', 'images'));
  assert.ok(stats !== undefined);
  assert.ok(stats.pagesWritten >= 128 * 256, `a full dump writes the pages: ${stats.pagesWritten}`);
  const criuMs = (stats.freezingUs + stats.frozenUs) / 1000;
  const ours = out.info.freeze?.longestMs ?? 0;
  assert.ok(Math.abs(ours - criuMs) <= 25 + 0.2 * criuMs, `ours ${ours.toFixed(1)} ms vs CRIU ${criuMs.toFixed(1)} ms`);
});

/** PIDs whose command line mentions `text` (e.g. a work dir a killed CRIU was given). */
async function processesMentioning(text: string): Promise<number[]> {
  const out: number[] = [];
  for (const n of await readdir('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const cmd = await readFile(`/proc/${n}/cmdline`, 'latin1');
      if (cmd.includes(text)) out.push(Number(n));
    } catch {
      // gone
    }
  }
  return out;
}
