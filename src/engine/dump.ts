// The dump check: a real `criu dump --leave-running` of the container's process tree that never writes or ships
// memory page contents. CRIU runs with --lazy-pages and serves the pages from a page server on a socket it
// inherits from us (--ps-socket): PS_IOV_CLOSE is already queued on it, so the server ends as soon as it starts
// (nothing will be fetched), and no port is opened. Then the lazy entries are removed from the pagemaps so a
// restore does not wait for pages forever (CRIU's restorer would spin at 100% CPU). The pause is measured from the workload's side
// (freeze-watch.ts). Every CRIU call has a hard timeout; after any failure or kill the workload is verified
// running (thawed, SIGCONT'ed if needed) and what was done is recorded.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { lstat, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { DumpCheckResult, NodeFacts, ProbeOptions } from './api.ts';
import type { Reason } from '../verdict.ts';
import { dumpArgs } from './criu-args.ts';
import type { ExternalMount } from './criu-args.ts';
import { fixLazyPagemaps, imageDirSize } from './images.ts';
import type { LazyFixReport } from './images.ts';
import { watchFreeze } from './freeze-watch.ts';
import type { FreezeStats } from './freeze-watch.ts';
import { reasonsFromCriuLog } from './criu-log.ts';
import { reason } from '../reasons.ts';
import type { FileDigest } from './facts.ts';
import { criuPath, run } from './exec.ts';
import { taskIds, taskState } from './proc-task.ts';
import type { Runner } from './exec.ts';

/** What the dump needs to know about the container (probe.ts builds it from container.ts's ContainerInfo). */
export interface DumpSubject {
  /** Init PID of the container (host PID namespace). */
  pid: number;
  /** Every PID of the container's process tree (host PIDs). */
  pids: number[];
  /** The container root as the host sees it (/proc/<pid>/root). */
  root: string;
  externalMounts: ExternalMount[];
  /** Inode of the container's network namespace when it is not the host's. */
  netnsInode?: number;
  /** v1 freezer cgroup folder of the container, if any (used only to thaw after a failure). */
  freezerCgroupDir?: string;
}

export interface Manifest {
  version: 1;
  createdAt: string;
  imageRef?: string;
  /** The source's root: an overlay's layers, or (`hostDir`) the host folder of any other root. Source node paths. */
  rootfs: { lowerdirs: string[]; upperdir?: string; hostDir?: string };
  externalMounts: ExternalMount[];
  netnsExternal: boolean;
  addresses: { ifname: string; cidr: string }[];
  /** Namespaced net sysctls of the container's network namespace that a restore depends on (net-sysctls.ts). */
  netSysctls?: Record<string, string>;
  /** sha256 of every executable and mapped file of the process tree (facts.ts hashMappedFiles). */
  fileDigests: FileDigest[];
  sourceFacts?: NodeFacts;
  workloadRssBytes?: number;
  pagemap?: LazyFixReport;
  /** The container's writable layer shipped as rootfs-diff.tar, or why it was not. */
  rootfsDiff?: { bytes: number } | { omittedBytes: number };
  /** 'lazy' for a dump-check bundle (no page contents), 'full' for a real checkpoint. */
  kind: 'lazy' | 'full';
}

export interface DumpRunInfo {
  /** What was done to make sure the workload runs after a failure. */
  recovery: string[];
  freeze?: FreezeStats;
  criuExitCode: number | null;
  timedOut: boolean;
  logPath: string;
  pagemap?: LazyFixReport;
}

export interface DumpHooks {
  /** Fault injection for tests: the timeout fires as soon as the workload is seen stopped. */
  timeoutWhenFrozen?: boolean;
  /** Test hook: called with CRIU's pid right after it starts. */
  onCriuStarted?: (pid: number) => void;
  /** Test hook: called with CRIU's pid when the workload is first seen stopped (CRIU holds it). */
  onWorkloadStopped?: (criuPid: number) => void;
}

export const MARKER_NAME = 'frozen-by-migprobe.json';

export interface FrozenMarker {
  pid: number;
  /** Tasks already stopped (T) before the dump: recovery leaves them stopped. */
  stoppedBefore?: number[];
  /** The container's network namespace, when a network lock could be left behind. */
  netnsPath?: string;
  pids: number[];
  freezerCgroupDir?: string;
  criuPid?: number;
  since: string;
}

