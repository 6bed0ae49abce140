// The committed code in ./criu-pb is what hack/gen-proto.sh generates from proto/criu: it cannot drift from
// the vendored schema (or be edited by hand) without this failing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const repo = join(import.meta.dirname, '..', '..');
const committed = join(import.meta.dirname, 'criu-pb');

void test('src/engine/criu-pb is exactly what hack/gen-proto.sh generates from proto/criu', async (t) => {
  const tmp = await mkdtemp(join(tmpdir(), 'criu-pb-'));
  t.after(async () => await rm(tmp, { recursive: true, force: true }));
  const out = join(tmp, 'criu-pb');
  await promisify(execFile)('bash', [join(repo, 'hack', 'gen-proto.sh'), out], { cwd: repo, timeout: 120_000 });
  const names = (await readdir(committed)).sort();
  assert.deepEqual((await readdir(out)).sort(), names, 'the same files (run hack/gen-proto.sh and commit the result)');
  const protos = (await readdir(join(repo, 'proto', 'criu'))).filter((n) => n.endsWith('.proto'));
  assert.equal(names.length, protos.length, 'one generated file per vendored .proto');
  for (const n of names) {
    assert.equal(await readFile(join(out, n), 'utf8'), await readFile(join(committed, n), 'utf8'), `${n} differs: run hack/gen-proto.sh and commit the result`);
  }
});
