// Measures the pause a workload feels, from the workload's side, without its cooperation: a worker thread reads
// /proc/<pid>/task/<tid>/status of every task about every millisecond and records when tasks are held: in a stop
// (state t = tracing stop, T = job-control stop), or attached by a tracer (TracerPid != 0: CRIU seized it; the
// task may then run CRIU's parasite, never its own code), or in a FROZEN freezer cgroup. The pure part (intervals from samples) is unit tested; the worker is plain JS source so
// it runs the same from .ts sources and from a build.

import { Worker } from 'node:worker_threads';

export interface FreezeSample {
  /** ms, monotonic. */
  t: number;
  /** Was any task of the workload stopped at that instant? */
  stopped: boolean;
}

export interface FreezeStats {
  /** Set when the watcher itself failed: then the freeze was not measured. */
  error?: string;
  /** Longest continuous interval with at least one task stopped, ms. */
  longestMs: number;
  /** Sum of all stopped intervals, ms. */
  totalMs: number;
  samples: number;
  /** Largest gap between two samples, ms (the resolution actually achieved). */
  worstGapMs: number;
  /** When the first stop was seen (ms, same clock), if any. */
  firstStopAt?: number;
}

/**
 * From a sequence of samples, the longest stopped interval. A stopped run lasts from the sample before its first
 * stopped sample (the task could have stopped right after it) to its last stopped sample's successor; we take the
 * midpoints on both ends so the error is at most one sampling gap.
 */
export function freezeFromSamples(samples: readonly FreezeSample[]): FreezeStats {
  let longest = 0;
  let total = 0;
  let worstGap = 0;
  let runStart: number | undefined;
  let firstStopAt: number | undefined;
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    if (s === undefined) continue;
    const prev = samples[i - 1];
    if (prev !== undefined) worstGap = Math.max(worstGap, s.t - prev.t);
    if (s.stopped && runStart === undefined) {
      runStart = prev === undefined ? s.t : (prev.t + s.t) / 2;
      firstStopAt ??= s.t;
    } else if (!s.stopped && runStart !== undefined) {
      const end = prev === undefined ? s.t : (prev.t + s.t) / 2;
      longest = Math.max(longest, end - runStart);
      total += end - runStart;
      runStart = undefined;
    }
  }
  const last = samples[samples.length - 1];
  if (runStart !== undefined && last !== undefined) {
    longest = Math.max(longest, last.t - runStart);
    total += last.t - runStart;
  }
  const out: FreezeStats = { longestMs: longest, totalMs: total, samples: samples.length, worstGapMs: worstGap };
  if (firstStopAt !== undefined) out.firstStopAt = firstStopAt;
  return out;
}

/** Is a /proc stat state letter a stop the workload feels? */
export function isStoppedState(state: string): boolean {
  return state === 't' || state === 'T';
}

/** The state letter of a /proc/<pid>/stat line (the field after the parenthesised comm). */
export function statState(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  return stat.slice(close + 2, close + 3) || undefined;
}

