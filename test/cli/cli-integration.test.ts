// The `migprobe` command end to end on real containers: exit codes, the JSON verdict, the table.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { resolveContainer } from '../../src/engine/container.ts';
import { dumpCheck } from '../../src/engine/dump.ts';
import { addressesOf, subjectFromContainer } from '../../src/engine/subject.ts';
import { REASON_CODES } from '../../src/verdict.ts';
import type { Verdict } from '../../src/verdict.ts';
import { testbed } from '../../testbed/index.ts';
import { migprobe } from '../engine/engine-helpers.ts';
import { startWorkload } from '../engine/workloads.ts';

function assertVerdictShape(v: Verdict): void {
  assert.deepEqual(Object.keys(v).filter((k) => k !== 'criuLogExcerpt').sort(), ['criu', 'migratable', 'reasons', 'sizes', 'timings']);
  assert.equal(typeof v.migratable, 'boolean');
  assert.equal(v.migratable, v.reasons.length === 0);
  for (const r of v.reasons) {
    assert.deepEqual(Object.keys(r).sort(), ['code', 'hint', 'message', 'phase']);
    assert.ok((REASON_CODES as readonly string[]).includes(r.code), r.code);
  }
}

void test('check --container of a migratable workload: exit 0, the JSON verdict', async (t) => {
  const tb = await testbed();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; exec sleep 1000'], { ip: '10.77.3.2' });
  const r = await migprobe(['check', '--container', c.id, '--address', tb.containerd.address, '--json']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const v = JSON.parse(r.stdout) as Verdict;
  assertVerdictShape(v);
  assert.equal(v.migratable, true);
  assert.ok((v.timings.freezeMs ?? -1) >= 0 && (v.timings.totalMs ?? 0) > 0);
  assert.ok((v.sizes.workloadRssBytes ?? 0) > 0);
  assert.match(v.criu.source ?? '', /^4\./);
  assert.equal(v.criu.target, v.criu.source);
  // the workload still runs
  const again = await migprobe(['check', '--pid', String(c.pid), '--verbose']);
  assert.equal(again.code, 0, again.stderr + again.stdout);
  assert.match(again.stdout, /^MIGRATABLE/);
  // --verbose: the restored tasks stayed stopped, never ran, and nothing was left behind
  assert.match(again.stderr, /restore proof: [1-9]\d* restored task\(s\), states T, CPU time unchanged/);
  assert.match(again.stderr, /leftovers after teardown: none/);
});

void test('check of a blocked workload: exit 1, reasons in JSON and in the table', async (t) => {
  const c = await startWorkload(t, ['/usr/local/bin/flocker', 'flock']);
  const r = await migprobe(['check', '--pid', String(c.pid), '--json']);
  assert.equal(r.code, 1, r.stderr);
  const v = JSON.parse(r.stdout) as Verdict;
  assertVerdictShape(v);
  assert.deepEqual(v.reasons.map((x) => x.code), ['FileLocks']);
  assert.equal(v.reasons[0]?.phase, 'preflight');
  const table = await migprobe(['check', '--pid', String(c.pid)]);
  assert.equal(table.code, 1);
  assert.match(table.stdout, /NOT MIGRATABLE \(1 blocker\)/);
  assert.match(table.stdout, /FileLocks\s+preflight/);
  assert.match(table.stdout, /fix: set options\.fileLocks: true/);
});

void test('usage errors exit 2 with a message on stderr; unknown containers are a verdict or an error, never a crash', async () => {
  const tb = await testbed();
  const bad = await migprobe(['check', '--pid', 'abc']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--pid must be a positive integer/);
  assert.equal(bad.stdout, '');
  const none = await migprobe(['check']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /exactly one of --pid or --container/);
  const gone = await migprobe(['check', '--container', 'no-such-ctr', '--address', tb.containerd.address, '--json']);
  assert.ok(gone.code === 1 || gone.code === 2, `exit ${gone.code}`);
  if (gone.code === 1) assert.deepEqual((JSON.parse(gone.stdout) as Verdict).reasons.map((x) => x.code), ['ContainerNotFound']);
  else assert.match(gone.stderr, /not found/);
});

void test('facts --json and version', async () => {
  await testbed();
  const f = await migprobe(['facts', '--json']);
  assert.equal(f.code, 0, f.stderr);
  const facts = JSON.parse(f.stdout) as { criuVersion: string; criuFeatures: Record<string, boolean> };
  assert.match(facts.criuVersion, /^4\./);
  assert.equal(typeof facts.criuFeatures['timens'], 'boolean');
  const v = await migprobe(['version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^migprobe \d+\.\d+\.\d+\n$/);
});

void test('restore-check: a missing checkpoint is a CheckpointNotFound verdict, a bad archive name a usage error', async () => {
  await testbed();
  const r = await migprobe(['restore-check', '--images', '/nonexistent/migprobe-images', '--json']);
  assert.equal(r.code, 1, r.stderr);
  const v = JSON.parse(r.stdout) as Verdict;
  assertVerdictShape(v);
  assert.deepEqual(v.reasons.map((x) => x.code), ['CheckpointNotFound']);
  const bad = await migprobe(['restore-check', '--archive', '/tmp/x.zip']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--archive must name a \.tar or \.tar\.gz file/);
});

void test('restore-check of a real full checkpoint: exit 0 on its own root, exit 1 RootfsMismatch on a changed root', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; while true; do sleep 0.05; done']);
  const info = await resolveContainer({ pid: c.pid });
  const work = await mkdtemp(join(tmpdir(), 'mp-cli-rc-'));
  t.after(async () => await rm(work, { recursive: true, force: true }));
  // a full dump (memory pages included), as a user's existing checkpoint would be
  const d = await dumpCheck({
    subject: subjectFromContainer(info, { externalTmpfs: false }),
    options: DEFAULT_PROBE_OPTIONS,
    workDir: join(work, 'dump'),
    criuVersion: 'test',
    full: true,
    manifest: { rootfs: { lowerdirs: info.rootfs.lowerdirs }, addresses: addressesOf(info), fileDigests: [] },
  });
  assert.deepEqual(d.result.reasons, [], d.result.criuLogExcerpt);
  const images = join(work, 'dump', 'bundle', 'images');
  const root = join(work, 'root');
  await promisify(execFile)('cp', ['-a', `${info.rootfs.lowerdirs[0] ?? '/nonexistent'}/.`, root]);

  const ok = await migprobe(['restore-check', '--images', images, '--target-root', root, '--json']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as Verdict).migratable, true);

  await appendFile(join(root, 'bin/busybox'), 'x');
  const bad = await migprobe(['restore-check', '--images', images, '--target-root', root]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, /RootfsMismatch\s+restore\s+.*busybox/);
  assert.match(bad.stdout, /CRIU log excerpt:\n.*has bad size/);
});
