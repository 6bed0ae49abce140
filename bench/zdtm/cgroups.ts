// Cgroups for the conformance bench: each zdtm test runs in cgroups of its own, as a container does, below the
// bench's own cgroups in every mounted hierarchy. (A test left in the bench's cgroups would share CRIU's cgroup
// set; CRIU then restores its tasks without moving them, and migprobe's sandbox would not find them.)

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupMounts, unmountedHierarchies } from '../../src/engine/sandbox.ts';

interface Hierarchy {
  mount: string;
  /** The bench's own cgroup in it. */
  path: string;
}

/** Each mounted cgroup hierarchy with the cgroup of this process in it. */
export function hierarchies(): Hierarchy[] {
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').filter((l) => l !== '');
  const out: Hierarchy[] = [];
  for (const mount of cgroupMounts(mountinfo)) {
    const line = mountinfo.split('\n').find((l) => l.split(' ')[4] === mount) ?? '';
    const fstype = line.slice(line.indexOf(' - ') + 3).split(' ')[0];
    const supers = (line.slice(line.indexOf(' - ') + 3).split(' ')[2] ?? '').split(',');
    const keys = fstype === 'cgroup2' ? [''] : supers.filter((o) => !['rw', 'ro'].includes(o) && !o.startsWith('release_agent') && o !== 'clone_children' && o !== 'noprefix');
    const mine = own.find((l) => {
      const parts = l.split(':');
      const ctrls = (parts[1] ?? '').split(',');
      return fstype === 'cgroup2' ? parts[0] === '0' && parts[1] === '' : keys.length > 0 && keys.every((k) => ctrls.includes(k));
    });
    if (mine === undefined) continue;
    out.push({ mount, path: mine.split(':').slice(2).join(':') });
  }
  return out;
}

/** The cgroup.procs files of this process's own cgroups (where the verdict hook goes back to). */
export function homeProcs(hs: readonly Hierarchy[]): string[] {
  return hs.map((h) => join(h.mount, h.path, 'cgroup.procs'));
}

function dirsOf(hs: readonly Hierarchy[], name: string): string[] {
  return hs.map((h) => join(h.mount, h.path, 'migprobe-zdtm', name));
}

/** Make the test's cgroups (cpuset ones get their parent's cpus and mems); returns their cgroup.procs files. */
export function makeTestCgroups(hs: readonly Hierarchy[], name: string): string[] {
  const out: string[] = [];
  for (const h of hs) {
    const parent = join(h.mount, h.path);
    const mid = join(parent, 'migprobe-zdtm');
    const dir = join(mid, name);
    mkdirSync(dir, { recursive: true });
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      let v: string;
      try {
        v = readFileSync(join(parent, f), 'latin1').trim();
      } catch {
        continue;
      }
      for (const d of [mid, dir]) if (readFileSync(join(d, f), 'latin1').trim() === '') writeFileSync(join(d, f), v);
    }
    out.push(join(dir, 'cgroup.procs'));
  }
  return out;
}

/** zdtm's named hierarchies (test/zdtm_mount_cgroups makes them when /proc/self/cgroup has none yet). */
export const ZDTM_NAMED = ['zdtmtst', 'zdtmtst.defaultroot'] as const;

/**
 * The test's own cgroup in zdtm's named hierarchies too, made before zdtm.py starts (zdtm_mount_cgroups then finds
 * them and leaves them as they are), as a runtime gives a container a cgroup of its own in every hierarchy: left
 * at their root, the test would share it with every task of the node. Each hierarchy is mounted until `place`
 * moved the test's first task in, then unmounted; a `holder` cgroup keeps it alive while the test runs
 * (clearZdtmHierarchies removes it all afterwards).
 */
export function namedTestCgroups(workDir: string, name: string): { place: (pid: number) => void } {
  const mounts: string[] = [];
  const procs: string[] = [];
  try {
    for (const h of ZDTM_NAMED) {
      const mp = join(workDir, `zdtm-${h}`);
      mkdirSync(mp, { recursive: true });
      execFileSync('mount', ['-t', 'cgroup', '-o', `none,name=${h}`, 'zdtm', mp]);
      mounts.push(mp);
      mkdirSync(join(mp, 'holder.migprobe'), { recursive: true });
      mkdirSync(join(mp, 'migprobe-zdtm', name), { recursive: true });
      procs.push(join(mp, 'migprobe-zdtm', name, 'cgroup.procs'));
    }
  } catch (e) {
    release(mounts);
    throw e;
  }
  return {
    place: (pid) => {
      try {
        for (const p of procs) writeFileSync(p, String(pid));
      } finally {
        release(mounts);
      }
    },
  };
}

function release(mounts: readonly string[]): void {
  for (const mp of mounts) {
    execFileSync('umount', ['-l', mp]);
    rmdirSync(mp);
  }
}

/** Remove the test's cgroups (their tasks are gone); what cannot be removed stays and is returned. */
export function removeTestCgroups(hs: readonly Hierarchy[], name: string): string[] {
  const left: string[] = [];
  for (const d of dirsOf(hs, name)) {
    try {
      rmdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(d);
    }
  }
  return left;
}

function removeTree(dir: string): number {
  let left = 0;
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (!statSync(p).isDirectory()) continue;
    left += removeTree(p);
    try {
      rmdirSync(p);
    } catch {
      left++;
    }
  }
  return left;
}

/**
 * Empty zdtm's named hierarchies (zdtm.py makes `name=zdtmtst` and `name=zdtmtst.defaultroot`, each kept alive by
 * a `holder.<uuid>` cgroup): mounted for a moment, every cgroup without tasks removed, so that a hierarchy with
 * none left goes away. Returns what stayed.
 */
export function clearZdtmHierarchies(workDir: string): string[] {
  const named = unmountedHierarchies(readFileSync('/proc/self/cgroup', 'utf8'), readFileSync('/proc/self/mountinfo', 'utf8')).filter((o) =>
    o.includes('name=zdtmtst'),
  );
  const stayed: string[] = [];
  for (const opts of named) {
    const mp = join(workDir, 'zdtm-hierarchy');
    mkdirSync(mp, { recursive: true });
    execFileSync('mount', ['-t', 'cgroup', '-o', opts, 'zdtm', mp]);
    try {
      const left = removeTree(mp);
      if (left > 0) stayed.push(`${opts}: ${left} cgroup(s) still hold tasks`);
    } finally {
      execFileSync('umount', ['-l', mp]);
      rmdirSync(mp);
    }
  }
  return stayed;
}
