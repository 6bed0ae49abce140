import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertOneHostRoot, checkContainer, digestsByLayer, RootfsNotFoundError, sourceDumpCheck } from './probe.ts';
import type { ProbeDeps } from './probe.ts';
import { ContainerNotFoundError } from './container.ts';
import type { ContainerInfo } from './container.ts';
import { DEFAULT_PROBE_OPTIONS } from './api.ts';
import { reason } from '../reasons.ts';
import { run } from './exec.ts';

const info: ContainerInfo = {
  initPid: 4242,
  pids: [4242],
  threads: { 4242: [4242] },
  namespaces: {},
  sharedWithHost: [],
  cgroups: [],
  rootfs: { hostPath: '/proc/4242/root', fstype: 'overlay', source: 'overlay', lowerdirs: [] },
  mounts: [],
  network: { netnsPath: '/proc/4242/ns/net', inode: 1, hostNetwork: false, interfaces: [] },
};

function fakeDeps(over: Partial<ProbeDeps> = {}): ProbeDeps & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    resolveCriu: () => {
      calls.push('criu');
      return Promise.resolve({ path: '/x/criu', version: '4.2.1' });
    },
    resolveContainer: () => {
      calls.push('container');
      return Promise.resolve(info);
    },
    preflightScan: () => {
      calls.push('preflight');
      return Promise.resolve({ reasons: [], rssBytes: 1 });
    },
    collectNodeFacts: () => {
      calls.push('facts');
      return Promise.reject(new Error('no facts in this test'));
    },
    hashMappedFiles: () => {
      calls.push('hash');
      return Promise.resolve([]);
    },
    compareRootfs: () => Promise.resolve([]),
    runner: run,
    ...over,
  };
}

async function emptyWork(): Promise<string> {
  return await mkdtemp(join(tmpdir(), 'migprobe-unit-'));
}

