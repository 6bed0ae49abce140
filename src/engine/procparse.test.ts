import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  classifyMount,
  criuCarriesDevice,
  decodeProcAddr,
  devMajorMinor,
  hostPathOf,
  mountOfPath,
  overlayDirs,
  parseCgroup,
  parseCtrTaskLs,
  parseFdinfoLocks,
  parseIpAddrJson,
  parseMountinfo,
  parseProcLocks,
  parseProcNetInet,
  parseProcNetInodes,
  parseSmaps,
  parseSmapsRollup,
  parseSsUnix,
  parseStatPpid,
  parseSysvShm,
  rootMount,
  statusField,
} from './procparse.ts';

const MOUNTINFO = [
  '1406 1312 0:112 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/c/snapshots/1/fs:/var/lib/c/snapshots/0/fs,upperdir=/var/lib/c/snapshots/2/fs,workdir=/var/lib/c/snapshots/2/work',
  '1407 1406 0:115 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
  '1408 1406 0:116 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755',
  '1409 1408 0:117 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666',
  '1411 1406 0:118 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro',
  '1412 1411 0:30 /k8s.io/abc /sys/fs/cgroup/freezer ro,nosuid - cgroup cgroup rw,freezer',
  '1413 1406 8:1 /srv/data\\040dir /data rw,relatime - ext4 /dev/sda1 rw',
  '1414 1406 0:40 / /run rw - tmpfs tmpfs rw',
  '1415 1406 0:5 /loop-control /hostdev/loop-control rw - devtmpfs udev rw,size=100k',
].join('\n');

void test('mountinfo: fields, escapes, root, kinds, overlay dirs', () => {
  const ms = parseMountinfo(MOUNTINFO);
  assert.equal(ms.length, 9);
  const root = rootMount(ms);
  assert.equal(root?.mountId, 1406);
  assert.deepEqual(root?.propagation, ['master:1']);
  assert.equal(ms[6]?.root, '/srv/data dir');
  assert.deepEqual(
    ms.map((m) => classifyMount(m, root?.mountId)),
    ['root', 'proc', 'dev', 'devpts', 'sysfs', 'cgroup', 'bind', 'tmpfs', 'bind'],
  );
  assert.deepEqual(overlayDirs(root ?? ms[0]!), {
    lowerdirs: ['/var/lib/c/snapshots/1/fs', '/var/lib/c/snapshots/0/fs'],
    upperdir: '/var/lib/c/snapshots/2/fs',
    workdir: '/var/lib/c/snapshots/2/work',
  });
  assert.equal(mountOfPath('/data/x', ms)?.mountId, 1413);
  assert.equal(mountOfPath('/database', ms)?.mountId, 1406);
  assert.equal(mountOfPath('/dev/pts/0', ms)?.mountId, 1409);
});

void test('hostPathOf finds the host mount of the same device', () => {
  const host = parseMountinfo(
    ['22 1 8:1 / / rw - ext4 /dev/sda1 rw', '23 22 8:1 /srv /mnt/srv rw - ext4 /dev/sda1 rw'].join('\n'),
  );
  const [bind] = parseMountinfo('1 0 8:1 /srv/data /data rw - ext4 /dev/sda1 rw');
  assert.equal(hostPathOf(bind!, host), '/mnt/srv/data');
  const [whole] = parseMountinfo('1 0 8:1 / /x rw - ext4 /dev/sda1 rw');
  assert.equal(hostPathOf(whole!, host), '/');
  const [other] = parseMountinfo('1 0 8:2 / /x rw - ext4 /dev/sdb rw');
  assert.equal(hostPathOf(other!, host), undefined);
});

