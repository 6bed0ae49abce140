// A task's state from /proc, in one place: the state letter (R, S, D, T, t, Z, ...), CPU ticks and thread IDs.
// Synchronous on purpose: these are read in tight bounded loops (thaw checks, teardown) where a stale answer
// from an awaited read would be worse than a blocked microsecond. `root` is for tests and other procfs mounts.

import { readFileSync, readdirSync } from 'node:fs';

/** The /proc/<pid>/[task/<tid>/]stat fields after `comm` (state is [0], ppid [1], utime [11], stime [12]). */
export function statFields(pid: number, tid?: number, root = '/proc'): string[] | undefined {
  const path = tid === undefined ? `${root}/${pid}/stat` : `${root}/${pid}/task/${tid}/stat`;
  try {
    return parseStatFields(readFileSync(path, 'latin1'));
  } catch {
    return undefined;
  }
}

/** Fields after the command name, which may itself hold spaces and parentheses (so the last ')' ends it). Pure. */
export function parseStatFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).trimEnd().split(' ');
}

/** The state letter of a process (or of one of its threads); undefined when it is gone. */
export function taskState(pid: number, tid?: number, root = '/proc'): string | undefined {
  return statFields(pid, tid, root)?.[0];
}

/** utime + stime (clock ticks) of a process; undefined when it is gone. */
export function cpuTicks(pid: number, root = '/proc'): number | undefined {
  const f = statFields(pid, undefined, root);
  return f === undefined ? undefined : Number(f[11]) + Number(f[12]);
}

/** Thread IDs of a process (empty when it is gone). */
export function taskIds(pid: number, root = '/proc'): number[] {
  try {
    return readdirSync(`${root}/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

/** The state letter of every thread of each process, 'gone' for a process or thread that no longer exists. */
export function threadStates(pids: readonly number[], root = '/proc'): string[] {
  const out: string[] = [];
  for (const pid of pids) {
    const tids = taskIds(pid, root);
    if (tids.length === 0) out.push('gone');
    for (const tid of tids) out.push(taskState(pid, tid, root) ?? 'gone');
  }
  return out;
}