test('preflight blockers end the check: every blocker, no dump, the work dir removed', async () => {
  const blockers = [reason('FileLocks', 'lock', undefined, 'preflight'), reason('IoUring', 'ring', undefined, 'preflight')];
  const deps = fakeDeps({
    preflightScan: () => Promise.resolve({ reasons: blockers, rssBytes: 123 }),
  });
  const parent = await emptyWork();
  try {
    const v = await checkContainer({ pid: 4242 }, DEFAULT_PROBE_OPTIONS, { rootfs: parent }, { workDir: parent, deps });
    assert.equal(v.migratable, false);
    assert.deepEqual(v.reasons, blockers);
    assert.equal(v.sizes.workloadRssBytes, 123);
    assert.equal(v.timings.freezeMs, undefined);
    assert.equal(typeof v.timings.preflightMs, 'number');
    assert.equal(typeof v.timings.totalMs, 'number');
    assert.ok(!deps.calls.includes('hash'), 'nothing after preflight');
    assert.deepEqual(await readdir(parent), []);
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});

test('a missing container is ContainerNotFound; a CRIU that is too old is CRIUTooOld', async () => {
  const gone = fakeDeps({ resolveContainer: () => Promise.reject(new ContainerNotFoundError('no container abc')) });
  const v = await checkContainer({ containerId: 'abc' }, DEFAULT_PROBE_OPTIONS, {}, { deps: gone });
  assert.deepEqual(v.reasons.map((r) => `${r.phase}:${r.code}`), ['setup:ContainerNotFound']);
  const old = fakeDeps({ resolveCriu: () => Promise.resolve({ path: '/x/criu', version: '3.17.1' }) });
  const v2 = await checkContainer({ pid: 1 }, DEFAULT_PROBE_OPTIONS, {}, { deps: old });
  assert.deepEqual(v2.reasons.map((r) => r.code), ['CRIUTooOld']);
  assert.ok(!old.calls.includes('container'));
  const broken = fakeDeps({ resolveCriu: () => Promise.reject(new Error('CRIU not found')) });
  const v3 = await checkContainer({ pid: 1 }, DEFAULT_PROBE_OPTIONS, {}, { deps: broken });
  assert.deepEqual(v3.reasons.map((r) => r.code), ['InternalError']);
  assert.match(v3.reasons[0]?.message ?? '', /CRIU not found/);
});

test('sourceDumpCheck leaves no bundle when nothing was dumped', async () => {
  const work = await emptyWork();
  try {
    const r = await sourceDumpCheck({ pid: 1 }, DEFAULT_PROBE_OPTIONS, work, fakeDeps({ preflightScan: () => Promise.resolve({ reasons: [reason('Ptraced', 'x')], rssBytes: 0 }) }));
    assert.equal(r.bundleDir, undefined);
    assert.deepEqual(r.reasons.map((x) => x.code), ['Ptraced']);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('digestsByLayer looks files up top layer first, like the overlay', async () => {
  const root = await emptyWork();
  try {
    const top = join(root, 'top');
    const low = join(root, 'low');
    await mkdir(join(top, 'bin'), { recursive: true });
    await mkdir(join(low, 'bin'), { recursive: true });
    await writeFile(join(top, 'bin', 'app'), 'new');
    await writeFile(join(low, 'bin', 'app'), 'old');
    await writeFile(join(low, 'bin', 'sh'), 'sh');
    const d = (path: string) => ({ path, sha256: 'x', size: 1 });
    const m = await digestsByLayer([d('bin/app'), d('bin/sh'), d('bin/missing')], [top, low]);
    assert.deepEqual(m.get(top)?.map((x) => x.path), ['bin/app', 'bin/missing']);
    assert.deepEqual(m.get(low)?.map((x) => x.path), ['bin/sh']);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('one host: no root filesystem for the restore is RootfsNotFoundError naming --target-root, before the preflight', async () => {
  const deps = fakeDeps();
  const parent = await emptyWork();
  try {
    await assert.rejects(
      checkContainer({ pid: 4242 }, DEFAULT_PROBE_OPTIONS, {}, { workDir: parent, deps }),
      (e: Error) => e instanceof RootfsNotFoundError && /--target-root DIR/.test(e.message) && /PID 4242/.test(e.message),
    );
    assert.ok(!deps.calls.includes('preflight'), 'nothing after resolving the container');
    assert.deepEqual(await readdir(parent), []);
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});

test('assertOneHostRoot: the target root, an overlay whose layers exist, a host folder, or an image', () => {
  const has = (...paths: string[]) => (p: string): boolean => paths.includes(p);
  const root = (r: Partial<ContainerInfo['rootfs']>): ContainerInfo['rootfs'] => ({ hostPath: '/proc/1/root', fstype: 'ext4', source: '/dev/vda', lowerdirs: [], ...r });
  const ok = (r: Partial<ContainerInfo['rootfs']>, exists: (p: string) => boolean, image?: string, target = {}): void =>
    assertOneHostRoot({ initPid: 7, rootfs: root(r), ...(image === undefined ? {} : { image }) }, target, exists);
  ok({ fstype: 'overlay', lowerdirs: ['/l1', '/l2'], upperdir: '/u' }, has('/l1', '/l2', '/u'));
  ok({ hostDir: '/bundle/rootfs' }, has('/bundle/rootfs'));
  ok({}, has(), 'docker.io/library/busybox:1');
  ok({}, has(), undefined, { rootfs: '/given' });
  assert.throws(() => ok({ fstype: 'overlay', lowerdirs: ['/l1', '/gone'] }, has('/l1')), /overlay whose layers \/l1:\/gone are not all on this host.*--target-root DIR/);
  assert.throws(() => ok({ fstype: 'tmpfs', source: 'tmpfs' }, has()), /its root is tmpfs tmpfs, which this host does not see as a folder.*--target-root DIR/);
  assert.throws(() => ok({ hostDir: '/removed' }, has()), RootfsNotFoundError);
});
