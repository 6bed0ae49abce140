import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CGROUP_MAGIC, decodeCgroupProps, dropFreezeState, freezeStates, imagesWithoutFreezeState, readCgroupProps } from './cgroup-image.ts';
import { IMG_COMMON_MAGIC, encodeImage, encodeMessage } from './images.ts';
import type { ImageFile, PbField } from './images.ts';

const str = (no: number, s: string): PbField => ({ no, wire: 2, v: Buffer.from(s) });
const msg = (no: number, fields: PbField[]): PbField => ({ no, wire: 2, v: encodeMessage(fields) });
const prop = (name: string, value: string): PbField => msg(3, [str(1, name), str(2, value)]);

/** A cgroup.img as runc's dump from a paused container writes it: k8s.io/<id> with freezer.state FROZEN. */
function pausedDumpImage(): ImageFile {
  const dir = (name: string, props: PbField[], children: PbField[] = []): PbField => msg(2, [str(1, name), ...children, ...props]);
  const freezer = msg(2, [str(1, 'freezer'), dir('k8s.io', [], [dir('abc', [prop('cgroup.procs', ''), prop('freezer.state', 'FROZEN')])])]);
  const memory = msg(2, [str(1, 'memory'), dir('k8s.io', [], [dir('abc', [prop('memory.limit_in_bytes', '1048576')])])]);
  const unified = msg(2, [str(1, ''), dir('k8s.io', [], [dir('abc', [prop('cgroup.freeze', '1'), prop('cgroup.type', 'domain')])])]);
  const sets = msg(1, [{ no: 1, wire: 0, v: 1n }, msg(2, [str(1, 'freezer'), str(2, '/k8s.io/abc')])]);
  return { head: [IMG_COMMON_MAGIC, CGROUP_MAGIC], entries: [encodeMessage([sets, freezer, memory, unified])] };
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
  assert.deepEqual(out.head, img.head);
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
