// cgroup.img: properties with their controllers and folders, and the freeze state dropped through the schema.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { CGROUP_MAGIC, decodeCgroupProps, dropFreezeState, freezeStates, imagesWithoutFreezeState, readCgroupProps } from './cgroup-image.ts';
import { IMG_COMMON_MAGIC, KIND, encodeImage, messagesOf } from './images.ts';
import type { Image } from './images.ts';
import { cgroup_entrySchema, cgroup_dir_entrySchema } from './criu-pb/cgroup_pb.ts';

type Dir = MessageInitShape<typeof cgroup_dir_entrySchema>;
const dir = (dirName: string, props: [string, string][], children: Dir[] = []): Dir => ({
  dirName,
  children,
  properties: props.map(([name, value]) => ({ name, value })),
});

/** A cgroup.img as runc's dump from a paused container writes it: k8s.io/<id> with freezer.state FROZEN. */
function pausedDumpImage(): Image {
  const entry = create(cgroup_entrySchema, {
    sets: [{ id: 1, ctls: [{ name: 'freezer', path: '/k8s.io/abc' }] }],
    controllers: [
      { cnames: ['freezer'], dirs: [dir('k8s.io', [], [dir('abc', [['cgroup.procs', ''], ['freezer.state', 'FROZEN']])])] },
      { cnames: ['memory'], dirs: [dir('k8s.io', [], [dir('abc', [['memory.limit_in_bytes', '1048576']])])] },
      { cnames: [''], dirs: [dir('k8s.io', [], [dir('abc', [['cgroup.freeze', '1'], ['cgroup.type', 'domain']])])] },
    ],
  });
  return { kind: KIND.cgroup, entries: [{ message: entry }] };
}

void test('cgroup properties decode with their controllers and folders', () => {
  const props = decodeCgroupProps(pausedDumpImage());
  assert.deepEqual(
    props.map((p) => `${p.controllers.join(',')}|${p.dir}|${p.name}=${p.value}`),
    ['freezer|k8s.io/abc|cgroup.procs=', 'freezer|k8s.io/abc|freezer.state=FROZEN', 'memory|k8s.io/abc|memory.limit_in_bytes=1048576', '|k8s.io/abc|cgroup.freeze=1', '|k8s.io/abc|cgroup.type=domain'],
  );
  assert.deepEqual(freezeStates(props), ['freezer.state=FROZEN', 'cgroup.freeze=1']);
});

void test('dropping the freeze state keeps every other property and the set entries', () => {
  const img = pausedDumpImage();
  const { img: out, dropped } = dropFreezeState(img);
  assert.equal(dropped, 2);
  assert.deepEqual(freezeStates(decodeCgroupProps(out)), []);
  assert.deepEqual(
    decodeCgroupProps(out).map((p) => p.name),
    decodeCgroupProps(img).map((p) => p.name).filter((n) => n !== 'freezer.state' && n !== 'cgroup.freeze'),
  );
  assert.equal(out.kind, img.kind);
  const head = encodeImage(out).subarray(0, 8);
  assert.deepEqual([head.readUInt32LE(0), head.readUInt32LE(4)], [IMG_COMMON_MAGIC, CGROUP_MAGIC]);
  assert.deepEqual(decodeCgroupProps(img).length, 5, 'the input is not modified');
  assert.deepEqual(messagesOf(out, cgroup_entrySchema)[0]?.sets.map((s) => [s.id, s.ctls.map((c) => c.path)]), [[1, ['/k8s.io/abc']]]);
  // Nothing to drop: the very same image.
  const again = dropFreezeState(out);
  assert.equal(again.dropped, 0);
  assert.equal(again.img, out);
});

void test('images without the freeze state: the original untouched, a linked folder with a new cgroup.img', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mp-cgimg-'));
  try {
    const images = join(dir, 'images');
    await mkdir(images);
    const original = encodeImage(pausedDumpImage());
    await writeFile(join(images, 'cgroup.img'), original);
    await writeFile(join(images, 'pages-1.img'), 'pages');
    const r = await imagesWithoutFreezeState(images, join(dir, 'view'));
    assert.equal(r.dir, join(dir, 'view'));
    assert.deepEqual(r.dropped, ['freezer.state=FROZEN', 'cgroup.freeze=1']);
    assert.deepEqual(await readFile(join(images, 'cgroup.img')), original, 'the checkpoint is not modified');
    assert.deepEqual(freezeStates(await readCgroupProps(r.dir)), []);
    assert.equal((await stat(join(r.dir, 'pages-1.img'))).ino, (await stat(join(images, 'pages-1.img'))).ino, 'hard-linked, not copied');
    // Without a freeze state (or without cgroup.img) the images are used as they are.
    const plain = join(dir, 'plain');
    await mkdir(plain);
    assert.deepEqual(await imagesWithoutFreezeState(plain, join(dir, 'view2')), { dir: plain, dropped: [] });
    await writeFile(join(plain, 'cgroup.img'), encodeImage(dropFreezeState(pausedDumpImage()).img));
    assert.deepEqual(await imagesWithoutFreezeState(plain, join(dir, 'view3')), { dir: plain, dropped: [] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
