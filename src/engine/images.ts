// CRIU image files read and written through CRIU's own schema (images/*.proto, generated into ./criu-pb by
// hack/gen-proto.sh, decoded by @bufbuild/protobuf), plus the file operations the engine needs on an image
// folder: fix the pagemaps of a lazy dump, read the inventory, process tree, cores, memory, files, sockets,
// mounts and CRIU's dump counters, edit cpuinfo.
//
// Layout of a file (criu/include/magic.h, criu/protobuf.c; the kinds are in ./image-kinds.ts): a head magic
// (IMG_COMMON_MAGIC, or IMG_SERVICE_MAGIC for stats-*; none for inventory.img), the kind's magic, then
// entries: a little-endian u32 length and one protobuf message, some followed by raw data. Raw images
// (pages-*.img, tarballs) have no magic. Fields the schema does not know are kept on re-encoding.

import { clone, fromBinary, isFieldSet, isMessage, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, Message, MessageShape } from '@bufbuild/protobuf';
import { readFile, readdir, stat, writeFile, rename } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, KIND } from './image-kinds.ts';
import type { ImageKind } from './image-kinds.ts';
import type { core_entry, task_kobj_ids_entry } from './criu-pb/core_pb.ts';
import type { cpuinfo_x86_entry } from './criu-pb/cpuinfo_pb.ts';
import type { fdinfo_entry, file_entry } from './criu-pb/fdinfo_pb.ts';
import type { inventory_entry } from './criu-pb/inventory_pb.ts';
import type { mm_entry } from './criu-pb/mm_pb.ts';
import { mnt_entrySchema } from './criu-pb/mnt_pb.ts';
import { pagemap_entrySchema } from './criu-pb/pagemap_pb.ts';
import type { pagemap_entry } from './criu-pb/pagemap_pb.ts';
import type { packet_sock_entry } from './criu-pb/packet-sock_pb.ts';
import type { pstree_entry } from './criu-pb/pstree_pb.ts';
import type { inet_sk_entry } from './criu-pb/sk-inet_pb.ts';
import type { netlink_sk_entry } from './criu-pb/sk-netlink_pb.ts';
import type { unix_sk_entry } from './criu-pb/sk-unix_pb.ts';

export { IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, KIND };
export type { ImageKind };

/** pagemap_entry flags (criu/include/pagemap.h). */
export const PE_PARENT = 1 << 0;
export const PE_LAZY = 1 << 1;
export const PE_PRESENT = 1 << 2;

export const PAGE_SIZE = 4096;

// ---------------------------------------------------------------------------------------------------------
// image files

export interface ImageEntry {
  message: Message;
  /** Raw data written after the entry (pipe and socket queue contents, TCP queues, ghost file contents). */
  payload?: Buffer;
}

export interface Image {
  kind: ImageKind;
  entries: ImageEntry[];
}

const KIND_BY_MAGIC = new Map<number, ImageKind>(Object.values(KIND).map((k) => [k.magic, k]));
const SCHEMA_BY_NAME = new Map<string, DescMessage>(
  Object.values(KIND).flatMap((k: ImageKind) => [k.schema, ...(k.first === undefined ? [] : [k.first])]).map((s) => [s.typeName, s]),
);

const hex = (n: number): string => `0x${n.toString(16)}`;

/** The kind of an image from its first bytes, or undefined for a raw image (no CRIU magic). */
export function kindOf(buf: Buffer): ImageKind | undefined {
  if (buf.length < 4) return undefined;
  const first = buf.readUInt32LE(0);
  if (first === KIND.inventory.magic) return KIND.inventory;
  if ((first !== IMG_COMMON_MAGIC && first !== IMG_SERVICE_MAGIC) || buf.length < 8) return undefined;
  const kind = KIND_BY_MAGIC.get(buf.readUInt32LE(4));
  return kind?.head === first ? kind : undefined;
}

