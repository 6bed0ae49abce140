// Restore-only mode on real full checkpoints: a CRIU image folder, and an archive in the kubelet / CRI-O layout
// (checkpoint/, config.dump, spec.dump, rootfs-diff.tar, network.status) built here from a real dump, or from a
// runc checkpoint that containerd took the way the kubelet's does (the task paused: a dump from a frozen cgroup).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { dumpCheck } from '../../src/engine/dump.ts';
import { checkRestoreOnly, defaultProbeDeps } from '../../src/engine/probe.ts';
import { collectNodeFacts } from '../../src/engine/facts.ts';
import type { ProbeDetail } from '../../src/engine/probe.ts';
import { subjectFromContainer, addressesOf } from '../../src/engine/subject.ts';
import { imageDirSize } from '../../src/engine/images.ts';
import { freezeStates, readCgroupProps } from '../../src/engine/cgroup-image.ts';
import { openCheckpoint } from '../../src/engine/checkpoint.ts';
import { restoreCheck } from '../../src/engine/restore.ts';
import { DEFAULT_CONTAINERD_ADDRESS, resolveContainer } from '../../src/engine/container.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import type { ContainerInfo } from '../../src/engine/container.ts';
import { testbed, testImage } from '../../testbed/index.ts';
import { ctr, importImage, removeContainer, startContainerd, stopContainerd, taskPid } from '../../testbed/containerd.ts';
import { buildImage } from '../../testbed/image.ts';
import { startWorkload } from './workloads.ts';
import { counter, counterAdvances, info, newSandboxTraces, sandboxTraces, taskStates, tempDir } from './engine-helpers.ts';

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
  // A shell holding a 400 KB string: a full dump holds it (the shell alone writes about 100 KB, too close to call).
  // No open file of the writable layer: the restore here gets the image's root only.
  const c = await startWorkload(t, ['/bin/sh', '-c', "x=$(dd if=/dev/zero bs=1024 count=400 2>/dev/null | tr '\\0' a); touch /tmp/ready; while true; do sleep 0.05; done"]);
  const ci = await info(c);
  const work = await tempDir(t);
  const images = await fullDump(ci, join(work, 'dump'));
  assert.ok((await imageDirSize(images)).pageBytes > 300_000, 'a full dump holds memory pages');
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

/**
 * A kubelet-layout archive of a running container, checkpointed through containerd and runc as the kubelet's
 * checkpoint API does: containerd pauses the task (its freezer cgroup FROZEN), runc has CRIU dump it from that
 * cgroup (freeze_cgroup), the task runs on. runc reads `network-lock nftables` from the config file the
 * container's `org.criu.config` annotation names (the default lock needs iptables, which is not here).
 */
