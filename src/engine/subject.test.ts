import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressesOf, beneath, externalMountsFor, freezerDirOf, rootPeerInRoot } from './subject.ts';
import type { ContainerMount } from './container.ts';

function m(mountpoint: string, kind: ContainerMount['kind'], dev: string, extra: Partial<ContainerMount> = {}): ContainerMount {
  return { mountId: 1, parentId: 0, dev, root: '/', mountpoint, mountOptions: [], propagation: [], fstype: kind, source: kind, superOptions: [], kind, ...extra };
}

test('cgroup and bind mounts are always external; tmpfs only when nothing depends on it', () => {
  const mounts = [
    m('/', 'root', '0:39'),
    m('/dev', 'tmpfs', '0:43'),
    m('/dev/shm', 'tmpfs', '0:45'),
    m('/run', 'tmpfs', '0:47'),
    m('/tmp', 'tmpfs', '0:50'),
    m('/proc/keys', 'tmpfs', '0:43', { root: '/null' }),
    m('/data', 'tmpfs', '0:51'),
    m('/data/inner', 'tmpfs', '0:52'),
    m('/sys/fs/cgroup/memory', 'cgroup', '0:30'),
    m('/etc/hosts', 'bind', '8:1', { hostPath: '/var/lib/x/hosts' }),
  ];
  const ext = externalMountsFor(mounts, { externalTmpfs: true, inUse: new Set(['/tmp']) });
  assert.deepEqual(
    ext.map((e) => [e.mountpoint, e.kind, e.key]),
    [
      ['/dev/shm', 'tmpfs', 'tmpfs-dev_shm'],
      ['/run', 'tmpfs', 'tmpfs-run'],
      ['/data/inner', 'tmpfs', 'tmpfs-data_inner'],
      ['/sys/fs/cgroup/memory', 'cgroup', 'cgroup-sys_fs_cgroup_memory'],
      ['/etc/hosts', 'bind', 'bind-etc_hosts'],
    ],
  );
  assert.equal(ext.find((e) => e.kind === 'bind')?.hostPath, '/var/lib/x/hosts');
  assert.equal(externalMountsFor(mounts, { externalTmpfs: false, inUse: new Set() }).filter((e) => e.kind === 'tmpfs').length, 0);
});

test('a bind from the root filesystem whose source was deleted is left to CRIU; one from elsewhere stays external', () => {
  const mounts = [
    m('/', 'root', '8:1', { root: '/srv/ct' }),
    m('/data/dst', 'bind', '8:1', { root: '/srv/ct/data/src//deleted' }),
    m('/vol', 'bind', '8:1', { root: '/var/lib/vol//deleted', hostPath: '/var/lib/vol//deleted' }),
    m('/other', 'bind', '8:2', { root: '/srv/ct/x//deleted' }),
    m('/live', 'bind', '8:1', { root: '/srv/ct/live' }),
  ];
  assert.deepEqual(
    externalMountsFor(mounts, { externalTmpfs: true, inUse: new Set() }).map((e) => e.mountpoint),
    ['/vol', '/other', '/live'],
  );
});

test("a bind from the root filesystem in the root mount's peer group is left to CRIU; other binds stay external", () => {
  const root = m('/', 'root', '8:1', { root: '/srv/ct', propagation: ['shared:7'] });
  const mounts = [
    root,
    m('/a.bind', 'bind', '8:1', { root: '/srv/ct/a', propagation: ['shared:7'] }),
    m('/private', 'bind', '8:1', { root: '/srv/ct/b' }),
    m('/other-group', 'bind', '8:1', { root: '/srv/ct/c', propagation: ['shared:9'] }),
    m('/vol', 'bind', '8:1', { root: '/var/lib/vol', propagation: ['shared:7'], hostPath: '/var/lib/vol' }),
    m('/otherfs', 'bind', '8:2', { root: '/srv/ct/a', propagation: ['shared:7'] }),
  ];
  assert.deepEqual(
    externalMountsFor(mounts, { externalTmpfs: true, inUse: new Set() }).map((e) => e.mountpoint),
    ['/private', '/other-group', '/vol', '/otherfs'],
  );
  assert.equal(rootPeerInRoot(mounts[1] as ContainerMount, m('/', 'root', '8:1', { root: '/srv/ct' })), false, 'a private root has no group');
});

test('beneath', () => {
  assert.ok(beneath('/run/x', '/run') && beneath('/run', '/run') && !beneath('/running', '/run') && beneath('/a', '/'));
});

test('addresses skip loopback and link-local; freezer folder from the v1 freezer line', () => {
  const network = {
    netnsPath: '/proc/1/ns/net',
    inode: 1,
    hostNetwork: false,
    interfaces: [
      { name: 'lo', ipv4: ['127.0.0.1/8'], ipv6: ['::1/128'] },
      { name: 'eth0', ipv4: ['10.0.0.5/24'], ipv6: ['fd00::5/64', 'fe80::1/64'] },
    ],
  };
  assert.deepEqual(addressesOf({ network }), [
    { ifname: 'eth0', cidr: '10.0.0.5/24' },
    { ifname: 'eth0', cidr: 'fd00::5/64' },
  ]);
  assert.deepEqual(addressesOf({ network: { ...network, hostNetwork: true } }).length, 2, 'a host-network container carries the node addresses');
  const cgroups = [
    { hierarchy: 6, controllers: ['freezer'], path: '/k8s.io/abc' },
    { hierarchy: 0, controllers: [], path: '/k8s.io/abc' },
  ];
  assert.equal(freezerDirOf({ cgroups }), '/sys/fs/cgroup/freezer/k8s.io/abc');
  assert.equal(freezerDirOf({ cgroups: [] }), undefined);
});
