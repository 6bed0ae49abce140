// Node facts (for compat.ts) and the root filesystem check: sha256 of every executable and mapped file of
// the process tree on the source, compared against the root filesystem the target would use.
// Signatures (for A2): collectNodeFacts(criuPath, deps?) -> NodeFacts; hashMappedFiles(info, deps?) ->
// FileDigest[]; compareRootfs(digests, rootDir) -> Reason[] (phase 'compat').

import { createHash } from 'node:crypto';
import { constants, createReadStream, type Stats } from 'node:fs';
import { lstat, mkdir, open, readFile, readlink, rename, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { hostname, machine, release } from 'node:os';
import { posix } from 'node:path';
import type { Reason } from '../verdict.ts';
import type { NodeFacts } from './api.ts';
import type { ContainerInfo } from './container.ts';
import { criuFeatures, parseCriuVersion } from './criu.ts';
import { run } from './exec.ts';
import type { Runner } from './exec.ts';
import { mountOfPath, parseMountinfo } from './procparse.ts';
import type { MountEntry } from './procparse.ts';
import { reason } from '../reasons.ts';

export interface FileDigest {
  /** Path relative to the container root, without a leading slash ("bin/busybox"). */
  path: string;
  sha256: string;
  size: number;
}

export interface FactsDeps {
  runner: Runner;
  proc: string;
  /**
   * Folder for the boot-scoped cache of CRIU feature probes ('' disables it). What the kernel supports
   * cannot change without a reboot, nor what a CRIU binary checks without replacing it, so the answers
   * are keyed by boot ID, binary path, size and mtime. Saves ~17 `criu check` runs (~0.4 s) per probe.
   */
  cacheDir: string;
}

const defaultDeps: FactsDeps = { runner: run, proc: '/proc', cacheDir: process.env['MIGPROBE_STATE_DIR'] ?? '/run/migprobe' };

const featureMemo = new Map<string, Record<string, boolean>>();

/** Forgets the in-memory answers (the files in cacheDir stay). For tests. */
export function forgetCachedFeatures(): void {
  featureMemo.clear();
}

/** criuFeatures, answered from memory or from `cacheDir` when this boot already asked this binary. */
export async function cachedCriuFeatures(criuPath: string, d: FactsDeps): Promise<Record<string, boolean>> {
  let key: string;
  try {
    const [st, bootId] = await Promise.all([stat(criuPath), readFile(`${d.proc}/sys/kernel/random/boot_id`, 'utf8')]);
    key = createHash('sha256').update(`${bootId.trim()}\0${criuPath}\0${st.size}\0${st.mtimeMs}`).digest('hex').slice(0, 32);
  } catch {
    return await criuFeatures(criuPath, d.runner);
  }
  const hit = featureMemo.get(key);
  if (hit !== undefined) return { ...hit };
  const file = d.cacheDir === '' ? '' : posix.join(d.cacheDir, `criu-features-${key}.json`);
  if (file !== '') {
    try {
      const saved = JSON.parse(await readFile(file, 'utf8')) as unknown;
      if (saved !== null && typeof saved === 'object' && Object.values(saved).every((v) => typeof v === 'boolean')) {
        featureMemo.set(key, saved as Record<string, boolean>);
        return { ...(saved as Record<string, boolean>) };
      }
    } catch {
      // not cached yet, or unreadable: ask CRIU
    }
  }
  const feats = await criuFeatures(criuPath, d.runner);
  featureMemo.set(key, feats);
  if (file !== '') {
    const tmp = `${file}.${process.pid}.tmp`;
    await mkdir(d.cacheDir, { recursive: true, mode: 0o700 })
      .then(async () => await writeFile(tmp, JSON.stringify(feats), { mode: 0o600 }))
      .then(async () => await rename(tmp, file))
      .catch(() => undefined); // a cache that cannot be written only costs time
  }
  return { ...feats };
}

/** /proc/cpuinfo (first processor) -> vendor, model name, flags. */
export function parseCpuinfo(text: string): NodeFacts['cpu'] {
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const field = (k: string): string => {
    const m = new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(first);
    return (m?.[1] ?? '').trim();
  };
  const flags = (field('flags') || field('Features')).split(/\s+/).filter((f) => f !== '');
  return {
    vendor: field('vendor_id') || field('CPU implementer'),
    model: field('model name') || field('CPU part'),
    flags,
  };
}

export function parseMemAvailable(meminfo: string): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(meminfo);
  return m === null ? 0 : Number(m[1]) * 1024;
}

