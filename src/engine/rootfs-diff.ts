// What a shipped writable layer (rootfs-diff.tar, made by `tar -c --xattrs -C <upperdir> .` on the source) may
// hold before the target unpacks it: files, folders, symbolic links (container content, seen only inside the
// sandbox overlay), hard links to an earlier member, and overlayfs whiteouts (character devices 0:0). Never a
// real device node, a FIFO, an absolute or `..` path, a member below a symbolic link, or more than the caps.
// After GNU tar has unpacked it (it keeps the overlayfs xattrs), strayNodes looks again for device nodes.
// The archive is read with the `tar` package's Parser (streaming, nothing written); diffMemberProblem is pure and
// unit-tested in rootfs-diff.test.ts.

import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';

/** Largest inflation of a compressed writable layer (unpacked bytes per compressed byte). */
const DIFF_MAX_DECOMPRESSION_RATIO = 1000;

/** Largest writable layer shipped with a bundle (tar bytes); a bigger one is left out (the target then needs it locally). */
export const ROOTFS_DIFF_CAP = 64 * 1024 * 1024;
/** Most entries a shipped writable layer may hold (each costs a tar header on both sides). */
export const ROOTFS_DIFF_MAX_ENTRIES = 100_000;

export interface DiffMember {
  path: string;
  type: string;
  size: number;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
}

/** What was seen before a member: counts and the symbolic links (normalized paths). */
export interface DiffSeen {
  entries: number;
  bytes: number;
  links: Set<string>;
  members: Set<string>;
}

/** Strips GNU tar's leading `./` and a folder's trailing '/'; undefined for anything not a plain relative path. Pure. */
export function plainMemberPath(raw: string): string | undefined {
  if (raw.startsWith('/') || /[\0\n]/.test(raw)) return undefined;
  const parts = raw.split('/').filter((p, i, all) => !(p === '.' && i === 0) && !(p === '' && i === all.length - 1));
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return undefined;
  return parts.join('/');
}

/** Why `m` may not be unpacked from a shipped writable layer, or undefined (then `seen` is updated). Pure but for `seen`. */
export function diffMemberProblem(m: DiffMember, seen: DiffSeen, caps = { bytes: ROOTFS_DIFF_CAP, entries: ROOTFS_DIFF_MAX_ENTRIES }): string | undefined {
  const name = JSON.stringify(m.path.slice(0, 200));
  const path = plainMemberPath(m.path);
  if (path === undefined) return `member ${name} is not a plain relative path (absolute, '..' or empty parts)`;
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    if (seen.links.has(parts.slice(0, i).join('/'))) return `member ${name} lies below a symbolic link of the same archive`;
  }
  switch (m.type) {
    case 'File':
    case 'OldFile':
    case 'Directory':
      break;
    case 'SymbolicLink':
      if (path === '') return 'the archive root is a symbolic link';
      seen.links.add(path);
      break;
    case 'Link': {
      const target = plainMemberPath(m.linkpath ?? '');
      if (target === undefined || !seen.members.has(target)) return `hard link ${name} points at ${JSON.stringify((m.linkpath ?? '').slice(0, 200))}, not at an earlier member`;
      break;
    }
    case 'CharacterDevice':
      if (m.devmaj === undefined || m.devmin === undefined) return `member ${name} is a device node in a non-POSIX tar header (its numbers are unknown), not an overlayfs whiteout`;
      if (m.devmaj !== 0 || m.devmin !== 0) return `member ${name} is a device node (${m.devmaj}:${m.devmin}), not an overlayfs whiteout (0:0)`;
      break;
    default:
      return `member ${name} is of type ${m.type}`;
  }
  seen.entries++;
  seen.bytes += m.type === 'File' || m.type === 'OldFile' ? Math.max(0, m.size) : 0;
  if (seen.entries > caps.entries) return `more than ${caps.entries} entries`;
  if (seen.bytes > caps.bytes) return `more than ${caps.bytes} bytes of file contents`;
  seen.members.add(path);
  return undefined;
}

/** Reads the shipped writable layer at `tarball` without unpacking it; throws naming the first forbidden member. */
export async function checkRootfsDiff(tarball: string): Promise<void> {
  const rs = createReadStream(tarball);
  try {
    await checkRootfsDiffStream(rs, 'rootfs-diff.tar');
  } finally {
    rs.destroy();
  }
}

/** Pipes `input` into the tar `parser`; resolves when the parser has seen the end, rejects on an error of either. */
export function readThrough(input: NodeJS.ReadableStream, parser: Parser): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    parser.on('error', reject);
    parser.on('end', () => resolve());
    input.on('error', reject);
    input.pipe(parser);
  });
}

/** checkRootfsDiff of a stream (`label` names it in the error): the whole stream is read unless a member is refused. */
export async function checkRootfsDiffStream(input: NodeJS.ReadableStream, label: string): Promise<void> {
  const seen: DiffSeen = { entries: 0, bytes: 0, links: new Set(), members: new Set() };
  let problem: string | undefined;
  const parser = new Parser({
    strict: true,
    // The source ships a plain tar; containerd's CRI checkpoint writes the diff gzipped (GNU tar unpacks either).
    // Inflating is bounded by the member caps (diffMemberProblem counts the declared sizes, and the parser
    // refuses data beyond them) and by this ratio.
    maxDecompressionRatio: DIFF_MAX_DECOMPRESSION_RATIO,
    onReadEntry: (e: ReadEntry) => {
      e.resume();
      if (problem !== undefined) return;
      // The `tar` package reads device numbers of POSIX (ustar 00) headers only, which is what the source's
      // `tar --xattrs` writes; in any other header they read as 0:0, so they are unknown there.
      const posix = e.header.uname !== undefined;
      const header = { path: e.path, type: e.type, size: e.size, ...(posix ? { devmaj: e.header.devmaj, devmin: e.header.devmin } : {}) };
      problem = diffMemberProblem(e.linkpath === undefined ? header : { ...header, linkpath: e.linkpath }, seen);
      if (problem !== undefined) parser.abort(new Error(problem));
    },
  });
  try {
    await readThrough(input, parser);
  } catch (e) {
    if (problem !== undefined) throw new Error(`${label}: ${problem}`);
    throw new Error(`${label} is not a valid tar: ${(e as Error).message.slice(0, 300)}`);
  }
  if (problem !== undefined) throw new Error(`${label}: ${problem}`);
}

/**
 * After unpacking (second line of defence, GNU tar reads headers its own way): the paths below `dir` that are
 * device nodes other than whiteouts (0:0), FIFOs or sockets. Links are not followed.
 */
export async function strayNodes(dir: string): Promise<string[]> {
  const out: string[] = [];
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop() ?? '';
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isBlockDevice() || e.isFIFO() || e.isSocket() || (e.isCharacterDevice() && (await lstat(p)).rdev !== 0)) out.push(p.slice(dir.length + 1));
    }
  }
  return out;
}
