// Restore-only mode on real full checkpoints: a CRIU image folder, and an archive in the kubelet / CRI-O layout
// (checkpoint/, config.dump, spec.dump, rootfs-diff.tar, network.status) built here from a real dump.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { dumpCheck } from '../../src/engine/dump.ts';
import { checkRestoreOnly, defaultProbeDeps } from '../../src/engine/probe.ts';
import { collectNodeFacts } from '../../src/engine/facts.ts';
import type { ProbeDetail } from '../../src/engine/probe.ts';
import { subjectFromContainer, addressesOf } from '../../src/engine/subject.ts';
import { imageDirSize } from '../../src/engine/images.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import type { ContainerInfo } from '../../src/engine/container.ts';
import { testbed } from '../testbed/index.ts';
import { startWorkload } from './workloads.ts';
import { counter, counterAdvances, info, newSandboxTraces, sandboxTraces, tempDir } from './engine-helpers.ts';

const options = { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 60_000 };

async function fullDump(ci: ContainerInfo, workDir: string): Promise<string> {
  const d = await dumpCheck({
    subject: subjectFromContainer(ci, { externalTmpfs: false }),
    options,
    workDir,
    criuVersion: 'test',
    full: true,
    manifest: { rootfs: { lowerdirs: ci.rootfs.lowerdirs }, addresses: addressesOf(ci), fileDigests: [] },
  });
  assert.deepEqual(d.result.reasons, [], d.result.criuLogExcerpt);
  return join(workDir, 'bundle', 'images');
}

void test('restore-only from a full CRIU image folder: would restore, never runs', async (t) => {
  await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; while true; do sleep 0.05; done']);
  const ci = await info(c);
  const work = await tempDir(t);
  const images = await fullDump(ci, join(work, 'dump'));
  assert.ok((await imageDirSize(images)).pageBytes > 100_000, 'a full dump holds memory pages');
  const lower = ci.rootfs.lowerdirs[0];
  assert.ok(lower !== undefined);
  const detail: ProbeDetail = {};
  const v = await checkRestoreOnly({ imagesDir: images }, options, { rootfs: lower }, { detail });
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  assert.ok((v.sizes.imageBytes ?? 0) > 100_000);
  assert.ok(detail.restoreProof !== undefined);
  assert.deepEqual(detail.restoreProof.cpuTicksAfter, detail.restoreProof.cpuTicksBefore);
  assert.ok(Object.keys(detail.restoreProof.cpuTicksBefore).length >= 1);
  assert.deepEqual(detail.restoreProof.leftovers, []);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
});

void test('restore-only from a kubelet/CRI-O checkpoint archive, with its rootfs diff and network status', async (t) => {
  await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '8'], { ip: '10.77.4.2' });
  const ci = await info(c);
  const work = await tempDir(t);
  const images = await fullDump(ci, join(work, 'dump'));
  // The archive as CRI-O writes it for the kubelet checkpoint API.
  const arch = join(work, 'archive');
  await mkdir(arch);
  await cp(images, join(arch, 'checkpoint'), { recursive: true });
  assert.ok(ci.rootfs.upperdir !== undefined);
  execFileSync('tar', ['-c', '-f', join(arch, 'rootfs-diff.tar'), '-C', ci.rootfs.upperdir, '.']);
  await writeFile(join(arch, 'config.dump'), JSON.stringify({ id: c.id, rootfsImageName: c.image, rootfsImageRef: c.image }));
  await writeFile(join(arch, 'spec.dump'), JSON.stringify({ ociVersion: '1.0.2', mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }] }));
  await writeFile(join(arch, 'network.status'), JSON.stringify([{ result: { ips: [{ address: '10.77.4.2/24' }] } }]));
  await writeFile(join(arch, 'deleted.files'), JSON.stringify([]));
  const tarball = join(work, 'checkpoint.tar.gz');
  execFileSync('tar', ['-c', '-z', '-f', tarball, '-C', arch, '.']);

  const lower = ci.rootfs.lowerdirs[0];
  assert.ok(lower !== undefined);
  const detail: ProbeDetail = {};
  const v = await checkRestoreOnly({ archive: tarball }, options, { rootfs: lower }, { detail });
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  assert.ok(detail.restoreProof !== undefined);
  assert.deepEqual(detail.restoreProof.cpuTicksAfter, detail.restoreProof.cpuTicksBefore);
  assert.deepEqual(detail.restoreProof.leftovers, []);
  // Without an explicit root: the image named in config.dump, from this node's containerd.
  const tb = await testbed();
  const v2 = await checkRestoreOnly({ archive: tarball }, options, { containerdAddress: tb.containerd.address, namespace: tb.containerd.namespace });
  assert.equal(v2.migratable, true, `${JSON.stringify(v2.reasons)}\n${v2.criuLogExcerpt ?? ''}`);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  await counterAdvances(c, await counter(c));
});

void test('restore-only of something that is not a checkpoint is CheckpointNotFound', async (t) => {
  const work = await tempDir(t);
  const v = await checkRestoreOnly({ imagesDir: work }, options, {});
  assert.equal(v.migratable, false);
  assert.deepEqual(v.reasons.map((r) => r.code), ['CheckpointNotFound']);
  const bogus = join(work, 'x.tar');
  execFileSync('tar', ['-c', '-f', bogus, '-C', work, '.']);
  const v2 = await checkRestoreOnly({ archive: bogus }, options, {});
  assert.deepEqual(v2.reasons.map((r) => r.code), ['CheckpointNotFound']);
});

void test('restore-only does not restore a checkpoint bigger than the memory this node has free', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const ci = await info(c);
  const work = await tempDir(t);
  const images = await fullDump(ci, join(work, 'dump'));
  const facts = await collectNodeFacts((await testbed()).criu);
  const deps = { ...defaultProbeDeps, collectNodeFacts: () => Promise.resolve({ ...facts, memAvailableBytes: 8 * 1024 * 1024 }) };
  const detail: ProbeDetail = {};
  const v = await checkRestoreOnly({ imagesDir: images }, options, { rootfs: ci.rootfs.lowerdirs[0] ?? '/' }, { deps, detail });
  assert.deepEqual(v.reasons.map((r) => `${r.phase}:${r.code}`), ['compat:InsufficientMemory']);
  assert.equal(detail.restoreProof, undefined, 'nothing was restored');
});
