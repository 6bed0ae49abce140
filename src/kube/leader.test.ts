import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from './clock.ts';
import { decideLease, microTime, observe, type LeaseSpec, type Observed } from './leader.ts';

const LEASE = 15_000;

void test('microTime has exactly six fractional digits', () => {
  assert.equal(microTime(Date.UTC(2026, 0, 1, 0, 0, 0, 123)), '2026-01-01T00:00:00.123000Z');
});

void test('no lease: create it as holder with zero transitions', () => {
  const clock = new FakeClock();
  const d = decideLease(undefined, undefined, 'me', clock.now(), LEASE);
  assert.equal(d.action, 'create');
  assert.equal(d.spec.holderIdentity, 'me');
  assert.equal(d.spec.leaseDurationSeconds, 15);
  assert.equal(d.spec.leaseTransitions, 0);
});

void test('a lease held by another is respected until it has not changed for the lease duration (our clock)', () => {
  const clock = new FakeClock();
  // Their renewTime is far in the past by THEIR clock: irrelevant, we measure from when we saw it.
  const theirs: LeaseSpec = { holderIdentity: 'other', leaseDurationSeconds: 15, renewTime: '2000-01-01T00:00:00.000000Z', leaseTransitions: 3 };
  let obs: Observed | undefined = observe(undefined, theirs, clock.now());
  assert.deepEqual(decideLease(theirs, obs, 'me', clock.now(), LEASE), { action: 'wait', holder: 'other' });
  clock.advance(14_999);
  obs = observe(obs, { ...theirs }, clock.now());
  assert.equal(obs?.observedAtMs, clock.now() - 14_999, 'unchanged record: observed time kept');
  assert.equal(decideLease(theirs, obs, 'me', clock.now(), LEASE).action, 'wait');
  clock.advance(1);
  const d = decideLease(theirs, obs, 'me', clock.now(), LEASE);
  assert.equal(d.action, 'update');
  assert.equal(d.action === 'update' && d.spec.holderIdentity, 'me');
  assert.equal(d.action === 'update' && d.spec.leaseTransitions, 4, 'taking over counts a transition');
});

void test('a renewal by the holder resets our observation', () => {
  const clock = new FakeClock();
  const a: LeaseSpec = { holderIdentity: 'other', leaseDurationSeconds: 15, renewTime: 't1' };
  let obs = observe(undefined, a, clock.now());
  clock.advance(10_000);
  obs = observe(obs, { ...a, renewTime: 't2' }, clock.now());
  clock.advance(10_000);
  assert.equal(decideLease({ ...a, renewTime: 't2' }, obs, 'me', clock.now(), LEASE).action, 'wait');
});

void test('a released lease (empty holder) is taken at once; our own lease is renewed keeping acquireTime', () => {
  const clock = new FakeClock();
  const released: LeaseSpec = { holderIdentity: '', leaseDurationSeconds: 1, leaseTransitions: 2 };
  const obs = observe(undefined, released, clock.now());
  const d = decideLease(released, obs, 'me', clock.now(), LEASE);
  assert.equal(d.action === 'update' && d.spec.holderIdentity, 'me');
  const mine: LeaseSpec = { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: 'A', renewTime: 'R', leaseTransitions: 5 };
  clock.advance(2000);
  const r = decideLease(mine, observe(undefined, mine, clock.now()), 'me', clock.now(), LEASE);
  assert.equal(r.action, 'update');
  assert.equal(r.action === 'update' && r.spec.acquireTime, 'A');
  assert.equal(r.action === 'update' && r.spec.leaseTransitions, 5);
  assert.equal(r.action === 'update' && r.spec.renewTime, microTime(clock.now()));
});
