// composeVerdict, the one verdict assembly the CLI and the agents share: what each half contributes, which
// blockers are kept, which excerpt, which timings and sizes; and when the target half runs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DumpCheckResult, NodeFacts, RestoreCheckResult } from './api.ts';
import type { Reason } from '../verdict.ts';
import { composeVerdict, dedupe, hasImages, stagePhase } from './compose.ts';

const facts: NodeFacts = { hostname: 'b', arch: 'x86_64', kernelRelease: '6.18', criuVersion: '4.2.1', criuFeatures: {}, memAvailableBytes: 1, cpu: { vendor: 'v', model: 'm', flags: [] } };
const r = (code: Reason['code'], phase: Reason['phase'], message: string): Reason => ({ code, phase, message, hint: 'h' });
const dump = (over: Partial<DumpCheckResult> = {}): DumpCheckResult => ({
  reasons: [],
  timings: { preflightMs: 3, freezeMs: 50, dumpMs: 200 },
  sizes: { imageBytes: 1000, workloadRssBytes: 5000 },
  criuVersion: '4.2.1',
  bundleDir: '/x',
  ...over,
});
const restore = (over: Partial<RestoreCheckResult> = {}): RestoreCheckResult => ({ reasons: [], timings: { restoreMs: 400 }, criuVersion: '4.2.2', facts, ...over });

test('composeVerdict merges the two halves and the hand-over', () => {
  const v = composeVerdict({
    dump: dump(),
    transfer: { ms: 20.4, shippedBytes: 300 },
    restore: restore({ reasons: [r('RootfsMismatch', 'compat', 'bin/busybox differs')] }),
    totalMs: 700.2,
  });
  assert.equal(v.migratable, false);
  assert.deepEqual(v.reasons.map((x) => x.code), ['RootfsMismatch']);
  assert.deepEqual(v.timings, { preflightMs: 3, freezeMs: 50, dumpMs: 200, transferMs: 20, restoreMs: 400, totalMs: 700 });
  assert.deepEqual(v.sizes, { imageBytes: 1000, workloadRssBytes: 5000, shippedBytes: 300 });
  assert.deepEqual(v.criu, { source: '4.2.1', target: '4.2.2' });
  assert.equal(v.criuLogExcerpt, undefined);
});

test('a source blocker with images and the target blockers are all listed, source first, exact repeats once', () => {
  const freeze = r('FreezeBudgetExceeded', 'dump', 'frozen for 80 ms, over the budget of 1 ms');
  const compat = r('RootfsMismatch', 'compat', 'bin/busybox differs');
  const v = composeVerdict({
    dump: dump({ reasons: [freeze] }),
    transfer: { ms: 5, shippedBytes: 10 },
    restore: restore({ reasons: [compat, r('RootfsMismatch', 'restore', 'bin/busybox has bad size'), compat], criuLogExcerpt: 'Error (criu/files-reg.c): bad size' }),
    totalMs: 9,
  });
  assert.deepEqual(v.reasons.map((x) => `${x.code}/${x.phase}`), ['FreezeBudgetExceeded/dump', 'RootfsMismatch/compat', 'RootfsMismatch/restore']);
  assert.equal(v.criuLogExcerpt, 'Error (criu/files-reg.c): bad size');
  assert.equal(v.migratable, false);
});

test('a failed hand-over: its blocker, transferMs, no shippedBytes, no target version', () => {
  const v = composeVerdict({ dump: dump(), transfer: { ms: 7, failure: r('ImageTooLarge', 'transfer', 'over the cap') }, totalMs: 9 });
  assert.deepEqual(v.reasons.map((x) => x.code), ['ImageTooLarge']);
  assert.equal(v.timings.transferMs, 7);
  assert.equal(v.sizes.shippedBytes, undefined);
  assert.deepEqual(v.criu, { source: '4.2.1' });
});

test('a source half that never got going: only what it knows, empty versions left out, excerpts joined', () => {
  const v = composeVerdict({ dump: { reasons: [r('InternalError', 'setup', 'criu not found')], timings: {}, sizes: {}, criuVersion: '' }, totalMs: 1 });
  assert.deepEqual(v.criu, {});
  assert.deepEqual(v.timings, { totalMs: 1 });
  assert.deepEqual(v.sizes, {});
  const both = composeVerdict({ dump: dump({ criuLogExcerpt: 'dump line' }), restore: restore({ criuLogExcerpt: 'restore line' }), totalMs: 1 });
  assert.equal(both.criuLogExcerpt, 'dump line\nrestore line');
});

test('hasImages: the target half runs exactly when the source half left a bundle, blockers or not', () => {
  assert.equal(hasImages(dump()), true);
  assert.equal(hasImages(dump({ reasons: [r('FreezeBudgetExceeded', 'dump', 'x')] })), true);
  const { bundleDir: _, ...none } = dump({ reasons: [r('FileLocks', 'preflight', 'x')] });
  assert.equal(hasImages(none), false);
});

test('dedupe keeps distinct blockers and drops exact repeats', () => {
  const a = r('RootfsMismatch', 'compat', 'bin/busybox differs');
  const b = r('RootfsMismatch', 'restore', 'bin/busybox has bad size');
  assert.deepEqual(dedupe([a, b, a]), [a, b]);
});

test('stagePhase: a stage is the phase of what goes wrong in it; done is setup', () => {
  assert.deepEqual((['preflight', 'dump', 'transfer', 'restore', 'done'] as const).map(stagePhase), ['preflight', 'dump', 'transfer', 'restore', 'setup']);
});
