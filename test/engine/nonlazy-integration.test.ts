// Memory CRIU writes even in lazy mode, on real containers (test/programs/nonlazy.c holds 1 MiB of one kind):
// the preflight reports it by kind, the image set the dump check really wrote agrees with it, and above
// options.nonLazyMemoryLimitBytes the probe refuses (NonLazyMemory) with nothing frozen and nothing written.

import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import type { ProbeOptions } from '../../src/engine/api.ts';
import { sourceDumpCheck } from '../../src/engine/probe.ts';
import type { NonLazyMemory, Verdict } from '../../src/verdict.ts';
import { testbed } from '../../testbed/index.ts';
import { migprobe, tempDir } from './engine-helpers.ts';
import { startWorkload, watchStates } from './workloads.ts';

const MIB = 1024 * 1024;
/** What a busybox shell alone writes in lazy mode (data segments, vDSO, stack pages): ~32 KiB measured. */
const BASELINE_SLACK = 96 * 1024;

/** Bytes of memory pages in the image set (pages-*.img) and of archived tmpfs mounts (tmpfs-*.tar.gz.img). */
async function imageSet(imagesDir: string): Promise<{ pages: number; tmpfs: number; all: number }> {
  const out = { pages: 0, tmpfs: 0, all: 0 };
  for (const f of await readdir(imagesDir)) {
    const size = (await stat(join(imagesDir, f))).size;
    out.all += size;
    if (f.startsWith('pages-')) out.pages += size;
    if (f.startsWith('tmpfs-')) out.tmpfs += size;
  }
  return out;
}

/** The dump check's source half on `pid`: the reported non-lazy memory and what the image set holds. */
async function dumpAndMeasure(t: TestContext, pid: number, opts: Partial<ProbeOptions> = {}): Promise<{ nonLazy: NonLazyMemory; set: { pages: number; tmpfs: number; all: number } }> {
  const work = await tempDir(t, 'mp-nonlazy-');
  const r = await sourceDumpCheck({ pid }, { ...DEFAULT_PROBE_OPTIONS, ...opts }, work);
  assert.deepEqual(r.reasons, []);
  assert.ok(r.bundleDir !== undefined && r.sizes.nonLazyMemory !== undefined);
  return { nonLazy: r.sizes.nonLazyMemory, set: await imageSet(join(r.bundleDir, 'images')) };
}

const near = (got: number, want: number, slack: number, what: string): void =>
  assert.ok(got >= want && got <= want + slack, `${what}: ${got} bytes, expected ${want} .. ${want + slack}`);

void test('a 1 MiB SysV segment: migratable, reported as ~1 MiB SysV shm, and the image set holds that much', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/nonlazy', 'sysv', '1024']);
  const r = await migprobe(['check', '--pid', String(c.pid), '--json']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const v = JSON.parse(r.stdout) as Verdict;
  assert.equal(v.migratable, true);
  const m = v.sizes.nonLazyMemory;
  assert.ok(m !== undefined, 'sizes.nonLazyMemory is reported');
  assert.equal(m.sysvShmBytes, MIB);
  near(m.totalBytes, MIB, BASELINE_SLACK, 'total non-lazy memory');
  assert.ok((v.sizes.imageBytes ?? 0) >= MIB, `the image set written holds the segment: ${v.sizes.imageBytes}`);
  const table = await migprobe(['check', '--pid', String(c.pid)]);
  assert.match(table.stdout, /Non-lazy\s+total 1\.\d MiB\s+SysV shm 1\.0 MiB/);
  // what CRIU wrote: the segment's pages, and the rest as the preflight counted it (within a few pages)
  const d = await dumpAndMeasure(t, c.pid);
  assert.equal(d.nonLazy.sysvShmBytes, MIB);
  near(d.set.pages, MIB, BASELINE_SLACK, 'pages-*.img');
  assert.ok(Math.abs(d.set.pages - d.nonLazy.totalBytes) <= 64 * 1024, `image pages ${d.set.pages} vs reported ${d.nonLazy.totalBytes}`);
});

