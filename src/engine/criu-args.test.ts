import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dumpArgs, restoreArgs, mountKey, networkLockFor } from './criu-args.ts';

const options = { tcpEstablished: false, fileLocks: false, extUnixSockets: false, ghostLimitBytes: 1048576 };

function pairs(a: string[], flag: string): string[] {
  const out: string[] = [];
  a.forEach((x, i) => {
    if (x === flag) out.push(a[i + 1] ?? '');
  });
  return out;
}

test('dump: lazy pages, leave running, externals, cpu-cap, skip network lock', () => {
  const a = dumpArgs({
    pid: 42,
    imagesDir: '/w/img',
    logFile: '/w/dump.log',
    root: '/proc/42/root',
    externalMounts: [
      { mountpoint: '/sys/fs/cgroup/memory', key: 'cgroup-sys_fs_cgroup_memory', kind: 'cgroup' },
      { mountpoint: '/run', key: 'tmpfs-run', kind: 'tmpfs' },
    ],
    netnsInode: 4026532177,
    lazyPages: { psSocketFd: 3 },
    leaveRunning: true,
    options,
  });
  assert.deepEqual(a.slice(0, 3), ['dump', '-t', '42']);
  assert.ok(a.includes('--leave-running'));
  assert.ok(a.includes('--lazy-pages'));
  assert.deepEqual(pairs(a, '--ps-socket'), ['3']);
  assert.deepEqual(pairs(a, '--port'), [], 'no TCP page server');
  assert.deepEqual(pairs(a, '--root'), ['/proc/42/root']);
  assert.deepEqual(pairs(a, '--external'), [
    'mnt[/sys/fs/cgroup/memory]:cgroup-sys_fs_cgroup_memory',
    'mnt[/run]:tmpfs-run',
    'net[4026532177]:migprobe-netns',
  ]);
  assert.deepEqual(pairs(a, '--network-lock'), ['skip']);
  assert.ok(a.includes('--cpu-cap=fpu,ins'));
  assert.ok(a.includes('--manage-cgroups=soft'));
  assert.deepEqual(pairs(a, '--ghost-limit'), ['1048576']);
  assert.ok(a.includes('-v2'));
  for (const f of ['--tcp-established', '--file-locks', '--ext-unix-sk']) assert.ok(!a.includes(f));
});

test('dump: allowed features become CRIU flags; established TCP takes the nftables lock', () => {
  const a = dumpArgs({
    pid: 1,
    imagesDir: 'i',
    logFile: 'l',
    externalMounts: [],
    leaveRunning: false,
    options: { tcpEstablished: true, fileLocks: true, extUnixSockets: true, ghostLimitBytes: 5.7 },
  });
  for (const f of ['--tcp-established', '--file-locks', '--ext-unix-sk']) assert.ok(a.includes(f), f);
  assert.deepEqual(pairs(a, '--network-lock'), ['nftables']);
  assert.deepEqual(pairs(a, '--ghost-limit'), ['5']);
  assert.ok(!a.includes('--leave-running'));
  assert.ok(!a.includes('--lazy-pages'));
  assert.equal(networkLockFor({ tcpEstablished: false }), 'skip');
  const tcp = dumpArgs({ pid: 1, imagesDir: 'i', logFile: 'l', externalMounts: [], leaveRunning: true, options, lazyPages: { address: '127.0.0.1', port: 4321 }, statusFd: 3 });
  assert.deepEqual(pairs(tcp, '--address'), ['127.0.0.1']);
  assert.deepEqual(pairs(tcp, '--port'), ['4321']);
  assert.deepEqual(pairs(tcp, '--status-fd'), ['3']);
});

