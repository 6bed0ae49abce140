// Find a container and describe it from /proc: its process tree, namespaces, cgroups, root filesystem, mounts,
// network namespace and addresses, and (from containerd) its image.
// Signature (for A2): resolveContainer(ref, deps?) -> ContainerInfo; throws ContainerNotFoundError (exit 2 in
// the CLI, ContainerNotFound reason in the agent) for a PID or container ID that does not exist or runs no task.

import { readFile, readdir, readlink } from 'node:fs/promises';
import { CONTAINER_ID_RE, type ContainerRef } from './api.ts';
import { run } from './exec.ts';
import { ctrRun } from './ctr.ts';
import type { Runner } from './exec.ts';
import {
  classifyMount,
  hostPathOf,
  overlayDirs,
  parseCgroup,
  parseCtrTaskLs,
  parseIpAddrJson,
  parseMountinfo,
  parseStatPpid,
  rootMount,
  statusField,
} from './procparse.ts';
import type { CgroupEntry, InterfaceAddrs, MountEntry, MountKind } from './procparse.ts';

export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock';
export const DEFAULT_CONTAINERD_NAMESPACE = 'k8s.io';
const IP_TIMEOUT_MS = 10_000;

export class ContainerNotFoundError extends Error {
  override name = 'ContainerNotFoundError';
  readonly code = 'ContainerNotFound';
}

export interface ContainerMount extends MountEntry {
  kind: MountKind;
  /** For bind mounts (and any mount the host can see): the same directory or file as the host sees it. */
  hostPath?: string;
}

export interface ContainerInfo {
  /** Host PID of the container's init task. */
  initPid: number;
  /** Host PIDs of every process of the dump tree (init first). */
  pids: number[];
  /** Host TIDs of every thread of those processes, per PID. */
  threads: Record<number, number[]>;
  containerId?: string;
  namespace?: string;
  containerdAddress?: string;
  /** The image the container was created from (containerd only). */
  image?: string;
  /** Namespace type (net, mnt, pid, ipc, uts, user, cgroup, time, ...) -> inode. */
  namespaces: Record<string, number>;
  /** Namespace types the container shares with the host (PID 1's namespaces). */
  sharedWithHost: string[];
  cgroups: CgroupEntry[];
  rootfs: {
    /** Reaches the container's root from the host. */
    hostPath: string;
    fstype: string;
    source: string;
    /** Overlay only: lower directories (top first), upper and work directory, as host paths. */
    lowerdirs: string[];
    upperdir?: string;
    workdir?: string;
    /**
     * Any other root (a bundle's plain folder, a `--rootfs` folder, a tmpfs): the folder the host sees it at, when
     * the host sees it at all (undefined for an overlay, or a root mounted only inside another mount namespace).
     */
    hostDir?: string;
  };
  mounts: ContainerMount[];
  network: {
    netnsPath: string;
    inode: number;
    hostNetwork: boolean;
    interfaces: InterfaceAddrs[];
  };
}

export interface ContainerDeps {
  runner: Runner;
  /** The /proc to read (tests may point it elsewhere). */
  proc: string;
  /** `ctr` binary. */
  ctr: string;
}

const defaultDeps: ContainerDeps = { runner: run, proc: '/proc', ctr: 'ctr' };

async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path, 'utf8');
    return true;
  } catch {
    return false;
  }
}

