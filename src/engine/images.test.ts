// CRIU image files through the generated schema: framing, raw data after entries, pagemap rules, the typed readers.

import { test } from 'node:test';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf';
import {
  IMG_COMMON_MAGIC,
  IMG_SERVICE_MAGIC,
  KIND,
  PE_LAZY,
  PE_PRESENT,
  addCpuXfeatures,
  decodeImage,
  dumpStatsOf,
  encodeImage,
  fixLazyPagemaps,
  kindOf,
  messagesOf,
  mountpointsOf,
  pagemapEntryOf,
  readCpuinfo,
  readFdinfo,
  readImage,
  readImageDir,
  readInventory,
  readSockets,
  stripLazyPagemap,
} from './images.ts';
import type { Image, ImageKind } from './images.ts';
import { pagemap_entrySchema, pagemap_headSchema } from './criu-pb/pagemap_pb.ts';
import { pstree_entrySchema } from './criu-pb/pstree_pb.ts';
import { inventory_entrySchema, lsmtype } from './criu-pb/inventory_pb.ts';
import { cpuinfo_entrySchema, cpuinfo_x86_entry_vendor } from './criu-pb/cpuinfo_pb.ts';
import { mnt_entrySchema } from './criu-pb/mnt_pb.ts';
import { stats_entrySchema } from './criu-pb/stats_pb.ts';
import { pipe_data_entrySchema } from './criu-pb/pipe-data_pb.ts';
import { tcp_stream_entrySchema } from './criu-pb/tcp-stream_pb.ts';
import { ghost_chunk_entrySchema, ghost_file_entrySchema } from './criu-pb/ghost-file_pb.ts';
import { ipc_msg_entrySchema, ipc_msgSchema } from './criu-pb/ipc-msg_pb.ts';
import { fd_types, fdinfo_entrySchema, file_entrySchema } from './criu-pb/fdinfo_pb.ts';
import { task_kobj_ids_entrySchema } from './criu-pb/core_pb.ts';
import { unix_sk_entrySchema } from './criu-pb/sk-unix_pb.ts';

/** An image of `kind` whose entries are built from `inits` (the first with `first` when given). */
function image<S extends DescMessage>(kind: ImageKind<S>, inits: MessageInitShape<S>[]): Image {
  return { kind, entries: inits.map((i) => ({ message: create(kind.schema, i) })) };
}

const word = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function pe(vaddr: bigint, nr: number, flags: number): Image['entries'][number] {
  return { message: create(pagemap_entrySchema, { vaddr, compatNrPages: nr, flags }) };
}

test('image files: head magics, length-prefixed entries through the schema, and back', () => {
  const img = image(KIND.pstree, [
    { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1, 9] },
    { pid: 7, ppid: 1, pgid: 1, sid: 1, threads: [7] },
  ]);
  const buf = encodeImage(img);
  assert.equal(buf.readUInt32LE(0), IMG_COMMON_MAGIC);
  assert.equal(buf.readUInt32LE(4), KIND.pstree.magic);
  const [first] = messagesOf(img, pstree_entrySchema);
  assert.equal(buf.readUInt32LE(8), first === undefined ? -1 : toBinary(pstree_entrySchema, first).length);
  const back = decodeImage(buf);
  assert.equal(back.kind, KIND.pstree);
  assert.deepEqual(messagesOf(back, pstree_entrySchema).map((p) => [p.pid, p.ppid, p.threads]), [
    [1, 0, [1, 9]],
    [7, 1, [7]],
  ]);
  assert.deepEqual(encodeImage(back), buf);
  // inventory.img has only its own magic; stats-* the service magic.
  const inv = encodeImage(image(KIND.inventory, [{ imgVersion: 2 }]));
  assert.equal(inv.readUInt32LE(0), KIND.inventory.magic);
  assert.equal(kindOf(inv), KIND.inventory);
  assert.equal(encodeImage(image(KIND.stats, [{}])).readUInt32LE(0), IMG_SERVICE_MAGIC);
  // Raw images, a wrong head magic, a truncated entry, another kind than asked for.
  assert.equal(kindOf(Buffer.from('\x1f\x8b\x08\x00 a tarball')), undefined);
  assert.throws(() => decodeImage(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])), /not a CRIU protobuf image \(magic 0x4030201 0x8070605\)/);
  assert.throws(() => decodeImage(Buffer.concat([word(IMG_SERVICE_MAGIC), word(KIND.pstree.magic)])), /not a CRIU protobuf image/);
  assert.throws(() => decodeImage(Buffer.concat([buf, word(9), Buffer.from([1])])), /PSTREE image: truncated entry/);
  assert.throws(() => decodeImage(buf, KIND.pagemap), /a PSTREE image, not PAGEMAP/);
});

