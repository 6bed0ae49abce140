import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeVerdict } from '../verdict.ts';
import { formatBytes, formatMs, formatVerdict } from './format.ts';
import { reason } from '../reasons.ts';

void test('units', () => {
  assert.equal(formatBytes(undefined), '-');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(61_000), '59.6 KiB');
  assert.equal(formatBytes(1024 ** 3), '1.0 GiB');
  assert.equal(formatMs(209.4), '209 ms');
  assert.equal(formatMs(12_345), '12.3 s');
});

void test('a blocked verdict lists every reason with its fix and the log excerpt', () => {
  const v = makeVerdict({
    reasons: [
      reason('TCPEstablished', 'task 7 fd 3: TCP 10.0.0.2:41000 -> 10.0.0.1:80 ESTABLISHED'),
      reason('RootfsMismatch', '/bin/busybox differs on the target', undefined, 'restore'),
    ],
    timings: { preflightMs: 4, restoreMs: 800 },
    sizes: { workloadRssBytes: 1024 * 1024 },
    criu: { source: '4.2.1', target: '4.2.1' },
    criuLogExcerpt: 'Error (criu/files-reg.c:2175): File bin/busybox has bad size 2 (expect 1)',
  });
  const s = formatVerdict(v, 80);
  assert.match(s, /^NOT MIGRATABLE \(2 blockers\)\n/);
  assert.match(s, /TCPEstablished\s+preflight\s+task 7 fd 3/);
  assert.match(s, /RootfsMismatch\s+restore\s+\/bin\/busybox/);
  assert.match(s, /fix: set options\.tcpEstablished: true/);
  assert.match(s, /workload RSS 1\.0 MiB/);
  assert.match(s, /CRIU log excerpt:\n {2}Error \(criu\/files-reg\.c:2175\)/);
  for (const line of s.split('\n').filter((l) => !l.includes('Error ('))) assert.ok(line.length <= 100, line);
});

void test('a migratable verdict says so first', () => {
  const s = formatVerdict(makeVerdict({ reasons: [], timings: { totalMs: 1200 }, sizes: {}, criu: {} }));
  assert.match(s, /^MIGRATABLE\n/);
  assert.doesNotMatch(s, /CODE/);
});
