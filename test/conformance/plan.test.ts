// The conformance bench's pure parts (bench/zdtm/plan.ts): which zdtm tests run and how, the migprobe flags that
// match a .desc's CRIU options, the truth of a run, and the report.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isPlan, matrixOf, outcomeOf, planTest, reportMarkdown } from '../../bench/zdtm/plan.ts';
import type { Plan, Row, RunRecord } from '../../bench/zdtm/plan.ts';

void test('planTest: flavors, flags and the CRIU options migprobe has flags for', () => {
  const p = planTest('file_locks00', { flags: 'excl', opts: '--file-locks --link-remap --manage-cgroups' }, true);
  assert.ok(isPlan(p));
  assert.equal(p.flavor, 'ns');
  assert.deepEqual(p.migprobeArgs, ['--file-locks', '--link-remap']);
  assert.deepEqual(p.unmatched, ['--manage-cgroups']);
  const tcp = planTest('socket-tcp-skip-in-flight', { opts: '--tcp-established --skip-in-flight' }, true);
  assert.ok(isPlan(tcp));
  assert.deepEqual(tcp.migprobeArgs, ['--tcp-established', '--skip-in-flight']);
  const close = planTest('socket-tcp-close2', { opts: '--tcp-close' }, true);
  assert.ok(isPlan(close) && close.migprobeArgs.join() === '--tcp-close' && close.unmatched.length === 0);
  const g = planTest('ghost', { opts: '--ghost-limit 4M --external mnt[/x]:y' }, true);
  assert.ok(isPlan(g));
  assert.deepEqual(g.migprobeArgs, ['--ghost-limit', '4M']);
  assert.deepEqual(g.unmatched, ['--external mnt[/x]:y']);
  const u = planTest('userns', { flavor: 'uns' }, true);
  assert.ok(isPlan(u) && u.flavor === 'uns');
  const h = planTest('socket-tcp', { flavor: 'h' }, true);
  assert.ok(!isPlan(h) && /host flavor only/.test(h.why));
  const n = planTest('manual', { flags: 'noauto' }, true);
  assert.ok(!isPlan(n) && /noauto/.test(n.why));
  assert.ok(!isPlan(planTest('x', {}, false)));
  const left = planTest('uprobes', {}, false, false);
  assert.ok(!isPlan(left) && /libtracefs/.test(left.why));
});

const plan = planTest('t', {}, true) as Plan;
const rec = (r: Partial<RunRecord>): RunRecord => ({
  zdtmRc: 0,
  zdtmTail: '=== Test zdtm/static/t PASS ===',
  timedOut: false,
  dumpRcs: [0],
  restoreRcs: [0],
  verdictRc: '0',
  verdictJson: JSON.stringify({ migratable: true, reasons: [] }),
  criuErrors: [],
  ...r,
});

void test('outcomeOf: truth from the real dump, restore and the test\'s own check; the class against the verdict', () => {
  const tp = outcomeOf(plan, rec({}));
  assert.ok(tp.kind === 'compared' && tp.cls === 'TP');
  const fp = outcomeOf(plan, rec({ restoreRcs: [1] }));
  assert.ok(fp.kind === 'compared' && fp.cls === 'FP' && fp.truth.failedAt === 'restore');
  const no = JSON.stringify({ migratable: false, reasons: [{ code: 'FileLocks', message: 'm' }] });
  const tn = outcomeOf(plan, rec({ dumpRcs: [1], verdictRc: '1', verdictJson: no }));
  assert.ok(tn.kind === 'compared' && tn.cls === 'TN' && tn.verdict.codes[0] === 'FileLocks');
  const fn = outcomeOf(plan, rec({ verdictRc: '1', verdictJson: no }));
  assert.ok(fn.kind === 'compared' && fn.cls === 'FN');
  // the test's own check failed after a clean C/R: not migratable
  const chk = outcomeOf(plan, rec({ zdtmTail: '=== Test zdtm/static/t FAIL at result check ===' }));
  assert.ok(chk.kind === 'compared' && chk.truth.failedAt === 'check');
  // a crfail test passes zdtm when CRIU fails: never "works"
  const crfail = outcomeOf(planTest('c', { flags: 'crfail' }, true) as Plan, rec({}));
  assert.ok(crfail.kind === 'compared' && !crfail.truth.migratable);
  // migprobe's exit 2 is no "yes"
  const err = outcomeOf(plan, rec({ verdictRc: '2', verdictJson: '', verdictStderr: 'boom' }));
  assert.ok(err.kind === 'compared' && !err.verdict.migratable);
  // zdtm skipped it, or it never reached a dump
  const skip = outcomeOf(plan, rec({ dumpRcs: [], zdtmTail: 'Skipping zdtm/static/t (no autofs feature)' }));
  assert.ok(skip.kind === 'not-runnable' && /no autofs feature/.test(skip.why));
});

void test('the report carries the matrix, the disagreements with their cause and every row', () => {
  const rows: Row[] = [
    { test: 'a', flavor: 'ns', outcome: outcomeOf(plan, rec({})) },
    { test: 'b', flavor: 'ns', outcome: outcomeOf(plan, rec({ verdictRc: '1', verdictJson: JSON.stringify({ migratable: false, reasons: [{ code: 'RestoreFailed', message: 'x' }] }) })), known: 'a cause' },
    { test: 'c', outcome: { kind: 'not-runnable', why: 'host flavor only (flavor \'h\'): ...' } },
  ];
  assert.deepEqual(matrixOf(rows), { TP: 1, TN: 0, FP: 0, FN: 1 });
  const md = reportMarkdown({ date: 'd', host: 'h', kernel: 'k', criu: '4.2.1', command: 'c', jobs: 1, wallSeconds: 1, notes: [] }, rows);
  assert.match(md, /\| migprobe: migratable \| 1 \| 0 \(false "migratable"\) \|/);
  assert.match(md, /\| b \| FN \| RestoreFailed \| works \| a cause \|/);
  assert.match(md, /Not runnable here: 1/);
});