/** Find the init PID of a containerd container, and its image. */
async function fromContainerd(
  id: string,
  namespace: string,
  address: string,
  deps: ContainerDeps,
): Promise<{ pid: number; image?: string }> {
  if (!CONTAINER_ID_RE.test(id)) throw new ContainerNotFoundError(`'${id}' is not a valid container ID`);
  const ep = { address, namespace };
  const info = await ctrRun(ep, ['containers', 'info', id], `containers info ${id}`, { runner: deps.runner, ctr: deps.ctr });
  if (info.exitCode !== 0) {
    const msg = (info.stderr || info.stdout).trim();
    if (/not found/i.test(msg)) {
      throw new ContainerNotFoundError(`container ${id} not found in containerd namespace ${namespace} (${address})`);
    }
    throw new Error(`ctr containers info ${id} failed: ${msg.slice(0, 500)}`);
  }
  let image: string | undefined;
  try {
    const data = JSON.parse(info.stdout) as { Image?: unknown };
    if (typeof data.Image === 'string' && data.Image !== '') image = data.Image;
  } catch {
    // image stays unknown
  }
  const tasks = await ctrRun(ep, ['tasks', 'ls'], 'tasks ls', { runner: deps.runner, ctr: deps.ctr });
  if (tasks.exitCode !== 0) throw new Error(`ctr tasks ls failed: ${tasks.stderr.trim().slice(0, 500)}`);
  const task = parseCtrTaskLs(tasks.stdout).get(id);
  if (task === undefined || task.pid <= 0 || task.status !== 'RUNNING') {
    throw new ContainerNotFoundError(
      `container ${id} has no running task (${task === undefined ? 'no task' : task.status})`,
    );
  }
  return image === undefined ? { pid: task.pid } : { pid: task.pid, image };
}

async function nsInodes(proc: string, pid: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let names: string[] = [];
  try {
    names = await readdir(`${proc}/${pid}/ns`);
  } catch {
    return out;
  }
  for (const n of names) {
    try {
      const link = await readlink(`${proc}/${pid}/ns/${n}`);
      const m = /\[(\d+)\]$/.exec(link);
      if (m !== null) out[n] = Number(m[1]);
    } catch {
      // namespace type not readable
    }
  }
  return out;
}

