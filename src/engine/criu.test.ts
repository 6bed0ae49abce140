import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunOptions, RunResult, Runner } from './exec.ts';
import { compareVersions, criuFeatures, criuTooOld, minCriuVersion, parseCriuVersion, resolveCriu } from './criu.ts';

function result(exitCode: number, stdout = '', extra: Partial<RunResult> = {}): RunResult {
  return { exitCode, signal: null, stdout, stderr: '', timedOut: false, durationMs: 1, ...extra };
}

void test('parse criu --version', () => {
  assert.equal(parseCriuVersion('Version: 4.2.1\nGitID: v4.2.1\n'), '4.2.1');
  assert.equal(parseCriuVersion('Version: 3.17\n'), '3.17');
  assert.equal(parseCriuVersion('nonsense'), undefined);
});

void test('compareVersions and criuTooOld', () => {
  assert.equal(compareVersions('4.2.0', '4.2'), 0);
  assert.equal(compareVersions('4.10.0', '4.2.0'), 1);
  assert.equal(compareVersions('3.17.1', '4.2.0'), -1);
  assert.equal(criuTooOld('4.2.0'), undefined);
  assert.equal(criuTooOld('4.2.1'), undefined);
  const old = criuTooOld('4.1.1', 'node b');
  assert.equal(old?.code, 'CRIUTooOld');
  assert.match(old?.message ?? '', /node b is 4\.1\.1.*4\.2\.0/);
  assert.match(old?.hint ?? '', /4\.2\.0 or newer/);
  assert.equal(criuTooOld('')?.code, 'CRIUTooOld');
});

void test('MIGPROBE_CRIU_MIN can raise the minimum, never lower it', () => {
  assert.equal(minCriuVersion({}), '4.2.0');
  assert.equal(minCriuVersion({ MIGPROBE_CRIU_MIN: '4.3' }), '4.3');
  assert.equal(minCriuVersion({ MIGPROBE_CRIU_MIN: '3.17' }), '4.2.0');
  assert.equal(minCriuVersion({ MIGPROBE_CRIU_MIN: 'latest' }), '4.2.0');
  assert.match(criuTooOld('4.2.1', 'this node', '4.3')?.message ?? '', /needs 4\.3 or newer/);
});

void test('resolveCriu uses MIGPROBE_CRIU and bounds the call', async () => {
  const calls: { cmd: string; args: readonly string[]; opts: RunOptions | undefined }[] = [];
  const runner: Runner = (cmd, args, opts) => {
    calls.push({ cmd, args, opts });
    return Promise.resolve(result(0, 'Version: 4.2.1\n'));
  };
  const r = await resolveCriu({ MIGPROBE_CRIU: '/opt/criu/criu' }, runner);
  assert.deepEqual(r, { path: '/opt/criu/criu', version: '4.2.1' });
  assert.deepEqual(calls[0]?.args, ['--version']);
  assert.ok((calls[0]?.opts?.timeoutMs ?? 0) > 0);
  await assert.rejects(resolveCriu({ MIGPROBE_CRIU: 'criu', PATH: '/nonexistent' }, runner), /not on PATH/);
  const failing: Runner = () => Promise.resolve(result(1, '', { stderr: 'vdso: Unexpected rt vDSO area bounds' }));
  await assert.rejects(resolveCriu({ MIGPROBE_CRIU: '/x/criu' }, failing), /vDSO/);
});

void test('criuFeatures maps exit codes, treats timeouts as unsupported', async () => {
  const runner: Runner = (_cmd, args) => {
    const f = args[2];
    if (f === 'timens') return Promise.resolve(result(0));
    if (f === 'uffd') return Promise.resolve(result(null as unknown as number, '', { timedOut: true, exitCode: null }));
    return Promise.resolve(result(1));
  };
  const r = await criuFeatures('/x/criu', runner, ['timens', 'uffd', 'tun']);
  assert.deepEqual(r, { timens: true, uffd: false, tun: false });
});
