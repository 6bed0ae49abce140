import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CTR_TIMEOUT_MS, RuntimeSocketError, RuntimeTimeoutError, ctrBaseArgs, ctrOk, ctrOperand, ctrRun, runtimeSocketProblem } from './ctr.ts';
import type { RunResult, Runner } from './exec.ts';

const result = (r: Partial<RunResult>): RunResult => ({ exitCode: 0, signal: null, stdout: '', stderr: '', timedOut: false, durationMs: 1, ...r });

void test('operands: refs, digests and keys pass; anything option-like or odd is refused', () => {
  for (const ok of ['docker.io/library/busybox:1.36', 'sha256:' + 'a'.repeat(64), 'reg:5000/x/y@sha256:' + 'b'.repeat(64), 'k8s.io']) {
    assert.equal(ctrOperand('ref', ok), ok);
  }
  for (const bad of ['-rm', '--address=/x', '', 'a b', 'a\nb', 'x;y', '../x$']) {
    assert.throws(() => ctrOperand('image reference', bad), /image reference .* is not a valid containerd name/);
  }
  assert.deepEqual(ctrBaseArgs({ address: '/s', namespace: 'k8s.io' }), ['--address', '/s', '--namespace', 'k8s.io', '--connect-timeout', '2s']);
  assert.throws(() => ctrBaseArgs({ address: '/s', namespace: '-x' }), /containerd namespace/);
});

void test('a runtime socket is looked at before anything is run', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mp-ctr-'));
  const srv = createServer();
  try {
    const sock = join(dir, 'c.sock');
    await new Promise<void>((r) => srv.listen(sock, r));
    const file = join(dir, 'f');
    await writeFile(file, '');
    assert.equal(runtimeSocketProblem(sock), undefined);
    assert.equal(runtimeSocketProblem(join(dir, 'none')), 'it does not exist');
    assert.equal(runtimeSocketProblem(file), 'it is not a socket');
    assert.equal(runtimeSocketProblem('rel.sock'), 'not an absolute path');
    let calls = 0;
    const runner: Runner = () => {
      calls++;
      return Promise.resolve(result({ stdout: 'out' }));
    };
    await assert.rejects(ctrRun({ address: join(dir, 'none'), namespace: 'k8s.io' }, ['images', 'ls'], 'images ls', { runner }), (e: unknown) => {
      assert.ok(e instanceof RuntimeSocketError);
      assert.equal(e.address, join(dir, 'none'));
      assert.match(e.message, /no containerd socket at .*none \(it does not exist\)/);
      return true;
    });
    assert.equal(calls, 0, 'nothing ran');
    assert.equal(await ctrOk({ address: sock, namespace: 'k8s.io' }, ['images', 'ls'], 'images ls', { runner }), 'out');
  } finally {
    srv.close();
    await rm(dir, { recursive: true, force: true });
  }
});

void test('every ctr call is bounded, and its timeout names what was waited for', async () => {
  const ep = { address: '/run/c.sock', namespace: 'k8s.io' };
  const socketProblem = (): undefined => undefined;
  const seen: (number | undefined)[] = [];
  const slow: Runner = (_c, _a, o) => {
    seen.push(o?.timeoutMs);
    return Promise.resolve(result({ exitCode: null, signal: 'SIGKILL', timedOut: true }));
  };
  await assert.rejects(ctrRun(ep, ['snapshots', 'view'], 'snapshots view', { runner: slow, socketProblem }), (e: unknown) => {
    assert.ok(e instanceof RuntimeTimeoutError);
    assert.equal(e.message, `containerd at /run/c.sock did not answer \`ctr snapshots view\` within ${CTR_TIMEOUT_MS / 1000} s`);
    return true;
  });
  assert.deepEqual(seen, [CTR_TIMEOUT_MS]);
  const dead: Runner = () => Promise.resolve(result({ exitCode: 1, stderr: 'ctr: failed to dial "/x": context deadline exceeded' }));
  await assert.rejects(ctrRun(ep, ['images', 'ls'], 'images ls', { runner: dead, socketProblem }), /did not accept a connection within 2s \(ctr images ls\)/);
  const fails: Runner = () => Promise.resolve(result({ exitCode: 1, stderr: 'ctr: image "x": not found\n' }));
  await assert.rejects(ctrOk(ep, ['images', 'ls'], 'images ls', { runner: fails, socketProblem }), /^Error: ctr images ls failed: ctr: image "x": not found$/);
});
