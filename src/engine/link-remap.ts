// Link remaps (options.linkRemap, CRIU --link-remap) for the restore check. For an open file that was unlinked but
// still has another link, CRIU links the inode back under `<its folder>/link_remap.<id>` during the dump and records
// that name in the images; the restore links it back to the old name. A real migration's dump (the tasks end) leaves
// that link in the container's writable layer, and the rootfs diff carries it. The dump check keeps the workload
// running (--leave-running), and then CRIU removes the link again after the dump: so migprobe copies each such file
// from the fd the workload still holds, right after the dump, into the rootfs diff it ships (probe.ts), where the
// real migration would have it. Nothing is written into the workload's files.
//
// Which files: remap-fpath.img's LINKED entries name the original file and the remap (both by id in files.img,
// whose regular-file entries carry the path in the container's mount namespace). Where from: the task fd whose
// link reads `<original path> (deleted)`.

import { chmod, chown, copyFile, mkdir, readdir, readlink, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { KIND, messagesOf, readFiles, readImage } from './images.ts';
import type { Image } from './images.ts';
import { fd_types } from './criu-pb/fdinfo_pb.ts';
import type { file_entry } from './criu-pb/fdinfo_pb.ts';
import { remap_type } from './criu-pb/remap-file-path_pb.ts';
import type { remap_file_path_entry } from './criu-pb/remap-file-path_pb.ts';

export interface LinkRemap {
  /** The unlinked file's path in the container's mount namespace, e.g. /data/app.log. */
  origName: string;
  /** The name CRIU linked it under during the dump, e.g. /data/link_remap.13. */
  remapName: string;
}

/** The linked remaps of an image set: files.img entries and remap-fpath.img entries. Pure. */
export function linkRemapsOf(files: readonly file_entry[], remaps: readonly remap_file_path_entry[]): LinkRemap[] {
  const names = new Map<number, string>();
  for (const f of files) if (f.type === fd_types.REG && f.reg !== undefined) names.set(f.id, f.reg.name);
  const out: LinkRemap[] = [];
  for (const r of remaps) {
    // an entry without remap_type reads as LINKED, as CRIU reads it
    if (r.remapType !== remap_type.LINKED) continue;
    const origName = names.get(r.origId);
    const remapName = names.get(r.remapId);
    if (origName !== undefined && remapName !== undefined) out.push({ origName, remapName });
  }
  return out;
}

/** The linked remaps CRIU recorded in an image folder (none when it wrote no remap-fpath.img). */
export async function readLinkRemaps(imagesDir: string): Promise<LinkRemap[]> {
  let img: Image;
  try {
    img = await readImage(join(imagesDir, 'remap-fpath.img'), KIND.remapFpath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return linkRemapsOf(await readFiles(imagesDir), messagesOf(img, KIND.remapFpath.schema));
}

/** A path from the images that may be joined under a folder: absolute, normal, no `..`. Pure. */
export function safeRelative(p: string): string | undefined {
  if (!p.startsWith('/') || p.includes('\0') || posix.normalize(p) !== p || p.split('/').includes('..') || p === '/') return undefined;
  return p.slice(1);
}

/** Give `to` the mode and owner of `from` (left as it is when `from` cannot be read). */
async function sameAttrs(from: string, to: string): Promise<void> {
  const st = await stat(from).catch(() => undefined);
  if (st === undefined) return;
  await chown(to, st.uid, st.gid);
  await chmod(to, st.mode & 0o7777);
}

export interface StagedRemaps {
  /** Remap names copied under the stage folder. */
  staged: string[];
  /** Remap names with no task fd left to copy them from (or an unusable path), with why. */
  missing: string[];
  bytes: number;
}

/**
 * Copy each remap's file, read through the task fd that still holds the unlinked original, to `<stage>/<remap
 * name>` with the original's mode and owner. Stops adding files past `capBytes`.
 */
export async function stageLinkRemaps(remaps: readonly LinkRemap[], pids: readonly number[], stage: string, capBytes: number, proc = '/proc'): Promise<StagedRemaps> {
  const out: StagedRemaps = { staged: [], missing: [], bytes: 0 };
  if (remaps.length === 0) return out;
  const byLink = new Map<string, { path: string; pid: number }>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`${proc}/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      const path = `${proc}/${pid}/fd/${fd}`;
      const link = await readlink(path).catch(() => undefined);
      if (link !== undefined && link.endsWith(' (deleted)') && !byLink.has(link)) byLink.set(link, { path, pid });
    }
  }
  for (const r of remaps) {
    const rel = safeRelative(r.remapName);
    const from = byLink.get(`${r.origName} (deleted)`);
    if (rel === undefined || from === undefined) {
      out.missing.push(`${r.remapName}: ${rel === undefined ? 'not a plain absolute path' : `no task holds ${r.origName} open any more`}`);
      continue;
    }
    const st = await stat(from.path);
    if (out.bytes + st.size > capBytes) {
      out.missing.push(`${r.remapName}: over the ${capBytes}-byte cap of the rootfs diff`);
      continue;
    }
    const to = join(stage, rel);
    // The folders on the way keep the mode and owner the container sees: as a layer on top they decide the
    // restored folders' (and CRIU compares an open folder's mode).
    const parts = rel.split('/').slice(0, -1);
    for (let i = 0; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      await mkdir(join(stage, d), { recursive: true });
      await sameAttrs(`${proc}/${from.pid}/root/${d}`, join(stage, d));
    }
    await copyFile(from.path, to);
    await chown(to, st.uid, st.gid);
    await chmod(to, st.mode & 0o7777);
    out.staged.push(r.remapName);
    out.bytes += st.size;
  }
  return out;
}
