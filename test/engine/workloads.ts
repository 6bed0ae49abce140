// Helpers for the engine's integration tests: start a test program in a real container and wait until it
// has set itself up, and watch that nothing froze or stopped the workload while a check ran.

import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { runContainer } from '../../testbed/index.ts';
import type { RunningContainer } from '../../testbed/index.ts';

/** Runs `args` in a fresh container, removes it after the test, waits for the program's /tmp/ready. */
export async function startWorkload(
  t: TestContext,
  args: string[],
  more: { ip?: string; mounts?: { host: string; container: string; readonly?: boolean }[]; readyFile?: string } = {},
): Promise<RunningContainer> {
  const { readyFile = '/tmp/ready', ...opts } = more;
  const c = await runContainer({ args, ...opts });
  t.after(async () => await c.remove());
  await waitReady(c.pid, readyFile);
  return c;
}

/** Waits until the container whose init is `pid` has `file` (the test programs write /tmp/ready). */
export async function waitReady(pid: number, file = '/tmp/ready', timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await stat(`/proc/${pid}/root${file}`);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`the workload with init PID ${pid} never wrote ${file}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Task states seen while `fn` ran, sampled every few ms: 'T' (stopped) or 't' (traced) would mean frozen. */
export async function watchStates<T>(
  pids: number[],
  fn: () => Promise<T>,
): Promise<{ result: T; states: Set<string>; freezer: Set<string>; samples: number }> {
  const states = new Set<string>();
  const freezer = new Set<string>();
  let samples = 0;
  let done = false;
  const freezerFile = await freezerStateFile(pids[0] ?? 0);
  const sampler = (async () => {
    while (!done) {
      for (const pid of pids) {
        try {
          const st = await readFile(`/proc/${pid}/stat`, 'utf8');
          states.add(st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3));
        } catch {
          states.add('gone');
        }
      }
      if (freezerFile !== undefined) {
        try {
          freezer.add((await readFile(freezerFile, 'utf8')).trim());
        } catch {
          // cgroup removed
        }
      }
      samples++;
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  try {
    const result = await fn();
    return { result, states, freezer, samples };
  } finally {
    done = true;
    await sampler;
  }
}

async function freezerStateFile(pid: number): Promise<string | undefined> {
  try {
    const cg = await readFile(`/proc/${pid}/cgroup`, 'utf8');
    const line = cg.split('\n').find((l) => l.split(':')[1]?.split(',').includes('freezer'));
    const path = line?.split(':')[2];
    return path === undefined ? undefined : `/sys/fs/cgroup/freezer${path}/freezer.state`;
  } catch {
    return undefined;
  }
}

/** A fresh host folder (prefix names the test file), removed after the test. */
export async function hostDir(t: TestContext, prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => await rm(d, { recursive: true, force: true }));
  return d;
}

/**
 * A unix stream socket listening at <dir>/ext.sock on the host, outside any container; its connections are
 * kept open until the test ends. Bind-mount `dir` into a workload at /ext to connect to it.
 */
export async function extUnixListener(t: TestContext, dir: string): Promise<string> {
  const conns = new Set<Socket>();
  const server = createServer((s) => conns.add(s));
  const path = join(dir, 'ext.sock');
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.after(async () => {
    for (const s of conns) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return path;
}
