// Node facts from the real machine and CRIU; sha256 digests of a real container's mapped files compared
// against a target root filesystem: identical, changed and missing files.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, mkdtemp, readFile, rm, symlink, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { resolveContainer } from '../../src/engine/container.ts';
import { resolveCriu } from '../../src/engine/criu.ts';
import { cachedCriuFeatures, collectNodeFacts, compareRootfs, forgetCachedFeatures, hashMappedFiles, resolveInRoot } from '../../src/engine/facts.ts';
import { criuFeatures } from '../../src/engine/criu.ts';
import { run } from '../../src/engine/exec.ts';
import type { Runner } from '../../src/engine/exec.ts';
import { testbed } from '../../testbed/index.ts';
import { startWorkload } from './workloads.ts';

const exec = promisify(execFile);

void test('collectNodeFacts reads this node and asks the real CRIU', async () => {
  await testbed();
  const criu = await resolveCriu();
  const f = await collectNodeFacts(criu.path);
  assert.equal(f.criuVersion, criu.version);
  assert.match(f.criuVersion, /^4\.\d+/);
  assert.equal(f.arch, 'x86_64');
  assert.match(f.kernelRelease, /^\d+\.\d+/);
  assert.ok(f.memAvailableBytes > 64 * 1024 * 1024);
  assert.ok(f.cpu.flags.includes('sse2'), 'x86_64 CPUs have sse2');
  assert.ok(f.cpu.vendor !== '' && f.cpu.model !== '');
  // measured on this machine (CRIU-FACTS.md): uffd, timens and clone3_set_tid are supported
  assert.equal(f.criuFeatures['timens'], true);
  assert.equal(f.criuFeatures['uffd'], true);
  assert.equal(f.criuFeatures['clone3_set_tid'], true);
});

void test('CRIU feature answers are cached per boot and binary, and equal what CRIU says', async (t) => {
  await testbed();
  const criu = await resolveCriu();
  const cacheDir = await mkdtemp(join(tmpdir(), 'facts-cache-'));
  t.after(async () => await rm(cacheDir, { recursive: true, force: true }));
  let calls = 0;
  const counting: Runner = async (cmd, args, opts) => {
    calls++;
    return await run(cmd, args, opts);
  };
  const deps = { runner: counting, proc: '/proc', cacheDir };
  forgetCachedFeatures();
  const first = await cachedCriuFeatures(criu.path, deps);
  assert.ok(calls > 10, `the first call asks CRIU (${calls} runs)`);
  assert.deepEqual(first, await criuFeatures(criu.path));
  const afterFirst = calls;
  assert.deepEqual(await cachedCriuFeatures(criu.path, deps), first, 'from memory');
  forgetCachedFeatures();
  assert.deepEqual(await cachedCriuFeatures(criu.path, deps), first, 'from the cache file');
  assert.equal(calls, afterFirst, 'no CRIU run once cached');
  // Another binary (another key) is asked again.
  const copy = join(cacheDir, 'criu-copy');
  await exec('cp', [criu.path, copy]);
  await cachedCriuFeatures(copy, deps);
  assert.ok(calls > afterFirst, 'a different binary is not answered from the cache');
});

void test('digests of a container\'s executables and mapped files, compared against a target root', async (t) => {
  const c = await startWorkload(t, ['/bin/sh', '-c', '/usr/local/bin/tcppair 7003 & touch /tmp/sh-ready; wait'], {
    readyFile: '/tmp/sh-ready',
  });
  await new Promise((r) => setTimeout(r, 300));
  const info = await resolveContainer({ pid: c.pid });
  const digests = await hashMappedFiles(info);
  const paths = digests.map((d) => d.path);
  assert.ok(paths.includes('bin/busybox'), paths.join(' '));
  assert.ok(paths.includes('usr/local/bin/tcppair'), paths.join(' '));
  const lower = info.rootfs.lowerdirs[0];
  assert.ok(lower !== undefined, 'overlay lowerdir');
  const busybox = await readFile(join(lower, 'bin/busybox'));
  assert.equal(digests.find((d) => d.path === 'bin/busybox')?.sha256, createHash('sha256').update(busybox).digest('hex'));
  assert.equal(digests.find((d) => d.path === 'bin/busybox')?.size, busybox.length);

  // a target root that is a copy of the image: nothing differs
  const target = await mkdtemp(join(tmpdir(), 'mp-root-'));
  t.after(async () => await rm(target, { recursive: true, force: true }));
  for (const l of [...info.rootfs.lowerdirs].reverse()) await exec('cp', ['-a', `${l}/.`, target]);
  assert.deepEqual(await compareRootfs(digests, target), []);

  // one byte more in busybox, tcppair gone
  await appendFile(join(target, 'bin/busybox'), 'x');
  await rm(join(target, 'usr/local/bin/tcppair'));
  const rs = await compareRootfs(digests, target);
  assert.deepEqual(rs.map((r) => r.code), ['RootfsMismatch', 'RootfsMismatch']);
  assert.ok(rs.every((r) => r.phase === 'compat'));
  assert.match(rs.find((r) => r.message.startsWith('/bin/busybox'))?.message ?? '', /differs on the target: \d+ bytes, the source has \d+/);
  assert.match(rs.find((r) => r.message.startsWith('/usr/local/bin/tcppair'))?.message ?? '', /missing from the target root/);
});

void test('resolveInRoot keeps absolute and relative symlinks inside the root', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'mp-chroot-'));
  t.after(async () => await rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'usr/lib'), { recursive: true });
  await appendFile(join(root, 'usr/lib/libx.so'), 'x');
  await symlink('/usr/lib', join(root, 'lib'));
  await symlink('../../etc/passwd', join(root, 'usr/lib/escape'));
  assert.equal(await resolveInRoot(root, 'lib/libx.so'), join(root, 'usr/lib/libx.so'));
  // ../../etc/passwd from usr/lib stays at <root>/etc/passwd, which does not exist there
  assert.equal(await resolveInRoot(root, 'usr/lib/escape'), undefined);
});
