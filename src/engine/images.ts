// CRIU image files: parse and encode (pure), plus the few file operations the engine needs on an image
// folder: fix the pagemaps of a lazy dump, read the process tree and inventory, edit cpuinfo.
//
// Format (CRIU's criu/include/magic.h, criu/protobuf.c): every file but inventory.img starts with a u32
// "common" magic (0x54564319, or the service magic 0x55105940) and a u32 per-type magic; inventory.img has
// only its own magic. Then entries: a little-endian u32 length followed by one protobuf message. Raw images
// (pages-*.img, tarballs) have no header. The protobuf wire format is decoded by hand (no dependency).

import { readFile, readdir, stat, writeFile, rename } from 'node:fs/promises';
import { basename, join } from 'node:path';

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;
export const MAGIC = {
  inventory: 0x58313116,
  pstree: 0x50273030,
  pagemap: 0x56084025,
  core: 0x55053847,
  mm: 0x57492820,
  cpuinfo: 0x61404013,
} as const;

/** pagemap_entry flags (criu/include/pagemap.h). */
export const PE_PARENT = 1 << 0;
export const PE_LAZY = 1 << 1;
export const PE_PRESENT = 1 << 2;

export const PAGE_SIZE = 4096;

// ---------------------------------------------------------------------------------------------------------
// protobuf wire format

export type PbValue = { wire: 0; v: bigint } | { wire: 1; v: bigint } | { wire: 2; v: Buffer } | { wire: 5; v: number };
export type PbField = PbValue & { no: number };

export function decodeVarint(buf: Buffer, pos: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  for (let i = pos; i < buf.length; i++) {
    const b = buf[i] ?? 0;
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return { value, next: i + 1 };
    shift += 7n;
    if (shift > 70n) break;
  }
  throw new Error(`bad varint at offset ${pos}`);
}

export function encodeVarint(value: bigint): Buffer {
  if (value < 0n) value = BigInt.asUintN(64, value);
  const out: number[] = [];
  do {
    let b = Number(value & 0x7fn);
    value >>= 7n;
    if (value !== 0n) b |= 0x80;
    out.push(b);
  } while (value !== 0n);
  return Buffer.from(out);
}

