import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { closeLazyPageServer, pageServerCommand, PS_IOV_CLOSE, freePort } from './dump.ts';

test('page-server command layout: u32 cmd, padding, three u64', () => {
  const b = pageServerCommand(PS_IOV_CLOSE);
  assert.equal(b.length, 32);
  assert.equal(b.readUInt32LE(0), 0x1023);
  assert.ok(b.subarray(4).every((x) => x === 0));
});

test('closeLazyPageServer sends CLOSE and half-closes without waiting for the reply', async () => {
  const port = await freePort();
  const got: Buffer[] = [];
  let ended = false;
  const srv = createServer({ allowHalfOpen: true }, (s: Socket) => {
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => {
      ended = true;
      s.end(Buffer.alloc(4));
    });
  });
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  try {
    await closeLazyPageServer('127.0.0.1', port, 2000);
    for (let i = 0; i < 100 && !ended; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(ended);
    assert.equal(Buffer.concat(got).readUInt32LE(0), PS_IOV_CLOSE);
  } finally {
    await new Promise((r) => srv.close(r));
  }
  await assert.rejects(closeLazyPageServer('127.0.0.1', port, 2000));
});

test('CRIU network-lock tables are found in nft output', async () => {
  const { criuLockTables } = await import('./dump.ts');
  assert.deepEqual(criuLockTables('table inet filter\ntable inet CRIU-abc123\ntable ip CRIU-42\n'), ['inet CRIU-abc123', 'ip CRIU-42']);
  assert.deepEqual(criuLockTables(''), []);
});
