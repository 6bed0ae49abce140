// chooseLowerdirs: which folders the restore sandbox's overlay stands on, and that a bundle from another node
// never makes the target open the source's overlay paths.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseLowerdirs, kindInLayers, kindsFromTarListing, sandboxPlumbingFailed } from './restore.ts';
import type { Manifest } from './dump.ts';

const manifest = {
  version: 1,
  createdAt: '2026-01-01T00:00:00Z',
  imageRef: 'example.test/app:1',
  rootfs: { lowerdirs: ['/var/lib/containerd/snapshots/7/fs'], upperdir: '/var/lib/containerd/snapshots/9/fs' },
  externalMounts: [],
  netnsExternal: true,
  addresses: [],
  fileDigests: [],
  kind: 'lazy',
} as unknown as Manifest;
const everyPathExists = (): boolean => true;

test('one host: the container\'s writable layer over its image layers, as the manifest names them', () => {
  assert.deepEqual(chooseLowerdirs({}, manifest, everyPathExists, undefined, true), ['/var/lib/containerd/snapshots/9/fs', '/var/lib/containerd/snapshots/7/fs']);
  assert.deepEqual(chooseLowerdirs({}, manifest, everyPathExists, '/work/diff', true), ['/work/diff', '/var/lib/containerd/snapshots/7/fs']);
});

test('another node: the source\'s overlay paths are never used, even where the same paths exist here', () => {
  assert.equal(chooseLowerdirs({}, manifest, everyPathExists), undefined, 'the image must be looked up in this node\'s containerd');
  assert.deepEqual(chooseLowerdirs({}, manifest, everyPathExists, '/work/diff'), undefined);
  assert.deepEqual(chooseLowerdirs({ rootfs: '/target/root' }, manifest, everyPathExists), ['/target/root']);
  assert.deepEqual(chooseLowerdirs({ rootfs: '/target/root' }, manifest, everyPathExists, '/work/diff'), ['/work/diff', '/target/root']);
});

test('one host, image layers gone: no root here (the image is looked up instead)', () => {
  assert.equal(chooseLowerdirs({}, manifest, () => false, undefined, true), undefined);
});

test('a root that is no overlay (a plain runc bundle folder): its host folder, on the one host only', () => {
  const folder = { rootfs: { lowerdirs: [], hostDir: '/run/bundle/rootfs' } };
  assert.deepEqual(chooseLowerdirs({}, folder, everyPathExists, undefined, true), ['/run/bundle/rootfs']);
  assert.deepEqual(chooseLowerdirs({}, folder, everyPathExists, '/work/diff', true), ['/work/diff', '/run/bundle/rootfs']);
  assert.equal(chooseLowerdirs({}, folder, everyPathExists), undefined, 'another node never opens the source\'s folder');
  assert.equal(chooseLowerdirs({}, folder, () => false, undefined, true), undefined, 'a folder that is gone');
  assert.deepEqual(chooseLowerdirs({ rootfs: '/target/root' }, folder, everyPathExists, undefined, true), ['/target/root']);
});

test('kindInLayers: the top layer that has the path decides; unknown or unsafe paths are not looked up', async (t) => {
  const top = mkdtempSync(join(tmpdir(), 'mp-layer-top-'));
  const low = mkdtempSync(join(tmpdir(), 'mp-layer-low-'));
  t.after(() => {
    rmSync(top, { recursive: true, force: true });
    rmSync(low, { recursive: true, force: true });
  });
  mkdirSync(join(top, 'etc'));
  writeFileSync(join(top, 'etc/hosts'), '');
  mkdirSync(join(low, 'etc/hosts'), { recursive: true });
  mkdirSync(join(low, 'data'));
  writeFileSync(join(low, 'secret'), '');
  assert.equal(await kindInLayers([top, low], '/etc/hosts'), 'file', 'the kubelet\'s /etc/hosts is a file bind');
  assert.equal(await kindInLayers([low], '/etc/hosts'), 'dir');
  assert.equal(await kindInLayers([top, low], '/data'), 'dir');
  assert.equal(await kindInLayers([top, low], '/not/there'), undefined);
  assert.equal(await kindInLayers([top], '/../' + low.slice(1) + '/secret'), undefined, 'no lookup outside the layers');
  assert.equal(await kindInLayers([top], 'etc/hosts'), undefined, 'relative paths are not looked up');
});

test('kindsFromTarListing reads GNU tar -tv lines (CRIU\'s tmpfs tarballs)', () => {
  const listing = [
    'drwxr-xr-x root/root         0 2026-12-02 10:48 ./',
    '-rw-rw-rw- root/root         0 2026-12-02 10:48 ./termination-log',
    'drwxrwxrwt root/root         0 2026-12-02 10:48 ./shm/',
    'lrwxrwxrwx root/root         0 2026-12-02 10:48 ./fd -> /proc/self/fd',
    'crw-rw-rw- root/root       1,3 2026-12-02 10:48 ./null',
    'garbage',
  ].join('\n');
  const kinds = kindsFromTarListing(listing);
  assert.equal(kinds.get('termination-log'), 'file');
  assert.equal(kinds.get('shm'), 'dir');
  assert.equal(kinds.get('fd'), 'file');
  assert.equal(kinds.get('null'), 'file');
  assert.equal(kinds.has('.'), false);
});

test('a failure of the sandbox plumbing (unshare/nsenter said why, CRIU named no cause) is retried; a CRIU cause is not', () => {
  const failed = (code: 'RestoreFailed' | 'FileLocks', output: string) => ({
    result: { reasons: [{ code, message: 'm', hint: 'h', phase: 'restore' as const }] } as never,
    run: { criuExitCode: 1, timedOut: false, output },
  });
  assert.equal(sandboxPlumbingFailed(failed('RestoreFailed', 'migprobe-init:ready\nunshare: sigprocmask unblock failed: Invalid argument')), true);
  assert.equal(sandboxPlumbingFailed(failed('RestoreFailed', 'nsenter: cannot open /proc/1/ns/net: No such file')), true);
  assert.equal(sandboxPlumbingFailed(failed('RestoreFailed', 'migprobe-init:ready\nmigprobe-criu-exit:1')), false);
  assert.equal(sandboxPlumbingFailed(failed('FileLocks', 'unshare: sigprocmask unblock failed: Invalid argument')), false);
  assert.equal(sandboxPlumbingFailed({ result: { reasons: [] } as never }), false);
});
