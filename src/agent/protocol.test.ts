import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerdIdOf, decodeHeaderJson, encodeHeaderJson, isProbeUid, parseRestoreCheckRequest, parseStartRequest, sanitizeReason, ValidationError } from './protocol.ts';
import { composeVerdict } from './compose.ts';

const opts = { tcpEstablished: false, fileLocks: false, extUnixSockets: false, ghostLimitBytes: 1048576, freezeBudgetMs: 2000, timeoutMs: 60000 };
const good = {
  namespace: 'default',
  podName: 'web-0',
  containerName: 'app',
  containerId: 'abc123def',
  mode: 'Check',
  options: opts,
  target: { nodeName: 'node-b', url: 'http://127.0.0.3:9443' },
};

test('parseStartRequest accepts a well-formed request', () => {
  const r = parseStartRequest(good);
  assert.equal(r.podName, 'web-0');
  assert.equal(r.checkpointPath, undefined);
});

test('parseStartRequest rejects malformed inputs', () => {
  const bad: unknown[] = [
    null,
    [],
    { ...good, namespace: 'Bad_NS' },
    { ...good, containerId: '../etc' },
    { ...good, containerId: 'a'.repeat(200) },
    { ...good, mode: 'Migrate' },
    { ...good, options: { ...opts, ghostLimitBytes: -1 } },
    { ...good, options: { ...opts, freezeBudgetMs: 1.5 } },
    { ...good, options: { ...opts, tcpEstablished: 'yes' } },
    { ...good, target: { nodeName: 'node-b', url: 'file:///etc/passwd' } },
    { ...good, target: { nodeName: 'node-b', url: 'http://127.0.0.3:9443/x?y' } },
    { ...good, mode: 'RestoreOnly' },
    { ...good, mode: 'RestoreOnly', checkpointPath: '/var/lib/../../etc' },
    { ...good, mode: 'RestoreOnly', checkpointPath: 'relative/path' },
  ];
  for (const b of bad) assert.throws(() => parseStartRequest(b), ValidationError, JSON.stringify(b));
});

test('RestoreOnly keeps the checkpoint path', () => {
  const r = parseStartRequest({ ...good, mode: 'RestoreOnly', checkpointPath: '/var/lib/kubelet/checkpoints/x.tar' });
  assert.equal(r.checkpointPath, '/var/lib/kubelet/checkpoints/x.tar');
});

test('probe UIDs and containerd IDs', () => {
  assert.ok(isProbeUid('0f8fad5b-d9cb-469f-a165-70867728950e'));
  assert.ok(!isProbeUid('0f8fad5b-d9cb-469f-a165-70867728950e/..'));
  assert.equal(containerdIdOf('containerd://abc'), 'abc');
  assert.equal(containerdIdOf('docker://abc'), undefined);
  assert.equal(containerdIdOf('containerd://a/b'), undefined);
});

test('header JSON round-trips', () => {
  assert.deepEqual(decodeHeaderJson(encodeHeaderJson({ a: 'é', b: [1] })), { a: 'é', b: [1] });
});

test('sanitizeReason drops unknown codes and bounds messages', () => {
  assert.equal(sanitizeReason({ code: 'NotACode', message: 'x' }, 'restore'), undefined);
  const r = sanitizeReason({ code: 'RestoreFailed', message: 'x'.repeat(5000), phase: 'bogus' }, 'restore');
  assert.equal(r?.phase, 'restore');
  assert.equal(r?.message.length, 4096);
});

test('composeVerdict merges the two halves', () => {
  const v = composeVerdict({
    dump: { reasons: [], timings: { preflightMs: 3, freezeMs: 50, dumpMs: 200 }, sizes: { imageBytes: 1000, workloadRssBytes: 5000 }, criuVersion: '4.2.1', bundleDir: '/x' },
    transfer: { ms: 20, shippedBytes: 300 },
    restore: {
      reasons: [{ code: 'RootfsMismatch', message: 'bin/busybox differs', hint: 'h', phase: 'compat' }],
      timings: { restoreMs: 400 },
      criuVersion: '4.2.1',
      facts: { hostname: 'b', arch: 'x86_64', kernelRelease: '6.18', criuVersion: '4.2.1', criuFeatures: {}, memAvailableBytes: 1, cpu: { vendor: 'v', model: 'm', flags: [] } },
    },
    totalMs: 700,
  });
  assert.equal(v.migratable, false);
  assert.deepEqual(v.reasons.map((r) => r.code), ['RootfsMismatch']);
  assert.deepEqual(v.timings, { preflightMs: 3, freezeMs: 50, dumpMs: 200, transferMs: 20, restoreMs: 400, totalMs: 700 });
  assert.deepEqual(v.sizes, { imageBytes: 1000, workloadRssBytes: 5000, shippedBytes: 300 });
  assert.deepEqual(v.criu, { source: '4.2.1', target: '4.2.1' });
});

test('parseRestoreCheckRequest: a restore-only archive is named by a file name (the kubelet\'s carry a time with colons), never a path', () => {
  const base = { namespace: 'default', podName: 'web-0', sourceNodeName: 'node-a', options: opts };
  const named = (name: string): unknown => ({ ...base, restoreOnly: { kind: 'archive', name } });
  const kubelet = 'checkpoint-web-7d4b9c_default-app-2026-12-02T10:43:00Z.tar';
  assert.deepEqual(parseRestoreCheckRequest(named(kubelet)).restoreOnly, { kind: 'archive', name: kubelet });
  for (const bad of ['../x.tar', 'a/b.tar', '-rf.tar', '.hidden', '', 'x'.repeat(256)]) {
    assert.throws(() => parseRestoreCheckRequest(named(bad)), ValidationError, bad);
  }
});
