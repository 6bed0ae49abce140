// A kubelet's cgroupRoot on this machine's cgroup hierarchies (cgroup v1 controllers, named hierarchies and
// the v2 `unified` one of a hybrid host): made in every hierarchy before the kubelet starts (it refuses to
// start otherwise; a new cpuset cgroup needs cpuset.cpus and cpuset.mems of its parent), and at teardown
// emptied and removed in every hierarchy: frozen cgroups thawed, every task killed, folders removed
// deepest first.

import { readFileSync, readdirSync, existsSync, mkdirSync, writeFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from './proc.ts';
import { cgroupMounts as cgroupMountsOf } from '../src/engine/sandbox.ts';

export function cgroupMounts(): string[] {
  return cgroupMountsOf(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** Creates `/<name>` in every hierarchy; a cpuset cgroup gets its parent's cpus and mems. */
export function ensureCgroupRoot(name: string): void {
  for (const m of cgroupMounts()) {
    const dir = join(m, name);
    mkdirSync(dir, { recursive: true });
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const own = join(dir, f);
      if (!existsSync(own) || readFileSync(own, 'utf8').trim() !== '') continue;
      writeFileSync(own, readFileSync(join(m, f), 'utf8').trim());
    }
  }
}

/** Every cgroup folder under `/<name>` in every hierarchy, deepest first. */
function treeOf(name: string): string[] {
  const dirs: string[] = [];
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return;
    }
    for (const e of entries) walk(join(d, e));
    dirs.push(d);
  };
  for (const m of cgroupMounts()) {
    if (existsSync(join(m, name))) walk(join(m, name));
  }
  return dirs;
}

function pidsIn(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** PIDs of every task under `/<name>`, in any hierarchy. */
export function cgroupPids(name: string): number[] {
  return [...new Set(treeOf(name).flatMap(pidsIn))];
}

/**
 * Thaws, kills every task in, and removes `/<name>` in every hierarchy, within `timeoutMs`. Returns the
 * folders that could not be removed (empty when all is gone).
 */
export async function removeCgroupRoot(name: string, timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tree = treeOf(name);
    if (tree.length === 0) return [];
    for (const d of tree) {
      // A task in a FROZEN freezer cgroup cannot act on SIGKILL until thawed.
      if (existsSync(join(d, 'freezer.state'))) {
        try {
          writeFileSync(join(d, 'freezer.state'), 'THAWED');
        } catch {
          /* gone meanwhile */
        }
      }
      for (const pid of pidsIn(d)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
    }
    for (const d of tree) {
      try {
        rmdirSync(d);
      } catch {
        /* tasks still exiting, or a child not yet removed: the next round */
      }
    }
    if (Date.now() > deadline) return treeOf(name);
    await sleep(100);
  }
}