export function decodeMessage(buf: Buffer): PbField[] {
  const fields: PbField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const key = decodeVarint(buf, pos);
    pos = key.next;
    const no = Number(key.value >> 3n);
    const wire = Number(key.value & 7n);
    if (wire === 0) {
      const v = decodeVarint(buf, pos);
      pos = v.next;
      fields.push({ no, wire: 0, v: v.value });
    } else if (wire === 1) {
      if (pos + 8 > buf.length) throw new Error('truncated fixed64');
      fields.push({ no, wire: 1, v: buf.readBigUInt64LE(pos) });
      pos += 8;
    } else if (wire === 2) {
      const len = decodeVarint(buf, pos);
      pos = len.next;
      const end = pos + Number(len.value);
      if (end > buf.length) throw new Error('truncated length-delimited field');
      fields.push({ no, wire: 2, v: buf.subarray(pos, end) });
      pos = end;
    } else if (wire === 5) {
      if (pos + 4 > buf.length) throw new Error('truncated fixed32');
      fields.push({ no, wire: 5, v: buf.readUInt32LE(pos) });
      pos += 4;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire} (field ${no})`);
    }
  }
  return fields;
}

export function encodeMessage(fields: readonly PbField[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    parts.push(encodeVarint((BigInt(f.no) << 3n) | BigInt(f.wire)));
    if (f.wire === 0) parts.push(encodeVarint(f.v));
    else if (f.wire === 1) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(f.v);
      parts.push(b);
    } else if (f.wire === 2) {
      parts.push(encodeVarint(BigInt(f.v.length)), f.v);
    } else {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(f.v);
      parts.push(b);
    }
  }
  return Buffer.concat(parts);
}

/** First varint value of field `no`, or undefined. */
export function getVarint(fields: readonly PbField[], no: number): bigint | undefined {
  for (const f of fields) if (f.no === no && f.wire === 0) return f.v;
  return undefined;
}

/** All values of a repeated varint field, packed or not. */
export function getRepeatedVarint(fields: readonly PbField[], no: number): bigint[] {
  const out: bigint[] = [];
  for (const f of fields) {
    if (f.no !== no) continue;
    if (f.wire === 0) out.push(f.v);
    else if (f.wire === 2) {
      let pos = 0;
      while (pos < f.v.length) {
        const v = decodeVarint(f.v, pos);
        out.push(v.value);
        pos = v.next;
      }
    }
  }
  return out;
}

export function getString(fields: readonly PbField[], no: number): string | undefined {
  for (const f of fields) if (f.no === no && f.wire === 2) return f.v.toString('utf8');
  return undefined;
}

export function getBytes(fields: readonly PbField[], no: number): Buffer[] {
  const out: Buffer[] = [];
  for (const f of fields) if (f.no === no && f.wire === 2) out.push(f.v);
  return out;
}

/** Replace (or append) a varint field. */
export function setVarint(fields: readonly PbField[], no: number, v: bigint): PbField[] {
  let done = false;
  const out: PbField[] = [];
  for (const f of fields) {
    if (f.no === no && f.wire === 0) {
      if (!done) out.push({ no, wire: 0, v });
      done = true;
    } else out.push(f);
  }
  if (!done) out.push({ no, wire: 0, v });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// image files

export interface ImageFile {
  /** One magic (inventory) or two (common/service magic, then the type magic). */
  head: number[];
  entries: Buffer[];
}

export function parseImage(buf: Buffer, opts: { inventory?: boolean } = {}): ImageFile {
  if (buf.length < 4) throw new Error('image too short');
  const head: number[] = [buf.readUInt32LE(0)];
  let pos = 4;
  if (opts.inventory !== true) {
    if (head[0] !== IMG_COMMON_MAGIC && head[0] !== IMG_SERVICE_MAGIC) {
      throw new Error(`not a CRIU protobuf image (head magic 0x${(head[0] ?? 0).toString(16)})`);
    }
    if (buf.length < 8) throw new Error('image too short');
    head.push(buf.readUInt32LE(4));
    pos = 8;
  }
  const entries: Buffer[] = [];
  while (pos < buf.length) {
    if (pos + 4 > buf.length) throw new Error('truncated entry size');
    const len = buf.readUInt32LE(pos);
    pos += 4;
    if (pos + len > buf.length) throw new Error('truncated entry');
    entries.push(buf.subarray(pos, pos + len));
    pos += len;
  }
  return { head, entries };
}

/**
 * Reads and parses one image file, refusing one whose magic is not `magic` (the second magic word; the
 * first for inventory.img, which has only one).
 */
export async function readImageFile(path: string, magic: number, opts: { inventory?: boolean } = {}): Promise<ImageFile> {
  const img = parseImage(await readFile(path), opts);
  if ((opts.inventory === true ? img.head[0] : img.head[1]) !== magic) throw new Error(`${basename(path)}: wrong magic`);
  return img;
}

export function encodeImage(img: ImageFile): Buffer {
  const parts: Buffer[] = [];
  for (const m of img.head) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(m >>> 0);
    parts.push(b);
  }
  for (const e of img.entries) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(e.length);
    parts.push(b, e);
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------------------
// pagemap

export interface PagemapEntry {
  vaddr: bigint;
  nrPages: number;
  flags: number;
  inParent: boolean;
}

export function decodePagemapEntry(buf: Buffer): PagemapEntry {
  const f = decodeMessage(buf);
  const nr = getVarint(f, 5) ?? getVarint(f, 2) ?? 0n;
  return {
    vaddr: getVarint(f, 1) ?? 0n,
    nrPages: Number(nr),
    flags: Number(getVarint(f, 4) ?? BigInt(PE_PRESENT)),
    inParent: (getVarint(f, 3) ?? 0n) !== 0n,
  };
}

export interface PagemapFix {
  /** The pagemap image without lazy-only entries (they would make the restorer wait for a page server). */
  image: ImageFile;
  removedEntries: number;
  lazyPages: number;
  presentPages: number;
}

/**
 * Drop every entry whose pages live only behind the lazy page server (PE_LAZY without PE_PRESENT).
 * Entries that are both lazy and present keep their pages and lose the lazy flag. The order of present
 * entries is kept, so offsets into pages-*.img stay valid. Dropped ranges restore as untouched (zero)
 * anonymous memory, which a restore that never runs the task does not care about.
 */
export function stripLazyPagemap(img: ImageFile): PagemapFix {
  const [headEntry, ...rest] = img.entries;
  if (headEntry === undefined) return { image: img, removedEntries: 0, lazyPages: 0, presentPages: 0 };
  const kept: Buffer[] = [headEntry];
  let removedEntries = 0;
  let lazyPages = 0;
  let presentPages = 0;
  for (const e of rest) {
    const fields = decodeMessage(e);
    const pe = decodePagemapEntry(e);
    const lazy = (pe.flags & PE_LAZY) !== 0;
    const present = (pe.flags & PE_PRESENT) !== 0;
    if (lazy && !present) {
      removedEntries++;
      lazyPages += pe.nrPages;
      continue;
    }
    if (present) presentPages += pe.nrPages;
    kept.push(lazy ? encodeMessage(setVarint(fields, 4, BigInt(pe.flags & ~PE_LAZY))) : e);
  }
  return { image: { head: img.head, entries: kept }, removedEntries, lazyPages, presentPages };
}

export interface LazyFixReport {
  files: number;
  removedEntries: number;
  lazyPages: number;
  presentPages: number;
}

/**
 * Runs stripLazyPagemap over every pagemap image in `dir` and adds up what it found; `onImage` sees each
 * image with its stripped form.
 */
async function scanPagemaps(
  dir: string,
  onImage?: (path: string, img: ImageFile, stripped: ImageFile) => Promise<void>,
): Promise<LazyFixReport> {
  const names = (await readdir(dir)).filter((n) => /^pagemap-.*\.img$/.test(n));
  const report: LazyFixReport = { files: 0, removedEntries: 0, lazyPages: 0, presentPages: 0 };
  for (const name of names) {
    const path = join(dir, name);
    const img = parseImage(await readFile(path));
    if (img.head[1] !== MAGIC.pagemap) continue;
    const fix = stripLazyPagemap(img);
    report.files++;
    report.removedEntries += fix.removedEntries;
    report.lazyPages += fix.lazyPages;
    report.presentPages += fix.presentPages;
    await onImage?.(path, img, fix.image);
  }
  return report;
}

/** Fix every pagemap image of a lazy dump in place (atomically per file). */
export async function fixLazyPagemaps(dir: string): Promise<LazyFixReport> {
  return await scanPagemaps(dir, async (path, img, stripped) => {
    // Rewritten when anything changed: lazy entries removed, or a lazy flag cleared on a present entry.
    const after = encodeImage(stripped);
    if (after.equals(encodeImage(img))) return;
    await writeFile(`${path}.tmp`, after);
    await rename(`${path}.tmp`, path);
  });
}

/** Count pages by kind without changing anything (used to tell a lazy dump from a full one). */
export async function pagemapSummary(dir: string): Promise<LazyFixReport> {
  return await scanPagemaps(dir);
}

// ---------------------------------------------------------------------------------------------------------
// pstree, inventory, cpuinfo

export interface PstreeEntry {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
}

export function decodePstree(img: ImageFile): PstreeEntry[] {
  return img.entries.map((e) => {
    const f = decodeMessage(e);
    return {
      pid: Number(getVarint(f, 1) ?? 0n),
      ppid: Number(getVarint(f, 2) ?? 0n),
      pgid: Number(getVarint(f, 3) ?? 0n),
      sid: Number(getVarint(f, 4) ?? 0n),
      threads: getRepeatedVarint(f, 5).map(Number),
    };
  });
}

export async function readPstree(dir: string): Promise<PstreeEntry[]> {
  const img = await readImageFile(join(dir, 'pstree.img'), MAGIC.pstree);
  return decodePstree(img);
}

export interface Inventory {
  imgVersion: number;
  rootCgSet?: number;
  dumpUptime?: bigint;
  networkLockMethod?: number;
  tcpClose?: boolean;
}

export function decodeInventory(img: ImageFile): Inventory {
  const e = img.entries[0];
  if (e === undefined) throw new Error('inventory.img has no entry');
  const f = decodeMessage(e);
  const inv: Inventory = { imgVersion: Number(getVarint(f, 1) ?? 0n) };
  const cg = getVarint(f, 5);
  if (cg !== undefined) inv.rootCgSet = Number(cg);
  const up = getVarint(f, 8);
  if (up !== undefined) inv.dumpUptime = up;
  const nl = getVarint(f, 11);
  if (nl !== undefined) inv.networkLockMethod = Number(nl);
  const tc = getVarint(f, 10);
  if (tc !== undefined) inv.tcpClose = tc !== 0n;
  return inv;
}

export async function readInventory(dir: string): Promise<Inventory> {
  const img = await readImageFile(join(dir, 'inventory.img'), MAGIC.inventory, { inventory: true });
  return decodeInventory(img);
}

/** Is this folder a CRIU image set? (inventory.img with the right magic) */
export async function isImageDir(dir: string): Promise<boolean> {
  try {
    await readInventory(dir);
    return true;
  } catch {
    return false;
  }
}

export interface CpuinfoX86 {
  vendor: number;
  family: number;
  model: number;
  stepping: number;
  capabilityVer: number;
  capability: number[];
  modelId?: string;
  xfeaturesMask?: bigint;
}

export function decodeCpuinfoX86(img: ImageFile): CpuinfoX86[] {
  const out: CpuinfoX86[] = [];
  for (const e of img.entries) {
    for (const x86 of getBytes(decodeMessage(e), 1)) {
      const f = decodeMessage(x86);
      const c: CpuinfoX86 = {
        vendor: Number(getVarint(f, 1) ?? 0n),
        family: Number(getVarint(f, 2) ?? 0n),
        model: Number(getVarint(f, 3) ?? 0n),
        stepping: Number(getVarint(f, 4) ?? 0n),
        capabilityVer: Number(getVarint(f, 5) ?? 0n),
        capability: getRepeatedVarint(f, 6).map(Number),
      };
      const id = getString(f, 7);
      if (id !== undefined) c.modelId = id;
      const xf = getVarint(f, 8);
      if (xf !== undefined) c.xfeaturesMask = xf;
      out.push(c);
    }
  }
  return out;
}

/**
 * Rewrite every x86 entry of a cpuinfo image through `edit`, which receives the entry's raw fields and
 * returns new ones. Used to make an image claim CPU features (tests), and by nothing on the hot path.
 */
export function editCpuinfoX86(img: ImageFile, edit: (fields: PbField[]) => PbField[]): ImageFile {
  const entries = img.entries.map((e) => {
    const outer = decodeMessage(e).map((f): PbField => {
      if (f.no === 1 && f.wire === 2) return { no: 1, wire: 2, v: encodeMessage(edit(decodeMessage(f.v))) };
      return f;
    });
    return encodeMessage(outer);
  });
  return { head: img.head, entries };
}

/** Make cpuinfo.img claim extra xsave feature bits (e.g. one the host lacks). */
export async function addCpuXfeatures(dir: string, bits: bigint): Promise<void> {
  const path = join(dir, 'cpuinfo.img');
  const img = await readImageFile(path, MAGIC.cpuinfo);
  const edited = editCpuinfoX86(img, (f) => setVarint(f, 8, (getVarint(f, 8) ?? 0n) | bits));
  await writeFile(path, encodeImage(edited));
}

export async function readCpuinfo(dir: string): Promise<CpuinfoX86[]> {
  const img = await readImageFile(join(dir, 'cpuinfo.img'), MAGIC.cpuinfo);
  return decodeCpuinfoX86(img);
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

export function decodeMountpoints(img: ImageFile): MountpointEntry[] {
  return img.entries.map((e) => {
    const f = decodeMessage(e);
    const extMount = (getVarint(f, 13) ?? 0n) !== 0n;
    const m: MountpointEntry = {
      mntId: Number(getVarint(f, 2) ?? 0n),
      rootDev: Number(getVarint(f, 3) ?? 0n),
      fstype: Number(getVarint(f, 1) ?? 0n),
      root: getString(f, 6) ?? '',
      mountpoint: getString(f, 7) ?? '',
      source: getString(f, 8) ?? '',
      extMount,
    };
    const key = getString(f, 18) ?? (extMount ? m.root : undefined);
    if (key !== undefined) m.extKey = key;
    return m;
  });
}

/** Every mount of every mount namespace in an image folder. */
export async function readMountpoints(dir: string): Promise<MountpointEntry[]> {
  const out: MountpointEntry[] = [];
  for (const n of (await readdir(dir)).filter((x) => /^mountpoints-\d+\.img$/.test(x))) {
    out.push(...decodeMountpoints(parseImage(await readFile(join(dir, n)))));
  }
  return out;
}

/** The external key of the dumped network namespace, if it was external. */
export async function readNetnsExtKey(dir: string): Promise<string | undefined> {
  for (const n of (await readdir(dir)).filter((x) => /^netns-\d+\.img$/.test(x))) {
    const img = parseImage(await readFile(join(dir, n)));
    for (const e of img.entries) {
      const k = getString(decodeMessage(e), 8);
      if (k !== undefined && k !== '') return k;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// stats-dump (CRIU's own counters; times in microseconds)

export const STATS_MAGIC = 0x57093306;

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

export function decodeDumpStats(img: ImageFile): DumpStats | undefined {
  const e = img.entries[0];
  if (e === undefined) return undefined;
  const dump = getBytes(decodeMessage(e), 1)[0];
  if (dump === undefined) return undefined;
  const f = decodeMessage(dump);
  const n = (no: number): number => Number(getVarint(f, no) ?? 0n);
  return {
    freezingUs: n(1),
    frozenUs: n(2),
    memdumpUs: n(3),
    memwriteUs: n(4),
    pagesScanned: n(5),
    pagesWritten: n(7),
    pagesLazy: n(9),
  };
}

export async function readDumpStats(dir: string): Promise<DumpStats | undefined> {
  const img = await readImageFile(join(dir, 'stats-dump'), STATS_MAGIC);
  return decodeDumpStats(img);
}
