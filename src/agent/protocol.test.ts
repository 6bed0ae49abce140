import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerdIdOf, decodeHeaderJson, encodeHeaderJson, isProbeUid, parseRestoreCheckRequest, parseStartRequest, sanitizeReason, ValidationError } from './protocol.ts';

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
  assert.equal(r.options.nonLazyMemoryLimitBytes, undefined, 'absent: the engine default applies');
  assert.equal(parseStartRequest({ ...good, options: { ...opts, nonLazyMemoryLimitBytes: 4096 } }).options.nonLazyMemoryLimitBytes, 4096);
  assert.deepEqual(r.options, opts);
  const asked = { ...opts, tcpClose: true, tcpSkipInFlight: true, linkRemap: false };
  assert.deepEqual(parseStartRequest({ ...good, options: asked }).options, asked);
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
    { ...good, options: { ...opts, nonLazyMemoryLimitBytes: -1 } },
    { ...good, options: { ...opts, nonLazyMemoryLimitBytes: '64M' } },
    { ...good, options: { ...opts, tcpEstablished: 'yes' } },
    { ...good, options: { ...opts, tcpClose: 1 } },
    { ...good, options: { ...opts, linkRemap: 'true' } },
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

test('parseRestoreCheckRequest: a restore-only archive is named by a file name (the kubelet\'s carry a time with colons), never a path', () => {
  const base = { namespace: 'default', podName: 'web-0', sourceNodeName: 'node-a', options: opts };
  const named = (name: string): unknown => ({ ...base, restoreOnly: { kind: 'archive', name } });
  const kubelet = 'checkpoint-web-7d4b9c_default-app-2026-12-02T10:43:00Z.tar';
  assert.deepEqual(parseRestoreCheckRequest(named(kubelet)).restoreOnly, { kind: 'archive', name: kubelet });
  for (const bad of ['../x.tar', 'a/b.tar', '-rf.tar', '.hidden', '', 'x'.repeat(256)]) {
    assert.throws(() => parseRestoreCheckRequest(named(bad)), ValidationError, bad);
  }
});