void test('cgroup, stat, status, ctr task ls', () => {
  assert.deepEqual(parseCgroup('12:freezer:/k8s.io/abc\n3:cpu,cpuacct:/k8s.io/abc\n0::/\n'), [
    { hierarchy: 12, controllers: ['freezer'], path: '/k8s.io/abc' },
    { hierarchy: 3, controllers: ['cpu', 'cpuacct'], path: '/k8s.io/abc' },
    { hierarchy: 0, controllers: [], path: '/' },
  ]);
  assert.equal(parseStatPpid('42 (a) b (c)) S 7 42 42 0 -1'), 7);
  assert.equal(statusField('Name:\tx\nTracerPid:\t123\n', 'TracerPid'), '123');
  const t = parseCtrTaskLs('TASK    PID     STATUS\nabc     1234    RUNNING\ndef     0       STOPPED\n');
  assert.deepEqual(t.get('abc'), { pid: 1234, status: 'RUNNING' });
  assert.deepEqual(t.get('def'), { pid: 0, status: 'STOPPED' });
});

void test('/proc/net tables', () => {
  const tcp = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1B59 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0',
    '   1: 0100007F:1B59 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1',
  ].join('\n');
  assert.deepEqual(parseProcNetInet(tcp), [
    { inode: 1001, state: 10, local: '127.0.0.1:7001', remote: '0.0.0.0:0', rxQueue: 2 },
    { inode: 1002, state: 1, local: '127.0.0.1:7001', remote: '127.0.0.1:41394', rxQueue: 0 },
  ]);
  assert.equal(decodeProcAddr('00000000000000000000000001000000:0050'), '[::1]:80');
  assert.equal(decodeProcAddr('0000000000000000FFFF00000100007F:0050'), '[::ffff:127.0.0.1]:80');
  assert.equal(decodeProcAddr('000080FE00000000FF005452C2D2F4FE:0016'), '[fe80::5254:ff:fef4:d2c2]:22');
  const unix = 'Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 2001 /run/x.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 2002\n';
  assert.deepEqual(parseProcNetInodes(unix, 6), [2001, 2002]);
});

void test('ss -x output: inode and peer, names with spaces', () => {
  const ss = [
    'Netid State  Recv-Q Send-Q                Local Address:Port    Peer Address:Port',
    'u_str ESTAB  0      0                                 * 3001               * 3002',
    'u_str LISTEN 0      8                       /run/my sock 3003               * 0',
    'u_dgr ESTAB  0      0                                 * 3004               * 9999',
  ].join('\n');
  assert.deepEqual(parseSsUnix(ss), [
    { netid: 'u_str', state: 'ESTAB', localName: '*', inode: 3001, peer: 3002 },
    { netid: 'u_str', state: 'LISTEN', localName: '/run/my sock', inode: 3003, peer: 0 },
    { netid: 'u_dgr', state: 'ESTAB', localName: '*', inode: 3004, peer: 9999 },
  ]);
});

void test('locks: /proc/locks (waiters skipped) and fdinfo lock lines', () => {
  const locks = parseProcLocks(
    '1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF\n1: -> POSIX  ADVISORY  WRITE 99 08:01:5678 0 EOF\n2: OFDLCK ADVISORY  READ  -1 00:2e:9 0 EOF\n' +
      '3: LEASE  BREAKING  READ  42 00:2e:10 0 EOF\n',
  );
  assert.deepEqual(locks, [
    { kind: 'POSIX', mode: 'WRITE', state: 'ADVISORY', pid: 1234, file: '08:01:5678' },
    { kind: 'OFDLCK', mode: 'READ', state: 'ADVISORY', pid: -1, file: '00:2e:9' },
    { kind: 'LEASE', mode: 'READ', state: 'BREAKING', pid: 42, file: '00:2e:10' },
  ]);
  assert.deepEqual(parseFdinfoLocks('pos:\t0\nflags:\t02\nlock:\t1: FLOCK  ADVISORY  WRITE 77 00:2e:12 0 EOF\n'), [
    { kind: 'FLOCK', mode: 'WRITE', state: 'ADVISORY', pid: 77, file: '00:2e:12' },
  ]);
});

