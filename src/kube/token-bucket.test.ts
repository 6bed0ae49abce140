import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from './clock.ts';
import { TokenBucket } from './token-bucket.ts';

test('tryTake: a burst, then refusals with the wait until the next token, then refill at the rate', () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ perSecond: 2, burst: 3, clock });
  for (let i = 0; i < 3; i++) assert.deepEqual(b.tryTake(), { ok: true });
  assert.deepEqual(b.tryTake(), { ok: false, retryAfterMs: 500 });
  assert.deepEqual(b.tryTake(), { ok: false, retryAfterMs: 500 }, 'a refusal takes nothing');
  clock.advance(499);
  assert.equal(b.tryTake().ok, false);
  clock.advance(1);
  assert.deepEqual(b.tryTake(), { ok: true });
  clock.advance(60_000);
  for (let i = 0; i < 3; i++) assert.equal(b.tryTake().ok, true, 'refilled to the burst, no more');
  assert.equal(b.tryTake().ok, false);
});

test('reserve: always takes, and the wait grows by 1/rate per token', () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ perSecond: 10, burst: 2, clock });
  assert.deepEqual([b.reserve(), b.reserve(), b.reserve(), b.reserve()], [0, 0, 100, 200]);
  clock.advance(200);
  assert.equal(b.reserve(), 100);
});

test('bad parameters are refused', () => {
  assert.throws(() => new TokenBucket({ perSecond: 0, burst: 1, clock: new FakeClock() }));
  assert.throws(() => new TokenBucket({ perSecond: 1, burst: 0, clock: new FakeClock() }));
});
