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

test('parseMarker accepts what dumpCheck writes and refuses anything else', async () => {
  const { parseMarker } = await import('./dump.ts');
  const good = { pid: 4242, pids: [4242, 4243], stoppedBefore: [4243], netnsPath: '/proc/4242/ns/net', freezerCgroupDir: '/sys/fs/cgroup/freezer/k8s.io/abc', criuPid: 999, since: '2026-12-02T12:00:00.000Z' };
  assert.deepEqual(parseMarker(JSON.stringify(good)), good);
  const bad: [unknown, RegExp][] = [
    [{ ...good, freezerCgroupDir: '/etc' }, /outside/],
    [{ ...good, freezerCgroupDir: '/sys/fs/cgroup/../../etc' }, /outside/],
    [{ ...good, netnsPath: '/run/netns/host' }, /netnsPath/],
    [{ ...good, pid: 1 }, /bad pid/],
    [{ ...good, pids: ['1'] }, /bad pids/],
    [{ ...good, criuPid: -1 }, /criuPid/],
    [{ ...good, since: 'yesterday' }, /since/],
    [{ ...good, exec: 'rm -rf /' }, /unknown fields exec/],
    [[good], /not an object/],
  ];
  for (const [m, why] of bad) {
    const r = parseMarker(JSON.stringify(m));
    assert.ok(typeof r === 'string', JSON.stringify(m));
    assert.match(r, why);
  }
  assert.equal(parseMarker('{'), 'not JSON');
});