test('fields the schema does not know survive a rewrite', () => {
  const known = toBinary(pstree_entrySchema, create(pstree_entrySchema, { pid: 3, ppid: 1, pgid: 3, sid: 3 }));
  // Field 99 (key 99 << 3 = 0x318, varint 0x98 0x06), value 150 (varint 0x96 0x01): newer than the schema.
  const entry = Buffer.concat([known, Buffer.from([0x98, 0x06, 0x96, 0x01])]);
  const buf = Buffer.concat([word(IMG_COMMON_MAGIC), word(KIND.pstree.magic), word(entry.length), entry]);
  assert.deepEqual(encodeImage(decodeImage(buf)), buf);
});

test('entries followed by raw data: pipe data, TCP queues, ghost file contents, IPC message queues', () => {
  const pipes: Image = {
    kind: KIND.pipesData,
    entries: [
      { message: create(pipe_data_entrySchema, { pipeId: 5, bytes: 3 }), payload: Buffer.from('abc') },
      { message: create(pipe_data_entrySchema, { pipeId: 6, bytes: 0 }) },
      { message: create(pipe_data_entrySchema, { pipeId: 7, bytes: 2 }), payload: Buffer.from('xy') },
    ],
  };
  const back = decodeImage(encodeImage(pipes));
  assert.deepEqual(back.entries.map((e) => e.payload?.toString()), ['abc', undefined, 'xy']);
  const tcp: Image = { kind: KIND.tcpStream, entries: [{ message: create(tcp_stream_entrySchema, { inqLen: 2, inqSeq: 1, outqLen: 3, outqSeq: 9, optMask: 0, sndWscale: 7, mssClamp: 65495 }), payload: Buffer.from('INOUT') }] };
  assert.equal(decodeImage(encodeImage(tcp)).entries[0]?.payload?.toString(), 'INOUT');
  // A ghost file: its contents after the entry, or chunks, each with its own data.
  const whole: Image = { kind: KIND.ghostFile, entries: [{ message: create(ghost_file_entrySchema, { uid: 0, gid: 0, mode: 0o100644 }), payload: Buffer.from('all of it') }] };
  assert.equal(decodeImage(encodeImage(whole)).entries[0]?.payload?.toString(), 'all of it');
  const chunked: Image = {
    kind: KIND.ghostFile,
    entries: [
      { message: create(ghost_file_entrySchema, { uid: 0, gid: 0, mode: 0o100644, chunks: true, size: 8192n }) },
      { message: create(ghost_chunk_entrySchema, { off: 4096n, len: 4n }), payload: Buffer.from('tail') },
    ],
  };
  const c = decodeImage(encodeImage(chunked));
  assert.deepEqual(messagesOf(c, ghost_chunk_entrySchema).map((x) => x.off), [4096n]);
  assert.equal(c.entries[1]?.payload?.toString(), 'tail');
  // An IPC message queue: qnum messages, each a length, an ipc_msg and its text padded to 8 bytes.
  const msg = toBinary(ipc_msgSchema, create(ipc_msgSchema, { mtype: 1n, msize: 5 }));
  const queue = Buffer.concat([word(msg.length), msg, Buffer.from('hello\0\0\0')]);
  const q = create(ipc_msg_entrySchema, { desc: { key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id: 0 }, qbytes: 16384, qnum: 1 });
  const qimg = decodeImage(encodeImage({ kind: KIND.ipcnsMsg, entries: [{ message: q, payload: queue }, { message: q, payload: queue }] }));
  assert.deepEqual(qimg.entries.map((e) => e.payload?.length), [queue.length, queue.length]);
});

test('pagemap entries take CRIU defaults: nr_pages over compat_nr_pages, PE_PRESENT without flags', () => {
  assert.deepEqual(pagemapEntryOf(create(pagemap_entrySchema, { vaddr: 0x1000n, compatNrPages: 2 })), { vaddr: 0x1000n, nrPages: 2, flags: PE_PRESENT, inParent: false });
  assert.equal(pagemapEntryOf(create(pagemap_entrySchema, { vaddr: 0n, compatNrPages: 2, nrPages: 1n << 33n, flags: PE_LAZY })).nrPages, 2 ** 33);
});

