// ContainerInfo (container.ts) -> what the dump needs (DumpSubject) and what the target needs (manifest parts).
// Pure, except `tmpfsInUse`, which reads /proc.

import { readdirSync, readlinkSync, readFileSync } from 'node:fs';
import type { ContainerInfo, ContainerMount } from './container.ts';
import type { DumpSubject } from './dump.ts';
import type { ExternalMount } from './criu-args.ts';
import { mountKey } from './criu-args.ts';

/** Is `path` at or beneath `dir`? (both absolute, container view) */
export function beneath(path: string, dir: string): boolean {
  if (dir === '/') return true;
  return path === dir || path.startsWith(`${dir}/`);
}

/**
 * Which mounts CRIU must (cgroup, bind) or should (tmpfs) treat as external.
 * A tmpfs is made external only when nothing depends on its contents: it is not /dev (device nodes), no other
 * mount of the container is a bind from it (same device) or sits beneath it, and no task holds a file, mapping
 * or cwd on it (`inUse`). Everything else CRIU dumps as usual (it tars a tmpfs while the workload is frozen).
 */
export function externalMountsFor(mounts: readonly ContainerMount[], opts: { externalTmpfs: boolean; inUse: ReadonlySet<string> }): ExternalMount[] {
  const out: ExternalMount[] = [];
  const root = mounts.find((x) => x.kind === 'root');
  for (const m of mounts) {
    if (m.kind === 'cgroup') {
      out.push({ mountpoint: m.mountpoint, key: mountKey('cgroup', m.mountpoint), kind: 'cgroup' });
    } else if (m.kind === 'bind') {
      // A bind from the container's own root filesystem whose source was deleted since: CRIU dumps it as it is and
      // re-creates the source inside the root on restore; declared external, the target would need the deleted
      // path (zdtm mntns_deleted).
      if (root !== undefined && deletedInRoot(m, root)) continue;
      // A bind from the container's own root filesystem in the root mount's peer group: declared external, it would
      // be bound from the host's path (another superblock than the target's root), and the kernel copies a peer
      // group only within one superblock (CRIU: `Failed to copy sharing ... Invalid argument`; zdtm mntns_root_bind).
      // Left to CRIU, it is bound from the restored root and joins the root's group there.
      if (root !== undefined && rootPeerInRoot(m, root)) continue;
      out.push({
        mountpoint: m.mountpoint,
        key: mountKey('bind', m.mountpoint),
        kind: 'bind',
        ...(m.hostPath === undefined ? {} : { hostPath: m.hostPath }),
      });
    } else if (m.kind === 'tmpfs' && opts.externalTmpfs) {
      if (m.mountpoint === '/dev') continue;
      const shared = mounts.some((o) => o !== m && (o.dev === m.dev || (o.mountpoint !== m.mountpoint && beneath(o.mountpoint, m.mountpoint))));
      if (shared) continue;
      if (opts.inUse.has(m.mountpoint)) continue;
      out.push({ mountpoint: m.mountpoint, key: mountKey('tmpfs', m.mountpoint), kind: 'tmpfs' });
    }
  }
  return out;
}

/** A mount whose source (its mountinfo root, `<path>//deleted`) was deleted from the root mount's filesystem. Pure. */
export function deletedInRoot(m: ContainerMount, root: ContainerMount): boolean {
  const DELETED = '//deleted';
  return m.dev === root.dev && m.root.endsWith(DELETED) && beneath(m.root.slice(0, -DELETED.length), root.root);
}

/** A bind of a path of the root mount's filesystem that shares the root mount's peer group (`shared:N`). Pure. */
export function rootPeerInRoot(m: ContainerMount, root: ContainerMount): boolean {
  const group = root.propagation.find((p) => p.startsWith('shared:'));
  return group !== undefined && m.dev === root.dev && beneath(m.root, root.root) && m.propagation.includes(group);
}

/** Mount points (from `candidates`) under which a task of `pids` holds an fd, a file mapping or its cwd. */
export function tmpfsInUse(pids: readonly number[], candidates: readonly string[], proc = '/proc'): Set<string> {
  const used = new Set<string>();
  const mark = (p: string): void => {
    for (const c of candidates) if (beneath(p, c)) used.add(c);
  };
  for (const pid of pids) {
    try {
      for (const fd of readdirSync(`${proc}/${pid}/fd`)) {
        try {
          const l = readlinkSync(`${proc}/${pid}/fd/${fd}`);
          if (l.startsWith('/')) mark(l.replace(/ \(deleted\)$/, ''));
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      // gone
    }
    try {
      mark(readlinkSync(`${proc}/${pid}/cwd`));
    } catch {
      // gone
    }
    try {
      for (const line of readFileSync(`${proc}/${pid}/maps`, 'latin1').split('\n')) {
        const i = line.indexOf('/');
        if (i > 0) mark(line.slice(i).replace(/ \(deleted\)$/, ''));
      }
    } catch {
      // gone
    }
  }
  return used;
}

/**
 * Addresses the sandbox must carry: every non-loopback address of the container's network namespace (for a
 * host-network container, the node's own: sockets bound to them must find them in the isolated sandbox too).
 */
export function addressesOf(info: Pick<ContainerInfo, 'network'>): { ifname: string; cidr: string }[] {
  const out: { ifname: string; cidr: string }[] = [];
  for (const i of info.network.interfaces) {
    if (i.name === 'lo') continue;
    // IPv6 link-local addresses are per link: the sandbox's veth makes its own.
    for (const a of [...i.ipv4, ...i.ipv6]) if (/\/\d+$/.test(a) && !/^fe80:/i.test(a)) out.push({ ifname: i.name, cidr: a });
  }
  return out;
}

/** The v1 freezer cgroup folder of the container, when the host has a v1 freezer hierarchy. */
export function freezerDirOf(info: Pick<ContainerInfo, 'cgroups'>, freezerMount = '/sys/fs/cgroup/freezer'): string | undefined {
  for (const c of info.cgroups) {
    if (c.controllers.includes('freezer')) return `${freezerMount}${c.path === '/' ? '' : c.path}`;
  }
  return undefined;
}

export function subjectFromContainer(info: ContainerInfo, opts: { externalTmpfs?: boolean; proc?: string } = {}): DumpSubject {
  const candidates = info.mounts.filter((m) => m.kind === 'tmpfs').map((m) => m.mountpoint);
  const inUse = opts.externalTmpfs === false ? new Set<string>() : tmpfsInUse(info.pids, candidates, opts.proc);
  const s: DumpSubject = {
    pid: info.initPid,
    pids: info.pids,
    root: info.rootfs.hostPath,
    externalMounts: externalMountsFor(info.mounts, { externalTmpfs: opts.externalTmpfs !== false, inUse }),
  };
  if (!info.network.hostNetwork) s.netnsInode = info.network.inode;
  const fz = freezerDirOf(info);
  if (fz !== undefined) s.freezerCgroupDir = fz;
  return s;
}