export async function collectNodeFacts(criuPath: string, deps: Partial<FactsDeps> = {}): Promise<NodeFacts> {
  const d: FactsDeps = { ...defaultDeps, ...deps };
  const v = await d.runner(criuPath, ['--version'], { timeoutMs: 10_000 });
  const criuVersion = (v.exitCode === 0 ? parseCriuVersion(v.stdout) : undefined) ?? '';
  const criuFeats = criuVersion === '' ? {} : await cachedCriuFeatures(criuPath, d);
  return {
    hostname: hostname(),
    arch: machine(),
    kernelRelease: release(),
    criuVersion,
    criuFeatures: criuFeats,
    memAvailableBytes: parseMemAvailable(await readFile(`${d.proc}/meminfo`, 'utf8')),
    cpu: parseCpuinfo(await readFile(`${d.proc}/cpuinfo`, 'utf8')),
  };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** File-backed paths of /proc/<pid>/maps (no pseudo files, no deleted files, no /dev, no memfd). */
export function mappedPaths(maps: string): string[] {
  const out = new Set<string>();
  for (const line of maps.split('\n')) {
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*)$/.exec(line);
    const p = m?.[1];
    if (p === undefined || p.endsWith(' (deleted)') || p.startsWith('/dev/') || p.startsWith('/memfd:')) continue;
    if (p.startsWith('/SYSV') || p.startsWith('/secretmem') || p.startsWith('/anon_hugepage')) continue;
    out.add(p);
  }
  return [...out];
}

/**
 * sha256 of the executable and every file-backed mapping of every process, read through /proc/<pid>/root
 * (the container's view). Only files on the container's root filesystem are hashed: a file on a bind mount
 * or tmpfs is not part of the image the target restores from (CRIU carries a tmpfs's files in the images). A
 * process in a mount namespace of its own (one the container made) is judged by its own mount table, where
 * the root filesystem is the mount of the same device and folder as the container's root. Each file is opened
 * with openInRoot, so a path the workload turned into a symlink (to a host file, say) is not followed and not
 * hashed.
 */
export async function hashMappedFiles(info: ContainerInfo, deps: Partial<FactsDeps> = {}): Promise<FileDigest[]> {
  const d: FactsDeps = { ...defaultDeps, ...deps };
  const rootMount = info.mounts.find((m) => m.kind === 'root');
  const rootMountId = rootMount?.mountId;
  const initMntns = await readlink(`${d.proc}/${info.initPid}/ns/mnt`).catch(() => undefined);
  const nestedMounts = new Map<string, MountEntry[]>();
  /**
   * When `p` lies on the container's root filesystem in the mount namespace of `pid`: the ID of that mount there
   * (what openInRoot checks the opened file against). Undefined when it lies elsewhere.
   */
  const onRoot = async (pid: number, p: string): Promise<{ mountId: number | undefined } | undefined> => {
    if (rootMount === undefined) return { mountId: undefined };
    const ns = await readlink(`${d.proc}/${pid}/ns/mnt`).catch(() => undefined);
    if (ns === undefined || ns === initMntns) return mountOfPath(p, info.mounts)?.mountId === rootMountId ? { mountId: rootMountId } : undefined;
    let mounts = nestedMounts.get(ns);
    if (mounts === undefined) {
      mounts = parseMountinfo(await readFile(`${d.proc}/${pid}/mountinfo`, 'utf8').catch(() => ''));
      nestedMounts.set(ns, mounts);
    }
    const m = mountOfPath(p, mounts);
    return m !== undefined && m.dev === rootMount.dev && m.root === rootMount.root ? { mountId: m.mountId } : undefined;
  };
  const seen = new Map<string, FileDigest>();
  for (const pid of info.pids) {
    const paths: string[] = [];
    try {
      const exe = await readlink(`${d.proc}/${pid}/exe`);
      if (exe.startsWith('/') && !exe.endsWith(' (deleted)')) paths.push(exe);
    } catch {
      // kernel thread or gone
    }
    try {
      paths.push(...mappedPaths(await readFile(`${d.proc}/${pid}/maps`, 'utf8')));
    } catch {
      continue;
    }
    for (const p of paths) {
      const rel = p.replace(/^\/+/, '');
      if (seen.has(rel)) continue;
      const on = await onRoot(pid, p);
      if (on === undefined) continue;
      const fh = await openInRoot(`${d.proc}/${pid}/root`, rel, on.mountId);
      if (fh === undefined) continue;
      try {
        const st = await fh.stat();
        seen.set(rel, { path: rel, sha256: await sha256Handle(fh), size: st.size });
      } catch {
        // unreadable: nothing to compare
      } finally {
        await fh.close();
      }
    }
  }
  return [...seen.values()].sort((a, b) => a.path.localeCompare(b.path));
}

