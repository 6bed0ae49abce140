import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pageServerCommand, PS_IOV_CLOSE } from './dump.ts';

test('page-server command layout: u32 cmd, padding, three u64', () => {
  const b = pageServerCommand(PS_IOV_CLOSE);
  assert.equal(b.length, 32);
  assert.equal(b.readUInt32LE(0), 0x1023);
  assert.ok(b.subarray(4).every((x) => x === 0));
});

test('CRIU network-lock tables are found in nft output', async () => {
  const { criuLockTables } = await import('./dump.ts');
  assert.deepEqual(criuLockTables('table inet filter\ntable inet CRIU-abc123\ntable ip CRIU-42\n'), ['inet CRIU-abc123', 'ip CRIU-42']);
  assert.deepEqual(criuLockTables(''), []);
});
