// The restore check on real bundles with real CRIU: restored tasks never run, nothing is left behind, and two
// blockers that only the target side can find: a changed file in the target root and an incompatible CPU image.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dumpCheck } from '../../src/engine/dump.ts';
import type { Manifest } from '../../src/engine/dump.ts';
import { restoreCheck } from '../../src/engine/restore.ts';
import type { ContainerInfo } from '../../src/engine/container.ts';
import { sourceDumpCheck, targetRestoreCheck } from '../../src/engine/probe.ts';
import { subjectFromContainer, addressesOf } from '../../src/engine/subject.ts';
import { addCpuXfeatures, readCpuinfo } from '../../src/engine/images.ts';
import { collectNodeFacts } from '../../src/engine/facts.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { testbed } from '../../testbed/index.ts';
import { startWorkload } from './workloads.ts';
import { counter, counterAdvances, info, newSandboxTraces, sandboxTraces, taskStates, tempDir } from './engine-helpers.ts';

const options = { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 30_000 };

/**
 * Dumps `ci` into <work>/src (asserting no blocker), then restore-checks that bundle on this host in <work>/tgt:
 * made on this host, the restore may stand on the dump's own overlay paths (as the one-host check does).
 */
async function dumpThenRestore(
  ci: ContainerInfo,
  work: string,
  opts: { addresses?: boolean; keepLazyPagemap?: boolean; restoreOptions?: typeof options } = {},
): Promise<Awaited<ReturnType<typeof restoreCheck>>> {
  const tb = await testbed();
  const d = await dumpCheck({
    subject: subjectFromContainer(ci),
    options,
    workDir: join(work, 'src'),
    criuVersion: 'test',
    ...(opts.keepLazyPagemap === true ? { keepLazyPagemap: true } : {}),
    manifest: {
      rootfs: { lowerdirs: ci.rootfs.lowerdirs, ...(ci.rootfs.upperdir === undefined ? {} : { upperdir: ci.rootfs.upperdir }) },
      addresses: opts.addresses === true ? addressesOf(ci) : [],
      fileDigests: [],
    },
  });
  assert.deepEqual(d.result.reasons, []);
  const facts = await collectNodeFacts(tb.criu);
  return await restoreCheck({
    bundleDir: join(work, 'src', 'bundle'),
    options: opts.restoreOptions ?? options,
    target: {},
    sameNode: true,
    workDir: join(work, 'tgt'),
    facts,
    criuVersion: facts.criuVersion,
  });
}

void test('restore check: the restored tasks never run, and nothing is left behind', async (t) => {
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '64'], { ip: '10.77.3.2' });
  const r = await dumpThenRestore(await info(c), await tempDir(t), { addresses: true });
  assert.deepEqual(r.result.reasons, [], `${JSON.stringify(r.result.reasons)}\n${r.result.criuLogExcerpt ?? ''}`);
  const pids = Object.keys(r.proof.cpuTicksBefore);
  assert.ok(pids.length >= 1, 'restored tasks were found');
  assert.deepEqual(r.proof.cpuTicksAfter, r.proof.cpuTicksBefore, 'CPU time of restored tasks did not move');
  assert.ok(Object.values(r.proof.states).every((s) => s === 'T'), `restored tasks stopped: ${JSON.stringify(r.proof.states)}`);
  assert.deepEqual(r.proof.leftovers, []);
  // Look for ourselves too.
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  for (const p of pids) assert.deepEqual(await taskStates([Number(p)]), ['gone'], `restored pid ${p} is gone`);
  // The source workload never noticed.
  await counterAdvances(c, await counter(c));
});

void test('a changed file in the target root is RootfsMismatch, from compat and from the restore', async (t) => {
  await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; while true; do sleep 0.05; done']);
  const ci = await info(c);
  const work = await tempDir(t);
  const src = await sourceDumpCheck({ pid: c.pid }, options, join(work, 'src'));
  assert.deepEqual(src.reasons, []);
  assert.ok(src.bundleDir !== undefined);
  // The target's root: a copy of the image's root filesystem with /bin/busybox changed by one byte.
  const lower = ci.rootfs.lowerdirs[0];
  assert.ok(lower !== undefined);
  const rootfs = join(work, 'target-rootfs');
  await cp(lower, rootfs, { recursive: true, verbatimSymlinks: true });
  await appendFile(join(rootfs, 'bin', 'busybox'), Buffer.from([0]));
  const r = await targetRestoreCheck(src.bundleDir, options, { rootfs });
  const codes = r.reasons.map((x) => `${x.phase}:${x.code}`);
  assert.ok(codes.includes('compat:RootfsMismatch'), codes.join(' '));
  assert.ok(codes.includes('restore:RootfsMismatch'), `${codes.join(' ')}\n${r.criuLogExcerpt ?? ''}`);
  assert.ok(r.reasons.some((x) => x.message.includes('bin/busybox')));
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  // The unchanged copy restores fine.
  const rootfs2 = join(work, 'target-rootfs-same');
  await cp(lower, rootfs2, { recursive: true, verbatimSymlinks: true });
  const ok = await targetRestoreCheck(src.bundleDir, options, { rootfs: rootfs2 });
  assert.deepEqual(ok.reasons, [], `${JSON.stringify(ok.reasons)}\n${ok.criuLogExcerpt ?? ''}`);
});

