// Link remaps for the restore check (link-remap.ts): which files the images name, and their copies from task fds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeImage, encodeMessage, IMG_COMMON_MAGIC } from './images.ts';
import type { PbField } from './images.ts';
import { FILES_MAGIC, REMAP_FPATH_MAGIC, linkRemapsOf, readLinkRemaps, safeRelative, stageLinkRemaps } from './link-remap.ts';

const str = (no: number, s: string): PbField => ({ no, wire: 2, v: Buffer.from(s) });
const num = (no: number, v: number): PbField => ({ no, wire: 0, v: BigInt(v) });

/** A files.img FileEntry of type REG (1) with its RegFileEntry (name is field 6). */
function regFile(id: number, name: string): Buffer {
  return encodeMessage([num(1, 1), num(2, id), { no: 3, wire: 2, v: encodeMessage([num(1, id), str(6, name)]) }]);
}

const files = {
  head: [IMG_COMMON_MAGIC, FILES_MAGIC],
  entries: [
    regFile(7, '/data/app.log'),
    regFile(13, '/data/link_remap.13'),
    regFile(8, '/tmp/gone'),
    regFile(9, '/tmp/gone.ghost'),
    encodeMessage([num(1, 5), num(2, 20)]), // a socket: not a regular file
  ],
};
const remaps = {
  head: [IMG_COMMON_MAGIC, REMAP_FPATH_MAGIC],
  entries: [
    encodeMessage([num(1, 7), num(2, 13), num(3, 0)]), // LINKED
    encodeMessage([num(1, 8), num(2, 9), num(3, 1)]), // GHOST: carried in the images already
  ],
};

void test('linkRemapsOf: the linked remaps, by name', () => {
  assert.deepEqual(linkRemapsOf(files, remaps), [{ origName: '/data/app.log', remapName: '/data/link_remap.13' }]);
  // an entry without remap_type is a linked one
  const old = { ...remaps, entries: [encodeMessage([num(1, 7), num(2, 13)])] };
  assert.equal(linkRemapsOf(files, old).length, 1);
});

void test('readLinkRemaps: none without remap-fpath.img; read from the image files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mp-lr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  assert.deepEqual(await readLinkRemaps(dir), []);
  await writeFile(join(dir, 'files.img'), encodeImage(files));
  await writeFile(join(dir, 'remap-fpath.img'), encodeImage(remaps));
  assert.deepEqual(await readLinkRemaps(dir), [{ origName: '/data/app.log', remapName: '/data/link_remap.13' }]);
  await writeFile(join(dir, 'files.img'), encodeImage({ ...files, head: [IMG_COMMON_MAGIC, REMAP_FPATH_MAGIC] }));
  await assert.rejects(readLinkRemaps(dir), /wrong magic/);
});

void test('safeRelative refuses what could leave the stage folder', () => {
  assert.equal(safeRelative('/data/link_remap.1'), 'data/link_remap.1');
  for (const p of ['data/x', '/data/../etc/x', '/data//x', '/', '/a/\0b']) assert.equal(safeRelative(p), undefined, p);
});

void test('stageLinkRemaps copies from the fd that holds the unlinked original, with its mode; the rest is missing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mp-lr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // a fake /proc: task 40's fd 3 reads "<dir>/data/app.log (deleted)", the name the kernel gives an unlinked file
  await mkdir(join(dir, 'data'));
  await writeFile(join(dir, 'data', 'app.log (deleted)'), 'x'.repeat(1000), { mode: 0o640 });
  await mkdir(join(dir, 'proc', '40', 'fd'), { recursive: true });
  // its root, where the folder of the remap has mode 0777
  await mkdir(join(dir, 'proc', '40', 'root', 'data'), { recursive: true, mode: 0o777 });
  await chmod(join(dir, 'proc', '40', 'root', 'data'), 0o777);
  await symlink(join(dir, 'data', 'app.log (deleted)'), join(dir, 'proc', '40', 'fd', '3'));
  const stage = join(dir, 'stage');
  const want = [
    { origName: join(dir, 'data', 'app.log'), remapName: '/data/link_remap.13' },
    { origName: '/closed/file', remapName: '/closed/link_remap.14' },
    { origName: join(dir, 'data', 'app.log'), remapName: '/data/../link_remap.15' },
  ];
  const r = await stageLinkRemaps(want, [40, 41], stage, 1 << 20, join(dir, 'proc'));
  assert.deepEqual(r.staged, ['/data/link_remap.13']);
  assert.equal(r.bytes, 1000);
  assert.equal(r.missing.length, 2);
  assert.match(r.missing[0] ?? '', /no task holds \/closed\/file open/);
  assert.match(r.missing[1] ?? '', /not a plain absolute path/);
  assert.equal(await readFile(join(stage, 'data', 'link_remap.13'), 'utf8'), 'x'.repeat(1000));
  assert.equal((await stat(join(stage, 'data', 'link_remap.13'))).mode & 0o777, 0o640);
  assert.equal((await stat(join(stage, 'data'))).mode & 0o777, 0o777, 'the folder as the container sees it');
  assert.equal((await stat(stage)).mode & 0o777, (await stat(join(dir, 'proc', '40', 'root'))).mode & 0o777, 'and the root');
  const capped = await stageLinkRemaps(want.slice(0, 1), [40], join(dir, 'stage2'), 999, join(dir, 'proc'));
  assert.deepEqual(capped.staged, []);
  assert.match(capped.missing[0] ?? '', /over the 999-byte cap/);
});
