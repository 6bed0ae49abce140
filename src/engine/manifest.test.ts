// parseManifest and its validators: a peer's manifest with host paths, option-like or malformed strings, unknown
// fields or wrong types is refused naming the field; readManifestFile refuses a symlinked or oversized file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shippedManifest } from '../../test/agent/crafted-bundle.ts';
import { isCidr, isPlainAbsolute, isPlainRelative, ManifestError, parseManifest, parseNodeFacts, readManifestFile, withoutHostPaths } from './manifest.ts';

const good = (over: Record<string, unknown> = {}): Record<string, unknown> =>
  shippedManifest({
    addresses: [{ ifname: 'eth0', cidr: '10.77.3.2/24' }, { ifname: 'eth0', cidr: 'fd00::5/64' }],
    sourceFacts: { hostname: 'h', arch: 'x86_64', kernelRelease: '6.18', criuVersion: '4.2.1', criuFeatures: { lazy_pages: true }, memAvailableBytes: 1, cpu: { vendor: 'v', model: 'm', flags: ['sse'] } },
    pagemap: { files: 1, removedEntries: 2, lazyPages: 3, presentPages: 4 },
    rootfsDiff: { omittedBytes: -1 },
    ...over,
  });

function refused(v: unknown, field: RegExp, origin: 'peer' | 'local' = 'peer'): void {
  assert.throws(() => parseManifest(v, origin), (e: unknown) => e instanceof ManifestError && field.test(e.message) && e.hint.length > 0, JSON.stringify(v).slice(0, 300));
}

test('a shipped manifest passes, unchanged', () => {
  assert.deepEqual(parseManifest(good(), 'peer'), good());
});

test('host paths: refused from a peer, allowed (plain) from this host, and withoutHostPaths removes them', () => {
  const local = good({ rootfs: { lowerdirs: ['/var/lib/containerd/x/1/fs'], upperdir: '/var/lib/containerd/x/2/fs' }, externalMounts: [{ mountpoint: '/data', key: 'bind-data', kind: 'bind', hostPath: '/srv/data' }] });
  refused(local, /rootfs\.lowerdirs\[0\] names a host path/);
  refused(good({ rootfs: { lowerdirs: [], upperdir: '/etc' } }), /rootfs\.upperdir names a host path/);
  refused(good({ rootfs: { lowerdirs: [], hostDir: '/' } }), /rootfs\.hostDir names a host path/);
  assert.equal(parseManifest(good({ rootfs: { lowerdirs: [], hostDir: '/run/bundle/rootfs' } }), 'local').rootfs.hostDir, '/run/bundle/rootfs');
  refused(good({ externalMounts: [{ mountpoint: '/data', key: 'bind-data', kind: 'bind', hostPath: '/etc' }] }), /externalMounts\[0\]\.hostPath names a host path/);
  const m = parseManifest(local, 'local');
  assert.deepEqual(m.rootfs.lowerdirs, ['/var/lib/containerd/x/1/fs']);
  refused(good({ rootfs: { lowerdirs: ['/var/lib/../../etc'] } }), /not a plain absolute path/, 'local');
  assert.deepEqual(parseManifest(withoutHostPaths(m), 'peer').externalMounts, [{ mountpoint: '/data', key: 'bind-data', kind: 'bind' }]);
});

