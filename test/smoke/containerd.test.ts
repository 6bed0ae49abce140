// Proves containers are real: containerd runs one in its k8s.io namespace, its init PID is found, and it
// lives in its own PID and mount namespaces with an overlay root from the snapshotter.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, existsSync } from 'node:fs';
import { runContainer, testbed } from '../../testbed/index.ts';
import { ctr } from '../../testbed/containerd.ts';
import { waitFor } from '../../testbed/proc.ts';

test('a containerd container runs in its own namespaces and its init PID is found', async (t) => {
  const tb = await testbed();
  const c = await runContainer({ args: ['sh', '-c', 'echo started > /tmp/mark; while true; do sleep 1; done'], ip: '10.233.7.2' });
  t.after(async () => await c.remove());

  assert.ok(c.pid > 1);
  const comm = readFileSync(`/proc/${c.pid}/comm`, 'utf8').trim();
  assert.equal(comm, 'sh');
  for (const ns of ['pid', 'mnt', 'net']) {
    assert.notEqual(readlinkSync(`/proc/${c.pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `${ns} namespace is private`);
  }
  // NSpid: the host PID, then PID 1 inside the container.
  const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${c.pid}/status`, 'utf8'))?.[1]?.split(/\s+/);
  assert.deepEqual(nspid, [String(c.pid), '1']);
  const rootMount = readFileSync(`/proc/${c.pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
  assert.match(rootMount ?? '', / - overlay overlay .*lowerdir=/);
  assert.match(readFileSync(`/proc/${c.pid}/cgroup`, 'utf8'), new RegExp(`:/k8s\\.io/${c.id}$`, 'm'));
  await waitFor('the container to write its mark', 10_000, async () =>
    existsSync(`/proc/${c.pid}/root/tmp/mark`) ? true : undefined);
  assert.equal(readFileSync(`/proc/${c.pid}/root/tmp/mark`, 'utf8'), 'started\n');
  // The address is on the container's eth0.
  const addrs = readFileSync(`/proc/${c.pid}/net/fib_trie`, 'utf8');
  assert.match(addrs, /10\.233\.7\.2/);

  const tasks = await ctr(tb.containerd, ['tasks', 'ls']);
  assert.match(tasks, new RegExp(`^${c.id}\\s+${c.pid}\\s+RUNNING`, 'm'));
});

test('a removed container leaves no task, container or network namespace', async () => {
  const tb = await testbed();
  const c = await runContainer({ args: ['sleep', '1000'] });
  await c.remove();
  const tasks = await ctr(tb.containerd, ['tasks', 'ls']);
  assert.doesNotMatch(tasks, new RegExp(c.id));
  const containers = await ctr(tb.containerd, ['containers', 'ls', '-q']);
  assert.doesNotMatch(containers, new RegExp(c.id));
  assert.equal(existsSync(c.netnsPath ?? '/nonexistent'), false);
});
