import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findCondition, isConditionTrue, metav1Time, removeCondition, setCondition, type Condition } from './conditions.ts';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 250);
const T1 = T0 + 60_000;

void test('metav1Time is RFC 3339 UTC with whole seconds', () => {
  assert.equal(metav1Time(T0), '2026-01-01T12:00:00Z');
});

void test('setCondition appends a new condition with transition time and observedGeneration', () => {
  const { conditions, changed } = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Pending', observedGeneration: 3 }, T0);
  assert.equal(changed, true);
  assert.deepEqual(conditions, [
    { type: 'Ready', status: 'False', reason: 'Pending', message: '', lastTransitionTime: '2026-01-01T12:00:00Z', observedGeneration: 3 },
  ]);
});

void test('lastTransitionTime changes only when status changes', () => {
  const a = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'm1', observedGeneration: 1 }, T0).conditions;
  const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Dumping', message: 'm2', observedGeneration: 1 }, T1);
  assert.equal(b.changed, true);
  assert.equal(findCondition(b.conditions, 'Ready')?.lastTransitionTime, '2026-01-01T12:00:00Z');
  assert.equal(findCondition(b.conditions, 'Ready')?.reason, 'Dumping');
  const c = setCondition(b.conditions, { type: 'Ready', status: 'True', reason: 'Done', observedGeneration: 1 }, T1);
  assert.equal(findCondition(c.conditions, 'Ready')?.lastTransitionTime, '2026-01-01T12:01:00Z');
  assert.equal(isConditionTrue(c.conditions, 'Ready'), true);
});

void test('an identical condition is not a change; a new generation is', () => {
  const a = setCondition([], { type: 'X', status: 'True', reason: 'R', observedGeneration: 1 }, T0).conditions;
  const same = setCondition(a, { type: 'X', status: 'True', reason: 'R', observedGeneration: 1 }, T1);
  assert.equal(same.changed, false);
  assert.deepEqual(same.conditions, a);
  const gen = setCondition(a, { type: 'X', status: 'True', reason: 'R', observedGeneration: 2 }, T1);
  assert.equal(gen.changed, true);
  assert.equal(findCondition(gen.conditions, 'X')?.observedGeneration, 2);
  assert.equal(findCondition(gen.conditions, 'X')?.lastTransitionTime, '2026-01-01T12:00:00Z');
});

void test('other conditions keep their order and the input list is not mutated', () => {
  const list: Condition[] = [
    { type: 'A', status: 'True', reason: 'R', message: '', lastTransitionTime: 't' },
    { type: 'B', status: 'False', reason: 'R', message: '', lastTransitionTime: 't' },
  ];
  const frozen = structuredClone(list);
  const { conditions } = setCondition(list, { type: 'A', status: 'False', reason: 'S', observedGeneration: 1 }, T0);
  assert.deepEqual(list, frozen);
  assert.deepEqual(
    conditions.map((c) => `${c.type}=${c.status}`),
    ['A=False', 'B=False'],
  );
  assert.deepEqual(removeCondition(conditions, 'A').conditions.map((c) => c.type), ['B']);
  assert.equal(removeCondition(conditions, 'Z').changed, false);
});
