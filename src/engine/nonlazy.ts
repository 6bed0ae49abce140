// Non-lazy memory: the memory whose contents CRIU writes into the image set even with --lazy-pages, found from
// /proc before anything is frozen. CRIU 4.2 leaves behind (lazy) only pages of private anonymous mappings that
// are not mlock'ed (criu/include/vma.h vma_entry_can_be_lazy); everything else it dumps whole:
//   mlocked             private anonymous pages of a VM_LOCKED mapping (smaps VmFlags `lo`): Anonymous + Swap
//   sharedMemory        MAP_SHARED anonymous memory (`/dev/zero (deleted)`) and memfds (`/memfd:...`), mapped or
//                       only held by an fd: the object's allocated pages (st_blocks of map_files or of the fd,
//                       as CRIU walks them with SEEK_DATA), each object once
//   sysvShm             every segment of the container's IPC namespace, attached or not (CRIU dumps the
//                       namespace): rss + swap of /proc/sysvipc/shm read inside it. In the host's IPC namespace
//                       (not dumped), the attached segments as shared objects
//   dirtyPrivateFile    copy-on-write pages of private file mappings (smaps Anonymous + Swap)
//   tmpfs               used bytes of the container's tmpfs mounts CRIU archives (those not made external, see
//                       subject.ts): a /dev/shm file in use puts all of /dev/shm into tmpfs-dev-*.tar.gz.img
// Not counted: the vDSO and the page under each thread's stack pointer (always dumped, a few pages), hugetlb.
// Pure accounting (accountMappings, nonLazyReason) apart from the reads (scanNonLazyMemory).

import { readFile, readlink, stat, statfs } from 'node:fs/promises';
import type { NonLazyMemory, Reason } from '../verdict.ts';
import type { ContainerInfo } from './container.ts';
import type { Runner } from './exec.ts';
import { formatBytes } from '../cli/format.ts';
import { devMajorMinor, parseSmaps, parseSysvShm } from './procparse.ts';
import type { SmapsVma } from './procparse.ts';
import { reason } from '../reasons.ts';
import { externalMountsFor, tmpfsInUse } from './subject.ts';

export type NonLazyKind = 'mlocked' | 'sharedMemory' | 'sysvShm' | 'dirtyPrivateFile' | 'tmpfs';

const KIND_FIELD: Readonly<Record<NonLazyKind, Exclude<keyof NonLazyMemory, 'totalBytes'>>> = {
  mlocked: 'mlockedBytes',
  sharedMemory: 'sharedMemoryBytes',
  sysvShm: 'sysvShmBytes',
  dirtyPrivateFile: 'dirtyPrivateFileBytes',
  tmpfs: 'tmpfsBytes',
};

const KIND_LABEL: Readonly<Record<NonLazyKind, string>> = {
  mlocked: "mlock'ed",
  sharedMemory: 'shared anonymous/memfd',
  sysvShm: 'SysV shm',
  dirtyPrivateFile: 'written private file mappings',
  tmpfs: 'archived tmpfs',
};

/** Special mappings CRIU handles on its own (the vDSO's few pages are always dumped; not counted). */
const SPECIAL = /^\[(vdso|vvar|vvar_vclock|vsyscall|uprobes)\]$/;

/** Which kind of non-lazy memory a mapping is; undefined when its pages are lazy or not dumped at all. */
export function nonLazyKindOf(v: SmapsVma): NonLazyKind | undefined {
  if (SPECIAL.test(v.path)) return undefined;
  if (v.perms.charAt(3) === 's') {
    if (v.path.startsWith('/SYSV')) return 'sysvShm';
    if (v.path === '/dev/zero (deleted)' || v.path.startsWith('/memfd:')) return 'sharedMemory';
    // A shared mapping of a regular file: its pages are the file's, CRIU dumps none (tmpfs files: see tmpfs).
    return undefined;
  }
  if (v.flags.includes('ht')) return undefined;
  if (v.inode === 0) return v.flags.includes('lo') ? 'mlocked' : undefined;
  return 'dirtyPrivateFile';
}

/** An object several mappings (or fds) may share: counted once, with its largest known size. */
export interface SharedObject {
  kind: 'sharedMemory' | 'sysvShm';
  bytes: number;
  where: string;
}

export interface MappingAccount {
  /** Private kinds, summed over mappings. */
  mlockedBytes: number;
  dirtyPrivateFileBytes: number;
  /** Shared objects by `major:minor:inode` (decimal): Rss + Swap of a mapping until a stat says better. */
  objects: Map<string, SharedObject>;
  /** The biggest private contributions, for the message. */
  items: { kind: NonLazyKind; bytes: number; where: string }[];
}

