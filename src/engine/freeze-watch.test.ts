import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freezeFromSamples, isStoppedState, statState, watchFreeze } from './freeze-watch.ts';

test('longest stopped interval uses midpoints between samples', () => {
  const s = (t: number, stopped: boolean) => ({ t, stopped });
  const st = freezeFromSamples([s(0, false), s(10, false), s(12, true), s(50, true), s(52, false), s(60, true), s(64, false)]);
  assert.equal(st.longestMs, 51 - 11);
  assert.equal(st.totalMs, 40 + 6);
  assert.equal(st.worstGapMs, 38);
  assert.equal(st.firstStopAt, 12);
  assert.equal(freezeFromSamples([]).longestMs, 0);
  assert.equal(freezeFromSamples([s(0, false), s(5, true), s(9, true)]).longestMs, 6.5);
});

test('stat state parsing survives odd command names', () => {
  assert.equal(statState('123 (a) b) c) t 1 2 3'), 't');
  assert.equal(statState('1 (sh) S 0'), 'S');
  assert.equal(statState('garbage'), undefined);
  assert.ok(isStoppedState('t') && isStoppedState('T') && !isStoppedState('S') && !isStoppedState('D'));
});

test('the watcher samples a running process and sees no freeze', async () => {
  const w = watchFreeze([process.pid], { intervalMs: 1 });
  await w.ready;
  await new Promise((r) => setTimeout(r, 60));
  const st = await w.stop();
  assert.equal(st.longestMs, 0);
  assert.ok(st.samples > 5, `samples: ${st.samples}`);
});