test('stripLazyPagemap drops lazy-only ranges, keeps present ones in order, clears lazy on present', () => {
  const head = { message: create(pagemap_headSchema, { pagesId: 7 }) };
  const img: Image = {
    kind: KIND.pagemap,
    entries: [head, pe(0x1000n, 1, PE_PRESENT), pe(0x2000n, 256, PE_LAZY), pe(0x200000n, 3, PE_PRESENT | PE_LAZY), pe(0x300000n, 10, PE_LAZY)],
  };
  const fix = stripLazyPagemap(img);
  assert.equal(fix.removedEntries, 2);
  assert.equal(fix.clearedEntries, 1);
  assert.equal(fix.lazyPages, 266);
  assert.equal(fix.presentPages, 4);
  assert.equal(fix.image.entries.length, 3);
  assert.equal(fix.image.entries[0], head);
  const back = decodeImage(encodeImage(fix.image));
  assert.deepEqual(messagesOf(back, pagemap_headSchema).map((h) => h.pagesId), [7]);
  assert.deepEqual(messagesOf(back, pagemap_entrySchema).map((e) => [e.vaddr, e.compatNrPages, e.flags]), [
    [0x1000n, 1, PE_PRESENT],
    [0x200000n, 3, PE_PRESENT],
  ]);
  // The input is not modified.
  assert.equal(messagesOf(img, pagemap_entrySchema)[2]?.flags, PE_PRESENT | PE_LAZY);
});

void test('fixLazyPagemaps rewrites only pagemaps with lazy entries', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'images-lazy-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  const head = { message: create(pagemap_headSchema, { pagesId: 1 }) };
  const full = encodeImage({ kind: KIND.pagemap, entries: [head, pe(0x1000n, 1, PE_PRESENT)] });
  await writeFile(join(dir, 'pagemap-1.img'), full);
  await writeFile(join(dir, 'pagemap-2.img'), encodeImage({ kind: KIND.pagemap, entries: [head, pe(0x1000n, 4, PE_LAZY), pe(0x9000n, 1, PE_PRESENT)] }));
  await writeFile(join(dir, 'pages-1.img'), 'raw');
  assert.deepEqual(await fixLazyPagemaps(dir), { files: 2, removedEntries: 1, lazyPages: 4, presentPages: 2 });
  assert.deepEqual(await readFile(join(dir, 'pagemap-1.img')), full);
  const fixed = await readImage(join(dir, 'pagemap-2.img'), KIND.pagemap);
  assert.deepEqual(messagesOf(fixed, pagemap_entrySchema).map((e) => e.vaddr), [0x9000n]);
});

void test('inventory: version, lsmtype, network lock method, plugins, uprobes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'images-inv-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  const inv = create(inventory_entrySchema, {
    imgVersion: 2,
    lsmtype: lsmtype.APPARMOR,
    networkLockMethod: 2,
    pluginsEntry: { plugins: ['amdgpu'] },
    allowUprobes: true,
    dumpUptime: 123456789n,
  });
  await writeFile(join(dir, 'inventory.img'), encodeImage({ kind: KIND.inventory, entries: [{ message: inv }] }));
  const back = await readInventory(dir);
  assert.deepEqual(
    [back.imgVersion, back.lsmtype, back.networkLockMethod, back.pluginsEntry?.plugins, back.allowUprobes, back.dumpUptime],
    [2, lsmtype.APPARMOR, 2, ['amdgpu'], true, 123456789n],
  );
});

void test('cpuinfo x86 entries can be read and claim extra xsave features', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'images-cpu-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  const cpu = create(cpuinfo_entrySchema, {
    x86Entry: [{ vendorId: cpuinfo_x86_entry_vendor.INTEL, cpuFamily: 6, model: 167, stepping: 1, capabilityVer: 2, capability: [5, 6], modelId: 'cpu', xfeaturesMask: 229n }],
  });
  await writeFile(join(dir, 'cpuinfo.img'), encodeImage({ kind: KIND.cpuinfo, entries: [{ message: cpu }] }));
  const [c] = await readCpuinfo(dir);
  assert.deepEqual([c?.xfeaturesMask, c?.capability, c?.modelId], [229n, [5, 6], 'cpu']);
  await addCpuXfeatures(dir, 1n << 62n);
  const [e] = await readCpuinfo(dir);
  assert.deepEqual([e?.xfeaturesMask, e?.modelId, e?.capability], [229n | (1n << 62n), 'cpu', [5, 6]]);
});

