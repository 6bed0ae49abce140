// preflightScan's decisions on a fake /proc (symlinks and text files in a temp folder) with a fake runner
// for `ss` and the perl getxattr bridge. The real kernel side is covered by test/engine/preflight-integration.test.ts.

import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PROBE_OPTIONS } from './api.ts';
import type { ContainerInfo } from './container.ts';
import type { RunResult, Runner } from './exec.ts';
import { preflightScan } from './preflight.ts';

const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const tcpLine = (ino: number, st: string, rx = '00000000'): string =>
  `   0: 0100007F:1B59 0100007F:A1B2 ${st} 00000000:${rx} 00:00000000 00000000     0        0 ${ino} 1 0 20 4 30 10 -1\n`;

async function fakeProc(t: TestContext): Promise<{ proc: string; info: ContainerInfo }> {
  const root = await mkdtemp(join(tmpdir(), 'mp-fakeproc-'));
  t.after(async () => await rm(root, { recursive: true, force: true }));
  const proc = join(root, 'proc');
  const p = (pid: number, ...rest: string[]): string => join(proc, String(pid), ...rest);
  for (const pid of [100, 101]) {
    await mkdir(p(pid, 'fd'), { recursive: true });
    await mkdir(p(pid, 'fdinfo'), { recursive: true });
    await mkdir(p(pid, 'ns'), { recursive: true });
    await mkdir(p(pid, 'net'), { recursive: true });
    await mkdir(p(pid, 'task', String(pid)), { recursive: true });
    await symlink('net:[77]', p(pid, 'ns', 'net'));
    await writeFile(p(pid, 'maps'), '00400000-00500000 r-xp 00000000 00:2e 12 /bin/app\n');
    await writeFile(p(pid, 'smaps_rollup'), 'Rss:  2000 kB\nPss:  1000 kB\n');
  }
  await writeFile(p(100, 'task', '100', 'status'), 'Name:\tapp\nTracerPid:\t0\n');
  await writeFile(p(101, 'task', '101', 'status'), 'Name:\tkid\nTracerPid:\t555\n');
  const fds: [number, number, string][] = [
    [100, 3, 'socket:[1001]'], // TCP established
    [100, 4, 'anon_inode:[io_uring]'],
    [100, 5, '/secretmem (deleted)'],
    [100, 6, 'socket:[2001]'], // unix stream, external peer
    [100, 7, 'socket:[3001]'], // unix dgram, external peer
    [100, 8, 'socket:[4001]'], // AF_VSOCK
    [100, 9, '/nonexistent-locked-file'],
    [100, 10, 'socket:[1002]'], // TCP listener with an in-flight connection
    [101, 3, 'socket:[2002]'], // unix stream whose peer 2003 is held by 101 fd 4: internal
    [101, 4, 'socket:[2003]'],
    [101, 5, 'pipe:[5]'],
  ];
  for (const [pid, fd, link] of fds) {
    await symlink(link, p(pid, 'fd', String(fd)));
    await writeFile(p(pid, 'fdinfo', String(fd)), 'pos:\t0\nflags:\t02\n');
  }
  await writeFile(p(100, 'fdinfo', '9'), 'pos:\t0\nflags:\t02\nlock:\t1: OFDLCK ADVISORY  WRITE -1 00:2e:99 0 EOF\n');
  await writeFile(p(100, 'net', 'tcp'), TCP_HEADER + tcpLine(1001, '01') + tcpLine(1002, '0A', '00000001'));
  await writeFile(join(proc, 'locks'), '1: OFDLCK ADVISORY  WRITE -1 00:2e:99 0 EOF\n2: POSIX  ADVISORY  WRITE 101 00:2e:98 0 EOF\n');
  const info = {
    initPid: 100,
    pids: [100, 101],
    threads: { 100: [100], 101: [101] },
    mounts: [],
  } as unknown as ContainerInfo;
  return { proc, info };
}

