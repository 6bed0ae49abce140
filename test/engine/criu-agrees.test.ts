// The preflight and CRIU agree: for each blocker kind, the preflight's reason code is also what the real
// `criu dump` says when the preflight is skipped (its log mapped by criu-log.ts), and the failed dump leaves
// the workload running and thawed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import type { ProbeOptions } from '../../src/engine/api.ts';
import { resolveContainer } from '../../src/engine/container.ts';
import { preflightScan } from '../../src/engine/preflight.ts';
import { taskState } from '../../src/engine/proc-task.ts';
import { checkContainer, defaultProbeDeps } from '../../src/engine/probe.ts';
import type { RunningContainer } from '../../testbed/index.ts';
import { runContainer, testbed } from '../../testbed/index.ts';
import { extUnixListener, hostDir, startWorkload, waitReady } from './workloads.ts';

const BIN = '/usr/local/bin';

async function agree(c: RunningContainer, expected: string, options: Partial<ProbeOptions> = {}): Promise<void> {
  const opts: ProbeOptions = { ...DEFAULT_PROBE_OPTIONS, ...options };
  const info = await resolveContainer({ pid: c.pid });
  const pre = await preflightScan(info, opts);
  assert.deepEqual([...new Set(pre.reasons.map((r) => r.code))], [expected], JSON.stringify(pre.reasons));

  const v = await checkContainer({ pid: c.pid }, opts, {}, {
    deps: { ...defaultProbeDeps, preflightScan: () => Promise.resolve({ reasons: [], rssBytes: pre.rssBytes }) },
  });
  assert.equal(v.migratable, false);
  const dumpCodes = v.reasons.filter((r) => r.phase === 'dump').map((r) => r.code);
  assert.deepEqual(dumpCodes, [expected], `CRIU said: ${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  assert.ok((v.criuLogExcerpt ?? '').includes('Error ('), 'the excerpt carries CRIU error lines');

  // the failed dump left every task running and the freezer thawed
  for (const pid of info.pids) assert.ok(['S', 'R', 't'].includes(taskState(pid) ?? 'gone'), `task ${pid} state`);
  const freezer = await readFile(`/sys/fs/cgroup/freezer/k8s.io/${c.id}/freezer.state`, 'utf8').catch(() => 'THAWED');
  assert.equal(freezer.trim(), 'THAWED');
}

const simple: [string, string[]][] = [
  ['TCPEstablished', [`${BIN}/tcppair`, '7004']],
  ['IoUring', [`${BIN}/iouring`]],
  ['UnsupportedFile', [`${BIN}/uffd`]],
  ['MemfdSecret', [`${BIN}/secretmem`]],
  ['FileLocks', [`${BIN}/flocker`, 'posix']],
  ['GhostFileTooLarge', [`${BIN}/ghost`, '3000000', '/tmp/big.dat']],
  ['UnsupportedSocket', [`${BIN}/oddsock`]],
  ['Ptraced', [`${BIN}/ptracer`]],
];

for (const [code, args] of simple) {
  void test(`${code}: preflight and criu dump agree`, async (t) => {
    await testbed();
    await agree(await startWorkload(t, args), code);
  });
}

void test('TCPEstablished (in flight, with tcpEstablished allowed): preflight and criu dump agree', async (t) => {
  await agree(await startWorkload(t, [`${BIN}/tcppair`, '7008', 'noaccept']), 'TCPEstablished', { tcpEstablished: true });
});

void test('ExternalUnixSocket: preflight and criu dump agree', async (t) => {
  const dir = await hostDir(t, 'mp-agree-');
  await extUnixListener(t, dir);
  await agree(await startWorkload(t, [`${BIN}/unixpeer`, '/ext/ext.sock'], { mounts: [{ host: dir, container: '/ext' }] }), 'ExternalUnixSocket');
});

void test('DeviceFile: preflight and criu dump agree', async (t) => {
  const c = await runContainer({
    args: [`${BIN}/devfile`, '/hostdev/loop-control'],
    mounts: [{ host: '/dev/loop-control', container: '/hostdev/loop-control' }],
  });
  t.after(async () => await c.remove());
  await writeFile(`/sys/fs/cgroup/devices/k8s.io/${c.id}/devices.allow`, 'c 10:237 r');
  await waitReady(c.pid);
  await agree(c, 'DeviceFile');
});