/**
 * How long CRIU gets to give up by itself after it is interrupted on a timeout. SIGALRM is CRIU's own timeout
 * signal: its handler makes the blocking call fail with EINTR (it tries again every second, 5 times), and CRIU's
 * error path then cures the parasite from every task and detaches. A SIGKILL while the parasite runs inside a
 * task would leave that task executing parasite code with no tracer: it dies on the parasite's final trap. So
 * SIGKILL is only the last resort, after this grace.
 */
export const CRIU_INTERRUPT_GRACE_MS = 7000;

/**
 * Interrupts CRIU: SIGALRM to its main process (not its group: a helper without CRIU's handler would just die),
 * and SIGCONT, so that a CRIU someone stopped sees the interrupt too (CRIU holds its tasks by ptrace, not by
 * a stop signal: SIGCONT touches only CRIU).
 */
export function interruptCriu(pid: number): void {
  try {
    process.kill(pid, 'SIGALRM');
    process.kill(pid, 'SIGCONT');
  } catch {
    // gone already
  }
}

/** SIGKILL a process group (CRIU and its helpers); quiet when it is gone. */
export function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // no such group any more
  }
}

/** Write the marker atomically (a crash mid-write must not leave an empty marker), readable by us only. */
async function writeMarker(path: string, marker: FrozenMarker): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(marker), { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

/** Largest marker file recovery reads. */
const MAX_MARKER_BYTES = 64 * 1024;
const PID_MAX = 4_194_304;

function isPid(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x > 1 && x <= PID_MAX;
}

/**
 * A marker's text -> the marker, or why it is not one migprobe wrote: only known fields, PIDs in range, a freezer
 * folder under /sys/fs/cgroup/ (normalized, no `..`), the network namespace of its own PID. Pure.
 */
export function parseMarker(text: string): FrozenMarker | string {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) return 'not an object';
  const m = j as Record<string, unknown>;
  const known = new Set(['pid', 'pids', 'stoppedBefore', 'netnsPath', 'freezerCgroupDir', 'criuPid', 'since']);
  const extra = Object.keys(m).filter((k) => !known.has(k));
  if (extra.length > 0) return `unknown fields ${extra.join(',')}`;
  if (!isPid(m.pid)) return 'bad pid';
  if (!Array.isArray(m.pids) || m.pids.length > 65_536 || !m.pids.every(isPid)) return 'bad pids';
  if (m.stoppedBefore !== undefined && (!Array.isArray(m.stoppedBefore) || m.stoppedBefore.length > 65_536 || !m.stoppedBefore.every(isPid))) return 'bad stoppedBefore';
  if (m.criuPid !== undefined && !isPid(m.criuPid)) return 'bad criuPid';
  if (typeof m.since !== 'string' || Number.isNaN(Date.parse(m.since))) return 'bad since';
  if (m.freezerCgroupDir !== undefined) {
    const d = m.freezerCgroupDir;
    if (typeof d !== 'string' || !d.startsWith('/sys/fs/cgroup/') || posix.normalize(d) !== d || d.split('/').includes('..')) return 'freezerCgroupDir outside /sys/fs/cgroup';
  }
  if (m.netnsPath !== undefined && m.netnsPath !== `/proc/${m.pid}/ns/net`) return 'netnsPath is not the network namespace of pid';
  const out: FrozenMarker = { pid: m.pid, pids: m.pids, since: m.since };
  if (m.stoppedBefore !== undefined) out.stoppedBefore = m.stoppedBefore;
  if (m.criuPid !== undefined) out.criuPid = m.criuPid;
  if (m.freezerCgroupDir !== undefined) out.freezerCgroupDir = m.freezerCgroupDir as string;
  if (m.netnsPath !== undefined) out.netnsPath = m.netnsPath;
  return out;
}

/** The page-server command struct (u32 cmd, 4 bytes padding, u64 nr_pages, u64 vaddr, u64 dst_id). */
export const PS_IOV_CLOSE = 0x1023;
export function pageServerCommand(cmd: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(cmd, 0);
  return b;
}

/**
 * Make sure the workload runs: thaw its freezer cgroup if FROZEN, SIGCONT any task in a stop state, then wait up to
 * `waitMs` for no task to be in state t/T. Returns what was done (empty when nothing was needed) and the tasks
 * still stopped (should be none).
 */