function fakeRunner(proc: string): Runner {
  const ok = (stdout: string): Promise<RunResult> =>
    Promise.resolve({ exitCode: 0, signal: null, stdout, stderr: '', timedOut: false, durationMs: 1 });
  return (cmd, args) => {
    if (cmd === 'nsenter') {
      return ok(
        [
          'Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port',
          'u_str ESTAB 0 0 * 2001 * 9999',
          'u_dgr ESTAB 0 0 * 3001 * 9998',
          'u_str ESTAB 0 0 * 2002 * 2003',
          'u_str ESTAB 0 0 * 2003 * 2002',
        ].join('\n'),
      );
    }
    if (cmd === 'perl') {
      const paths = args.slice(3);
      return ok(paths.map((x) => `${x}\t${x === join(proc, '100', 'fd', '8') ? 'AF_VSOCK' : x.endsWith('/3') && x.includes('/100/') ? 'TCP' : 'UNIX'}`).join('\n') + '\n');
    }
    throw new Error(`unexpected ${cmd}`);
  };
}

void test('every blocker kind is found at once, with task, fd and what was found', async (t) => {
  const { proc, info } = await fakeProc(t);
  const r = await preflightScan(info, DEFAULT_PROBE_OPTIONS, { proc, runner: fakeRunner(proc) });
  const got = r.reasons.map((x) => `${x.code}: ${x.message}`);
  const want = [
    /^TCPEstablished: task 100 fd 3: TCP 127\.0\.0\.1:7001 -> 127\.0\.0\.1:41394 ESTABLISHED$/,
    /^ExternalUnixSocket: task 100 fd 6: unix stream socket unnamed \(inode 2001\) is connected to peer inode 9999/,
    /^ExternalUnixSocket: task 100 fd 7: unix datagram socket/,
    /^UnsupportedSocket: task 100 fd 8: AF_VSOCK socket \(inode 4001\)/,
    /^TCPEstablished: task 100 fd 10: TCP listener 127\.0\.0\.1:7001 has 1 connection\(s\) not yet accepted/,
    /^IoUring: task 100 fd 4: io_uring instance$/,
    /^MemfdSecret: task 100 fd 5: memfd_secret area/,
    /^FileLocks: task 100 fd 9: holds a OFDLCK WRITE lock on \/nonexistent-locked-file$/,
    /^FileLocks: task 101: holds a POSIX WRITE lock on file 00:2e:98/,
    /^Ptraced: task 101 thread 101: traced by PID 555 \(outside the container\)$/,
  ];
  assert.equal(got.length, want.length, got.join('\n'));
  for (const re of want) assert.ok(got.some((g) => re.test(g)), `${re}\n${got.join('\n')}`);
  assert.ok(r.reasons.every((x) => x.phase === 'preflight'));
  assert.equal(r.rssBytes, 2 * 1000 * 1024, 'Pss summed over the processes');
});

const smapsVma = (head: string, fields: Record<string, number>, flags = 'rd wr mr mw me ac'): string =>
  `${head}\n${Object.entries(fields).map(([k, kb]) => `${k}:${' '.repeat(8)}${kb} kB`).join('\n')}\nVmFlags: ${flags}\n`;

