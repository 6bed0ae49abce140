// memberProblem (pure) and receiveBundle on crafted archives: only regular files and folders at plain relative
// paths are written, within the caps; a refusal names the member and the reason, and a valid bundle unpacks.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { gzTarOf, tarOf, type CraftedMember } from '../../test/agent/crafted-bundle.ts';
import { memberProblem, receiveBundle } from './extract.ts';

const limits = { maxEntries: 10, maxUnpackedBytes: 64 * 1024 };
const none = { entries: 0, bytes: 0 };

test('memberProblem admits files and folders at plain relative paths, and nothing else', () => {
  assert.deepEqual(memberProblem({ path: './', type: 'Directory', size: 0 }, none, limits), { path: '.' });
  assert.deepEqual(memberProblem({ path: './images/', type: 'Directory', size: 0 }, none, limits), { path: 'images' });
  assert.deepEqual(memberProblem({ path: './images/core-1.img', type: 'File', size: 10 }, none, limits), { path: 'images/core-1.img' });
  const refusal = (m: { path: string; type: string; size: number }, seen = none): string => {
    const r = memberProblem(m, seen, limits);
    assert.ok('problem' in r, JSON.stringify(m));
    assert.ok(r.hint.length > 0);
    return r.problem;
  };
  assert.match(refusal({ path: 'a', type: 'SymbolicLink', size: 0 }), /is a symbolic link/);
  assert.match(refusal({ path: 'a', type: 'Link', size: 0 }), /is a hard link/);
  assert.match(refusal({ path: 'a', type: 'CharacterDevice', size: 0 }), /character device node/);
  assert.match(refusal({ path: 'a', type: 'BlockDevice', size: 0 }), /block device node/);
  assert.match(refusal({ path: 'a', type: 'FIFO', size: 0 }), /is a FIFO/);
  assert.match(refusal({ path: 'a', type: 'SparseFile', size: 0 }), /of type SparseFile/);
  assert.match(refusal({ path: '/etc/cron.d/x', type: 'File', size: 0 }), /has an absolute path/);
  assert.match(refusal({ path: '../x', type: 'File', size: 0 }), /has a '\.\.' in its path/);
  assert.match(refusal({ path: 'images/../../x', type: 'File', size: 0 }), /has a '\.\.'/);
  assert.match(refusal({ path: 'a//b', type: 'File', size: 0 }), /empty or '\.' part/);
  assert.match(refusal({ path: 'a\\b', type: 'File', size: 0 }), /backslash/);
  assert.match(refusal({ path: Array.from({ length: 17 }, () => 'd').join('/'), type: 'Directory', size: 0 }), /17 folders deep/);
  assert.match(refusal({ path: 'a', type: 'File', size: 0 }, { entries: 10, bytes: 0 }), /more than 10 members/);
  assert.match(refusal({ path: 'a', type: 'File', size: 1 + limits.maxUnpackedBytes }), /past 65536 unpacked bytes/);
});

