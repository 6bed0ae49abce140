// Which mappings CRIU dumps even in lazy mode, how they add up, and when that is a blocker: pure functions of
// nonlazy.ts on hand-written smaps entries. The reads are covered by preflight.test.ts (fake /proc) and
// test/engine/nonlazy-integration.test.ts (real containers, checked against the image set CRIU wrote).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accountMappings, nonLazyKindOf, nonLazyReason, nonLazyTotals, objectKey } from './nonlazy.ts';
import type { SmapsVma } from './procparse.ts';

function vma(perms: string, path: string, bytes: Record<string, number>, more: Partial<SmapsVma> = {}): SmapsVma {
  return { start: '1000', end: '2000', perms, dev: path === '' ? '00:00' : '00:01', inode: path === '' ? 0 : 7, path, bytes, flags: ['rd', 'wr'], ...more };
}

void test('the kind of each mapping: only unlocked private anonymous memory is lazy', () => {
  assert.equal(nonLazyKindOf(vma('rw-p', '', { Anonymous: 4096 })), undefined, 'private anonymous: lazy');
  assert.equal(nonLazyKindOf(vma('rw-p', '[heap]', { Anonymous: 4096 }, { inode: 0 })), undefined);
  assert.equal(nonLazyKindOf(vma('rw-p', '', {}, { flags: ['rd', 'wr', 'lo'] })), 'mlocked');
  assert.equal(nonLazyKindOf(vma('rw-s', '/dev/zero (deleted)', {})), 'sharedMemory');
  assert.equal(nonLazyKindOf(vma('rw-s', '/memfd:cache (deleted)', {})), 'sharedMemory');
  assert.equal(nonLazyKindOf(vma('rw-s', '/SYSV0000002a (deleted)', {})), 'sysvShm');
  assert.equal(nonLazyKindOf(vma('rw-p', '/usr/lib/libc.so.6', {})), 'dirtyPrivateFile');
  assert.equal(nonLazyKindOf(vma('rw-s', '/data/file', {})), undefined, 'a shared file mapping: the pages are the file\'s');
  assert.equal(nonLazyKindOf(vma('r-xp', '[vdso]', {}, { inode: 0 })), undefined);
  assert.equal(nonLazyKindOf(vma('rw-p', '', {}, { flags: ['rd', 'wr', 'ht'] })), undefined, 'hugetlb: not counted');
});

void test('private kinds add up per mapping; a shared object counts once, at its largest', () => {
  const acc = accountMappings(
    new Map([
      [10, [
        vma('rw-p', '', { Anonymous: 8192, Swap: 4096 }, { flags: ['lo'] }),
        vma('rw-p', '/bin/app', { Anonymous: 4096 }, { dev: '08:01', inode: 99 }),
        vma('rw-p', '/bin/app', { Anonymous: 0 }, { dev: '08:01', inode: 99 }),
        vma('rw-s', '/dev/zero (deleted)', { Rss: 4096 }, { dev: '00:01', inode: 5 }),
        vma('rw-p', '', { Anonymous: 1 << 20 }),
      ]],
      [11, [
        vma('rw-s', '/dev/zero (deleted)', { Rss: 8192, Swap: 4096 }, { dev: '00:01', inode: 5 }),
        vma('rw-s', '/SYSV00000001 (deleted)', { Rss: 4096 }, { dev: '00:01', inode: 6 }),
      ]],
    ]),
  );
  assert.equal(acc.mlockedBytes, 12288);
  assert.equal(acc.dirtyPrivateFileBytes, 4096);
  assert.deepEqual([...acc.objects.entries()].map(([k, o]) => [k, o.kind, o.bytes]), [
    ['0:1:5', 'sharedMemory', 12288],
    ['0:1:6', 'sysvShm', 4096],
  ]);
  assert.equal(acc.items.length, 2, 'the empty file mapping is no item');
  // maps prints the device in hex; a stat of the same object gives the same key
  assert.equal(objectKey({ dev: (0x1f << 8) | 0x2, ino: 6 }), '31:2:6');
});

void test('over the limit, and only then, a NonLazyMemory blocker with the sizes and the fix', () => {
  const memory = nonLazyTotals({ mlockedBytes: 0, sharedMemoryBytes: 0, sysvShmBytes: 1 << 20, dirtyPrivateFileBytes: 32768, tmpfsBytes: 0 });
  assert.equal(memory.totalBytes, (1 << 20) + 32768);
  const scan = { memory, items: [{ kind: 'sysvShm' as const, bytes: 1 << 20, where: 'SysV segment 3 (0 attached)' }] };
  assert.equal(nonLazyReason(scan, memory.totalBytes), undefined, 'at the limit is fine');
  const r = nonLazyReason(scan, 1 << 20);
  assert.equal(r?.code, 'NonLazyMemory');
  assert.equal(r?.phase, 'preflight');
  assert.equal(
    r?.message,
    'the container holds 1.0 MiB (1081344 bytes) of memory CRIU writes into the image set even in lazy mode (SysV shm 1.0 MiB, ' +
      'written private file mappings 32.0 KiB), over the non-lazy memory limit of 1.0 MiB (1048576 bytes); largest: 1.0 MiB ' +
      'SysV shm at SysV segment 3 (0 attached). Nothing was frozen or written',
  );
  assert.match(r?.hint ?? '', /^raise spec\.options\.nonLazyMemoryLimitBytes \(CLI --non-lazy-memory-limit\) to at least 1081344 /);
});