void test('non-lazy memory by kind, each shared object once; over the limit -> NonLazyMemory naming the option', async (t) => {
  const { proc, info } = await fakeProc(t);
  const sysv = '7f0000000000-7f0000100000 rw-s 00000000 00:01 32768                      /SYSV00000000 (deleted)';
  await writeFile(
    join(proc, '100', 'smaps'),
    smapsVma(sysv, { Rss: 1024, Swap: 0 }, 'rd wr sh mr mw me ms sd') +
      smapsVma('7f1000000000-7f1000040000 rw-p 00000000 00:00 0 ', { Rss: 256, Anonymous: 256, Swap: 0 }, 'rd wr mr mw me lo ac') +
      smapsVma('7f2000000000-7f2000040000 rw-p 00000000 00:00 0 ', { Rss: 4096, Anonymous: 4096 }) +
      smapsVma('00600000-00602000 rw-p 00100000 00:2e 12      /bin/app', { Rss: 8, Anonymous: 8, Swap: 4 }) +
      smapsVma('7fff00000000-7fff00002000 r-xp 00000000 00:00 0                  [vdso]', { Rss: 8 }),
  );
  // the second task maps the same segment, less of it resident there: counted once, at its largest
  await writeFile(join(proc, '101', 'smaps'), smapsVma(sysv, { Rss: 512 }, 'rd wr sh mr mw me ms sd'));
  const r = await preflightScan(info, DEFAULT_PROBE_OPTIONS, { proc, runner: fakeRunner(proc) });
  assert.deepEqual(r.nonLazy, {
    totalBytes: (1024 + 256 + 12) * 1024,
    mlockedBytes: 256 * 1024,
    sharedMemoryBytes: 0,
    sysvShmBytes: 1024 * 1024,
    dirtyPrivateFileBytes: 12 * 1024,
    tmpfsBytes: 0,
  });
  assert.ok(!r.reasons.some((x) => x.code === 'NonLazyMemory'), 'under the 64 MiB default');
  const over = await preflightScan(info, { ...DEFAULT_PROBE_OPTIONS, nonLazyMemoryLimitBytes: 1024 * 1024 }, { proc, runner: fakeRunner(proc) });
  const nl = over.reasons.filter((x) => x.code === 'NonLazyMemory');
  assert.equal(nl.length, 1, JSON.stringify(over.reasons));
  assert.match(nl[0]?.message ?? '', /holds 1\.3 MiB \(1323008 bytes\).*SysV shm 1\.0 MiB.*over the non-lazy memory limit of 1\.0 MiB/);
  assert.match(nl[0]?.message ?? '', /largest: 1\.0 MiB SysV shm at task 100 7f0000000000-7f0000100000 \/SYSV00000000/);
  assert.match(nl[0]?.hint ?? '', /spec\.options\.nonLazyMemoryLimitBytes \(CLI --non-lazy-memory-limit\) to at least 1323008/);
  assert.equal(nl[0]?.phase, 'preflight');
});