async function receive(t: { after(fn: () => Promise<void>): void }, gz: Buffer, sha?: string) {
  const root = await mkdtemp(join(tmpdir(), 'extract-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dest = join(root, 'bundle');
  await mkdir(dest);
  const sha256 = sha ?? createHash('sha256').update(gz).digest('hex');
  const run = receiveBundle(Readable.from([gz]), dest, { declaredBytes: gz.length, maxBundleBytes: 1 << 20, sha256, limits, timeoutMs: 10_000 });
  return { run, dest };
}

test('receiveBundle unpacks files and folders as a GNU tar of a folder names them', async (t) => {
  const { gz } = gzTarOf([
    { path: './', type: 'Directory' },
    { path: './images/', type: 'Directory' },
    { path: './images/core-1.img', body: 'core' },
    { path: './manifest.json', body: '{}' },
  ]);
  const { run, dest } = await receive(t, gz);
  const got = await run;
  assert.equal(got.entries, 4);
  assert.deepEqual((await readdir(dest)).sort(), ['images', 'manifest.json']);
  assert.equal(await readFile(join(dest, 'images', 'core-1.img'), 'utf8'), 'core');
  assert.equal((await lstat(join(dest, 'images', 'core-1.img'))).mode & 0o777, 0o600);
});

const refusedCases: [string, CraftedMember[], RegExp][] = [
  ['a .. member', [{ path: './images/../../escaped', body: 'x' }], /member "\.\/images\/\.\.\/\.\.\/escaped" has a '\.\.' in its path/],
  ['an absolute member', [{ path: '/tmp/migprobe-extract-escaped', body: 'x' }], /member "\/tmp\/migprobe-extract-escaped" has an absolute path/],
  ['a symlink', [{ path: 'images', type: 'SymbolicLink', linkpath: '/etc' }], /member "images" is a symbolic link/],
  ['a hard link', [{ path: 'a', body: 'x' }, { path: 'b', type: 'Link', linkpath: 'a' }], /member "b" is a hard link/],
  ['a device node', [{ path: 'sda', type: 'BlockDevice', devmaj: 8, devmin: 0 }], /member "sda" is a block device node/],
  ['a duplicate member', [{ path: 'a', body: 'x' }, { path: 'a', body: 'y' }], /member "a" appears twice/],
  ['too many members', Array.from({ length: 11 }, (_, i) => ({ path: `f${i}`, body: 'x' })), /more than 10 members/],
];
for (const [what, members, why] of refusedCases) {
  test(`receiveBundle refuses ${what}`, async (t) => {
    const { run } = await receive(t, gzTarOf(members).gz);
    await assert.rejects(run, (e: Error & { code?: string }) => e.code === 'BundleRefused' && why.test(e.message) && /\(.+\)$/.test(e.message));
  });
}

test('receiveBundle refuses gzip bombs while inflating them, before they are written', async (t) => {
  // A small gzip holding one 20 MiB file: its header's size is refused before a byte of it lands.
  const oneFile = gzTarOf([{ path: 'big', body: Buffer.alloc(20 * 1024 * 1024) }]).gz;
  assert.ok(oneFile.length < 64 * 1024, `${oneFile.length} bytes compressed`);
  const a = await receive(t, oneFile);
  await assert.rejects(a.run, (e: Error & { code?: string }) => e.code === 'BundleRefused' && /member "big" of 20971520 bytes takes the bundle past 65536 unpacked bytes/.test(e.message));
  assert.deepEqual(await readdir(a.dest), []);
  // 20 MiB of zero blocks (no member at all): the inflated stream itself is capped.
  const zeros = gzipSync(Buffer.alloc(20 * 1024 * 1024), { level: 9 });
  const b = await receive(t, zeros);
  await assert.rejects(b.run, (e: Error & { code?: string }) => e.code === 'BundleRefused' && /unpacks to more than 65536 bytes/.test(e.message));
  assert.deepEqual(await readdir(b.dest), []);
});

test('receiveBundle refuses a body whose sha256 differs, and one that is not gzip', async (t) => {
  const { gz } = gzTarOf([{ path: 'a', body: 'x' }]);
  const bad = await receive(t, gz, 'b'.repeat(64));
  await assert.rejects(bad.run, /corrupted in transit/);
  const plain = await receive(t, tarOf([{ path: 'a', body: 'x' }]));
  await assert.rejects(plain.run, (e: Error & { code?: string }) => e.code === 'BundleRefused' && /not valid gzip/.test(e.message));
});

test('receiveBundle: a body cut in the middle of a member ends at once, with no file left open', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'extract-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const { gz, sha256 } = gzTarOf([{ path: 'images/pages-1.img', body: randomBytes(1 << 20) }]);
  const body = new PassThrough();
  const run = receiveBundle(body, root, { declaredBytes: gz.length, maxBundleBytes: 1 << 22, sha256, limits: { maxEntries: 10, maxUnpackedBytes: 1 << 22 }, timeoutMs: 60_000 });
  body.write(gz.subarray(0, gz.length >> 1));
  setTimeout(() => body.destroy(new Error('peer went away')), 200);
  const t0 = Date.now();
  await assert.rejects(run, /receiving the image set failed: peer went away/);
  assert.ok(Date.now() - t0 < 5000, `ended after ${Date.now() - t0} ms`);
});
