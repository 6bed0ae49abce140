// Small process helpers for the test bed: run a command with a timeout, start a daemon that outlives the
// starting process, wait for a condition, stop a daemon by PID. Argument arrays only.

import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { execa } from 'execa';

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a command, throws with its stderr when it fails (unless `allowFail`). */
export async function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; allowFail?: boolean; input?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const res = await execa(cmd, args, {
    timeout: opts.timeoutMs ?? 60_000,
    reject: false,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    stripFinalNewline: true,
  });
  const out = { stdout: String(res.stdout ?? ''), stderr: String(res.stderr ?? ''), exitCode: res.exitCode ?? -1 };
  if (!opts.allowFail && (res.exitCode !== 0 || res.timedOut)) {
    const why = res.timedOut ? `timed out after ${opts.timeoutMs ?? 60_000} ms` : `exit ${res.exitCode}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${out.stderr.trim() || out.stdout.trim()}`);
  }
  return out;
}

/**
 * Starts a long-running daemon in its own session, stdout/stderr to `logFile`, and returns its PID. The
 * daemon outlives this process (the test bed is shared by all test files); stop it with stopDaemon.
 */
export function startDaemon(cmd: string, args: readonly string[], logFile: string, env?: NodeJS.ProcessEnv): number {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env: env ?? process.env });
    if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Debian's tini (package tini, which provisioning installs): a child subreaper for daemons whose children outlive them. */
export function tiniPath(): string {
  const tini = ['/usr/bin/tini', '/usr/sbin/tini'].find((p) => existsSync(p));
  if (tini === undefined) throw new Error('tini is missing (Debian package tini): run bash hack/provision.sh');
  return tini;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A dead child of a process that never reaps (PID 1 here may not) stays a zombie: not alive.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. An error of
 * `check` is retried; an error of `fatal` (called before each round, e.g. "a daemon exited") ends the wait.
 */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, fatal?: () => void): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    fatal?.();
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const tail = lastErr instanceof Error ? `: ${lastErr.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${tail}`);
    }
    await sleep(100);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`, of a daemon's whole process group. */
export async function stopDaemon(pid: number, graceMs = 5000): Promise<void> {
  const signalGroup = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  if (!isAlive(pid)) return;
  signalGroup('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) signalGroup('SIGKILL');
  while (isAlive(pid) && Date.now() < deadline + 5000) await sleep(50);
}

export function tailOf(file: string, lines = 30): string {
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}