test('mountpoints: external key from ext_key or, in old images, from root', () => {
  const m = { fstype: 5, mntId: 10, rootDev: 0x22, parentMntId: 1, flags: 0, root: '/', mountpoint: '/run', source: 'tmpfs', options: '' };
  const [a, b, c] = mountpointsOf(image(KIND.mnts, [{ ...m, extKey: 'tmpfs-run' }, { ...m, extMount: true }, m]));
  assert.equal(a?.extKey, 'tmpfs-run');
  assert.equal(b?.extKey, '/');
  assert.equal(c?.extKey, undefined);
  assert.deepEqual([c?.mntId, c?.rootDev, c?.fstype, c?.mountpoint, c?.source, c?.extMount], [10, 0x22, 5, '/run', 'tmpfs', false]);
  assert.equal(messagesOf(image(KIND.mnts, [m]), mnt_entrySchema).length, 1);
});

test('stats-dump: the dump counters of CRIU', () => {
  const dump = { freezingTime: 300, frozenTime: 187000, memdumpTime: 0, memwriteTime: 0, pagesScanned: 65556n, pagesSkippedParent: 0n, pagesWritten: 65549n, pagesLazy: 0n };
  const st = dumpStatsOf(decodeImage(encodeImage(image(KIND.stats, [{ dump }]))));
  assert.deepEqual(st, { freezingUs: 300, frozenUs: 187000, memdumpUs: 0, memwriteUs: 0, pagesScanned: 65556, pagesWritten: 65549, pagesLazy: 0 });
  assert.equal(dumpStatsOf({ kind: KIND.stats, entries: [] }), undefined);
  assert.equal(dumpStatsOf({ kind: KIND.stats, entries: [{ message: create(stats_entrySchema, { restore: { pagesCompared: 1n, pagesSkippedCow: 0n, forkingTime: 1, restoreTime: 1 } }) }] }), undefined);
});

void test('fdinfo through the task ids, sockets from files.img, every image of a folder; raw ones left out', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'images-files-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'ids-1.img'), encodeImage({ kind: KIND.ids, entries: [{ message: create(task_kobj_ids_entrySchema, { vmId: 1, filesId: 4, fsId: 1, sighandId: 1 }) }] }));
  await writeFile(join(dir, 'fdinfo-4.img'), encodeImage({ kind: KIND.fdinfo, entries: [{ message: create(fdinfo_entrySchema, { id: 9, flags: 2, type: fd_types.UNIXSK, fd: 3 }) }] }));
  const fown = { uid: 0, euid: 0, signum: 0, pidType: 0, pid: 0 };
  const opts = { soSndbuf: 212992, soRcvbuf: 212992, soSndTmoSec: 0n, soSndTmoUsec: 0n, soRcvTmoSec: 0n, soRcvTmoUsec: 0n };
  const usk = create(unix_sk_entrySchema, { id: 9, ino: 77, type: 1, state: 10, flags: 2, uflags: 0, backlog: 8, peer: 0, fown, opts, name: Buffer.from('/tmp/s') });
  await writeFile(join(dir, 'files.img'), encodeImage({ kind: KIND.files, entries: [{ message: create(file_entrySchema, { type: fd_types.UNIXSK, id: 9, usk }) }] }));
  await writeFile(join(dir, 'pages-1.img'), Buffer.alloc(4096));
  assert.deepEqual((await readFdinfo(dir, 1)).map((f) => [f.fd, f.id, f.type]), [[3, 9, fd_types.UNIXSK]]);
  const socks = await readSockets(dir);
  assert.deepEqual([socks.unix.map((s) => [s.ino, Buffer.from(s.name).toString()]), socks.inet, socks.netlink, socks.packet], [[[77, '/tmp/s']], [], [], []]);
  assert.deepEqual([...(await readImageDir(dir))].map(([n, img]) => `${n}:${img.kind.name}`), ['fdinfo-4.img:FDINFO', 'files.img:FILES', 'ids-1.img:IDS']);
});

void test('readImage refuses an image whose kind is not the one asked for', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'images-magic-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'pstree.img'), encodeImage({ kind: KIND.pagemap, entries: [] }));
  await assert.rejects(readImage(join(dir, 'pstree.img'), KIND.pstree), /pstree\.img: a PAGEMAP image, not PSTREE/);
  assert.equal((await readImage(join(dir, 'pstree.img'), KIND.pagemap)).kind, KIND.pagemap);
  await assert.rejects(readImage(join(dir, 'nothing.img'), KIND.pstree), { code: 'ENOENT' });
});
