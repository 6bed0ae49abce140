// preflightScan on real containers of the test bed: one test per blocker kind, each showing its reason code,
// that the options allowing it suppress it, and that the scan never stopped or froze the workload.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import type { ProbeOptions } from '../../src/engine/api.ts';
import { resolveContainer } from '../../src/engine/container.ts';
import { preflightScan } from '../../src/engine/preflight.ts';
import type { Reason } from '../../src/verdict.ts';
import { runContainer, testbed } from '../../testbed/index.ts';
import { extUnixListener, hostDir, startWorkload, waitReady, watchStates } from './workloads.ts';

const BIN = '/usr/local/bin';

/** Scan the container of `pid` and check nothing stopped or froze it meanwhile. */
async function scan(pid: number, opts: Partial<ProbeOptions> = {}, allowTraced = false): Promise<{ reasons: Reason[]; rssBytes: number }> {
  const info = await resolveContainer({ pid });
  const { result, states, freezer, samples } = await watchStates(info.pids, () =>
    preflightScan(info, { ...DEFAULT_PROBE_OPTIONS, ...opts }),
  );
  assert.ok(samples > 0);
  const bad = [...states].filter((s) => !['S', 'R', 'D'].includes(s) && !(allowTraced && s === 't'));
  assert.deepEqual(bad, [], `task states seen during preflight: ${[...states].join(' ')}`);
  assert.ok([...freezer].every((f) => f === 'THAWED'), `freezer states: ${[...freezer].join(' ')}`);
  return result;
}

const codes = (rs: Reason[]): string[] => rs.map((r) => r.code);

function only(rs: Reason[], code: string): Reason[] {
  assert.deepEqual([...new Set(codes(rs))], [code], JSON.stringify(rs, null, 1));
  return rs;
}

void test('a plain workload has no blocker and a resident size', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; exec sleep 1000'], { ip: '10.77.2.2' });
  const r = await scan(c.pid);
  assert.deepEqual(r.reasons, []);
  assert.ok(r.rssBytes > 0 && r.rssBytes < 64 * 1024 * 1024, `rss ${r.rssBytes}`);
});

void test('established TCP -> TCPEstablished per socket; tcpEstablished allows it', async (t) => {
  const c = await startWorkload(t, [`${BIN}/tcppair`, '7001']);
  const rs = only((await scan(c.pid)).reasons, 'TCPEstablished');
  assert.equal(rs.length, 2, 'both ends of the loopback connection');
  assert.match(rs[0]?.message ?? '', new RegExp(`task ${c.pid} fd \\d+: TCP 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:\\d+ ESTABLISHED`));
  assert.match(rs[0]?.hint ?? '', /tcpEstablished: true/);
  assert.equal(rs[0]?.phase, 'preflight');
  assert.deepEqual((await scan(c.pid, { tcpEstablished: true })).reasons, []);
});

void test('a connection in flight in a listener\'s accept queue -> TCPEstablished, whatever tcpEstablished says', async (t) => {
  const c = await startWorkload(t, [`${BIN}/tcppair`, '7006', 'noaccept']);
  const rs = only((await scan(c.pid, { tcpEstablished: true })).reasons, 'TCPEstablished');
  assert.equal(rs.length, 1, JSON.stringify(rs));
  assert.match(rs[0]?.message ?? '', /TCP listener 127\.0\.0\.1:7006 has 1 connection\(s\) not yet accepted/);
  assert.equal((await scan(c.pid)).reasons.length, 2, 'and the client end is an established connection');
});

void test('io_uring -> IoUring', async (t) => {
  const c = await startWorkload(t, [`${BIN}/iouring`]);
  const rs = only((await scan(c.pid)).reasons, 'IoUring');
  assert.match(rs[0]?.message ?? '', new RegExp(`task ${c.pid} fd 3: io_uring`));
});

void test('userfaultfd -> UnsupportedFile; the anon inodes CRIU carries are fine', async (t) => {
  const c = await startWorkload(t, [`${BIN}/uffd`]);
  const rs = only((await scan(c.pid)).reasons, 'UnsupportedFile');
  assert.match(rs[0]?.message ?? '', new RegExp(`task ${c.pid} fd 3: anon_inode:\\[userfaultfd\\]`));
  // busybox's tail -f holds an inotify fd, which CRIU carries: not a blocker
  const ok = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/f; tail -f /tmp/f & touch /tmp/ready; wait']);
  assert.deepEqual((await scan(ok.pid)).reasons.filter((r) => r.code === 'UnsupportedFile'), []);
});

void test('memfd_secret -> MemfdSecret', async (t) => {
  const c = await startWorkload(t, [`${BIN}/secretmem`]);
  const rs = only((await scan(c.pid)).reasons, 'MemfdSecret');
  assert.match(rs[0]?.message ?? '', /secretmem/);
});

void test('deleted-but-open file over the ghost limit -> GhostFileTooLarge; a higher ghostLimitBytes allows it', async (t) => {
  const c = await startWorkload(t, [`${BIN}/ghost`, String(3 * 1024 * 1024), '/tmp/big.dat']);
  const rs = only((await scan(c.pid)).reasons, 'GhostFileTooLarge');
  assert.match(rs[0]?.message ?? '', /\/tmp\/big\.dat/);
  assert.match(rs[0]?.hint ?? '', /ghostLimitBytes.*above \d+/);
  assert.deepEqual((await scan(c.pid, { ghostLimitBytes: 8 * 1024 * 1024 })).reasons, []);
});

void test('a small deleted file under the limit is fine', async (t) => {
  const c = await startWorkload(t, [`${BIN}/ghost`, '1000', '/tmp/small.dat']);
  assert.deepEqual((await scan(c.pid)).reasons, []);
});