export async function ensureRunning(
  pids: readonly number[],
  freezerCgroupDir?: string,
  waitMs = 2000,
  /** Tasks that were already in a job-control stop before migprobe touched them: left as they were. */
  stoppedBefore: ReadonlySet<number> = new Set(),
): Promise<{ actions: string[]; stillStopped: number[] }> {
  const actions: string[] = [];
  if (freezerCgroupDir !== undefined) {
    try {
      const st = (await readFile(join(freezerCgroupDir, 'freezer.state'), 'latin1')).trim();
      if (st !== 'THAWED') {
        await writeFile(join(freezerCgroupDir, 'freezer.state'), 'THAWED');
        actions.push(`freezer ${freezerCgroupDir}: ${st} -> THAWED`);
      }
    } catch {
      // no freezer cgroup
    }
  }
  const deadline = Date.now() + waitMs;
  let stopped: number[] = [];
  let signalled = false;
  for (;;) {
    stopped = [];
    for (const pid of pids) {
      for (const tid of taskIds(pid).length > 0 ? taskIds(pid) : [pid]) {
        const s = tid === pid ? taskState(pid) : taskState(pid, tid);
        if ((s === 't' || s === 'T') && !stoppedBefore.has(tid)) stopped.push(tid);
      }
    }
    if (stopped.length === 0) break;
    if (!signalled && Date.now() > deadline - waitMs / 2) {
      // Tracing stops end when the tracer dies; a job-control stop (T) needs SIGCONT.
      for (const pid of pids) {
        if (stoppedBefore.has(pid)) continue;
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone
        }
      }
      actions.push(`SIGCONT to ${pids.join(',')} (tasks ${stopped.join(',')} were stopped)`);
      signalled = true;
    }
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { actions, stillStopped: stopped };
}

/** `nft list tables` output -> CRIU's network-lock tables (`inet CRIU-<run id>`). Pure. */
export function criuLockTables(nftListTables: string): string[] {
  const out: string[] = [];
  for (const line of nftListTables.split('\n')) {
    const m = /^table\s+(inet|ip|ip6)\s+(CRIU-\S+)\s*$/.exec(line.trim());
    if (m !== null && m[1] !== undefined && m[2] !== undefined) out.push(`${m[1]} ${m[2]}`);
  }
  return out;
}

/**
 * A CRIU killed while it held the nftables network lock leaves the container's network blocked: delete CRIU's
 * lock tables in the container's network namespace. Returns what was removed.
 */
export async function releaseNetworkLock(netnsPath: string, runner: Runner = run): Promise<string[]> {
  const actions: string[] = [];
  const list = await runner('nsenter', [`--net=${netnsPath}`, 'nft', 'list', 'tables'], { timeoutMs: 10_000 });
  if (list.exitCode !== 0) return actions;
  for (const t of criuLockTables(list.stdout)) {
    const [family, name] = t.split(' ');
    if (family === undefined || name === undefined) continue;
    const del = await runner('nsenter', [`--net=${netnsPath}`, 'nft', 'delete', 'table', family, name], { timeoutMs: 10_000 });
    actions.push(del.exitCode === 0 ? `removed nftables lock table ${t}` : `could not remove nftables table ${t}: ${del.stderr.trim()}`);
  }
  return actions;
}

/**
 * An agent runs this at start-up: thaw whatever a crashed run left frozen. It trusts only markers in its own
 * layout: `<workRoot>/<name>/frozen-by-migprobe.json` exactly, for the names `ownsDir` says are its own dump
 * folders (the agent: probe UIDs; never a target folder, so never a received bundle), each folder and marker a
 * real directory and file (no symlink) owned by us and not readable by others, in the format dumpCheck writes
 * (parseMarker). Anything else is left alone and reported as ignored. For each marker it kills the CRIU that
 * was running if it still is, thaws, verifies, removes the marker.
 */