void test('a CPU image claiming a feature this machine lacks is CPUIncompatible (CRIU --cpu-cap)', async (t) => {
  const tb = await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '1']);
  const work = await tempDir(t);
  // By container ID, so the bundle names its image and the target finds it in its own containerd.
  const src = await sourceDumpCheck({ containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address }, options, join(work, 'src'));
  assert.deepEqual(src.reasons, []);
  assert.ok(src.bundleDir !== undefined);
  const images = join(src.bundleDir, 'images');
  const [cpu] = await readCpuinfo(images);
  assert.ok(cpu !== undefined, 'the dump wrote cpuinfo.img (--cpu-cap on dump)');
  // xsave feature bit 62: no CPU has it.
  await addCpuXfeatures(images, 1n << 62n);
  assert.equal(((await readCpuinfo(images))[0]?.xfeaturesMask ?? 0n) & (1n << 62n), 1n << 62n);
  // As an agent would: the image from this node's containerd (a target never uses the source's overlay paths).
  const r = await targetRestoreCheck(src.bundleDir, options, { containerdAddress: tb.containerd.address, namespace: tb.containerd.namespace });
  assert.deepEqual(r.reasons.map((x) => x.code), ['CPUIncompatible'], `${JSON.stringify(r.reasons)}\n${r.criuLogExcerpt ?? ''}`);
  assert.equal(r.reasons[0]?.phase, 'restore');
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
});

void test('a bundle from another node: the image comes from the target containerd, the changes from the shipped diff', async (t) => {
  const tb = await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '4'], { ip: '10.77.3.7' });
  const work = await tempDir(t);
  const ref = { containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address };
  const src = await sourceDumpCheck(ref, options, join(work, 'src'));
  assert.deepEqual(src.reasons, []);
  assert.ok(src.bundleDir !== undefined);
  const manifestPath = join(src.bundleDir, 'manifest.json');
  const m = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
  assert.equal(m.imageRef, c.image);
  assert.match(m.sourceFacts?.criuVersion ?? '', /^4\./, 'source node facts travel in the manifest');
  assert.ok(m.rootfsDiff !== undefined && 'bytes' in m.rootfsDiff && m.rootfsDiff.bytes > 0, JSON.stringify(m.rootfsDiff));
  // The source's layers and writable layer stay on the source node: the shipped manifest names no host path.
  assert.deepEqual(m.rootfs, { lowerdirs: [] });
  assert.ok(m.externalMounts.every((x) => x.hostPath === undefined), JSON.stringify(m.externalMounts));
  const r = await targetRestoreCheck(src.bundleDir, options, { containerdAddress: tb.containerd.address, namespace: tb.containerd.namespace });
  assert.deepEqual(r.reasons, [], `${JSON.stringify(r.reasons)}\n${r.criuLogExcerpt ?? ''}`);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  const mi = await readFile('/proc/self/mountinfo', 'utf8');
  assert.ok(!mi.includes('image-rootfs'), 'the image mount is gone');
  // Without the diff, the file the workload holds open in its writable layer is missing on the target.
  await rm(join(src.bundleDir, 'rootfs-diff.tar'));
  const r2 = await targetRestoreCheck(src.bundleDir, options, { containerdAddress: tb.containerd.address, namespace: tb.containerd.namespace });
  assert.ok(r2.reasons.some((x) => x.phase === 'restore'), JSON.stringify(r2.reasons));
  // An image the target does not have is a clear RestoreFailed.
  m.imageRef = 'migprobe.test/not-here:1';
  await writeFile(manifestPath, JSON.stringify(m));
  const r3 = await targetRestoreCheck(src.bundleDir, options, { containerdAddress: tb.containerd.address, namespace: tb.containerd.namespace });
  assert.deepEqual(r3.reasons.map((x) => x.code), ['RestoreFailed']);
  assert.match(r3.reasons[0]?.message ?? '', /not available/);
});

void test('a restore that never finishes (lazy pagemap left unfixed) is killed at the timeout, leaving nothing', async (t) => {
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '8']);
  const started = Date.now();
  const r = await dumpThenRestore(await info(c), await tempDir(t), { keepLazyPagemap: true, restoreOptions: { ...options, timeoutMs: 4000 } });
  assert.deepEqual(r.result.reasons.map((x) => `${x.phase}:${x.code}`), ['restore:Timeout'], JSON.stringify(r.result.reasons));
  assert.ok(Date.now() - started < 15_000, 'bounded by the timeout');
  assert.deepEqual(r.proof.leftovers, []);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
});