/** Decodes one image file; `expect` refuses any other kind. */
export function decodeImage(buf: Buffer, expect?: ImageKind): Image {
  const kind = kindOf(buf);
  if (kind === undefined) {
    const magics = [0, 4].filter((o) => o + 4 <= buf.length).map((o) => hex(buf.readUInt32LE(o)));
    throw new Error(`not a CRIU protobuf image (magic ${magics.join(' ') || 'none: too short'})`);
  }
  if (expect !== undefined && kind !== expect) throw new Error(`a ${kind.name} image, not ${expect.name}`);
  const entries: ImageEntry[] = [];
  let pos = kind.head === undefined ? 4 : 8;
  while (pos < buf.length) {
    if (pos + 4 > buf.length) throw new Error(`${kind.name} image: truncated entry size at offset ${pos}`);
    const len = buf.readUInt32LE(pos);
    pos += 4;
    if (pos + len > buf.length) throw new Error(`${kind.name} image: truncated entry at offset ${pos}`);
    const schema = entries.length === 0 && kind.first !== undefined ? kind.first : kind.schema;
    const message = fromBinary(schema, buf.subarray(pos, pos + len));
    pos += len;
    const n = kind.payload?.(message, buf.subarray(pos)) ?? 0;
    if (pos + n > buf.length) throw new Error(`${kind.name} image: truncated data after entry ${entries.length}`);
    entries.push(n === 0 ? { message } : { message, payload: buf.subarray(pos, pos + n) });
    pos += n;
  }
  return { kind, entries };
}

export function encodeImage(img: Image): Buffer {
  const word = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n >>> 0);
    return b;
  };
  const parts: Uint8Array[] = img.kind.head === undefined ? [] : [word(img.kind.head)];
  parts.push(word(img.kind.magic));
  for (const e of img.entries) {
    const schema = SCHEMA_BY_NAME.get(e.message.$typeName);
    if (schema === undefined) throw new Error(`${e.message.$typeName} is not a CRIU image entry`);
    const bytes = toBinary(schema, e.message);
    parts.push(word(bytes.length), bytes);
    if (e.payload !== undefined) parts.push(e.payload);
  }
  return Buffer.concat(parts);
}

/** The entries of `img` that are `schema` messages. */
export function messagesOf<S extends DescMessage>(img: Image, schema: S): MessageShape<S>[] {
  return img.entries.map((e) => e.message).filter((m): m is MessageShape<S> => isMessage(m, schema));
}

/** Reads one image file, refusing one of another kind than `kind`. */
export async function readImage(path: string, kind: ImageKind): Promise<Image> {
  try {
    return decodeImage(await readFile(path), kind);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== undefined) throw e;
    throw new Error(`${basename(path)}: ${(e as Error).message}`, { cause: e });
  }
}

/** The messages of `kind`'s entries in one file. */
async function readEntries<S extends DescMessage>(path: string, kind: ImageKind<S>): Promise<MessageShape<S>[]> {
  return messagesOf(await readImage(path, kind), kind.schema);
}

