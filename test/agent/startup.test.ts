// The agent checks the real CRIU at start-up and refuses to serve with one below the minimum, or with a
// --containerd-address that names no socket.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { testbed } from '../../testbed/index.ts';

const MAIN = join(import.meta.dirname, '../../src/agent/main.ts');

test('the agent refuses to start when the CRIU it finds is older than required', async (t) => {
  const tb = await testbed();
  const work = mkdtempSync(join(tmpdir(), 'agent-startup-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const args = [MAIN, '--node-name', 'node-x', '--listen', '127.0.0.1:0', '--work-dir', work, '--kubeconfig', tb.kubeconfigPath,
    '--allow-service-account', 'sys/ctl', '--token-file', join(work, 'no-token')];
  // The real CRIU (4.2.x), with the minimum raised above it as an operator may: refused, with the reason.
  const r = await execa(process.execPath, args, { env: { ...process.env, MIGPROBE_CRIU: tb.criu, MIGPROBE_CRIU_MIN: '99.0' }, reject: false, timeout: 30_000 });
  assert.notEqual(r.exitCode, 0);
  assert.match(`${r.stdout}${r.stderr}`, /CRIU on this node is 4\.\d+\.\d+; migprobe needs 99\.0 or newer/);
  assert.doesNotMatch(`${r.stdout}${r.stderr}`, /agent listening/);
  // A CRIU that is not there at all: refused too.
  const missing = await execa(process.execPath, args, { env: { ...process.env, MIGPROBE_CRIU: join(work, 'no-criu') }, reject: false, timeout: 30_000 });
  assert.notEqual(missing.exitCode, 0);
  assert.doesNotMatch(`${missing.stdout}${missing.stderr}`, /agent listening/);
});

test('the agent refuses to start, at once and by name, when --containerd-address names no socket', async (t) => {
  const tb = await testbed();
  const work = mkdtempSync(join(tmpdir(), 'agent-startup-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const args = [MAIN, '--node-name', 'node-x', '--listen', '127.0.0.1:0', '--work-dir', work, '--kubeconfig', tb.kubeconfigPath,
    '--allow-service-account', 'sys/ctl', '--token-file', join(work, 'no-token'), '--containerd-address', join(work, 'no.sock')];
  const started = Date.now();
  const r = await execa(process.execPath, args, { env: { ...process.env, MIGPROBE_CRIU: tb.criu }, reject: false, timeout: 30_000 });
  assert.notEqual(r.exitCode, 0);
  assert.match(`${r.stdout}${r.stderr}`, /--containerd-address \S+no\.sock: no containerd socket there \(it does not exist\)/);
  assert.doesNotMatch(`${r.stdout}${r.stderr}`, /agent listening/);
  assert.ok(Date.now() - started < 10_000, `refused in ${Date.now() - started} ms`);
});