/** All processes of the tree rooted at `init`, plus every process in init's PID namespace when it has its own. */
async function processTree(proc: string, init: number, pidNs: number | undefined, hostPidNs: number | undefined): Promise<number[]> {
  const children = new Map<number, number[]>();
  const all: number[] = [];
  for (const e of await readdir(proc)) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    try {
      const ppid = parseStatPpid(await readFile(`${proc}/${pid}/stat`, 'utf8'));
      if (ppid === undefined) continue;
      all.push(pid);
      const list = children.get(ppid) ?? [];
      list.push(pid);
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const seen = new Set<number>([init]);
  const order = [init];
  for (let i = 0; i < order.length; i++) {
    for (const c of children.get(order[i] ?? -1) ?? []) {
      if (!seen.has(c)) {
        seen.add(c);
        order.push(c);
      }
    }
  }
  if (pidNs !== undefined && hostPidNs !== undefined && pidNs !== hostPidNs) {
    for (const pid of all) {
      if (seen.has(pid)) continue;
      try {
        const link = await readlink(`${proc}/${pid}/ns/pid`);
        if (link === `pid:[${pidNs}]`) {
          seen.add(pid);
          order.push(pid);
        }
      } catch {
        // gone
      }
    }
  }
  return order;
}

async function threadsOf(proc: string, pid: number): Promise<number[]> {
  try {
    return (await readdir(`${proc}/${pid}/task`)).filter((t) => /^\d+$/.test(t)).map(Number).sort((a, b) => a - b);
  } catch {
    return [pid];
  }
}

async function interfaces(netnsPath: string, deps: ContainerDeps): Promise<InterfaceAddrs[]> {
  const r = await deps.runner('nsenter', [`--net=${netnsPath}`, '--', 'ip', '-j', 'addr', 'show'], {
    timeoutMs: IP_TIMEOUT_MS,
  });
  if (r.exitCode !== 0) {
    throw new Error(`ip addr in ${netnsPath} failed: ${r.timedOut ? 'timed out' : r.stderr.trim().slice(0, 300)}`);
  }
  return parseIpAddrJson(r.stdout.trim());
}

/** Resolve a container reference (host PID or containerd container ID) into everything the probe needs. */
export async function resolveContainer(ref: ContainerRef, deps: Partial<ContainerDeps> = {}): Promise<ContainerInfo> {
  const d: ContainerDeps = { ...defaultDeps, ...deps };
  let initPid: number;
  const meta: Pick<ContainerInfo, 'containerId' | 'namespace' | 'containerdAddress' | 'image'> = {};
  if ('pid' in ref) {
    if (!Number.isSafeInteger(ref.pid) || ref.pid <= 0) {
      throw new ContainerNotFoundError(`PID must be a positive integer, got ${String(ref.pid)}`);
    }
    initPid = ref.pid;
  } else {
    const namespace = ref.namespace ?? DEFAULT_CONTAINERD_NAMESPACE;
    const address = ref.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS;
    const found = await fromContainerd(ref.containerId, namespace, address, d);
    initPid = found.pid;
    meta.containerId = ref.containerId;
    meta.namespace = namespace;
    meta.containerdAddress = address;
    if (found.image !== undefined) meta.image = found.image;
  }
  if (!(await exists(`${d.proc}/${initPid}/stat`))) {
    throw new ContainerNotFoundError(`no process with PID ${initPid}`);
  }
  const tgid = statusField(await readFile(`${d.proc}/${initPid}/status`, 'utf8'), 'Tgid');
  if (tgid !== undefined && Number(tgid) !== initPid) {
    throw new ContainerNotFoundError(`PID ${initPid} is a thread of process ${tgid}; give the process PID`);
  }
  const namespaces = await nsInodes(d.proc, initPid);
  // The host's namespaces: PID 1's; where PID 1 cannot be inspected (some sandboxes), our own.
  let hostNs = await nsInodes(d.proc, 1);
  if (Object.keys(hostNs).length === 0) hostNs = await nsInodes(d.proc, process.pid);
  const sharedWithHost = Object.keys(namespaces)
    .filter((k) => !k.endsWith('_for_children') && hostNs[k] !== undefined && hostNs[k] === namespaces[k])
    .sort();
  if (sharedWithHost.includes('pid') && sharedWithHost.includes('mnt')) {
    // Not a container: CRIU could dump it, but there is no container root filesystem to restore it into,
    // and its process tree would be all of the host's processes it forked.
    throw new ContainerNotFoundError(
      `PID ${initPid} is not in a container: it shares the host's PID and mount namespaces (give the host PID of a container's init process)`,
    );
  }

  const pids = await processTree(d.proc, initPid, namespaces['pid'], hostNs['pid']);
  const threads: Record<number, number[]> = {};
  for (const p of pids) threads[p] = await threadsOf(d.proc, p);

  const cgroups = parseCgroup(await readFile(`${d.proc}/${initPid}/cgroup`, 'utf8'));
  const ns = parseMountinfo(await readFile(`${d.proc}/${initPid}/mountinfo`, 'utf8'));
  let hostMountinfo: string;
  try {
    hostMountinfo = await readFile(`${d.proc}/1/mountinfo`, 'utf8');
  } catch {
    hostMountinfo = await readFile(`${d.proc}/${process.pid}/mountinfo`, 'utf8');
  }
  const hostMounts = parseMountinfo(hostMountinfo);
  const root = rootMount(ns);
  const mounts: ContainerMount[] = ns.map((m) => {
    const kind = classifyMount(m, root?.mountId);
    const hp = kind === 'bind' || kind === 'root' ? hostPathOf(m, hostMounts) : undefined;
    return hp === undefined ? { ...m, kind } : { ...m, kind, hostPath: hp };
  });
  const overlay = root !== undefined && root.fstype === 'overlay';
  const dirs = overlay ? overlayDirs(root) : { lowerdirs: [] };
  const hostDir = overlay ? undefined : mounts.find((m) => m.kind === 'root')?.hostPath;
  const rootfs: ContainerInfo['rootfs'] = {
    hostPath: `${d.proc}/${initPid}/root`,
    fstype: root?.fstype ?? 'unknown',
    source: root?.source ?? '',
    ...dirs,
    ...(hostDir === undefined ? {} : { hostDir }),
  };

  const netnsPath = `${d.proc}/${initPid}/ns/net`;
  const netIno = namespaces['net'] ?? 0;
  const network: ContainerInfo['network'] = {
    netnsPath,
    inode: netIno,
    hostNetwork: netIno !== 0 && netIno === hostNs['net'],
    interfaces: await interfaces(netnsPath, d),
  };

  return { initPid, pids, threads, ...meta, namespaces, sharedWithHost, cgroups, rootfs, mounts, network };
}
