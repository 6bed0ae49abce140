// What a shipped writable layer may hold: files, folders, links inside it, whiteouts; never a device node, a
// path out of it, a member below a symbolic link or a hard link to something outside the archive.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { tarOf } from '../../test/agent/crafted-bundle.ts';
import { checkRootfsDiff, diffMemberProblem, strayNodes, type DiffMember, type DiffSeen } from './rootfs-diff.ts';

const fresh = (): DiffSeen => ({ entries: 0, bytes: 0, links: new Set(), members: new Set() });

test('diffMemberProblem: what a writable layer holds passes, the rest is named', () => {
  const seen = fresh();
  const ok: DiffMember[] = [
    { path: './', type: 'Directory', size: 0 },
    { path: './etc/', type: 'Directory', size: 0 },
    { path: './etc/motd', type: 'File', size: 5 },
    { path: './etc/localtime', type: 'SymbolicLink', size: 0, linkpath: '/usr/share/zoneinfo/UTC' },
    { path: './etc/motd.bak', type: 'Link', size: 0, linkpath: './etc/motd' },
    { path: './etc/removed', type: 'CharacterDevice', size: 0, devmaj: 0, devmin: 0 },
  ];
  assert.match(diffMemberProblem({ path: './etc/gone', type: 'CharacterDevice', size: 0 }, fresh()) ?? '', /non-POSIX tar header/);
  for (const m of ok) assert.equal(diffMemberProblem(m, seen), undefined, m.path);
  assert.match(diffMemberProblem({ path: './dev/sda', type: 'BlockDevice', size: 0 }, seen) ?? '', /of type BlockDevice/);
  assert.match(diffMemberProblem({ path: './dev/mem', type: 'CharacterDevice', size: 0, devmaj: 1, devmin: 1 }, seen) ?? '', /device node \(1:1\), not an overlayfs whiteout/);
  assert.match(diffMemberProblem({ path: './p', type: 'FIFO', size: 0 }, seen) ?? '', /of type FIFO/);
  assert.match(diffMemberProblem({ path: '../x', type: 'File', size: 0 }, seen) ?? '', /not a plain relative path/);
  assert.match(diffMemberProblem({ path: '/etc/x', type: 'File', size: 0 }, seen) ?? '', /not a plain relative path/);
  assert.match(diffMemberProblem({ path: './etc/localtime/x', type: 'File', size: 0 }, seen) ?? '', /below a symbolic link/);
  assert.match(diffMemberProblem({ path: './h', type: 'Link', size: 0, linkpath: '../../etc/shadow' }, seen) ?? '', /hard link "\.\/h" points at "\.\.\/\.\.\/etc\/shadow"/);
  assert.match(diffMemberProblem({ path: './h', type: 'Link', size: 0, linkpath: 'never/seen' }, seen) ?? '', /not at an earlier member/);
  assert.match(diffMemberProblem({ path: './big', type: 'File', size: 10 }, fresh(), { bytes: 5, entries: 10 }) ?? '', /more than 5 bytes/);
  assert.match(diffMemberProblem({ path: './d', type: 'Directory', size: 0 }, { ...fresh(), entries: 10 }, { bytes: 5, entries: 10 }) ?? '', /more than 10 entries/);
});

test('checkRootfsDiff reads a GNU tar of a real writable layer, and refuses a device node in one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rootfs-diff-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const upper = join(dir, 'upper');
  await mkdir(join(upper, 'etc'), { recursive: true });
  await writeFile(join(upper, 'etc', 'motd'), 'hello');
  await symlink('/usr/share/zoneinfo/UTC', join(upper, 'etc', 'localtime'));
  await execa('mknod', [join(upper, 'etc', 'gone'), 'c', '0', '0']);
  await execa('tar', ['-c', '-f', join(dir, 'ok.tar'), '-C', upper, '--xattrs', '--xattrs-include=trusted.overlay.*', '--numeric-owner', '.']);
  await checkRootfsDiff(join(dir, 'ok.tar'));
  // containerd's CRI checkpoint writes the diff gzipped: read through the same way.
  await execa('gzip', ['-k', '-n', join(dir, 'ok.tar')]);
  await checkRootfsDiff(join(dir, 'ok.tar.gz'));
  assert.deepEqual(await strayNodes(upper), []);
  await execa('mknod', [join(upper, 'etc', 'null'), 'c', '1', '3']);
  await execa('mkfifo', [join(upper, 'etc', 'fifo')]);
  assert.deepEqual((await strayNodes(upper)).sort(), ['etc/fifo', 'etc/null']);
  await rm(join(upper, 'etc', 'fifo'));
  // As the source writes it (POSIX headers), and in GNU tar's own format, whose device numbers the parser cannot read.
  await execa('tar', ['-c', '-f', join(dir, 'dev.tar'), '-C', upper, '--xattrs', '--numeric-owner', '.']);
  await assert.rejects(checkRootfsDiff(join(dir, 'dev.tar')), /rootfs-diff\.tar: member "\.\/etc\/null" is a device node \(1:3\)/);
  await execa('tar', ['-c', '-f', join(dir, 'gnu.tar'), '-C', upper, '--format=gnu', '--numeric-owner', '.']);
  await assert.rejects(checkRootfsDiff(join(dir, 'gnu.tar')), /is a device node in a non-POSIX tar header/);
  await writeFile(join(dir, 'crafted.tar'), tarOf([{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'etc/cron.d/x', body: 'x' }]));
  await assert.rejects(checkRootfsDiff(join(dir, 'crafted.tar')), /member "etc\/cron\.d\/x" lies below a symbolic link/);
  await writeFile(join(dir, 'junk.tar'), 'not a tar at all');
  await assert.rejects(checkRootfsDiff(join(dir, 'junk.tar')), /not a valid tar/);
});
