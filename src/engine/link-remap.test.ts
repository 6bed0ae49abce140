// Link remaps for the restore check (link-remap.ts): which files the images name, and their copies from task fds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { KIND, encodeImage } from './images.ts';
import { fd_types, file_entrySchema } from './criu-pb/fdinfo_pb.ts';
import type { file_entry } from './criu-pb/fdinfo_pb.ts';
import { remap_file_path_entrySchema, remap_type } from './criu-pb/remap-file-path_pb.ts';
import type { remap_file_path_entry } from './criu-pb/remap-file-path_pb.ts';
import { linkRemapsOf, readLinkRemaps, safeRelative, stageLinkRemaps } from './link-remap.ts';

const regFile = (id: number, name: string): file_entry =>
  create(file_entrySchema, { type: fd_types.REG, id, reg: { id, name, flags: 0, pos: 0n, fown: { uid: 0, euid: 0, signum: 0, pidType: 0, pid: 0 } } });

const files: file_entry[] = [
  regFile(7, '/data/app.log'),
  regFile(13, '/data/link_remap.13'),
  regFile(8, '/tmp/gone'),
  regFile(9, '/tmp/gone.ghost'),
  create(file_entrySchema, { type: fd_types.INETSK, id: 20 }), // a socket: not a regular file
];
const remaps: remap_file_path_entry[] = [
  create(remap_file_path_entrySchema, { origId: 7, remapId: 13, remapType: remap_type.LINKED }),
  create(remap_file_path_entrySchema, { origId: 8, remapId: 9, remapType: remap_type.GHOST }), // carried in the images already
];

void test('linkRemapsOf: the linked remaps, by name', () => {
  assert.deepEqual(linkRemapsOf(files, remaps), [{ origName: '/data/app.log', remapName: '/data/link_remap.13' }]);
  // an entry without remap_type is a linked one
  assert.equal(linkRemapsOf(files, [create(remap_file_path_entrySchema, { origId: 7, remapId: 13 })]).length, 1);
});

void test('readLinkRemaps: none without remap-fpath.img; read from the image files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mp-lr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  assert.deepEqual(await readLinkRemaps(dir), []);
  await writeFile(join(dir, 'files.img'), encodeImage({ kind: KIND.files, entries: files.map((message) => ({ message })) }));
  await writeFile(join(dir, 'remap-fpath.img'), encodeImage({ kind: KIND.remapFpath, entries: remaps.map((message) => ({ message })) }));
  assert.deepEqual(await readLinkRemaps(dir), [{ origName: '/data/app.log', remapName: '/data/link_remap.13' }]);
  // a files.img of another kind is refused
  await writeFile(join(dir, 'files.img'), encodeImage({ kind: KIND.remapFpath, entries: remaps.map((message) => ({ message })) }));
  await assert.rejects(readLinkRemaps(dir));
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
