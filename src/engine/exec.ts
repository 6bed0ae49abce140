// One small process-runner abstraction for the engine. Argument arrays only, never shell strings.
// Every call has a hard timeout that ends in SIGKILL; pure logic takes a Runner so tests can inject one.

import { spawn } from 'node:child_process';
import type { StdioOptions } from 'node:child_process';

export interface RunOptions {
  /** Hard bound; the process (and its process group when `group`) gets SIGKILL after it. */
  timeoutMs?: number;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Bytes written to stdin, then stdin is closed. */
  input?: string | Buffer;
  /** Start the child in its own process group and kill the whole group on timeout. */
  group?: boolean;
}

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Wall time of the call, ms. */
  durationMs: number;
}

export type Runner = (cmd: string, args: readonly string[], opts?: RunOptions) => Promise<RunResult>;

/** Keep the tail of a long output: enough to read an error, not enough to eat memory. */
const OUTPUT_CAP = 1024 * 1024;

export const run: Runner = (cmd, args, opts = {}) =>
  new Promise((resolve) => {
    const started = performance.now();
    const stdio: StdioOptions = [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    const child = spawn(cmd, args, {
      stdio,
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      detached: opts.group === true,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const kill = (): void => {
      try {
        if (opts.group === true && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
    };
    child.stdout?.on('data', (b: Buffer) => {
      stdout = (stdout + b.toString()).slice(-OUTPUT_CAP);
    });
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-OUTPUT_CAP);
    });
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            kill();
          }, opts.timeoutMs);
    const onAbort = (): void => kill();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null, err?: Error): void => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({
        exitCode,
        signal,
        stdout,
        stderr: err === undefined ? stderr : `${stderr}${err.message}\n`,
        timedOut,
        durationMs: performance.now() - started,
      });
    };
    child.on('error', (err) => finish(127, null, err));
    child.on('close', (code, sig) => finish(code, sig));
    // A helper the command forked may keep our pipes open after it is gone: do not wait for 'close' forever.
    child.on('exit', (code, sig) => {
      setTimeout(() => {
        finish(code, sig);
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, timedOut ? 100 : 2000).unref();
    });
    if (opts.input !== undefined && child.stdin !== null) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });

/** Run and throw unless it exited 0; returns stdout. For setup steps whose failure is an internal error. */
export async function runOk(runner: Runner, cmd: string, args: readonly string[], opts?: RunOptions): Promise<string> {
  const r = await runner(cmd, args, opts);
  if (r.exitCode !== 0) {
    const why = r.timedOut ? `timed out after ${opts?.timeoutMs ?? 0} ms` : `exit ${r.exitCode ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${r.stderr.trim().slice(-2000)}`);
  }
  return r.stdout;
}

/** The CRIU binary: MIGPROBE_CRIU, else `criu` on PATH. */
export function criuPath(env: NodeJS.ProcessEnv = process.env): string {
  const p = env['MIGPROBE_CRIU'];
  return p !== undefined && p !== '' ? p : 'criu';
}
