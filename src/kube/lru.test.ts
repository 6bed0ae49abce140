import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from './clock.ts';
import { LruCache } from './lru.ts';

test('LruCache evicts the least recently used entry, one at a time', () => {
  const c = new LruCache<string, number>({ maxEntries: 3, clock: new FakeClock() });
  c.set('a', 1, 1000);
  c.set('b', 2, 1000);
  c.set('c', 3, 1000);
  assert.equal(c.get('a'), 1, 'a is now the most recently used');
  c.set('d', 4, 1000);
  assert.equal(c.has('b'), false, 'b was the least recently used');
  assert.deepEqual([c.get('a'), c.get('c'), c.get('d')], [1, 3, 4]);
  assert.equal(c.size, 3);
  assert.equal(c.evictions, 1);
  c.set('c', 30, 1000);
  assert.equal(c.size, 3, 'replacing a key evicts nothing');
  assert.equal(c.get('c'), 30);
});

test('LruCache entries expire after their TTL on the injected clock', () => {
  const clock = new FakeClock();
  const c = new LruCache<string, string>({ maxEntries: 10, clock });
  c.set('k', 'v', 500);
  c.set('long', 'w', 5000);
  clock.advance(499);
  assert.equal(c.get('k'), 'v');
  clock.advance(1);
  assert.equal(c.get('k'), undefined);
  assert.equal(c.has('k'), false);
  assert.equal(c.size, 1, 'an expired entry read is dropped');
  assert.equal(c.get('long'), 'w');
  assert.throws(() => new LruCache({ maxEntries: 0, clock }));
});
