// resolveContainer on real containerd containers of the test bed: from the init PID and from the container ID.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { testbed } from '../../testbed/index.ts';
import { ContainerNotFoundError, resolveContainer } from '../../src/engine/container.ts';
import { startWorkload } from './workloads.ts';

void test('resolves a container from its ID and from its init PID, with the same facts', async (t) => {
  const tb = await testbed();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; sleep 1000 & sleep 1000 & wait'], { ip: '10.77.1.2' });
  const byId = await resolveContainer({ containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address });
  const byPid = await resolveContainer({ pid: c.pid });

  assert.equal(byId.initPid, c.pid);
  assert.equal(byId.containerId, c.id);
  assert.equal(byId.image, c.image);
  assert.equal(byPid.image, undefined, 'a PID alone does not name the image');
  assert.deepEqual(byPid.pids, byId.pids);
  assert.equal(byId.pids[0], c.pid);
  assert.equal(byId.pids.length, 3, `sh and two sleeps: ${byId.pids.join(' ')}`);
  assert.deepEqual(byPid.namespaces, byId.namespaces);

  // own namespaces: pid, mnt, net, ipc, uts; not the host's
  for (const ns of ['pid', 'mnt', 'net', 'ipc', 'uts']) {
    assert.ok(byId.namespaces[ns] !== undefined && byId.namespaces[ns] > 0, ns);
    assert.ok(!byId.sharedWithHost.includes(ns), `${ns} is not the host's`);
  }
  // cgroups: v1 hybrid, the container's own path
  const freezer = byId.cgroups.find((cg) => cg.controllers.includes('freezer'));
  assert.equal(freezer?.path, `/k8s.io/${c.id}`);
  // root filesystem: the snapshotter's overlay
  assert.equal(byId.rootfs.fstype, 'overlay');
  assert.ok(byId.rootfs.lowerdirs.length >= 1, 'overlay lowerdirs');
  assert.ok(byId.rootfs.upperdir?.includes('snapshots'), byId.rootfs.upperdir);
  assert.equal(byId.rootfs.hostPath, `/proc/${c.pid}/root`);
  const kinds = new Set(byId.mounts.map((m) => m.kind));
  for (const k of ['root', 'proc', 'dev', 'devpts', 'sysfs'] as const) assert.ok(kinds.has(k), `mount kind ${k}: ${[...kinds].join(' ')}`);
  assert.equal(byId.mounts.find((m) => m.mountpoint === '/proc')?.kind, 'proc');
  // network: its own netns with the address the test bed gave it
  assert.equal(byId.network.hostNetwork, false);
  assert.equal(byId.network.netnsPath, `/proc/${c.pid}/ns/net`);
  const eth0 = byId.network.interfaces.find((i) => i.name === 'eth0');
  assert.deepEqual(eth0?.ipv4, ['10.77.1.2/24']);
  assert.ok(byId.network.interfaces.some((i) => i.name === 'lo'));
});

void test('a host bind mount is classified as bind with its host path', async (t) => {
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; exec sleep 1000'], {
    mounts: [{ host: '/etc', container: '/hostetc', readonly: true }],
  });
  const info = await resolveContainer({ pid: c.pid });
  const m = info.mounts.find((x) => x.mountpoint === '/hostetc');
  assert.equal(m?.kind, 'bind');
  assert.equal(m?.hostPath, '/etc');
});

void test('unknown PID and unknown container ID are ContainerNotFound errors', async () => {
  const tb = await testbed();
  await assert.rejects(resolveContainer({ pid: 2 ** 22 + 7 }), ContainerNotFoundError);
  await assert.rejects(resolveContainer({ pid: 0 }), ContainerNotFoundError);
  // a thread ID is not a process: this test runner has worker threads
  const tid = (await readdir(`/proc/${process.pid}/task`)).map(Number).find((x) => x !== process.pid);
  assert.ok(tid !== undefined, 'node has threads');
  await assert.rejects(resolveContainer({ pid: tid }), /is a thread of process/);
  await assert.rejects(
    resolveContainer({ containerId: 'no-such-container', namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address }),
    (err: unknown) => err instanceof ContainerNotFoundError && /not found/.test(err.message),
  );
  await assert.rejects(resolveContainer({ containerId: '../../etc', containerdAddress: tb.containerd.address }), ContainerNotFoundError);
  // a host process (this test runner) is not a container
  await assert.rejects(
    resolveContainer({ pid: process.pid }),
    (err: unknown) => err instanceof ContainerNotFoundError && /is not in a container/.test(err.message),
  );
});
