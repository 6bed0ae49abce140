// hashMappedFiles (facts.ts): which mapped files are compared with the target's root filesystem.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashMappedFiles } from './facts.ts';
import type { ContainerInfo } from './container.ts';

const mapLine = (path: string): string => `7f0000000000-7f0000001000 r-xp 00000000 00:2e 1234 ${path}`;

void test('files on the root filesystem are hashed; a tmpfs mounted in a mount namespace the container made is not', async (t) => {
  const proc = await mkdtemp(join(tmpdir(), 'mp-facts-'));
  t.after(() => rm(proc, { recursive: true, force: true }));
  // task 10: the container's init, in the container's mount namespace; task 11: in a mount namespace of its own,
  // where /data is a tmpfs and the root is the same filesystem and folder under another mount ID
  for (const [pid, ns, maps] of [
    [10, 'mnt:[4026532001]', [mapLine('/bin/app')]],
    [11, 'mnt:[4026532002]', [mapLine('/bin/app'), mapLine('/lib/x.so'), mapLine('/data/y.so')]],
  ] as const) {
    await mkdir(join(proc, String(pid), 'ns'), { recursive: true });
    await symlink(ns, join(proc, String(pid), 'ns', 'mnt'));
    await writeFile(join(proc, String(pid), 'maps'), `${maps.join('\n')}\n`);
    for (const f of ['bin/app', 'lib/x.so', 'data/y.so']) {
      await mkdir(join(proc, String(pid), 'root', f, '..'), { recursive: true });
      await writeFile(join(proc, String(pid), 'root', f), f);
    }
  }
  // openInRoot checks the mount an opened file is on: the fake root mount (and task 11's copy of it) carry the
  // real mount ID of this temporary folder
  const fh = await open(join(proc, '10', 'root', 'bin/app'), 'r');
  const mnt = Number(/^mnt_id:\s*(\d+)$/m.exec(await readFile(`/proc/self/fdinfo/${fh.fd}`, 'latin1'))?.[1]);
  await fh.close();
  await writeFile(join(proc, '11', 'mountinfo'), `${mnt} 800 0:50 / / rw,relatime - overlay overlay rw\n901 ${mnt} 0:61 / /data rw - tmpfs tmpfs rw\n`);
  const info = {
    initPid: 10,
    pids: [10, 11],
    mounts: [{ mountId: mnt, parentId: 1, dev: '0:50', root: '/', mountpoint: '/', mountOptions: [], propagation: [], fstype: 'overlay', source: 'overlay', superOptions: [], kind: 'root' }],
  } as unknown as ContainerInfo;
  const got = await hashMappedFiles(info, { proc });
  assert.deepEqual(got.map((f) => f.path), ['bin/app', 'lib/x.so']);
  assert.equal(got[0]?.size, 'bin/app'.length);
});