// The worker: plain JavaScript. It compresses samples to state changes plus the worst gap, so an hour-long
// watch does not grow memory. Message in: { pids, freezerState?, intervalMs }. Message 'stop' ends it and it
// posts { changes: [{t, stopped}], samples, worstGapMs }.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { pids, freezerState, intervalMs } = workerData;
const sab = new Int32Array(new SharedArrayBuffer(4));
let stop = false;
parentPort.on('message', (m) => { if (m === 'stop') stop = true; });
function tids(pid) {
  try { return fs.readdirSync('/proc/' + pid + '/task'); } catch { return []; }
}
// Held = stopped (t/T) or attached by a tracer: while CRIU holds a task (seized), the task may run CRIU's
// parasite code but never its own, so the workload is paused for that whole time.
function held(path) {
  try {
    const s = fs.readFileSync(path, 'latin1');
    const st = /\\nState:\\s+(\\S)/.exec(s);
    if (st && (st[1] === 't' || st[1] === 'T')) return true;
    const tr = /\\nTracerPid:\\s+(\\d+)/.exec(s);
    return tr !== null && tr[1] !== '0';
  } catch { return false; }
}
let taskPaths = [];
let lastRefresh = 0;
function refresh(now) {
  taskPaths = [];
  for (const pid of pids) for (const t of tids(pid)) taskPaths.push('/proc/' + pid + '/task/' + t + '/status');
  lastRefresh = now;
}
const changes = [];
let sawStop = false;
let samples = 0, worstGap = 0, prevT = -1, prevStopped = null;
function loop() {
  const deadline = performance.now() + 50;
  while (!stop && performance.now() < deadline) {
    const t = performance.now();
    if (t - lastRefresh > 200) refresh(t);
    let stopped = false;
    for (const p of taskPaths) { if (held(p)) { stopped = true; break; } }
    if (!stopped && freezerState) {
      try { stopped = fs.readFileSync(freezerState, 'latin1').trim() === 'FROZEN'; } catch {}
    }
    samples++;
    if (prevT >= 0) worstGap = Math.max(worstGap, t - prevT);
    if (stopped && !sawStop) { sawStop = true; parentPort.postMessage({ firstStop: t }); }
    if (stopped !== prevStopped) { changes.push({ t: prevT < 0 ? t : prevT, stopped: prevStopped === null ? stopped : prevStopped }); changes.push({ t, stopped }); prevStopped = stopped; }
    prevT = t;
    Atomics.wait(sab, 0, 0, intervalMs);
  }
  if (stop) {
    changes.push({ t: prevT, stopped: prevStopped === null ? false : prevStopped });
    parentPort.postMessage({ changes, samples, worstGapMs: worstGap });
    parentPort.close();
  } else setImmediate(loop);
}
refresh(performance.now());
parentPort.postMessage('ready');
loop();
`;

export interface FreezeWatch {
  /** Resolves once the worker takes its first samples. */
  ready: Promise<void>;
  stop(): Promise<FreezeStats>;
}

/** Start watching `pids` (every task of each). `freezerStatePath` adds the v1 freezer state as a stop signal. */
export function watchFreeze(pids: readonly number[], opts: { intervalMs?: number; freezerStatePath?: string; onFirstStop?: () => void } = {}): FreezeWatch {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { pids: [...pids], freezerState: opts.freezerStatePath ?? null, intervalMs: opts.intervalMs ?? 1 },
  });
  let result: ((s: FreezeStats) => void) | undefined;
  let failed: ((e: Error) => void) | undefined;
  let readyResolve: (() => void) | undefined;
  const ready = new Promise<void>((r) => {
    readyResolve = r;
  });
  const done = new Promise<FreezeStats>((res, rej) => {
    result = res;
    failed = rej;
  });
  worker.on('message', (m: unknown) => {
    if (m === 'ready') {
      readyResolve?.();
      return;
    }
    if (typeof m === 'object' && m !== null && 'firstStop' in m) {
      opts.onFirstStop?.();
      return;
    }
    const msg = m as { changes: FreezeSample[]; samples: number; worstGapMs: number };
    const stats = freezeFromSamples(msg.changes);
    result?.({ ...stats, samples: msg.samples, worstGapMs: msg.worstGapMs });
  });
  worker.on('error', (e: Error) => {
    readyResolve?.();
    failed?.(e);
  });
  // A failing watcher must never take the process down mid-dump: stop() reports the error instead.
  done.catch(() => undefined);
  return {
    ready,
    async stop() {
      worker.postMessage('stop');
      try {
        return await done;
      } catch (e) {
        return { longestMs: 0, totalMs: 0, samples: 0, worstGapMs: 0, error: (e as Error).message };
      } finally {
        await worker.terminate();
      }
    },
  };
}