/** Every CRIU protobuf image of a folder by file name; raw images (pages, tarballs) are left out. */
export async function readImageDir(dir: string): Promise<Map<string, Image>> {
  const out = new Map<string, Image>();
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    if (!(await stat(path)).isFile()) continue;
    const buf = await readFile(path);
    if (kindOf(buf) === undefined) continue;
    try {
      out.set(name, decodeImage(buf));
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message}`, { cause: e });
    }
  }
  return out;
}

/** Names in `dir` matching `re`, or none when the folder has none. */
async function namesIn(dir: string, re: RegExp): Promise<string[]> {
  return (await readdir(dir)).filter((n) => re.test(n)).sort();
}

// ---------------------------------------------------------------------------------------------------------
// pagemap

export interface PagemapEntry {
  vaddr: bigint;
  nrPages: number;
  flags: number;
  inParent: boolean;
}

/** A pagemap entry with CRIU's defaults: nr_pages over the older compat_nr_pages, PE_PRESENT when no flags. */
export function pagemapEntryOf(m: pagemap_entry): PagemapEntry {
  const f = pagemap_entrySchema.field;
  return {
    vaddr: m.vaddr,
    nrPages: isFieldSet(m, f.nrPages) ? Number(m.nrPages) : m.compatNrPages,
    flags: isFieldSet(m, f.flags) ? m.flags : PE_PRESENT,
    inParent: m.inParent,
  };
}

export interface PagemapFix {
  /** The pagemap image without lazy-only entries (they would make the restorer wait for a page server). */
  image: Image;
  removedEntries: number;
  /** Entries both lazy and present whose lazy flag was cleared. */
  clearedEntries: number;
  lazyPages: number;
  presentPages: number;
}

/**
 * Drop every entry whose pages live only behind the lazy page server (PE_LAZY without PE_PRESENT).
 * Entries that are both lazy and present keep their pages and lose the lazy flag. The order of present
 * entries is kept, so offsets into pages-*.img stay valid. Dropped ranges restore as untouched (zero)
 * anonymous memory, which a restore that never runs the task does not care about.
 */
export function stripLazyPagemap(img: Image): PagemapFix {
  const kept: ImageEntry[] = [];
  let removedEntries = 0;
  let clearedEntries = 0;
  let lazyPages = 0;
  let presentPages = 0;
  for (const e of img.entries) {
    if (!isMessage(e.message, pagemap_entrySchema)) {
      kept.push(e);
      continue;
    }
    const pe = pagemapEntryOf(e.message);
    const lazy = (pe.flags & PE_LAZY) !== 0;
    const present = (pe.flags & PE_PRESENT) !== 0;
    if (lazy && !present) {
      removedEntries++;
      lazyPages += pe.nrPages;
      continue;
    }
    if (present) presentPages += pe.nrPages;
    if (!lazy) {
      kept.push(e);
      continue;
    }
    const m = clone(pagemap_entrySchema, e.message);
    m.flags = pe.flags & ~PE_LAZY;
    clearedEntries++;
    kept.push({ ...e, message: m });
  }
  return { image: { kind: img.kind, entries: kept }, removedEntries, clearedEntries, lazyPages, presentPages };
}

export interface LazyFixReport {
  files: number;
  removedEntries: number;
  lazyPages: number;
  presentPages: number;
}

/**
 * Runs stripLazyPagemap over every pagemap image in `dir` and adds up what it found; `onImage` sees each
 * stripped image that differs from the file.
 */
async function scanPagemaps(dir: string, onImage?: (path: string, stripped: Image) => Promise<void>): Promise<LazyFixReport> {
  const report: LazyFixReport = { files: 0, removedEntries: 0, lazyPages: 0, presentPages: 0 };
  for (const name of await namesIn(dir, /^pagemap-.*\.img$/)) {
    const path = join(dir, name);
    const buf = await readFile(path);
    if (kindOf(buf) !== KIND.pagemap) continue;
    const fix = stripLazyPagemap(decodeImage(buf, KIND.pagemap));
    report.files++;
    report.removedEntries += fix.removedEntries;
    report.lazyPages += fix.lazyPages;
    report.presentPages += fix.presentPages;
    if (fix.removedEntries + fix.clearedEntries > 0) await onImage?.(path, fix.image);
  }
  return report;
}

/** Fix every pagemap image of a lazy dump in place (atomically per file). */
export async function fixLazyPagemaps(dir: string): Promise<LazyFixReport> {
  return await scanPagemaps(dir, async (path, stripped) => {
    await writeFile(`${path}.tmp`, encodeImage(stripped));
    await rename(`${path}.tmp`, path);
  });
}

/** Count pages by kind without changing anything (used to tell a lazy dump from a full one). */
export async function pagemapSummary(dir: string): Promise<LazyFixReport> {
  return await scanPagemaps(dir);
}

// ---------------------------------------------------------------------------------------------------------
// inventory, process tree, tasks, files, sockets

/** inventory.img: image version, lsmtype, network_lock_method, plugins_entry, allow_uprobes, root ids, ... */
export async function readInventory(dir: string): Promise<inventory_entry> {
  const [inv] = await readEntries(join(dir, 'inventory.img'), KIND.inventory);
  if (inv === undefined) throw new Error('inventory.img has no entry');
  return inv;
}

/** Is this folder a CRIU image set? (inventory.img with the right magic and an entry) */
export async function isImageDir(dir: string): Promise<boolean> {
  try {
    await readInventory(dir);
    return true;
  } catch {
    return false;
  }
}

export async function readPstree(dir: string): Promise<pstree_entry[]> {
  return await readEntries(join(dir, 'pstree.img'), KIND.pstree);
}

/** core-<pid>.img: the task's registers, signals, creds-in-core, thread info and namespace ids. */
export async function readCore(dir: string, pid: number): Promise<core_entry> {
  const [core] = await readEntries(join(dir, `core-${pid}.img`), KIND.core);
  if (core === undefined) throw new Error(`core-${pid}.img has no entry`);
  return core;
}

/** The task's kernel object ids (files, vm, namespaces): ids-<pid>.img, or its core where that has them. */
export async function readIds(dir: string, pid: number): Promise<task_kobj_ids_entry> {
  const names = new Set(await readdir(dir));
  const [ids] = names.has(`ids-${pid}.img`) ? await readEntries(join(dir, `ids-${pid}.img`), KIND.ids) : [];
  const found = ids ?? (await readCore(dir, pid)).ids;
  if (found === undefined) throw new Error(`no ids for task ${pid} (neither ids-${pid}.img nor core-${pid}.img has them)`);
  return found;
}

/** mm-<pid>.img: the memory layout (code, data, stack, brk, auxv, exe file id, VMAs). */
export async function readMm(dir: string, pid: number): Promise<mm_entry> {
  const [mm] = await readEntries(join(dir, `mm-${pid}.img`), KIND.mm);
  if (mm === undefined) throw new Error(`mm-${pid}.img has no entry`);
  return mm;
}

/** files.img: every open file of every task, one entry per file id (the fdinfo entries point here). */
export async function readFiles(dir: string): Promise<file_entry[]> {
  return await readEntries(join(dir, 'files.img'), KIND.files);
}

/** The descriptors of task `pid` (fdinfo-<files_id>.img). */
export async function readFdinfo(dir: string, pid: number): Promise<fdinfo_entry[]> {
  const { filesId } = await readIds(dir, pid);
  return await readEntries(join(dir, `fdinfo-${filesId}.img`), KIND.fdinfo);
}

export interface ImageSockets {
  unix: unix_sk_entry[];
  inet: inet_sk_entry[];
  netlink: netlink_sk_entry[];
  packet: packet_sock_entry[];
}

/** Every socket of the dump: from files.img, and from the per-family images older CRIU versions wrote. */
export async function readSockets(dir: string): Promise<ImageSockets> {
  const out: ImageSockets = { unix: [], inet: [], netlink: [], packet: [] };
  const names = new Set(await readdir(dir));
  for (const f of names.has('files.img') ? await readFiles(dir) : []) {
    if (f.usk !== undefined) out.unix.push(f.usk);
    if (f.isk !== undefined) out.inet.push(f.isk);
    if (f.nlsk !== undefined) out.netlink.push(f.nlsk);
    if (f.psk !== undefined) out.packet.push(f.psk);
  }
  if (names.has('unixsk.img')) out.unix.push(...(await readEntries(join(dir, 'unixsk.img'), KIND.unixsk)));
  if (names.has('inetsk.img')) out.inet.push(...(await readEntries(join(dir, 'inetsk.img'), KIND.inetsk)));
  if (names.has('netlinksk.img')) out.netlink.push(...(await readEntries(join(dir, 'netlinksk.img'), KIND.netlinkSk)));
  if (names.has('packetsk.img')) out.packet.push(...(await readEntries(join(dir, 'packetsk.img'), KIND.packetsk)));
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// cpuinfo

/** The x86 entries of cpuinfo.img. */
export function cpuinfoX86Of(img: Image): cpuinfo_x86_entry[] {
  return messagesOf(img, KIND.cpuinfo.schema).flatMap((c) => c.x86Entry);
}

export async function readCpuinfo(dir: string): Promise<cpuinfo_x86_entry[]> {
  return cpuinfoX86Of(await readImage(join(dir, 'cpuinfo.img'), KIND.cpuinfo));
}

/** Make cpuinfo.img claim extra xsave feature bits (e.g. one the host lacks); tests use it, nothing on the hot path. */
export async function addCpuXfeatures(dir: string, bits: bigint): Promise<void> {
  const path = join(dir, 'cpuinfo.img');
  const img = await readImage(path, KIND.cpuinfo);
  for (const x86 of cpuinfoX86Of(img)) x86.xfeaturesMask |= bits;
  await writeFile(path, encodeImage(img));
}

// ---------------------------------------------------------------------------------------------------------
// sizes

export interface ImageDirSize {
  totalBytes: number;
  /** Bytes of pages-*.img: memory contents. */
  pageBytes: number;
  files: number;
}

export async function imageDirSize(dir: string): Promise<ImageDirSize> {
  const out: ImageDirSize = { totalBytes: 0, pageBytes: 0, files: 0 };
  for (const name of await readdir(dir)) {
    const st = await stat(join(dir, name));
    if (!st.isFile()) continue;
    out.files++;
    out.totalBytes += st.size;
    if (/^pages-.*\.img$/.test(name)) out.pageBytes += st.size;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// mountpoints, netns (external keys)

export interface MountpointEntry {
  mntId: number;
  /** The superblock's device as CRIU records it (root_dev); CRIU names a tmpfs's tarball tmpfs-dev-<rootDev>.tar.gz.img. */
  rootDev: number;
  fstype: number;
  root: string;
  mountpoint: string;
  source: string;
  extMount: boolean;
  /** The external key: ext_key, or (older images) the root field of an external mount. */
  extKey?: string;
}

export function mountpointsOf(img: Image): MountpointEntry[] {
  return messagesOf(img, mnt_entrySchema).map((e) => {
    const m: MountpointEntry = {
      mntId: e.mntId,
      rootDev: e.rootDev,
      fstype: e.fstype,
      root: e.root,
      mountpoint: e.mountpoint,
      source: e.source,
      extMount: e.extMount,
    };
    const key = isFieldSet(e, mnt_entrySchema.field.extKey) ? e.extKey : e.extMount ? e.root : undefined;
    if (key !== undefined) m.extKey = key;
    return m;
  });
}

/** Every mount of every mount namespace in an image folder. */
export async function readMountpoints(dir: string): Promise<MountpointEntry[]> {
  const out: MountpointEntry[] = [];
  for (const n of await namesIn(dir, /^mountpoints-\d+\.img$/)) out.push(...mountpointsOf(await readImage(join(dir, n), KIND.mnts)));
  return out;
}

/** The external key of the dumped network namespace, if it was external. */
export async function readNetnsExtKey(dir: string): Promise<string | undefined> {
  for (const n of await namesIn(dir, /^netns-\d+\.img$/)) {
    for (const e of await readEntries(join(dir, n), KIND.netns)) if (e.extKey !== '') return e.extKey;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// stats-dump (CRIU's own counters; times in microseconds)

export interface DumpStats {
  freezingUs: number;
  /** Meaningless in lazy mode (CRIU measures it wrongly there: about the uptime). */
  frozenUs: number;
  memdumpUs: number;
  memwriteUs: number;
  pagesScanned: number;
  pagesWritten: number;
  pagesLazy: number;
}

export function dumpStatsOf(img: Image): DumpStats | undefined {
  const d = messagesOf(img, KIND.stats.schema)[0]?.dump;
  if (d === undefined) return undefined;
  return {
    freezingUs: d.freezingTime,
    frozenUs: d.frozenTime,
    memdumpUs: d.memdumpTime,
    memwriteUs: d.memwriteTime,
    pagesScanned: Number(d.pagesScanned),
    pagesWritten: Number(d.pagesWritten),
    pagesLazy: Number(d.pagesLazy),
  };
}

export async function readDumpStats(dir: string): Promise<DumpStats | undefined> {
  return dumpStatsOf(await readImage(join(dir, 'stats-dump'), KIND.stats));
}