test('option-like or malformed strings are refused by field', () => {
  refused(good({ imageRef: '-x/etc/passwd' }), /imageRef "-x\/etc\/passwd" is not an image reference/);
  refused(good({ imageRef: 'busybox --help' }), /imageRef/);
  refused(good({ addresses: [{ ifname: 'eth0', cidr: '-x10.0.0.1/24' }] }), /addresses\[0\]\.cidr/);
  refused(good({ addresses: [{ ifname: 'eth0', cidr: '10.0.0.1/24 dev lo' }] }), /addresses\[0\]\.cidr/);
  refused(good({ addresses: [{ ifname: 'eth0', cidr: '10.0.0.1/33' }] }), /addresses\[0\]\.cidr "10\.0\.0\.1\/33" is not an IPv4 or IPv6 address/);
  refused(good({ addresses: [{ ifname: '-eth0', cidr: '10.0.0.1/24' }] }), /addresses\[0\]\.ifname/);
  refused(good({ externalMounts: [{ mountpoint: '/x', key: 'k]:/etc', kind: 'bind' }] }), /externalMounts\[0\]\.key/);
  refused(good({ externalMounts: [{ mountpoint: '/x', key: '-k', kind: 'bind' }] }), /externalMounts\[0\]\.key/);
  refused(good({ externalMounts: [{ mountpoint: '/x/../etc', key: 'k', kind: 'bind' }] }), /externalMounts\[0\]\.mountpoint/);
  refused(good({ externalMounts: [{ mountpoint: '/x', key: 'k', kind: 'nfs' }] }), /externalMounts\[0\]\.kind must be one of/);
  refused(good({ fileDigests: [{ path: '../../etc/shadow', sha256: 'a'.repeat(64), size: 1 }] }), /fileDigests\[0\]\.path/);
  refused(good({ fileDigests: [{ path: '/etc/shadow', sha256: 'a'.repeat(64), size: 1 }] }), /fileDigests\[0\]\.path/);
  refused(good({ fileDigests: [{ path: 'bin/x', sha256: 'A'.repeat(64), size: 1 }] }), /fileDigests\[0\]\.sha256/);
  refused(good({ createdAt: '-rf' }), /createdAt/);
  refused(good({ netSysctls: { 'kernel.core_pattern': '|/tmp/x' } }), /netSysctls .*kernel\.core_pattern is not a sysctl migprobe carries/);
});

test('unknown fields, wrong types, wrong version and oversized lists are refused', () => {
  refused(good({ extra: 1 }), /manifest\.extra is not a manifest field/);
  refused(good({ rootfs: { lowerdirs: [], mounts: [] } }), /rootfs\.mounts is not a manifest field/);
  refused(good({ externalMounts: [{ mountpoint: '/x', key: 'k', kind: 'bind', source: '/etc' }] }), /externalMounts\[0\]\.source is not a manifest field/);
  refused(good({ version: 2 }), /version is 2/);
  refused(good({ kind: 'full ' }), /kind must be lazy or full/);
  refused(good({ netnsExternal: 'yes' }), /netnsExternal must be true or false/);
  refused(good({ workloadRssBytes: 1.5 }), /workloadRssBytes must be a whole number/);
  refused(good({ rootfsDiff: { bytes: 1, omittedBytes: 2 } }), /rootfsDiff must have exactly one/);
  refused(good({ addresses: Array.from({ length: 257 }, () => ({ ifname: 'eth0', cidr: '10.0.0.1/24' })) }), /addresses has 257 entries/);
  refused([], /manifest must be an object/);
  assert.throws(() => parseNodeFacts({ hostname: 'h' }, 'sourceFacts'), /sourceFacts\.criuFeatures must be an object/);
});

test('the pure path and address validators', () => {
  for (const ok of ['10.0.0.1/8', '0.0.0.0/0', '::1/128', 'fd00::/8']) assert.ok(isCidr(ok), ok);
  for (const bad of ['10.0.0.1', '10.0.0.1/', '-1.0.0.1/8', '10.0.0.256/8', 'fe80::1%eth0/64', '::1/129', ' 10.0.0.1/8']) assert.ok(!isCidr(bad), bad);
  assert.ok(isPlainAbsolute('/'));
  assert.ok(isPlainAbsolute('/a/b'));
  for (const bad of ['a', '/a/../b', '/a//b', '/a/', '/a/./b', '/a\0']) assert.ok(!isPlainAbsolute(bad), bad);
  assert.ok(isPlainRelative('a/b.c'));
  for (const bad of ['', '/a', 'a/../b', 'a//b', './a', 'a/.']) assert.ok(!isPlainRelative(bad), bad);
});

test('readManifestFile: no symlink, no oversized file, JSON checked', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'manifest-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(readManifestFile(dir, 'peer'), /manifest\.json: file is missing/);
  await symlink('/etc/hostname', join(dir, 'manifest.json'));
  await assert.rejects(readManifestFile(dir, 'peer'), /manifest\.json: file is a symbolic link/);
  await rm(join(dir, 'manifest.json'));
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(good()));
  assert.equal((await readManifestFile(dir, 'peer')).imageRef, 'docker.io/library/busybox:1.36');
  await assert.rejects(readManifestFile(dir, 'peer', 100), /is \d+ bytes, more than the 100 allowed/);
  await writeFile(join(dir, 'manifest.json'), '{');
  await assert.rejects(readManifestFile(dir, 'peer'), /is not JSON/);
});