/** The mount ID an open file is on (`mnt_id` of /proc/self/fdinfo/<fd>). */
async function mountIdOf(fh: FileHandle): Promise<number | undefined> {
  const m = /^mnt_id:\s*(\d+)$/m.exec(await readFile(`/proc/self/fdinfo/${fh.fd}`, 'latin1'));
  return m === null ? undefined : Number(m[1]);
}

/**
 * Opens the regular file `rel` under `root` (a /proc/<pid>/root) for reading without following any symlink, as
 * openat2 with RESOLVE_NO_SYMLINKS would: every component below `root` is lstat'ed and a symlink refused (a
 * mapped file's path comes resolved from the kernel, so a symlink in it was put there since, by the workload),
 * the file is opened with O_NOFOLLOW|O_NONBLOCK, and what was opened must be a regular file on the mount
 * `mountId` (the container's root mount; without one, on the device of `root`), so a directory swapped for a
 * symlink between the checks and the open cannot lead to a host file. Undefined when a check fails.
 */
export async function openInRoot(root: string, rel: string, mountId: number | undefined): Promise<FileHandle | undefined> {
  const parts = rel.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.length === 0 || parts.includes('..')) return undefined;
  let fh: FileHandle | undefined;
  try {
    for (let i = 1; i <= parts.length; i++) {
      const st = await lstat(posix.join(root, ...parts.slice(0, i)));
      if (st.isSymbolicLink() || (i < parts.length ? !st.isDirectory() : !st.isFile())) return undefined;
    }
    fh = await open(posix.join(root, ...parts), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const st = await fh.stat();
    const onRoot = mountId !== undefined ? (await mountIdOf(fh)) === mountId : st.dev === (await stat(root)).dev;
    if (st.isFile() && onRoot) return fh;
  } catch {
    // vanished, unreadable, or a symlink at the last component (ELOOP)
  }
  await fh?.close();
  return undefined;
}

async function sha256Handle(fh: FileHandle): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  let pos = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return h.digest('hex');
}

/**
 * Resolve `rel` inside `root` as a chroot would: symlinks (absolute or relative) never leave `root`.
 * Returns the host path of the final file, or undefined when a component is missing.
 */
export async function resolveInRoot(root: string, rel: string): Promise<string | undefined> {
  const parts = rel.split('/').filter((x) => x !== '' && x !== '.');
  const done: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift() ?? '';
    if (part === '..') {
      done.pop();
      continue;
    }
    const candidate = posix.join(root, ...done, part);
    let st;
    try {
      st = await lstat(candidate);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = await readlink(candidate);
      if (target.startsWith('/')) done.length = 0;
      parts.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
      continue;
    }
    done.push(part);
  }
  return posix.join(root, ...done);
}

/**
 * lstat of `rel` inside `root`: the folders on the way are resolved as a chroot would (resolveInRoot), the last
 * part is not followed. Undefined when it is not there.
 */
export async function lstatInRoot(root: string, rel: string): Promise<Stats | undefined> {
  const parts = rel.split('/').filter((x) => x !== '' && x !== '.');
  const last = parts.pop();
  if (last === undefined || last === '..') return undefined;
  const parent = await resolveInRoot(root, parts.join('/'));
  if (parent === undefined) return undefined;
  try {
    return await lstat(posix.join(parent, last));
  } catch {
    return undefined;
  }
}

/** RootfsMismatch for each file missing from `rootDir` or whose content differs. */
export async function compareRootfs(digests: readonly FileDigest[], rootDir: string): Promise<Reason[]> {
  const out: Reason[] = [];
  for (const dg of digests) {
    const path = await resolveInRoot(rootDir, dg.path);
    let st;
    try {
      st = path === undefined ? undefined : await stat(path);
    } catch {
      st = undefined;
    }
    if (path === undefined || st === undefined || !st.isFile()) {
      out.push(reason('RootfsMismatch', `/${dg.path} (mapped by the workload) is missing from the target root filesystem`, undefined, 'compat'));
      continue;
    }
    if (st.size !== dg.size) {
      out.push(
        reason('RootfsMismatch', `/${dg.path} differs on the target: ${st.size} bytes, the source has ${dg.size}`, undefined, 'compat'),
      );
      continue;
    }
    const sum = await sha256File(path);
    if (sum !== dg.sha256) {
      out.push(
        reason(
          'RootfsMismatch',
          `/${dg.path} differs on the target: sha256 ${sum.slice(0, 12)}…, the source has ${dg.sha256.slice(0, 12)}…`,
          undefined,
          'compat',
        ),
      );
    }
  }
  return out;
}
