import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';
import {
  errorPolicy,
  isConflict,
  isGone,
  isNotFound,
  isWatchTimeout,
  retryAfterMs,
  safeMessage,
  statusOf,
} from './errors.ts';

const status404 = {
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  message: 'pods "web" not found',
  reason: 'NotFound',
  code: 404,
};

void test('statusOf reads every client-node error shape', () => {
  // 2.x ApiException with a parsed body, and with the raw JSON text as body.
  assert.equal(statusOf(new ApiException(404, 'Not Found', status404, { 'content-type': 'application/json' })), 404);
  assert.equal(statusOf(new ApiException(409, 'Conflict', JSON.stringify({ ...status404, code: 409 }), {})), 409);
  // Watch non-200: Error with statusCode.
  assert.equal(statusOf(Object.assign(new Error('Gone'), { statusCode: 410 })), 410);
  // 0.x HttpError.
  assert.equal(statusOf({ response: { statusCode: 429 }, body: {} }), 429);
  // A watch ERROR event object.
  assert.equal(statusOf({ kind: 'Status', code: 410, reason: 'Expired' }), 410);
  // Only the body knows.
  assert.equal(statusOf({ body: JSON.stringify({ kind: 'Status', code: 403 }) }), 403);
  // Not HTTP errors.
  assert.equal(statusOf(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' })), undefined);
  assert.equal(statusOf(undefined), undefined);
  assert.equal(statusOf('boom'), undefined);
});

void test('isNotFound / isConflict / isGone', () => {
  assert.equal(isNotFound(new ApiException(404, 'x', status404, {})), true);
  assert.equal(isConflict(new ApiException(409, 'x', {}, {})), true);
  assert.equal(isGone({ kind: 'Status', code: 410 }), true);
  assert.equal(isNotFound(new Error('x')), false);
});

void test('retryAfterMs honours the header (seconds or date) and the Status details', () => {
  const now = Date.UTC(2026, 0, 1, 0, 0, 0);
  assert.equal(retryAfterMs(new ApiException(429, 'x', {}, { 'Retry-After': '3' })), 3000);
  assert.equal(
    retryAfterMs(new ApiException(429, 'x', {}, { 'retry-after': new Date(now + 2000).toUTCString() }), now),
    2000,
  );
  assert.equal(
    retryAfterMs(new ApiException(429, 'x', { kind: 'Status', code: 429, details: { retryAfterSeconds: 5 } }, {})),
    5000,
  );
  assert.equal(retryAfterMs(new ApiException(429, 'x', {}, {})), undefined);
  assert.equal(retryAfterMs(new ApiException(500, 'x', {}, { 'retry-after': '3' })), undefined, 'only for 429');
});

void test('errorPolicy: 404 done, 409 requeue, 410 relist, 429 retry-after, else backoff', () => {
  assert.deepEqual(errorPolicy(new ApiException(404, 'x', status404, {})), { action: 'done' });
  assert.deepEqual(errorPolicy(new ApiException(409, 'x', {}, {})), { action: 'requeue' });
  assert.deepEqual(errorPolicy({ kind: 'Status', code: 410 }), { action: 'relist' });
  assert.deepEqual(errorPolicy(new ApiException(429, 'x', {}, { 'retry-after': '1' })), {
    action: 'retryAfter',
    delayMs: 1000,
  });
  assert.deepEqual(errorPolicy(new ApiException(429, 'x', {}, {})), { action: 'backoff' });
  assert.deepEqual(errorPolicy(new ApiException(500, 'x', {}, {})), { action: 'backoff' });
  assert.deepEqual(errorPolicy(new Error('socket hang up')), { action: 'backoff' });
});

void test('safeMessage never leaks headers or bodies beyond Status.message', () => {
  const err = new ApiException(404, 'Not Found', status404, {
    authorization: 'Bearer sekret-token',
    'set-cookie': 'session=abc',
  });
  assert.match(err.message, /sekret-token/, 'precondition: the raw message carries headers');
  const msg = safeMessage(err);
  assert.equal(msg, 'HTTP 404: pods "web" not found');
  assert.doesNotMatch(msg, /sekret|cookie|Headers/);
  // A body that is not a Status: nothing of it is shown.
  const weird = new ApiException(502, 'Bad Gateway', '<html>proxy secret</html>', { authorization: 'Bearer t' });
  assert.equal(safeMessage(weird), 'HTTP 502');
  // ApiException without a sane code.
  assert.equal(safeMessage(new ApiException(0, 'x', {}, { authorization: 'Bearer t' })), 'Kubernetes API error');
  // Plain errors keep their first line and cause code.
  const fetchErr = new TypeError('fetch failed', { cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) });
  assert.equal(safeMessage(fetchErr), 'TypeError: fetch failed (ECONNREFUSED)');
  assert.equal(safeMessage(new Error('line one\nline two')), 'line one');
  assert.ok(safeMessage(new Error('x'.repeat(2000))).length <= 512);
});

void test('isWatchTimeout recognises the 2.x watch client-side timeout', () => {
  assert.equal(isWatchTimeout(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), true);
  assert.equal(isWatchTimeout(Object.assign(new Error('Gone'), { statusCode: 410 })), false);
});