for (const kind of ['flock', 'posix', 'ofd']) {
  void test(`held ${kind} lock -> FileLocks; fileLocks allows it`, async (t) => {
    const c = await startWorkload(t, [`${BIN}/flocker`, kind]);
    const rs = only((await scan(c.pid)).reasons, 'FileLocks');
    assert.equal(rs.length, 1, JSON.stringify(rs));
    assert.match(rs[0]?.message ?? '', new RegExp(`task ${c.pid} fd 3: holds a \\S+ WRITE lock on /tmp/locked`));
    assert.match(rs[0]?.hint ?? '', /options\.fileLocks/);
    assert.deepEqual((await scan(c.pid, { fileLocks: true })).reasons, []);
  });
}

void test('a ptraced task -> Ptraced', async (t) => {
  const c = await startWorkload(t, [`${BIN}/ptracer`]);
  const rs = only((await scan(c.pid, {}, true)).reasons, 'Ptraced');
  assert.equal(rs.length, 1);
  assert.match(rs[0]?.message ?? '', new RegExp(`traced by PID ${c.pid} \\(a task of the container\\)`));
});

void test('sockets of families CRIU cannot dump -> UnsupportedSocket', async (t) => {
  const c = await startWorkload(t, [`${BIN}/oddsock`]);
  const rs = only((await scan(c.pid)).reasons, 'UnsupportedSocket');
  assert.ok(rs.length >= 1);
  assert.ok(rs.some((r) => /AF_VSOCK|XDP|MPTCP/.test(r.message)), JSON.stringify(rs));
});

void test('a device CRIU cannot carry -> DeviceFile; mem devices are fine', async (t) => {
  const ok = await startWorkload(t, [`${BIN}/devfile`, '/dev/urandom']);
  assert.deepEqual((await scan(ok.pid)).reasons, []);
  // /dev/loop-control is char 10:237, a misc device CRIU does not handle. The container's devices cgroup
  // denies it until the test allows it; devfile retries the open meanwhile.
  const started = runContainer({
    args: [`${BIN}/devfile`, '/hostdev/loop-control'],
    mounts: [{ host: '/dev/loop-control', container: '/hostdev/loop-control' }],
  });
  const c = await started;
  t.after(async () => await c.remove());
  await writeFile(`/sys/fs/cgroup/devices/k8s.io/${c.id}/devices.allow`, 'c 10:237 r');
  await waitReady(c.pid);
  const rs = only((await scan(c.pid)).reasons, 'DeviceFile');
  assert.match(rs[0]?.message ?? '', /loop-control \(char device 10:237\)/);
});

void test('a stream unix socket connected outside the container -> ExternalUnixSocket, even with extUnixSockets', async (t) => {
  const dir = await hostDir(t, 'mp-pf-');
  await extUnixListener(t, dir);
  const c = await startWorkload(t, [`${BIN}/unixpeer`, '/ext/ext.sock'], { mounts: [{ host: dir, container: '/ext' }] });
  const rs = only((await scan(c.pid)).reasons, 'ExternalUnixSocket');
  assert.match(rs[0]?.message ?? '', /unix stream socket .* connected to peer inode \d+, which no task of the container holds/);
  const still = only((await scan(c.pid, { extUnixSockets: true })).reasons, 'ExternalUnixSocket');
  assert.match(still[0]?.hint ?? '', /only carries datagram sockets/);
});

void test('a datagram unix socket connected to another container -> ExternalUnixSocket; extUnixSockets allows it', async (t) => {
  const dir = await hostDir(t, 'mp-pf-');
  const mounts = [{ host: dir, container: '/shared' }];
  await startWorkload(t, [`${BIN}/unixpeer`, '/shared/d.sock', 'dgram', 'serve'], { mounts });
  const c = await startWorkload(t, [`${BIN}/unixpeer`, '/shared/d.sock', 'dgram'], { mounts });
  const rs = only((await scan(c.pid)).reasons, 'ExternalUnixSocket');
  assert.match(rs[0]?.message ?? '', /unix datagram socket/);
  assert.deepEqual((await scan(c.pid, { extUnixSockets: true })).reasons, []);
});

void test('a unix socket pair inside the container is not external', async (t) => {
  const c = await startWorkload(t, ['/bin/sh', '-c', `${BIN}/unixpeer /tmp/in.sock stream serve & ${BIN}/unixpeer /tmp/in.sock & wait`]);
  // the first program to set up writes /tmp/ready; give the client time to connect
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual((await scan(c.pid)).reasons, []);
});

void test('every blocker of a process tree is listed at once', async (t) => {
  const cmd = [
    `${BIN}/iouring &`,
    `${BIN}/secretmem &`,
    `${BIN}/flocker &`,
    `${BIN}/ghost 3000000 /tmp/g.dat &`,
    `${BIN}/tcppair 7002 &`,
    `${BIN}/oddsock &`,
    'sleep 1; touch /tmp/all-ready; wait',
  ].join(' ');
  const c = await startWorkload(t, ['/bin/sh', '-c', cmd], { readyFile: '/tmp/all-ready' });
  const r = await scan(c.pid);
  assert.deepEqual(
    [...new Set(codes(r.reasons))].sort(),
    ['FileLocks', 'GhostFileTooLarge', 'IoUring', 'MemfdSecret', 'TCPEstablished', 'UnsupportedSocket'],
  );
  const pids = new Set(r.reasons.map((x) => /^task (\d+)/.exec(x.message)?.[1]));
  assert.ok(pids.size >= 6, `reasons name the task of each blocker: ${[...pids].join(' ')}`);
});
