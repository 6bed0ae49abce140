import { test } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import {
  readImageFile,
  IMG_COMMON_MAGIC,
  MAGIC,
  PE_LAZY,
  PE_PRESENT,
  decodeMessage,
  decodePagemapEntry,
  decodeVarint,
  editCpuinfoX86,
  decodeCpuinfoX86,
  encodeImage,
  encodeMessage,
  encodeVarint,
  getRepeatedVarint,
  getVarint,
  parseImage,
  setVarint,
  stripLazyPagemap,
  decodePstree,
  decodeMountpoints,
  decodeDumpStats,
} from './images.ts';
import type { PbField } from './images.ts';

test('varints round-trip, including 64-bit values', () => {
  for (const v of [0n, 1n, 127n, 128n, 300n, 0x7fff_ffffn, 0xffff_ffff_ffffn, 0xffff_ffff_ffff_ffffn]) {
    const b = encodeVarint(v);
    assert.deepEqual(decodeVarint(b, 0), { value: v, next: b.length });
  }
  assert.deepEqual([...encodeVarint(300n)], [0xac, 0x02]);
  assert.throws(() => decodeVarint(Buffer.from([0x80, 0x80]), 0), /bad varint/);
});

test('messages round-trip every wire type', () => {
  const fields: PbField[] = [
    { no: 1, wire: 0, v: 0x7f00_0000_1000n },
    { no: 2, wire: 2, v: Buffer.from('hello') },
    { no: 3, wire: 5, v: 0xdeadbeef },
    { no: 4, wire: 1, v: 42n },
  ];
  const buf = encodeMessage(fields);
  assert.deepEqual(decodeMessage(buf), fields);
  assert.equal(getVarint(fields, 1), 0x7f00_0000_1000n);
  assert.deepEqual(setVarint(fields, 1, 5n)[0], { no: 1, wire: 0, v: 5n });
  assert.equal(setVarint(fields, 9, 5n).length, 5);
});

test('repeated varints are read packed and unpacked', () => {
  const packed: PbField[] = [{ no: 6, wire: 2, v: Buffer.concat([encodeVarint(1n), encodeVarint(300n)]) }];
  assert.deepEqual(getRepeatedVarint(packed, 6), [1n, 300n]);
  const plain: PbField[] = [
    { no: 6, wire: 0, v: 7n },
    { no: 6, wire: 0, v: 8n },
  ];
  assert.deepEqual(getRepeatedVarint(plain, 6), [7n, 8n]);
});

function pagemapEntry(vaddr: bigint, nr: number, flags: number): Buffer {
  return encodeMessage([
    { no: 1, wire: 0, v: vaddr },
    { no: 2, wire: 0, v: BigInt(nr) },
    { no: 4, wire: 0, v: BigInt(flags) },
  ]);
}

test('image files: head magics, length-prefixed entries, and back', () => {
  const img = { head: [IMG_COMMON_MAGIC, MAGIC.pagemap], entries: [encodeMessage([{ no: 1, wire: 0, v: 1n }]), pagemapEntry(0x1000n, 2, PE_PRESENT)] };
  const buf = encodeImage(img);
  assert.equal(buf.readUInt32LE(0), IMG_COMMON_MAGIC);
  assert.equal(buf.readUInt32LE(4), MAGIC.pagemap);
  assert.deepEqual(parseImage(buf), img);
  assert.throws(() => parseImage(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])), /not a CRIU protobuf image/);
  const inv = { head: [MAGIC.inventory], entries: [encodeMessage([{ no: 1, wire: 0, v: 2n }])] };
  assert.deepEqual(parseImage(encodeImage(inv), { inventory: true }), inv);
  assert.throws(() => parseImage(Buffer.concat([encodeImage(img), Buffer.from([9, 0, 0, 0, 1])])), /truncated entry/);
});

test('stripLazyPagemap drops lazy-only ranges, keeps present ones in order, clears lazy on present', () => {
  const head = encodeMessage([{ no: 1, wire: 0, v: 7n }]);
  const img = {
    head: [IMG_COMMON_MAGIC, MAGIC.pagemap],
    entries: [
      head,
      pagemapEntry(0x1000n, 1, PE_PRESENT),
      pagemapEntry(0x2000n, 256, PE_LAZY),
      pagemapEntry(0x200000n, 3, PE_PRESENT | PE_LAZY),
      pagemapEntry(0x300000n, 10, PE_LAZY),
    ],
  };
  const fix = stripLazyPagemap(img);
  assert.equal(fix.removedEntries, 2);
  assert.equal(fix.lazyPages, 266);
  assert.equal(fix.presentPages, 4);
  assert.equal(fix.image.entries.length, 3);
  assert.equal(fix.image.entries[0], head);
  const kept = fix.image.entries.slice(1).map((e) => decodePagemapEntry(e));
  assert.deepEqual(kept.map((e) => [e.vaddr, e.nrPages, e.flags]), [
    [0x1000n, 1, PE_PRESENT],
    [0x200000n, 3, PE_PRESENT],
  ]);
});

