// `migprobe check --pid N` on containers of every runtime this machine has, not only containerd's k8s.io
// namespace: plain runc on a bundle folder, plain runc on an overlay mounted by hand, containerd in its
// `default` namespace, and podman. For each: a plain workload is migratable with a restore check that ran (the
// restore found the root filesystem from the container's own mount namespace); a workload holding a flock is
// not migratable with FileLocks (the check is real); a root the host cannot see is a usage error naming
// --target-root (exit 2), never a verdict. Every container is removed, and nothing is left behind.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Verdict } from '../../src/verdict.ts';
import { testbed } from '../../testbed/index.ts';
import { waitReady } from './workloads.ts';
import { migprobe } from './engine-helpers.ts';
import {
  containerdDefaultContainer,
  orphanZombies,
  podmanContainer,
  removeRuntimeState,
  runcContainer,
  runtimeLeftovers,
  testRootfs,
  type RuntimeContainer,
  type RuntimeRunOptions,
} from '../../testbed/runtimes.ts';
import { isAlive } from '../../testbed/proc.ts';

const RUNTIMES: { name: string; start: (o: RuntimeRunOptions) => Promise<RuntimeContainer> }[] = [
  { name: 'runc, bundle folder root', start: (o) => runcContainer('folder', o) },
  { name: 'runc, overlay root mounted by hand', start: (o) => runcContainer('overlay', o) },
  { name: 'containerd, namespace default', start: (o) => containerdDefaultContainer(o) },
  { name: 'podman', start: (o) => podmanContainer(o) },
];

const PLAIN = ['/bin/sh', '-c', 'touch /tmp/ready; exec sleep 1000'];
const FLOCK = ['/usr/local/bin/flocker', 'flock'];

/** Starts a container, runs `fn` on it, and removes it: its init must be gone and the runtime must list it no more. */
async function withContainer(start: () => Promise<RuntimeContainer>, fn: (c: RuntimeContainer) => Promise<void>): Promise<void> {
  const c = await start();
  try {
    await waitReady(c.pid);
    await fn(c);
  } finally {
    await c.remove();
  }
  assert.ok(!isAlive(c.pid), `${c.runtime} ${c.id}: init ${c.pid} still alive after remove()`);
}

let zombiesBefore: number[] = [];

before(async () => {
  await testbed();
  await testRootfs();
  zombiesBefore = await orphanZombies();
});

after(async () => {
  const left = await runtimeLeftovers();
  // conmon and containerd's shims outlive their starters; each runs under a subreaper of the test bed's.
  const zombies = (await orphanZombies()).filter((p) => !zombiesBefore.includes(p));
  await removeRuntimeState();
  assert.deepEqual(left, [], 'containers or mounts left by the runtimes');
  assert.deepEqual(zombies, [], 'new zombies of PID 1');
});

for (const rt of RUNTIMES) {
  void test(`${rt.name}: a plain workload is migratable, with a restore check that ran`, async () => {
    await withContainer(
      () => rt.start({ args: PLAIN }),
      async (c) => {
        const r = await migprobe(['check', '--pid', String(c.pid), '--json', '--verbose']);
        assert.equal(r.code, 0, `${c.runtime}: ${r.stdout}${r.stderr}`);
        const v = JSON.parse(r.stdout) as Verdict;
        assert.equal(v.migratable, true);
        assert.ok((v.timings.restoreMs ?? 0) > 0, 'the restore check ran');
        assert.match(r.stderr, /restore proof: [1-9]\d* restored task\(s\), states T, CPU time unchanged/);
        assert.match(r.stderr, /leftovers after teardown: none/);
        assert.ok(isAlive(c.pid), 'the workload still runs');
      },
    );
  });

  void test(`${rt.name}: a workload holding a flock is not migratable (FileLocks)`, async () => {
    await withContainer(
      () => rt.start({ args: FLOCK }),
      async (c) => {
        const r = await migprobe(['check', '--pid', String(c.pid), '--json']);
        assert.equal(r.code, 1, `${c.runtime}: ${r.stdout}${r.stderr}`);
        const v = JSON.parse(r.stdout) as Verdict;
        assert.deepEqual(v.reasons.map((x) => x.code), ['FileLocks']);
      },
    );
  });

  void test(`${rt.name}: a root the host cannot see is a usage error naming --target-root (exit 2)`, async () => {
    await withContainer(
      () => rt.start({ args: PLAIN, hiddenRoot: true }),
      async (c) => {
        const r = await migprobe(['check', '--pid', String(c.pid), '--json']);
        assert.equal(r.code, 2, `${c.runtime}: ${r.stdout}${r.stderr}`);
        assert.equal(r.stdout, '', 'no verdict');
        assert.match(r.stderr, /no root filesystem for the restore check of PID \d+: its root is (tmpfs tmpfs|an overlay whose layers \S+ are not all on this host), .*--target-root DIR/);
        // The same container, given the root filesystem: migratable (the exit 2 was about the root, nothing else).
        if (rt.name.startsWith('runc, bundle')) {
          const given = await migprobe(['check', '--pid', String(c.pid), '--target-root', await testRootfs(), '--json']);
          assert.equal(given.code, 0, given.stdout + given.stderr);
        }
      },
    );
  });
}
