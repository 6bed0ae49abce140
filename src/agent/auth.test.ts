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
      if (token === 'tokentoken-ctl') return { authenticated: true, username: 'system:serviceaccount:ns:ctl' };
      if (token === 'tokentoken-other') return { authenticated: true, username: 'system:serviceaccount:ns:other' };
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
