// The agent's HTTP server against hostile callers, on the test bed (TokenReview against its kube-apiserver):
// slowloris clients (headers dribbled, a JSON body dribbled, an upload dribbled or stalled under a caller-chosen
// timeout of an hour) are cut within the server's own bounds; a refusal (401, 403) closes the connection; a
// token for the API server's audience is refused; the token cache evicts the least recently used entry; a flood
// of new tokens gets 429 while the TokenReviews sent to the API server stay within the rate limit; connections
// beyond the cap are dropped and silent ones closed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { encodeHeaderJson } from '../../src/agent-api/protocol.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { kube } from '../../testbed/index.ts';
import { startBedAgent, workLeft, type BedAgent } from './agent-bed.ts';
import { gzTarOf } from './crafted-bundle.ts';

const UID = '6d9f4a52-1c3b-4e8e-9f00-7a1b2c3d4e5f';

interface Conn {
  sock: Socket;
  /** Everything the server sent. */
  text(): string;
  /** Resolves when the server closed the connection: ms since connect. */
  closed: Promise<number>;
}

function open(a: BedAgent): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let data = '';
    const sock = connect(a.port, a.host, () => resolve({ sock, text: () => data, closed }));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (data += d));
    sock.on('error', () => undefined);
    sock.once('error', reject);
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
  });
}

/** Writes `chunk` (or the next piece `chunk()` gives) every `everyMs` until the connection closes; returns the stopper. */
function dribble(c: Conn, chunk: string | (() => Buffer), everyMs: number): () => void {
  const iv = setInterval(() => {
    if (!c.sock.destroyed) c.sock.write(typeof chunk === 'string' ? chunk : chunk());
  }, everyMs);
  void c.closed.then(() => clearInterval(iv));
  return () => clearInterval(iv);
}

/** Waits for the close, failing the test if it does not come within `ms`. */
async function closedWithin(c: Conn, ms: number): Promise<number> {
  const r = await Promise.race([c.closed, new Promise<number>((res) => setTimeout(() => res(-1), ms))]);
  c.sock.destroy();
  assert.notEqual(r, -1, `the server kept the connection open for ${ms} ms; it sent: ${c.text().slice(0, 300)}`);
  return r;
}

const LIMITS = { headersTimeoutMs: 2000, requestTimeoutMs: 5000, bodyIdleTimeoutMs: 1500, jsonBodyTimeoutMs: 2500, timeoutCheckIntervalMs: 250 };