async function runcCheckpointArchive(t: TestContext, work: string): Promise<{ tarball: string; id: string; image: string }> {
  const tb = await testbed();
  const image = await testImage();
  const id = `mp-ro-${randomBytes(5).toString('hex')}`;
  const conf = join(work, 'runc-criu.conf');
  await writeFile(conf, 'network-lock nftables\n');
  t.after(async () => await removeContainer(tb.containerd, id));
  await ctr(tb.containerd, ['run', '-d', '--cgroup', `/k8s.io/${id}`, '--annotation', `org.criu.config=${conf}`, image, id, '/bin/sh', '-c', 'echo changed > /tmp/mine; while true; do sleep 0.05; done']);
  let pid: number | undefined;
  for (let i = 0; i < 100 && pid === undefined; i++) {
    pid = await taskPid(tb.containerd, id);
    if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(pid !== undefined, 'the container runs');
  const arch = join(work, 'archive');
  await mkdir(join(arch, 'checkpoint'), { recursive: true });
  await ctr(tb.containerd, ['tasks', 'checkpoint', '--image-path', join(arch, 'checkpoint'), '--work-path', join(work, 'runc-work'), id]);
  assert.equal(await taskPid(tb.containerd, id), pid, 'the container runs on after its checkpoint');
  const ci = await resolveContainer({ containerId: id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address });
  assert.ok(ci.rootfs.upperdir !== undefined);
  execFileSync('tar', ['-c', '-f', join(arch, 'rootfs-diff.tar'), '-C', ci.rootfs.upperdir, '.']);
  const spec = (JSON.parse(await ctr(tb.containerd, ['containers', 'info', id])) as { Spec?: unknown }).Spec;
  await writeFile(join(arch, 'spec.dump'), JSON.stringify(spec));
  await writeFile(join(arch, 'config.dump'), JSON.stringify({ id, rootfsImageName: image, rootfsImageRef: image }));
  await writeFile(join(arch, 'deleted.files'), JSON.stringify([]));
  const tarball = join(work, `checkpoint-${id}.tar`);
  execFileSync('tar', ['-c', '-f', tarball, '-C', arch, '.']);
  return { tarball, id, image };
}

/** Every trace a restore could leave: sandbox netns, cgroups in every hierarchy, mounts, and image views. */
async function assertNothingLeft(before: readonly string[], pids: readonly string[]): Promise<void> {
  const tb = await testbed();
  assert.deepEqual(await newSandboxTraces(before), [], 'no sandbox netns, cgroup (any hierarchy) or mount');
  for (const p of pids) assert.deepEqual(await taskStates([Number(p)]), ['gone'], `restored pid ${p} is gone`);
  const mi = await readFile('/proc/self/mountinfo', 'utf8');
  assert.ok(!mi.includes('migprobe-sandbox') && !mi.includes('/sandbox-'), 'no sandbox mount');
  assert.doesNotMatch(await ctr(tb.containerd, ['snapshots', 'ls']), /migprobe-rootfs-view/, 'no image view snapshot');
}

void test('restore-only of a runc checkpoint dumped from a frozen cgroup: restored stopped, not frozen, and nothing left', async (t) => {
  const tb = await testbed();
  const tracesBefore = await sandboxTraces();
  const work = await tempDir(t);
  const { tarball } = await runcCheckpointArchive(t, work);
  // The archive records the freeze, as a kubelet checkpoint does.
  const peek = await openCheckpoint({ archive: tarball }, join(work, 'peek'));
  assert.ok(freezeStates(await readCgroupProps(peek.imagesDir)).includes('freezer.state=FROZEN'), 'the images record freezer.state FROZEN');

  // No target root: the image's layers come from containerd (a view snapshot of the image's chain ID).
  const target = { containerdAddress: tb.containerd.address, namespace: tb.containerd.namespace };
  const detail: ProbeDetail = {};
  const started = Date.now();
  const v = await checkRestoreOnly({ archive: tarball }, options, target, { detail });
  const wallMs = Date.now() - started;
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  const proof = detail.restoreProof;
  assert.ok(proof !== undefined);
  assert.ok(Object.keys(proof.states).length >= 2, 'the shell and its sleep were restored');
  assert.ok(Object.values(proof.states).every((s) => s === 'T'), `restored stopped, not frozen: ${JSON.stringify(proof.states)}`);
  assert.deepEqual(proof.cpuTicksAfter, proof.cpuTicksBefore);
  assert.ok(proof.freezeStatesNotRestored?.includes('freezer.state=FROZEN'), JSON.stringify(proof));
  assert.deepEqual(proof.leftovers, []);
  await assertNothingLeft(tracesBefore, Object.keys(proof.states));
  t.diagnostic(`restore-only of the frozen-cgroup archive: ${wallMs} ms wall, verdict restoreMs ${v.timings.restoreMs ?? '?'}`);

  // Teardown alone copes too: restored WITH the freeze state, the tasks sit frozen (state D), teardown kills,
  // thaws, and nothing is left.
  const cp2 = await openCheckpoint({ archive: tarball }, join(work, 'again'));
  const facts = await collectNodeFacts(tb.criu);
  const r = await restoreCheck({
    bundleDir: join(work, 'again'),
    imagesDir: cp2.imagesDir,
    options,
    target,
    workDir: join(work, 'again-restore'),
    facts,
    criuVersion: facts.criuVersion,
    manifest: cp2.manifest,
    extraLowerdirs: cp2.extraLowerdirs,
    ...(cp2.netnsKey === undefined ? {} : { netnsKey: cp2.netnsKey }),
    cpuCap: cp2.hasCpuinfo,
    keepFreezeState: true,
  });
  assert.deepEqual(r.result.reasons, [], `${JSON.stringify(r.result.reasons)}\n${r.result.criuLogExcerpt ?? ''}`);
  assert.ok(Object.values(r.proof.states).every((s) => s === 'D'), `restored frozen: ${JSON.stringify(r.proof.states)}`);
  assert.ok((r.proof.thawed ?? []).some((x) => x.includes('freezer.state: FROZEN -> THAWED')), JSON.stringify(r.proof));
  assert.deepEqual(r.proof.leftovers, []);
  assert.ok((r.steps['teardown'] ?? 0) - (r.steps['proof'] ?? 0) < 3000, `teardown took ${JSON.stringify(r.steps)}`);
  await assertNothingLeft(tracesBefore, Object.keys(r.proof.states));
  t.diagnostic(`teardown of a frozen restore: ${(r.steps['teardown'] ?? 0) - (r.steps['proof'] ?? 0)} ms`);
});

/** The `migprobe` CLI, its exit code, output and wall time. */
async function migprobeCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const bin = fileURLToPath(new URL('../../bin/migprobe.js', import.meta.url));
  try {
    const r = await promisify(execFile)(process.execPath, [bin, ...args], { timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
  } catch (e) {
    const x = e as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '', ms: Date.now() - started };
  }
}

void test('restore-check CLI on a real runc checkpoint: a socket that is not there is an instant usage error; the right one a verdict', async (t) => {
  const tb = await testbed();
  const tracesBefore = await sandboxTraces();
  const work = await tempDir(t);
  const { tarball } = await runcCheckpointArchive(t, work);
  const missing = await migprobeCli(['restore-check', '--archive', tarball, '--address', join(work, 'no.sock')]);
  assert.equal(missing.code, 2, missing.stdout + missing.stderr);
  assert.match(missing.stderr, /no containerd socket at \S+no\.sock \(it does not exist\): give this node's containerd socket with --address SOCK, or .* --target-root DIR/);
  assert.ok(missing.ms < 5000, `took ${missing.ms} ms`);
  if (!existsSync(DEFAULT_CONTAINERD_ADDRESS)) {
    // No --address: the default socket is dialled only because the image must come from containerd.
    const dflt = await migprobeCli(['restore-check', '--archive', tarball]);
    assert.equal(dflt.code, 2, dflt.stdout + dflt.stderr);
    assert.match(dflt.stderr, /no containerd socket at \/run\/containerd\/containerd\.sock .*--address SOCK/);
    assert.ok(dflt.ms < 5000, `took ${dflt.ms} ms`);
  }
  const ok = await migprobeCli(['restore-check', '--archive', tarball, '--address', tb.containerd.address, '--namespace', tb.containerd.namespace, '--json']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { migratable: boolean }).migratable, true);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  t.diagnostic(`restore-check: missing socket ${missing.ms} ms (exit 2), verdict ${ok.ms} ms (exit 0)`);
});

void test('restore-only finds the image root filesystem on containerd v2 too (snapshot view, no ctr images mount)', async (t) => {
  const tb = await testbed();
  const cache = process.env.MIGPROBE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/migprobe');
  const bin = join(cache, 'bin', 'containerd-v2');
  if (!existsSync(join(bin, 'containerd'))) {
    t.skip(`no containerd v2 in ${bin}: bash hack/provision.sh installs it`);
    return;
  }
  const tracesBefore = await sandboxTraces();
  const work = await tempDir(t);
  const { tarball } = await runcCheckpointArchive(t, work);
  // A private containerd v2 (plain, no CRI) holding the same image as the 1.6 test bed, unpacked.
  const dir = await mkdtemp(join(tmpdir(), 'mp-ctrd2-'));
  const v2 = await startContainerd({ dir, criuBinDir: dirname(tb.criu), binDir: bin });
  t.after(async () => {
    await stopContainerd(v2);
    await rm(dir, { recursive: true, force: true });
  });
  assert.match(await ctr(v2, ['version']), /Server:[\s\S]*Version:\s+v?2\./);
  const img = await buildImage(join(cache, 'images'));
  await importImage(v2, img.ref, img.tarball);
  const detail: ProbeDetail = {};
  const v = await checkRestoreOnly({ archive: tarball }, options, { containerdAddress: v2.address, namespace: v2.namespace }, { detail });
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  assert.deepEqual(detail.restoreProof?.leftovers, []);
  assert.doesNotMatch(await ctr(v2, ['snapshots', 'ls']), /migprobe-rootfs-view/, 'no image view snapshot');
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
});