void test('over --non-lazy-memory-limit: NonLazyMemory before anything is frozen or written', async (t) => {
  const c = await startWorkload(t, ['/usr/local/bin/nonlazy', 'sysvdt', '1024']);
  const r = await migprobe(['check', '--pid', String(c.pid), '--json', '--non-lazy-memory-limit', '512K']);
  assert.equal(r.code, 1, r.stderr + r.stdout);
  const v = JSON.parse(r.stdout) as Verdict;
  assert.deepEqual(v.reasons.map((x) => [x.code, x.phase]), [['NonLazyMemory', 'preflight']]);
  assert.match(v.reasons[0]?.message ?? '', /SysV shm 1\.0 MiB.*over the non-lazy memory limit of 512\.0 KiB.*SysV segment \d+ \(0 attached\)/);
  assert.match(v.reasons[0]?.hint ?? '', /--non-lazy-memory-limit/);
  assert.equal(v.sizes.nonLazyMemory?.sysvShmBytes, MIB, 'a detached segment still counts: CRIU dumps the IPC namespace');
  assert.equal(v.sizes.imageBytes, undefined, 'no image set');
  // the source half (as an agent runs it): its work folder stays empty, the workload never stops
  const work = await tempDir(t, 'mp-nonlazy-');
  const { result, states, freezer, samples } = await watchStates([c.pid], () =>
    sourceDumpCheck({ pid: c.pid }, { ...DEFAULT_PROBE_OPTIONS, nonLazyMemoryLimitBytes: 512 * 1024 }, work),
  );
  assert.deepEqual(result.reasons.map((x) => x.code), ['NonLazyMemory']);
  assert.equal(result.bundleDir, undefined);
  assert.deepEqual(await readdir(work), [], 'nothing written');
  assert.ok(samples > 0);
  assert.deepEqual([...states].filter((s) => s !== 'S' && s !== 'R'), [], `task states: ${[...states].join(' ')}`);
  assert.ok([...freezer].every((f) => f === 'THAWED'), `freezer: ${[...freezer].join(' ')}`);
  assert.equal((await readdir(`/proc/${c.pid}/root/tmp`)).includes('ready'), true, 'the workload still runs');
});

// Each other kind: 1 MiB of it is reported under its own name, and the image set CRIU wrote agrees.
const KINDS: [string, keyof NonLazyMemory, 'pages' | 'tmpfs'][] = [
  ['mlock', 'mlockedBytes', 'pages'],
  ['shared', 'sharedMemoryBytes', 'pages'],
  ['memfd', 'sharedMemoryBytes', 'pages'],
  ['filepriv', 'dirtyPrivateFileBytes', 'pages'],
  ['devshm', 'tmpfsBytes', 'tmpfs'],
];
for (const [kind, field, where] of KINDS) {
  void test(`1 MiB of ${kind}: reported as ${field}, and the image set holds it`, async (t) => {
    const c = await startWorkload(t, ['/usr/local/bin/nonlazy', kind, '1024']);
    const d = await dumpAndMeasure(t, c.pid);
    near(d.nonLazy[field], MIB, field === 'dirtyPrivateFileBytes' ? BASELINE_SLACK : 8192, field);
    near(d.nonLazy.totalBytes, MIB, BASELINE_SLACK, 'total');
    if (where === 'pages') {
      assert.ok(Math.abs(d.set.pages - d.nonLazy.totalBytes) <= 64 * 1024, `image pages ${d.set.pages} vs reported ${d.nonLazy.totalBytes}`);
    } else {
      // CRIU tars the whole tmpfs (gzip: the test's pseudo-random bytes shrink little)
      assert.ok(d.set.tmpfs > MIB * 0.8, `tmpfs archive ${d.set.tmpfs}`);
    }
  });
}

void test('a private anonymous region stays lazy: not counted, not written', async (t) => {
  const c = await startWorkload(t, ['/usr/local/bin/nonlazy', 'anon', '1024']);
  const d = await dumpAndMeasure(t, c.pid);
  assert.ok(d.nonLazy.totalBytes < BASELINE_SLACK, `reported ${d.nonLazy.totalBytes}`);
  assert.ok(d.set.pages < BASELINE_SLACK, `image pages ${d.set.pages}`);
});