/** "00:01" (hex, as maps prints it) + inode -> the key a stat of the same object gives (objectKey). */
function mapsKey(dev: string, inode: number): string {
  const [ma = '0', mi = '0'] = dev.split(':');
  return `${Number.parseInt(ma, 16)}:${Number.parseInt(mi, 16)}:${inode}`;
}

export function objectKey(st: { dev: number; ino: number }): string {
  const { major, minor } = devMajorMinor(st.dev);
  return `${major}:${minor}:${st.ino}`;
}

/** Account every mapping of every task (`vmas` by PID). Pure. */
export function accountMappings(vmas: ReadonlyMap<number, readonly SmapsVma[]>): MappingAccount {
  const acc: MappingAccount = { mlockedBytes: 0, dirtyPrivateFileBytes: 0, objects: new Map(), items: [] };
  for (const [pid, list] of vmas) {
    for (const v of list) {
      const kind = nonLazyKindOf(v);
      if (kind === undefined) continue;
      const where = `task ${pid} ${v.start}-${v.end} ${v.path === '' ? '[anon]' : v.path}`;
      if (kind === 'sharedMemory' || kind === 'sysvShm') {
        const key = mapsKey(v.dev, v.inode);
        const bytes = (v.bytes['Rss'] ?? 0) + (v.bytes['Swap'] ?? 0);
        const old = acc.objects.get(key);
        if (old === undefined || bytes > old.bytes) acc.objects.set(key, { kind, bytes, where });
        continue;
      }
      const bytes = (v.bytes['Anonymous'] ?? 0) + (v.bytes['Swap'] ?? 0);
      if (bytes === 0) continue;
      if (kind === 'mlocked') acc.mlockedBytes += bytes;
      else acc.dirtyPrivateFileBytes += bytes;
      acc.items.push({ kind, bytes, where });
    }
  }
  return acc;
}

export interface NonLazyScan {
  memory: NonLazyMemory;
  /** The largest contributions, largest first ("task 12 7f..-7f.. /SYSV00000000 (deleted)"). */
  items: { kind: NonLazyKind; bytes: number; where: string }[];
}

/** The totals from the parts. Pure. */
export function nonLazyTotals(parts: Omit<NonLazyMemory, 'totalBytes'>): NonLazyMemory {
  const totalBytes = parts.mlockedBytes + parts.sharedMemoryBytes + parts.sysvShmBytes + parts.dirtyPrivateFileBytes + parts.tmpfsBytes;
  return { totalBytes, ...parts };
}

/** The NonLazyMemory blocker when the total is over `limit`, else undefined. Pure. */
export function nonLazyReason(scan: NonLazyScan, limit: number): Reason | undefined {
  const m = scan.memory;
  if (m.totalBytes <= limit) return undefined;
  const parts = (Object.keys(KIND_FIELD) as NonLazyKind[])
    .filter((k) => m[KIND_FIELD[k]] > 0)
    .map((k) => `${KIND_LABEL[k]} ${formatBytes(m[KIND_FIELD[k]])}`);
  const top = scan.items.slice(0, 3).map((i) => `${formatBytes(i.bytes)} ${KIND_LABEL[i.kind]} at ${i.where}`);
  return reason(
    'NonLazyMemory',
    `the container holds ${formatBytes(m.totalBytes)} (${m.totalBytes} bytes) of memory CRIU writes into the image set ` +
      `even in lazy mode (${parts.join(', ')}), over the non-lazy memory limit of ${formatBytes(limit)} (${limit} bytes); ` +
      `largest: ${top.join('; ')}. Nothing was frozen or written`,
    `raise spec.options.nonLazyMemoryLimitBytes (CLI --non-lazy-memory-limit) to at least ${m.totalBytes} if the node's ` +
      'disk and the network may carry that much, or probe when the workload holds less of it',
  );
}

export interface NonLazyDeps {
  proc: string;
  runner: Runner;
}

const CMD_TIMEOUT_MS = 15_000;

/** st_blocks * 512 of a path (a map_files entry or an fd), undefined when it cannot be read. */
async function allocated(path: string): Promise<{ bytes: number; key: string } | undefined> {
  try {
    const st = await stat(path);
    return { bytes: st.blocks * 512, key: objectKey(st) };
  } catch {
    return undefined;
  }
}

