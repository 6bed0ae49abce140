import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../kube/clock.ts';
import { Authenticator, bearerToken, requestedTokenSource, serviceAccountUser } from './auth.ts';

test('serviceAccountUser', () => {
  assert.equal(serviceAccountUser('migprobe-system/migprobe-controller'), 'system:serviceaccount:migprobe-system:migprobe-controller');
  assert.throws(() => serviceAccountUser('nope'));
});

test('bearerToken parses only well-formed headers', () => {
  assert.equal(bearerToken({ authorization: 'Bearer abcdefghijkl.mn' }), 'abcdefghijkl.mn');
  assert.equal(bearerToken({ authorization: 'Basic abcdefghijkl' }), undefined);
  assert.equal(bearerToken({}), undefined);
});

test('Authenticator: allow-list, audience, caching, review failure not cached', async () => {
  const clock = new FakeClock();
  const calls: string[][] = [];
  let fail = false;
  const a = new Authenticator({
    allowedUsers: ['system:serviceaccount:ns:ctl'],
    clock,
    review: async (token, aud) => {
      calls.push(aud);
      if (fail) throw new Error('down');
      if (token === 'tokentoken-ctl') return { authenticated: true, username: 'system:serviceaccount:ns:ctl', audiences: aud };
      if (token === 'tokentoken-other') return { authenticated: true, username: 'system:serviceaccount:ns:other', audiences: aud };
      if (token === 'tokentoken-apiserver') return { authenticated: true, username: 'system:serviceaccount:ns:ctl', audiences: [] };
      return { authenticated: false };
    },
  });
  assert.deepEqual(await a.authenticate({ authorization: 'Bearer tokentoken-ctl' }), { ok: true, username: 'system:serviceaccount:ns:ctl' });
  assert.deepEqual(calls, [['migprobe-agent']]);
  await a.authenticate({ authorization: 'Bearer tokentoken-ctl' });
  assert.equal(calls.length, 1, 'cached');
  const other = await a.authenticate({ authorization: 'Bearer tokentoken-other' });
  assert.equal(other.ok, false);
  assert.equal(!other.ok && other.status, 403);
  const apiAudience = await a.authenticate({ authorization: 'Bearer tokentoken-apiserver' });
  assert.deepEqual(apiAudience, { ok: false, status: 401, message: 'token not valid for the audience migprobe-agent' }, 'a token of the API server audience');
  const bad = await a.authenticate({ authorization: 'Bearer tokentoken-bad' });
  assert.equal(!bad.ok && bad.status, 401);
  assert.equal((await a.authenticate({})).ok, false);
  fail = true;
  assert.equal((await a.authenticate({ authorization: 'Bearer tokentoken-new' })).ok, false);
  fail = false;
  assert.equal((await a.authenticate({ authorization: 'Bearer tokentoken-new' })).ok, false);
  clock.advance(31_000);
  fail = true;
  assert.equal((await a.authenticate({ authorization: 'Bearer tokentoken-ctl' })).ok, false, 'expired cache entry re-reviewed');
});

test('requestedTokenSource renews at 80% of the lifetime', async () => {
  const clock = new FakeClock();
  let n = 0;
  const src = requestedTokenSource(async (_aud, exp) => ({ token: `t${++n}`, expiresAtMs: clock.now() + exp * 1000 }), clock, 100);
  assert.equal(await src.token(), 't1');
  clock.advance(79_000);
  assert.equal(await src.token(), 't1');
  clock.advance(2_000);
  assert.equal(await src.token(), 't2');
});

test('Authenticator: LRU eviction one by one, refusals apart, TokenReview rate limit, one review for concurrent requests', async () => {
  const clock = new FakeClock();
  let reviews = 0;
  const a = new Authenticator({
    allowedUsers: ['system:serviceaccount:ns:ctl'],
    clock,
    limits: { cacheEntries: 3, cacheTtlMs: 30_000, reviewsPerSecond: 2, reviewBurst: 5 },
    review: async (token, aud) => {
      reviews++;
      await new Promise((r) => setImmediate(r));
      return token.startsWith('good') ? { authenticated: true, username: 'system:serviceaccount:ns:ctl', audiences: aud } : { authenticated: false };
    },
  });
  const h = (t: string): { authorization: string } => ({ authorization: `Bearer ${t}` });
  // Ten requests at once with one new token: one review.
  const same = await Promise.all(Array.from({ length: 10 }, () => a.authenticate(h('good-token-1'))));
  assert.ok(same.every((d) => d.ok));
  assert.equal(reviews, 1);
  for (const t of ['good-token-2', 'good-token-3']) assert.equal((await a.authenticate(h(t))).ok, true);
  assert.equal(reviews, 3);
  assert.equal((await a.authenticate(h('good-token-1'))).ok, true, 'token 1 is the most recently used now');
  assert.equal((await a.authenticate(h('good-token-4'))).ok, true);
  assert.equal(a.cached, 3, 'bounded: token 2 (least recently used) was evicted');
  assert.equal((await a.authenticate(h('forged-token-1'))).ok, false);
  assert.equal((await a.authenticate(h('forged-token-1'))).ok, false, 'a refusal is remembered too');
  assert.equal(reviews, 5, 'the burst is used up');
  assert.equal(a.cached, 3, 'a refusal evicts no accepted caller');
  // A flood of new tokens: refused with 429 and Retry-After, no review asked, the cached answers unharmed.
  for (let i = 0; i < 50; i++) {
    const d = await a.authenticate(h(`forged-flood-${i}`));
    assert.deepEqual(d.ok === false && d.status, 429);
    assert.equal(d.ok === false && d.status === 429 && d.retryAfterS, 1);
  }
  assert.equal(reviews, 5);
  for (const t of ['good-token-1', 'good-token-3', 'good-token-4']) assert.equal((await a.authenticate(h(t))).ok, true);
  assert.equal(reviews, 5, 'cached tokens need no review');
  assert.equal((await a.authenticate(h('good-token-2'))).ok, false, 'evicted, and no token to review it now');
  clock.advance(500);
  assert.equal((await a.authenticate(h('good-token-2'))).ok, true, 'a token refilled after 1/rate');
  assert.equal(reviews, 6);
});
