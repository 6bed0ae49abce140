// A node of the cluster as a mount namespace of its own: the host's mounts as they are, plus bind mounts of
// the node's folders at the paths a real node has (/run/containerd, /var/lib/containerd, /var/lib/kubelet,
// /var/log/pods, /etc/cni/net.d, /var/lib/cni, /run/netns, /var/lib/migprobe). The node's containerd and
// kubelet run in it, so a pod's hostPath /run/containerd/containerd.sock is its own node's socket, and a chart
// installs with its default host paths on every node. Propagation is slave: the host's mounts show inside,
// the node's (pod volumes, network namespaces, container root filesystems) never reach the host, and all of
// them vanish with the namespace when its last process ends.
// A holder process (the static pause program, its argv naming the node's folder) keeps the namespace alive.

import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { run, startDaemon, waitFor, isAlive, tailOf, type RunResult } from './proc.ts';

/** A node path and the host folder bound there. */
export interface Bind {
  nodePath: string;
  hostPath: string;
}

/** The node's bind mounts for node folder `dir` whose containerd keeps its root and state in `runtimeDir`. Pure. */
export function nodeBinds(dir: string, runtimeDir: string): Bind[] {
  return [
    { nodePath: '/run/containerd', hostPath: join(runtimeDir, 'state') },
    { nodePath: '/var/lib/containerd', hostPath: join(runtimeDir, 'root') },
    { nodePath: '/var/lib/kubelet', hostPath: join(dir, 'kubelet') },
    { nodePath: '/var/log/pods', hostPath: join(dir, 'pod-logs') },
    { nodePath: '/var/log/containers', hostPath: join(dir, 'container-logs') },
    { nodePath: '/etc/cni/net.d', hostPath: join(dir, 'cni') },
    { nodePath: '/var/lib/cni', hostPath: join(dir, 'cni-lib') },
    { nodePath: '/run/netns', hostPath: join(dir, 'netns') },
    { nodePath: '/var/lib/migprobe', hostPath: join(dir, 'migprobe') },
  ];
}

/** The host path of `path` as the node sees it (through its bind mounts). Pure. */
export function hostPathOf(binds: Bind[], path: string): string {
  for (const b of binds) {
    if (path === b.nodePath) return b.hostPath;
    if (path.startsWith(`${b.nodePath}/`)) return b.hostPath + path.slice(b.nodePath.length);
  }
  return path;
}

export interface NodeNamespace {
  holderPid: number;
  /** Inode of the mount namespace (as in `mnt:[<inode>]`). */
  mntIno: number;
  /** Mount points this made on the host because they were missing (removed again at teardown). */
  createdMountPoints: string[];
}

/** The inode of a process's mount namespace (undefined when it is gone). */
export function mntInoOf(pid: number | 'self'): number | undefined {
  try {
    return Number(/mnt:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/mnt`))?.[1]);
  } catch {
    return undefined;
  }
}

/** `nsenter` argv prefix that runs a program in the node's mount namespace (and nothing else of it). */
export function inNode(holderPid: number): string[] {
  return [`--mount=/proc/${holderPid}/ns/mnt`, '--'];
}

/**
 * Creates the node's mount namespace: a holder process in a new mount namespace (propagation slave), then
 * every bind mount. `holder` is a program that waits for a signal (test/programs/pause.c); `dir` is passed
 * to it so that teardown knows it by its command line.
 */
export async function createNodeNamespace(dir: string, runtimeDir: string, holder: string, logFile: string): Promise<NodeNamespace> {
  const createdMountPoints: string[] = [];
  const binds = nodeBinds(dir, runtimeDir);
  for (const b of binds) {
    mkdirSync(b.hostPath, { recursive: true });
    // A bind mount needs its mount point on the host filesystem; a missing one (and any missing parent) is
    // made, and removed at teardown, deepest first.
    const missing: string[] = [];
    for (let d = b.nodePath; d !== '/' && !existsSync(d); d = dirname(d)) missing.push(d);
    if (missing.length > 0) {
      mkdirSync(b.nodePath, { recursive: true });
      createdMountPoints.push(...missing);
    }
  }
  const holderPid = startDaemon('unshare', ['--mount', '--propagation', 'slave', '--', holder, dir], logFile);
  const hostIno = mntInoOf('self');
  const mntIno = await waitFor('the node mount namespace', 10_000, async () => {
    if (!isAlive(holderPid)) throw new Error(`unshare --mount exited: ${tailOf(logFile, 5)}`);
    const ino = mntInoOf(holderPid);
    // Until unshare has run, the holder is still in the host's namespace.
    return ino !== undefined && ino !== hostIno && readFileSync(`/proc/${holderPid}/cmdline`, 'utf8').startsWith(holder) ? ino : undefined;
  });
  for (const b of binds) await run('nsenter', [...inNode(holderPid), 'mount', '--bind', b.hostPath, b.nodePath]);
  return { holderPid, mntIno, createdMountPoints };
}

/** Runs a command in the node's mount namespace, as a shell on that node would. */
export async function runOnNode(
  holderPid: number,
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; allowFail?: boolean; input?: string } = {},
): Promise<RunResult> {
  return await run('nsenter', [...inNode(holderPid), cmd, ...args], opts);
}

/** Live processes in the mount namespace `mntIno`. */
export function processesInMountNs(mntIno: number): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid !== process.pid && mntInoOf(pid) === mntIno && isAlive(pid)) pids.push(pid);
  }
  return pids;
}

/** The live holder of the node namespace for folder `dir` (found by its command line), if any. */
export function findHolder(dir: string, holderName = 'pause'): number | undefined {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv[0]?.endsWith(`/${holderName}`) && argv[1] === dir && isAlive(Number(e))) return Number(e);
  }
  return undefined;
}

/** Removes the mount points `createNodeNamespace` made on the host, when they are still empty. */
export function removeMountPoints(points: string[]): string[] {
  const left: string[] = [];
  for (const p of points) {
    try {
      rmdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(p);
    }
  }
  return left;
}