void test('options allow what CRIU can carry, and only that', async (t) => {
  const { proc, info } = await fakeProc(t);
  const r = await preflightScan(
    info,
    { ...DEFAULT_PROBE_OPTIONS, tcpEstablished: true, fileLocks: true, extUnixSockets: true },
    { proc, runner: fakeRunner(proc) },
  );
  const codes = r.reasons.map((x) => `${x.code} ${/fd \d+/.exec(x.message)?.[0] ?? ''}`.trim()).sort();
  assert.deepEqual(codes, [
    'ExternalUnixSocket fd 6', // stream: --ext-unix-sk cannot carry it
    'IoUring fd 4',
    'MemfdSecret fd 5',
    'Ptraced',
    'TCPEstablished fd 10', // in flight: only tcpSkipInFlight allows it
    'UnsupportedSocket fd 8',
  ]);
  assert.match(r.reasons.find((x) => x.code === 'ExternalUnixSocket')?.hint ?? '', /only carries datagram sockets/);
  assert.match(r.reasons.find((x) => x.code === 'TCPEstablished')?.hint ?? '', /options\.tcpSkipInFlight: true \(CLI --skip-in-flight/);
});

void test('tcpClose allows connected TCP (carried closed), tcpSkipInFlight a listener\'s connections not yet accepted', async (t) => {
  const { proc, info } = await fakeProc(t);
  const tcpOf = async (o: Partial<typeof DEFAULT_PROBE_OPTIONS>): Promise<string[]> =>
    (await preflightScan(info, { ...DEFAULT_PROBE_OPTIONS, ...o }, { proc, runner: fakeRunner(proc) })).reasons
      .filter((x) => x.code === 'TCPEstablished')
      .map((x) => /fd \d+/.exec(x.message)?.[0] ?? '');
  assert.deepEqual((await tcpOf({})).sort(), ['fd 10', 'fd 3']);
  assert.deepEqual(await tcpOf({ tcpClose: true }), ['fd 10']);
  assert.deepEqual(await tcpOf({ tcpSkipInFlight: true }), ['fd 3']);
  assert.deepEqual(await tcpOf({ tcpClose: true, tcpSkipInFlight: true }), []);
});

void test('a [uprobes] mapping is a blocker unless allowUprobes', async (t) => {
  const { proc, info } = await fakeProc(t);
  await writeFile(join(proc, '101', 'maps'), '00400000-00500000 r-xp 00000000 00:2e 12 /bin/app\n7fff0000-7fff1000 r-xp 00000000 00:00 0                          [uprobes]\n');
  const r = await preflightScan(info, DEFAULT_PROBE_OPTIONS, { proc, runner: fakeRunner(proc) });
  assert.ok(r.reasons.some((x) => x.code === 'Uprobes' && /task 101: has a \[uprobes\] mapping/.test(x.message)));
  assert.match(r.reasons.find((x) => x.code === 'Uprobes')?.hint ?? '', /--allow-uprobes/);
  const allowed = await preflightScan(info, { ...DEFAULT_PROBE_OPTIONS, allowUprobes: true }, { proc, runner: fakeRunner(proc) });
  assert.ok(!allowed.reasons.some((x) => x.code === 'Uprobes'));
});

void test('without CAP_SYS_RESOURCE, a task of another user is a blocker (CRIU cannot read its rlimits)', async (t) => {
  const { proc, info } = await fakeProc(t);
  await mkdir(join(proc, 'self'));
  const status = (uid: string, gid: string, capEff: string): string =>
    `Name:\tx\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nGid:\t${gid}\t${gid}\t${gid}\t${gid}\nCapEff:\t${capEff}\n`;
  await writeFile(join(proc, '100', 'status'), status('0', '0', '0'));
  await writeFile(join(proc, '101', 'status'), status('18943', '58467', '0'));
  await writeFile(join(proc, 'self', 'status'), status('0', '0', '000001fffeffffff'));
  const r = await preflightScan(info, DEFAULT_PROBE_OPTIONS, { proc, runner: fakeRunner(proc) });
  const got = r.reasons.filter((x) => x.code === 'InsufficientPrivileges');
  assert.equal(got.length, 1, r.reasons.map((x) => x.message).join('\n'));
  assert.match(got[0]?.message ?? '', /task 101: runs as uid 18943\/18943\/18943/);
  assert.match(got[0]?.hint ?? '', /CAP_SYS_RESOURCE/);
  // in a user namespace of its own: left to CRIU (it has the capability there when the namespace is ours)
  await mkdir(join(proc, 'self', 'ns'));
  await symlink('user:[1]', join(proc, 'self', 'ns', 'user'));
  await symlink('user:[2]', join(proc, '101', 'ns', 'user'));
  const own = await preflightScan(info, DEFAULT_PROBE_OPTIONS, { proc, runner: fakeRunner(proc) });
  assert.ok(!own.reasons.some((x) => x.code === 'InsufficientPrivileges'));
  // with the capability (bit 24), nothing
  await writeFile(join(proc, 'self', 'status'), status('0', '0', '000001ffffffffff'));
  const ok = await preflightScan(info, DEFAULT_PROBE_OPTIONS, { proc, runner: fakeRunner(proc) });
  assert.ok(!ok.reasons.some((x) => x.code === 'InsufficientPrivileges'));
});

void test('a lease in the middle of a break is a blocker even with fileLocks', async (t) => {
  const { proc, info } = await fakeProc(t);
  await writeFile(join(proc, 'locks'), '1: LEASE  BREAKING  READ  100 00:2e:97 0 EOF\n2: LEASE  ACTIVE    READ  101 00:2e:96 0 EOF\n');
  const r = await preflightScan(info, { ...DEFAULT_PROBE_OPTIONS, fileLocks: true }, { proc, runner: fakeRunner(proc) });
  const leases = r.reasons.filter((x) => x.code === 'FileLocks');
  assert.equal(leases.length, 1, leases.map((x) => x.message).join('\n'));
  assert.match(leases[0]?.message ?? '', /task 100: holds a READ lease on file 00:2e:97 \(dev:inode\) that another open is breaking/);
  assert.match(leases[0]?.hint ?? '', /even with --file-locks/);
});