export async function recoverFrozen(workRoot: string, ownsDir: (name: string) => boolean): Promise<{ marker: string; actions: string[] }[]> {
  const found: { path: string; marker: FrozenMarker }[] = [];
  const ignored: { marker: string; actions: string[] }[] = [];
  let names: string[];
  try {
    names = await readdir(workRoot);
  } catch {
    return [];
  }
  const uid = process.getuid?.() ?? 0;
  for (const n of names) {
    if (!ownsDir(n)) continue;
    const dir = join(workRoot, n);
    const path = join(dir, MARKER_NAME);
    try {
      if (!(await lstat(dir)).isDirectory()) continue;
      const st = await lstat(path);
      const why = !st.isFile() ? 'not a regular file' : st.uid !== uid ? `owned by uid ${st.uid}` : (st.mode & 0o077) !== 0 ? 'readable by others' : st.size > MAX_MARKER_BYTES ? 'too large' : undefined;
      const parsed = why === undefined ? parseMarker(await readFile(path, 'utf8')) : why;
      if (typeof parsed === 'string') ignored.push({ marker: path, actions: [`ignored: not a marker migprobe wrote (${parsed})`] });
      else found.push({ path, marker: parsed });
    } catch {
      // no marker there, or raced away
    }
  }
  const out: { marker: string; actions: string[] }[] = [...ignored];
  for (const { path: marker, marker: m } of found) {
    const actions: string[] = [];
    try {
      if (m.criuPid !== undefined && isCriu(m.criuPid)) {
        // Interrupt it so that it cures and releases the tasks itself; SIGKILL only if it will not stop.
        const criuPid = m.criuPid;
        interruptCriu(criuPid);
        const deadline = Date.now() + CRIU_INTERRUPT_GRACE_MS;
        while (isCriu(criuPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        if (isCriu(criuPid)) {
          killGroup(criuPid);
          try {
            process.kill(criuPid, 'SIGKILL');
          } catch {
            // gone with its group
          }
          actions.push(`leftover criu ${criuPid} did not stop when interrupted: SIGKILL to it and its process group`);
        } else {
          actions.push(`interrupted leftover criu ${criuPid}; it stopped by itself`);
        }
        killGroup(criuPid);
        await new Promise((r) => setTimeout(r, 50));
      }
      const r = await ensureRunning(m.pids.length > 0 ? m.pids : [m.pid], m.freezerCgroupDir, 2000, new Set(m.stoppedBefore ?? []));
      actions.push(...r.actions);
      if (m.netnsPath !== undefined) actions.push(...(await releaseNetworkLock(m.netnsPath)));
      if (r.stillStopped.length > 0) actions.push(`still stopped: ${r.stillStopped.join(',')}`);
    } catch (e) {
      actions.push(`recovery failed: ${(e as Error).message}`);
    }
    await rm(marker, { force: true });
    out.push({ marker, actions });
  }
  return out;
}

/** A live (not zombie) process named criu. */
function isCriu(pid: number): boolean {
  try {
    const state = taskState(pid);
    return state !== undefined && state !== 'Z' && state !== 'X' && readFileSync(`/proc/${pid}/comm`, 'latin1').trim() === 'criu';
  } catch {
    return false;
  }
}

export interface DumpCheckInput {
  subject: DumpSubject;
  options: ProbeOptions;
  /** Folder for images, log and marker; created if needed. */
  workDir: string;
  /** Extra manifest facts (image ref, rootfs, addresses, digests, source facts). */
  manifest: Omit<Manifest, 'version' | 'createdAt' | 'externalMounts' | 'netnsExternal' | 'kind' | 'pagemap'>;
  criuVersion: string;
  /** Full dump (page contents written, no lazy pages): used by the baseline in bench/ and by tests. */
  full?: boolean;
  hooks?: DumpHooks;
  /** Cancels the dump (the agent's DELETE): CRIU is interrupted as on a timeout and the workload made to run. */
  signal?: AbortSignal;
  /** Tests only: keep the lazy entries in the pagemaps (a restore of such images never finishes). */
  keepLazyPagemap?: boolean;
}

export interface DumpCheckOutput {
  result: DumpCheckResult;
  info: DumpRunInfo;
}

/** Run the dump check. Never throws for CRIU failures: they become reasons. */
export async function dumpCheck(input: DumpCheckInput): Promise<DumpCheckOutput> {
  const { subject, options, workDir } = input;
  const bundleDir = join(workDir, 'bundle');
  const imagesDir = join(bundleDir, 'images');
  await mkdir(imagesDir, { recursive: true });
  const logPath = join(workDir, 'dump.log');
  const full = input.full === true;
  const args = dumpArgs({
    pid: subject.pid,
    imagesDir,
    logFile: logPath,
    root: subject.root,
    externalMounts: subject.externalMounts,
    ...(subject.netnsInode === undefined ? {} : { netnsInode: subject.netnsInode }),
    ...(full ? {} : { lazyPages: { psSocketFd: 3 } }),
    leaveRunning: true,
    options,
  });
  const reasons: Reason[] = [];
  const recovery: string[] = [];
  // A paused container (its freezer cgroup FROZEN) cannot be dumped, and must stay paused: say so, touch nothing.
  if (subject.freezerCgroupDir !== undefined) {
    const st = await readFile(join(subject.freezerCgroupDir, 'freezer.state'), 'latin1').catch(() => 'THAWED');
    if (st.trim() !== 'THAWED') {
      reasons.push(
        reason('DumpFailed', `the container is paused (freezer ${st.trim()}); migprobe does not dump a paused container`, 'resume the container (ctr task resume / crictl unpause) and probe again', 'dump'),
      );
      return {
        result: { reasons, timings: {}, sizes: {}, criuVersion: input.criuVersion },
        info: { recovery, criuExitCode: null, timedOut: false, logPath },
      };
    }
  }
  const stoppedBefore = subject.pids.flatMap((pid) => (taskIds(pid).length > 0 ? taskIds(pid) : [pid]).filter((tid) => taskState(pid, tid) === 'T'));
  const marker: FrozenMarker = {
    pid: subject.pid,
    pids: subject.pids,
    ...(stoppedBefore.length === 0 ? {} : { stoppedBefore }),
    ...(subject.freezerCgroupDir === undefined ? {} : { freezerCgroupDir: subject.freezerCgroupDir }),
    ...(options.tcpEstablished && subject.netnsInode !== undefined ? { netnsPath: `/proc/${subject.pid}/ns/net` } : {}),
    since: new Date().toISOString(),
  };
  const markerPath = join(workDir, MARKER_NAME);
  await writeMarker(markerPath, marker);

  const criu: { proc?: ChildProcess; expire?: () => void } = {};
  const watch = watchFreeze(subject.pids, {
    ...(subject.freezerCgroupDir === undefined ? {} : { freezerStatePath: join(subject.freezerCgroupDir, 'freezer.state') }),
    onFirstStop: () => {
      if (criu.proc?.pid !== undefined) input.hooks?.onWorkloadStopped?.(criu.proc.pid);
      if (input.hooks?.timeoutWhenFrozen === true) criu.expire?.();
    },
  });
  await watch.ready;

  const started = performance.now();
  // Its own process group: a timeout kills CRIU with every helper it forked (a helper left stopped by a killed
  // CRIU would otherwise hold our pipes open forever).
  const proc = spawn(criuPath(), args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], detached: true });
  criu.proc = proc;
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-64 * 1024);
  });
  proc.stdout?.on('data', () => undefined);
  if (proc.pid !== undefined) {
    marker.criuPid = proc.pid;
    await writeMarker(markerPath, marker);
    input.hooks?.onCriuStarted?.(proc.pid);
  }
  let timedOut = false;
  let lastResort: NodeJS.Timeout | undefined;
  const expire = (): void => {
    if (timedOut) return;
    timedOut = true;
    const pid = proc.pid;
    if (pid === undefined) return;
    interruptCriu(pid);
    lastResort = setTimeout(() => killGroup(pid), CRIU_INTERRUPT_GRACE_MS);
  };
  criu.expire = expire;
  const timer = setTimeout(expire, options.timeoutMs);
  // A cancel interrupts CRIU the way a timeout does (the caller discards the result).
  const onAbort = (): void => expire();
  if (input.signal?.aborted === true) expire();
  input.signal?.addEventListener('abort', onAbort, { once: true });
  let pageServerError: string | undefined;
  // fd 3 of CRIU is one end of a unix socket pair (node's 'pipe'). CRIU's lazy page server reads commands from it
  // once the dump is done; the first one it will find is CLOSE: nothing will be fetched.
  const psSocket = proc.stdio[3];
  if (!full && psSocket !== null && psSocket !== undefined && 'write' in psSocket) {
    psSocket.on('error', (e: Error) => {
      pageServerError = e.message;
    });
    psSocket.on('data', () => undefined);
    psSocket.write(pageServerCommand(PS_IOV_CLOSE));
  }
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('error', (e) => {
      stderr += `${e.message}\n`;
      resolve({ code: 127, signal: null });
    });
    // 'exit', not 'close': a forked helper could hold the pipes after CRIU is gone.
    proc.once('exit', (code, signal) => {
      if (proc.pid !== undefined) killGroup(proc.pid);
      resolve({ code, signal });
    });
  });
  clearTimeout(timer);
  clearTimeout(lastResort);
  input.signal?.removeEventListener('abort', onAbort);
  const dumpMs = performance.now() - started;
  const freeze = await watch.stop();

  const ok = exit.code === 0 && !timedOut;
  // After anything but a clean exit: make sure the workload runs, whatever CRIU was doing.
  const check = await ensureRunning(subject.pids, subject.freezerCgroupDir, ok ? 500 : 3000, new Set(stoppedBefore));
  recovery.push(...check.actions);
  if (!ok && marker.netnsPath !== undefined) recovery.push(...(await releaseNetworkLock(marker.netnsPath)));
  if (check.stillStopped.length > 0) {
    recovery.push(`tasks still stopped after recovery: ${check.stillStopped.join(',')}`);
    reasons.push(reason('InternalError', `the workload's tasks ${check.stillStopped.join(',')} are still stopped after the dump`, undefined, 'dump'));
  } else {
    await rm(markerPath, { force: true });
  }

  const log = await readFile(logPath, 'utf8').catch(() => '');
  let excerpt: string | undefined;
  if (timedOut) {
    reasons.push(
      reason('Timeout', `criu dump did not finish within ${options.timeoutMs} ms and was stopped; the workload was left running${recovery.length > 0 ? ` (${recovery.join('; ')})` : ''}`, undefined, 'dump'),
    );
    excerpt = log.split('\n').slice(-15).join('\n');
  } else if (!ok) {
    const parsed = reasonsFromCriuLog(log.length > 0 ? log : stderr, 'dump');
    reasons.push(...parsed.reasons);
    excerpt = parsed.excerpt;
    if (parsed.reasons.length === 0) {
      reasons.push(reason('DumpFailed', `criu dump exited with ${exit.code ?? exit.signal}`, undefined, 'dump'));
    }
  }
  if (ok && pageServerError !== undefined) {
    reasons.push(reason('DumpFailed', `lazy page server: ${pageServerError}`, undefined, 'dump'));
  }

  let pagemap: LazyFixReport | undefined;
  if (ok && !full && input.keepLazyPagemap !== true) {
    pagemap = await fixLazyPagemaps(imagesDir);
  }
  if (ok && freeze.error !== undefined) {
    reasons.push(reason('InternalError', `the freeze could not be measured (${freeze.error}); the freeze budget was not checked`, undefined, 'dump'));
  }
  if (ok && freeze.longestMs > options.freezeBudgetMs) {
    reasons.push(
      reason(
        'FreezeBudgetExceeded',
        `the workload was frozen for ${Math.round(freeze.longestMs)} ms, over the budget of ${options.freezeBudgetMs} ms`,
        undefined,
        'dump',
      ),
    );
  }

  const manifest: Manifest = {
    version: 1,
    createdAt: new Date().toISOString(),
    ...input.manifest,
    externalMounts: subject.externalMounts,
    netnsExternal: subject.netnsInode !== undefined,
    kind: full ? 'full' : 'lazy',
    ...(pagemap === undefined ? {} : { pagemap }),
  };
  await writeFile(join(bundleDir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  const size = await imageDirSize(imagesDir);

  const result: DumpCheckResult = {
    reasons,
    timings: { freezeMs: Math.round(freeze.longestMs), dumpMs: Math.round(dumpMs) },
    sizes: {
      imageBytes: size.totalBytes,
      ...(input.manifest.workloadRssBytes === undefined ? {} : { workloadRssBytes: input.manifest.workloadRssBytes }),
    },
    criuVersion: input.criuVersion,
    bundleDir,
    ...(excerpt === undefined ? {} : { criuLogExcerpt: excerpt }),
  };
  return {
    result,
    info: { recovery, freeze, criuExitCode: exit.code, timedOut, logPath, ...(pagemap === undefined ? {} : { pagemap }) },
  };
}