void test('smaps_rollup and ip -j addr', () => {
  assert.deepEqual(parseSmapsRollup('55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:                1400 kB\nPss:                 700 kB\n'), {
    rss: 1400 * 1024,
    pss: 700 * 1024,
  });
  const ip = JSON.stringify([
    { ifindex: 1, ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet6', local: '::1', prefixlen: 128 }] },
    { ifindex: 2, ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.0.0.2', prefixlen: 24 }] },
  ]);
  assert.deepEqual(parseIpAddrJson(ip), [
    { name: 'lo', ipv4: ['127.0.0.1/8'], ipv6: ['::1/128'] },
    { name: 'eth0', ipv4: ['10.0.0.2/24'], ipv6: [] },
  ]);
});

void test('devices CRIU carries', () => {
  assert.ok(criuCarriesDevice('char', 1, 3)); // /dev/null
  assert.ok(criuCarriesDevice('char', 1, 9)); // /dev/urandom
  assert.ok(criuCarriesDevice('char', 5, 2)); // /dev/ptmx
  assert.ok(criuCarriesDevice('char', 136, 4)); // /dev/pts/4
  assert.ok(criuCarriesDevice('char', 10, 200)); // /dev/net/tun
  assert.ok(!criuCarriesDevice('char', 10, 232)); // /dev/kvm
  assert.ok(!criuCarriesDevice('char', 10, 237)); // /dev/loop-control
  assert.ok(!criuCarriesDevice('char', 226, 0)); // /dev/dri/card0
  assert.ok(!criuCarriesDevice('block', 8, 0)); // /dev/sda
  assert.ok(!criuCarriesDevice('char', 4, 1)); // /dev/tty1, a virtual console
  assert.ok(criuCarriesDevice('char', 4, 64)); // /dev/ttyS0
  assert.deepEqual(devMajorMinor((10 << 8) | 237), { major: 10, minor: 237 });
  assert.deepEqual(devMajorMinor((259 << 8) | 1), { major: 259, minor: 1 });
});

void test('parseSmaps: maps line, kB fields in bytes, VmFlags; a mapping without a path', () => {
  const v = parseSmaps(
    [
      '7f0000000000-7f0000100000 rw-s 00000000 00:01 32768                      /SYSV0000002a (deleted)',
      'Size:               1024 kB',
      'Rss:                 512 kB',
      'Swap:                  4 kB',
      'THPeligible:           0',
      'VmFlags: rd wr sh mr mw me ms sd',
      '7f1000000000-7f1000040000 rw-p 00000000 00:00 0 ',
      'Anonymous:           256 kB',
      'VmFlags: rd wr mr mw me lo ac',
    ].join('\n'),
  );
  assert.deepEqual(v, [
    { start: '7f0000000000', end: '7f0000100000', perms: 'rw-s', dev: '00:01', inode: 32768, path: '/SYSV0000002a (deleted)',
      bytes: { Size: 1 << 20, Rss: 512 * 1024, Swap: 4096 }, flags: ['rd', 'wr', 'sh', 'mr', 'mw', 'me', 'ms', 'sd'] },
    { start: '7f1000000000', end: '7f1000040000', perms: 'rw-p', dev: '00:00', inode: 0, path: '',
      bytes: { Anonymous: 256 * 1024 }, flags: ['rd', 'wr', 'mr', 'mw', 'me', 'lo', 'ac'] },
  ]);
});

void test('parseSysvShm: columns by header name; anything else is not the table', () => {
  const text =
    '       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n' +
    '         0          3   600               1048576     7     7      0     0     0     0     0 1764679000 1764679000 1764679000               1048576                     0\n' +
    '        42          4   600                 65536     7     7      1     0     0     0     0 1764679000          0 1764679000                  4096                  8192\n';
  assert.deepEqual(parseSysvShm(text), [
    { shmid: 3, size: 1048576, rss: 1048576, swap: 0, nattch: 0 },
    { shmid: 4, size: 65536, rss: 4096, swap: 8192, nattch: 1 },
  ]);
  assert.deepEqual(parseSysvShm(text.split('\n')[0] ?? ''), [], 'an empty namespace');
  assert.equal(parseSysvShm('Netid State Recv-Q\n'), undefined);
});