test('slowloris: dribbled headers, a dribbled JSON body, a dribbled or stalled upload are cut by the server bounds', async (t) => {
  const a = await startBedAgent(t, { http: LIMITS });
  const token = await a.token();

  // Headers, one line every 300 ms, never finished: cut at the headers timeout (2 s, checked every 250 ms).
  const h = await open(a);
  h.sock.write(`PUT /v1/probes/${UID} HTTP/1.1\r\nHost: agent\r\n`);
  dribble(h, 'X-Slow: 1\r\n', 300);
  const hMs = await closedWithin(h, 6000);
  assert.ok(hMs >= 1900 && hMs < 3500, `headers cut after ${hMs} ms`);

  // An authenticated PUT whose 2000-byte body comes one byte every 200 ms: cut at the JSON body bound (2.5 s).
  const j = await open(a);
  j.sock.write(`PUT /v1/probes/${UID} HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n{`);
  dribble(j, ' ', 200);
  const jMs = await closedWithin(j, 8000);
  assert.ok(jMs >= 2400 && jMs < 4500, `JSON body cut after ${jMs} ms`);

  // A peer's upload, the request naming a probe timeout of an hour: the server's own bounds apply.
  const core = a.kc;
  await kube.createRunningPod(core, { namespace: a.namespace, name: 'web', nodeName: 'agenthttp-source', containerName: 'app', containerId: 'cid-web', image: 'busybox' });
  t.after(() => kube.deletePod(core, a.namespace, 'web'));
  const hdr = encodeHeaderJson({ namespace: a.namespace, podName: 'web', sourceNodeName: 'agenthttp-source', options: { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 3_600_000 } });
  const upload = `POST /v1/probes/${UID}/restore-check HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/gzip\r\nContent-Length: 10000000\r\nx-migprobe-sha256: ${'a'.repeat(64)}\r\nx-migprobe-request: ${hdr}\r\n\r\n`;
  // The body is a valid gzipped tar (the target unpacks while receiving and refuses a malformed one at once).
  const gz = gzTarOf([{ path: 'images/pages-1.img', body: randomBytes(1 << 20) }]).gz;
  // ... dribbled (never idle for 1.5 s): cut at the request timeout (5 s).
  const u = await open(a);
  u.sock.write(upload);
  let off = 0;
  dribble(u, () => gz.subarray(off, (off += 20)), 200);
  const uMs = await closedWithin(u, 10_000);
  assert.ok(uMs >= 4900 && uMs < 7500, `dribbled upload cut after ${uMs} ms`);
  // ... stalled after 1000 bytes: cut at the body idle bound (1.5 s).
  const s = await open(a);
  s.sock.write(Buffer.concat([Buffer.from(upload), gz.subarray(0, 1000)]));
  const sMs = await closedWithin(s, 6000);
  assert.ok(sMs >= 1400 && sMs < 3500, `stalled upload cut after ${sMs} ms`);

  // Each cut upload left nothing behind, and the server still answers.
  for (let i = 0; i < 50 && (await workLeft(a)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await workLeft(a), []);
  const ok = await open(a);
  ok.sock.write('GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n');
  await new Promise((r) => setTimeout(r, 300));
  assert.match(ok.text(), /^HTTP\/1\.1 200/);
  ok.sock.destroy();
});

test('a refusal closes the connection: 401 (no token, a forged one, the API server audience) and 403 (not allowed)', async (t) => {
  const a = await startBedAgent(t);
  const cases: [string, Record<string, string>, number, RegExp][] = [
    ['no token', {}, 401, /missing bearer token/],
    ['forged', { Authorization: 'Bearer forged.token.that-is-long' }, 401, /token not authenticated/],
    // (the API server answers "not authenticated" for the wrong audience; the agent also checks status.audiences)
    ['API server audience', { Authorization: `Bearer ${await a.token([])}` }, 401, /token not authenticated|not valid for the audience migprobe-agent/],
    ['not on the allow-list', { Authorization: `Bearer ${await a.strangerToken()}` }, 403, /is not allowed to call the agent/],
  ];
  for (const [name, headers, status, why] of cases) {
    const c = await open(a);
    // Keep-alive asked for, and a body announced but not sent: the server still closes at once.
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    c.sock.write(`PUT /v1/probes/${UID} HTTP/1.1\r\nHost: agent\r\nConnection: keep-alive\r\n${lines}Content-Length: 100\r\n\r\n`);
    const ms = await closedWithin(c, 2000);
    assert.match(c.text(), new RegExp(`^HTTP/1\\.1 ${status} `), name);
    assert.match(c.text(), /\r\nConnection: close\r\n/i, name);
    assert.match(c.text(), why, name);
    assert.ok(ms < 2000, `${name}: closed after ${ms} ms`);
  }
  // An accepted caller keeps its connection (keep-alive) for a second request.
  const good = await a.token();
  const c = await open(a);
  c.sock.write(`GET /v1/probes/${UID} HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer ${good}\r\n\r\n`);
  await new Promise((r) => setTimeout(r, 500));
  assert.match(c.text(), /^HTTP\/1\.1 404 /, 'unknown UID');
  c.sock.destroy();
});

test('token cache: LRU eviction, one review per new token; a flood of new tokens gets 429 and TokenReviews stay within the limit', async (t) => {
  const a = await startBedAgent(t, { auth: { cacheEntries: 2, cacheTtlMs: 60_000, reviewsPerSecond: 1, reviewBurst: 3 } });
  const [t1, t2, t3] = [await a.token(), await a.token(), await a.token()];
  assert.ok(t1 !== t2 && t2 !== t3, 'three distinct tokens');
  const get = async (token: string): Promise<number> => {
    const r = await fetch(`${a.url}/v1/probes/${UID}`, { headers: { authorization: `Bearer ${token}` } });
    await r.body?.cancel();
    return r.status;
  };
  // Ten concurrent requests with a new token: one TokenReview.
  assert.deepEqual(await Promise.all(Array.from({ length: 10 }, () => get(t1))), Array(10).fill(404));
  assert.equal(a.reviews(), 1);
  assert.equal(await get(t2), 404);
  assert.equal(await get(t1), 404, 't1 cached and now the most recently used');
  assert.equal(a.reviews(), 2);
  assert.equal(await get(t3), 404);
  assert.equal(a.reviews(), 3, 'the burst is spent');
  assert.equal(a.auth.cached, 2, 't2, the least recently used, was evicted');

  // A flood of 200 made-up tokens within a second or two: 429 with Retry-After, at most one more review.
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const r = await fetch(`${a.url}/v1/probes/${UID}`, { headers: { authorization: `Bearer flood.${i}.${'x'.repeat(20)}` } });
      return { status: r.status, retryAfter: r.headers.get('retry-after'), connection: r.headers.get('connection'), body: await r.text() };
    }),
  );
  const elapsedS = (Date.now() - started) / 1000;
  const statuses = answers.map((x) => x.status);
  const reviewed = statuses.filter((s) => s === 401).length;
  const limited = answers.filter((x) => x.status === 429);
  assert.equal(limited.length + reviewed, 200, statuses.join(','));
  assert.ok(limited.length >= 190, `${limited.length} of 200 refused unreviewed`);
  assert.ok(limited.every((x) => x.retryAfter === '1' && x.connection === 'close' && /too many new tokens to review \(limit 1\/s\)/.test(x.body)), JSON.stringify(limited[0]));
  // At most the burst (3, refilled while the tokens above were requested) plus 1 per second of flood.
  assert.ok(a.reviews() - 3 <= 3 + Math.ceil(elapsedS), `${a.reviews() - 3} TokenReviews in ${elapsedS} s (limit 1/s, burst 3)`);
  assert.equal(reviewed, a.reviews() - 3);
  // The cached callers are unaffected; the evicted one is reviewed again once the bucket has a token.
  assert.equal(await get(t1), 404);
  assert.equal(await get(t3), 404);
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal(await get(t2), 404);
  assert.deepEqual(await workLeft(a), []);
});

test('connection cap: beyond --http-max-connections a connection is dropped at once; silent connections close at the headers timeout', async (t) => {
  const a = await startBedAgent(t, { http: { ...LIMITS, maxConnections: 4 } });
  const held = await Promise.all(Array.from({ length: 4 }, () => open(a)));
  await new Promise((r) => setTimeout(r, 200));
  const extra = await open(a);
  const extraMs = await closedWithin(extra, 1500);
  assert.equal(extra.text(), '', 'dropped without an answer');
  assert.ok(extraMs < 1500, `dropped after ${extraMs} ms`);
  // The four that never sent a byte are closed by the headers timeout (2 s), freeing their slots.
  for (const c of held) {
    const ms = await closedWithin(c, 5000);
    assert.ok(ms >= 1900 && ms < 4000, `silent connection closed after ${ms} ms`);
  }
  const ok = await open(a);
  ok.sock.write('GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n');
  await new Promise((r) => setTimeout(r, 300));
  assert.match(ok.text(), /^HTTP\/1\.1 200/);
  ok.sock.destroy();
});