test('restore: detached, stopped, private root and cgroup root, key mapping, inherited netns, cpu-cap', () => {
  const a = restoreArgs({
    imagesDir: '/b/images',
    logFile: '/s/restore.log',
    root: '/s/root',
    cgroupRoot: '/migprobe-sandbox/abc',
    externalMounts: [{ key: 'tmpfs-run', path: '/s/ext/run' }],
    netnsFd: 3,
    pidfile: '/s/pid',
    options: { tcpEstablished: true, fileLocks: false, extUnixSockets: false },
  });
  assert.equal(a[0], 'restore');
  for (const f of ['--restore-detached', '--leave-stopped', '--tcp-established', '--cpu-cap=fpu,ins', '--manage-cgroups=soft']) assert.ok(a.includes(f), f);
  assert.deepEqual(pairs(a, '--root'), ['/s/root']);
  assert.deepEqual(pairs(a, '--cgroup-root'), ['/migprobe-sandbox/abc']);
  assert.deepEqual(pairs(a, '--external'), ['mnt[tmpfs-run]:/s/ext/run']);
  assert.deepEqual(pairs(a, '--inherit-fd'), ['fd[3]:migprobe-netns']);
  assert.deepEqual(pairs(a, '--pidfile'), ['/s/pid']);
  const b = restoreArgs({ imagesDir: 'i', logFile: 'l', root: 'r', cgroupRoot: 'c', externalMounts: [], pidfile: 'p', options, cpuCap: false });
  assert.ok(!b.some((x) => x.startsWith('--cpu-cap')));
  assert.ok(!b.includes('--inherit-fd'));
});

test('mount keys are stable and free of separators', () => {
  assert.equal(mountKey('tmpfs', '/dev/shm'), 'tmpfs-dev_shm');
  assert.equal(mountKey('bind', '/etc/my config:x'), 'bind-etc_my_config_x');
  assert.equal(mountKey('bind', '/'), 'bind-root');
});

test('--allow-uprobes on dump and restore when the options allow uprobes', () => {
  const d = dumpArgs({ pid: 1, imagesDir: '/i', logFile: '/l', externalMounts: [], leaveRunning: true, options: { ...options, allowUprobes: true } });
  assert.ok(d.includes('--allow-uprobes'));
  assert.ok(!dumpArgs({ pid: 1, imagesDir: '/i', logFile: '/l', externalMounts: [], leaveRunning: true, options }).includes('--allow-uprobes'));
  const r = restoreArgs({
    imagesDir: '/i',
    logFile: '/l',
    root: '/r',
    cgroupRoot: '/c',
    externalMounts: [],
    pidfile: '/p',
    options: { tcpEstablished: false, fileLocks: false, extUnixSockets: false, allowUprobes: true },
  });
  assert.ok(r.includes('--allow-uprobes'));
});

test('--tcp-close on dump and restore (no lock: nothing is repaired); --skip-in-flight and --link-remap on dump only', () => {
  const asked = { ...options, tcpEstablished: true, tcpClose: true, tcpSkipInFlight: true, linkRemap: true };
  const d = dumpArgs({ pid: 1, imagesDir: '/i', logFile: '/l', externalMounts: [], leaveRunning: true, options: asked });
  for (const f of ['--tcp-close', '--skip-in-flight', '--link-remap']) assert.ok(d.includes(f), f);
  assert.deepEqual(pairs(d, '--network-lock'), ['skip']);
  assert.equal(networkLockFor({ tcpEstablished: true, tcpClose: false }), 'nftables');
  const plain = dumpArgs({ pid: 1, imagesDir: '/i', logFile: '/l', externalMounts: [], leaveRunning: true, options });
  for (const f of ['--tcp-close', '--skip-in-flight', '--link-remap']) assert.ok(!plain.includes(f), f);
  const r = restoreArgs({ imagesDir: '/i', logFile: '/l', root: '/r', cgroupRoot: '/c', externalMounts: [], pidfile: '/p', options: asked });
  assert.ok(r.includes('--tcp-close'));
  for (const f of ['--skip-in-flight', '--link-remap']) assert.ok(!r.includes(f), f);
  assert.ok(!restoreArgs({ imagesDir: '/i', logFile: '/l', root: '/r', cgroupRoot: '/c', externalMounts: [], pidfile: '/p', options }).includes('--tcp-close'));
});
