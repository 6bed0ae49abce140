import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerdIdOf, decodeHeaderJson, encodeHeaderJson, isProbeUid, parseRestoreCheckRequest, parseStartRequest, sanitizeReason, ValidationError } from './protocol.ts';

const opts = { tcpEstablished: false, fileLocks: false, extUnixSockets: false, ghostLimitBytes: 1048576, freezeBudgetMs: 2000, timeoutMs: 60000 };
const good = {
  protocol: 2,
  probeName: 'web-to-b',
  namespace: 'default',
  podName: 'web-0',
  containerName: 'app',
  containerId: 'abc123def',
  target: { nodeName: 'node-b' },
};

test('parseStartRequest accepts a well-formed request; a caller-supplied target URL, mode or options are dropped', () => {
  const r = parseStartRequest({ ...good, mode: 'RestoreOnly', checkpointPath: '/etc', options: {}, target: { nodeName: 'node-b', url: 'http://10.0.0.66:1' } });
  assert.deepEqual(r, good);
});

test('parseStartRequest rejects malformed inputs', () => {
  const bad: unknown[] = [
    null,
    [],
    { ...good, namespace: 'Bad_NS' },
    { ...good, probeName: undefined },
    { ...good, probeName: '../x' },
    { ...good, containerId: '../etc' },
    { ...good, containerId: 'a'.repeat(200) },
    { ...good, target: { url: 'http://127.0.0.3:9443' } },
  ];
  for (const b of bad) assert.throws(() => parseStartRequest(b), ValidationError, JSON.stringify(b));
});

test('a start request of protocol 1 (an older controller, with target.url) is refused, saying what to do', () => {
  const { protocol: _p, probeName: _n, ...v1 } = good;
  assert.throws(() => parseStartRequest({ ...v1, mode: 'Check', target: { nodeName: 'node-b', url: 'http://127.0.0.3:9443' } }), /protocol 1: this agent speaks protocol 2 .*run the controller of the same migprobe version/);
});

test('options (on the restore-check request; a start takes them from the live probe): nonLazyMemoryLimitBytes and the asked CRIU options pass through, malformed values refused', () => {
  const base = { namespace: 'default', podName: 'web-0', sourceNodeName: 'node-a' };
  assert.equal(parseRestoreCheckRequest({ ...base, options: opts }).options.nonLazyMemoryLimitBytes, undefined, 'absent: the engine default applies');
  assert.equal(parseRestoreCheckRequest({ ...base, options: { ...opts, nonLazyMemoryLimitBytes: 4096 } }).options.nonLazyMemoryLimitBytes, 4096);
  const asked = { ...opts, tcpClose: true, tcpSkipInFlight: true, linkRemap: false };
  assert.deepEqual(parseRestoreCheckRequest({ ...base, options: asked }).options, asked);
  for (const bad of [{ ghostLimitBytes: -1 }, { freezeBudgetMs: 1.5 }, { nonLazyMemoryLimitBytes: -1 }, { nonLazyMemoryLimitBytes: '64M' }, { tcpEstablished: 'yes' }, { tcpClose: 1 }, { linkRemap: 'true' }]) {
    assert.throws(() => parseRestoreCheckRequest({ ...base, options: { ...opts, ...bad } }), ValidationError, JSON.stringify(bad));
  }
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