/** The container's IPC namespace's SysV segments; undefined when it is ours (not dumped) or unreadable. */
async function sysvSegments(info: ContainerInfo, d: NonLazyDeps): Promise<ReturnType<typeof parseSysvShm>> {
  const pid = info.initPid;
  const theirs = await readlink(`${d.proc}/${pid}/ns/ipc`).catch(() => undefined);
  const ours = await readlink(`${d.proc}/self/ns/ipc`).catch(() => undefined);
  if (theirs === undefined || ours === undefined || theirs === ours) return undefined;
  const r = await d.runner('nsenter', [`--ipc=${d.proc}/${pid}/ns/ipc`, '--', 'cat', '/proc/sysvipc/shm'], { timeoutMs: CMD_TIMEOUT_MS });
  return r.exitCode === 0 ? parseSysvShm(r.stdout) : undefined;
}

/** Used bytes of the tmpfs mounts CRIU will archive (the same choice as subjectFromContainer's default). */
async function archivedTmpfs(info: ContainerInfo, proc: string): Promise<{ bytes: number; where: string }[]> {
  const mounts = info.mounts;
  const tmpfs = mounts.filter((m) => m.fstype === 'tmpfs');
  if (tmpfs.length === 0) return [];
  const inUse = tmpfsInUse(info.pids, tmpfs.map((m) => m.mountpoint), proc);
  const external = new Set(externalMountsFor(mounts, { externalTmpfs: true, inUse }).map((e) => e.mountpoint));
  const out: { bytes: number; where: string }[] = [];
  for (const m of tmpfs) {
    if (external.has(m.mountpoint)) continue;
    try {
      const s = await statfs(`${proc}/${info.initPid}/root${m.mountpoint}`);
      const bytes = (s.blocks - s.bfree) * s.bsize;
      if (bytes > 0) out.push({ bytes, where: `tmpfs ${m.mountpoint}` });
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Read every task's smaps, its memfd fds, the container's SysV segments and its archived tmpfs mounts.
 * `fdLinks`: the tasks' open fds as the preflight listed them.
 */
export async function scanNonLazyMemory(
  info: ContainerInfo,
  fdLinks: readonly { pid: number; fd: number; link: string }[],
  d: NonLazyDeps,
): Promise<NonLazyScan> {
  const vmas = new Map<number, SmapsVma[]>();
  for (const pid of info.pids) {
    const text = await readFile(`${d.proc}/${pid}/smaps`, 'utf8').catch(() => '');
    vmas.set(pid, parseSmaps(text));
  }
  const acc = accountMappings(vmas);
  // The allocated size of a shared object is what CRIU walks (SEEK_DATA), also pages no task of ours mapped.
  for (const [pid, list] of vmas) {
    for (const v of list) {
      const kind = nonLazyKindOf(v);
      if (kind !== 'sharedMemory' && kind !== 'sysvShm') continue;
      const a = await allocated(`${d.proc}/${pid}/map_files/${v.start}-${v.end}`);
      const o = a === undefined ? undefined : acc.objects.get(a.key);
      if (a !== undefined && o !== undefined) o.bytes = a.bytes;
    }
  }
  for (const f of fdLinks) {
    if (!f.link.startsWith('/memfd:')) continue;
    const a = await allocated(`${d.proc}/${f.pid}/fd/${f.fd}`);
    if (a !== undefined) acc.objects.set(a.key, { kind: 'sharedMemory', bytes: a.bytes, where: `task ${f.pid} fd ${f.fd} ${f.link}` });
  }
  const items = [...acc.items];
  let sharedMemoryBytes = 0;
  let sysvShmBytes = 0;
  const segments = await sysvSegments(info, d);
  for (const o of acc.objects.values()) {
    if (o.kind === 'sysvShm' && segments !== undefined) continue;
    if (o.kind === 'sharedMemory') sharedMemoryBytes += o.bytes;
    else sysvShmBytes += o.bytes;
    items.push({ kind: o.kind, bytes: o.bytes, where: o.where });
  }
  for (const s of segments ?? []) {
    const bytes = s.rss + s.swap;
    sysvShmBytes += bytes;
    items.push({ kind: 'sysvShm', bytes, where: `SysV segment ${s.shmid} (${s.nattch} attached)` });
  }
  let tmpfsBytes = 0;
  for (const t of await archivedTmpfs(info, d.proc)) {
    tmpfsBytes += t.bytes;
    items.push({ kind: 'tmpfs', ...t });
  }
  items.sort((a, b) => b.bytes - a.bytes);
  return {
    memory: nonLazyTotals({ mlockedBytes: acc.mlockedBytes, sharedMemoryBytes, sysvShmBytes, dirtyPrivateFileBytes: acc.dirtyPrivateFileBytes, tmpfsBytes }),
    items: items.filter((i) => i.bytes > 0),
  };
}