test('pstree entries decode pid tree and threads', () => {
  const e = encodeMessage([
    { no: 1, wire: 0, v: 1n },
    { no: 2, wire: 0, v: 0n },
    { no: 3, wire: 0, v: 1n },
    { no: 4, wire: 0, v: 1n },
    { no: 5, wire: 0, v: 1n },
    { no: 5, wire: 0, v: 9n },
  ]);
  assert.deepEqual(decodePstree({ head: [], entries: [e] }), [{ pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1, 9] }]);
});

test('cpuinfo x86 entries can be read and edited (xfeatures)', () => {
  const x86 = encodeMessage([
    { no: 1, wire: 0, v: 1n },
    { no: 2, wire: 0, v: 6n },
    { no: 3, wire: 0, v: 167n },
    { no: 4, wire: 0, v: 1n },
    { no: 5, wire: 0, v: 2n },
    { no: 6, wire: 0, v: 5n },
    { no: 6, wire: 0, v: 6n },
    { no: 7, wire: 2, v: Buffer.from('cpu') },
    { no: 8, wire: 0, v: 229n },
  ]);
  const img = { head: [IMG_COMMON_MAGIC, MAGIC.cpuinfo], entries: [encodeMessage([{ no: 1, wire: 2, v: x86 }])] };
  const [c] = decodeCpuinfoX86(img);
  assert.equal(c?.xfeaturesMask, 229n);
  assert.deepEqual(c?.capability, [5, 6]);
  const edited = editCpuinfoX86(img, (f) => setVarint(f, 8, (getVarint(f, 8) ?? 0n) | (1n << 62n)));
  assert.equal(decodeCpuinfoX86(edited)[0]?.xfeaturesMask, 229n | (1n << 62n));
  assert.equal(decodeCpuinfoX86(edited)[0]?.modelId, 'cpu');
});

test('mountpoints: external key from ext_key or, in old images, from root', () => {
  const m = (extra: PbField[]): Buffer =>
    encodeMessage([
      { no: 1, wire: 0, v: 5n },
      { no: 2, wire: 0, v: 10n },
      { no: 6, wire: 2, v: Buffer.from('/') },
      { no: 7, wire: 2, v: Buffer.from('/run') },
      ...extra,
    ]);
  const [a, b, c] = decodeMountpoints({ head: [], entries: [m([{ no: 18, wire: 2, v: Buffer.from('tmpfs-run') }]), m([{ no: 13, wire: 0, v: 1n }]), m([])] });
  assert.equal(a?.extKey, 'tmpfs-run');
  assert.equal(b?.extKey, '/');
  assert.equal(c?.extKey, undefined);
});

test('stats-dump: the dump counters of CRIU', () => {
  const dump = encodeMessage([
    { no: 1, wire: 0, v: 300n },
    { no: 2, wire: 0, v: 187000n },
    { no: 5, wire: 0, v: 65556n },
    { no: 7, wire: 0, v: 65549n },
    { no: 9, wire: 0, v: 0n },
  ]);
  const st = decodeDumpStats({ head: [], entries: [encodeMessage([{ no: 1, wire: 2, v: dump }])] });
  assert.deepEqual(st, { freezingUs: 300, frozenUs: 187000, memdumpUs: 0, memwriteUs: 0, pagesScanned: 65556, pagesWritten: 65549, pagesLazy: 0 });
  assert.equal(decodeDumpStats({ head: [], entries: [] }), undefined);
});

void test('readImageFile refuses an image whose magic is not the one asked for', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'images-magic-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'pstree.img'), encodeImage({ head: [IMG_COMMON_MAGIC, MAGIC.pagemap], entries: [] }));
  await assert.rejects(readImageFile(join(dir, 'pstree.img'), MAGIC.pstree), /pstree\.img: wrong magic/);
  assert.deepEqual((await readImageFile(join(dir, 'pstree.img'), MAGIC.pagemap)).head, [IMG_COMMON_MAGIC, MAGIC.pagemap]);
  await writeFile(join(dir, 'inventory.img'), encodeImage({ head: [MAGIC.inventory], entries: [] }));
  assert.deepEqual((await readImageFile(join(dir, 'inventory.img'), MAGIC.inventory, { inventory: true })).head, [MAGIC.inventory]);
});
