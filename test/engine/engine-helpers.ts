// Helpers for the dump/restore/probe integration tests: counters, task states, temp folders, sandbox leftovers,
// the `migprobe` command as it ships.

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { resolveContainer } from '../../src/engine/container.ts';
import type { ContainerInfo } from '../../src/engine/container.ts';
import { threadStates } from '../../src/engine/proc-task.ts';
import { testbed } from '../../testbed/index.ts';
import type { RunningContainer } from '../../testbed/index.ts';

export async function tempDir(t: TestContext, prefix = 'migprobe-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => await rm(d, { recursive: true, force: true }));
  return d;
}

/** memhog's counter (/tmp/counter, u64 little endian), read through the container's root. */
export async function counter(c: RunningContainer): Promise<bigint> {
  const b = await readFile(`/proc/${c.pid}/root/tmp/counter`);
  return b.readBigUInt64LE(0);
}

/** Wait until memhog's counter moves past `from`. */
export async function counterAdvances(c: RunningContainer, from: bigint, withinMs = 3000): Promise<bigint> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const n = await counter(c);
    if (n > from) return n;
    if (Date.now() > deadline) throw new Error(`counter stuck at ${n} (was ${from})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** States of every task (threads too) of the given processes ('gone' for one that no longer exists). */
export function taskStates(pids: readonly number[]): Promise<string[]> {
  return Promise.resolve(threadStates(pids));
}

export async function info(c: RunningContainer): Promise<ContainerInfo> {
  const tb = await testbed();
  return await resolveContainer({ containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address });
}

/** Anything a restore sandbox could leave on the host: sandbox netns, sandbox cgroups. */
export async function sandboxTraces(): Promise<string[]> {
  const out: string[] = [];
  try {
    for (const n of await readdir('/var/run/netns')) if (n.startsWith('migprobe-sb-')) out.push(`netns ${n}`);
  } catch {
    // no netns folder
  }
  for (const h of await readdir('/sys/fs/cgroup')) {
    const d = join('/sys/fs/cgroup', h, 'migprobe-sandbox');
    if (!existsSync(d)) continue;
    for (const e of await readdir(d, { withFileTypes: true })) if (e.isDirectory()) out.push(`cgroup ${join(d, e.name)}`);
  }
  const mi = await readFile('/proc/self/mountinfo', 'utf8');
  for (const l of mi.split('\n')) if (l.includes('migprobe-sandbox') || l.includes('/sandbox-')) out.push(`mount ${l}`);
  return out;
}

/**
 * Sandbox traces that appeared since `before` and did not go away within `withinMs` (other tests on this machine
 * may run their own sandboxes meanwhile; those come and go).
 */
export async function newSandboxTraces(before: readonly string[], withinMs = 3000): Promise<string[]> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const now = (await sandboxTraces()).filter((x) => !before.includes(x));
    if (now.length === 0 || Date.now() > deadline) return now;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const BIN = fileURLToPath(new URL('../../bin/migprobe.js', import.meta.url));

/** Runs bin/migprobe.js with `args` (killed after 3 minutes). */
export function migprobe(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 180_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
