import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeVerdict } from '../verdict.ts';
import { conditionsForVerdict, isActivePhase, isFinalPhase, mergeConditions, probeOptionsFromSpec, statusFromVerdict, verdictFromStatus } from './v1alpha1.ts';
import { reason } from '../reasons.ts';

test('probeOptionsFromSpec applies the CRD defaults', () => {
  assert.deepEqual(probeOptionsFromSpec({ podName: 'p', targetNodeName: 'n' }), {
    tcpEstablished: false,
    fileLocks: false,
    extUnixSockets: false,
    ghostLimitBytes: 1048576,
    freezeBudgetMs: 2000,
    timeoutMs: 300000,
    nonLazyMemoryLimitBytes: 64 * 1024 * 1024,
  });
  const o = probeOptionsFromSpec({
    podName: 'p', targetNodeName: 'n', timeoutSeconds: 30, options: { tcpEstablished: true, freezeBudgetMilliseconds: 500, nonLazyMemoryLimitBytes: 4096 },
  });
  assert.equal(o.nonLazyMemoryLimitBytes, 4096);
  assert.equal(o.tcpEstablished, true);
  assert.equal(o.freezeBudgetMs, 500);
  assert.equal(o.timeoutMs, 30000);
  assert.equal(o.tcpClose, undefined);
  const asked = probeOptionsFromSpec({ podName: 'p', targetNodeName: 'n', options: { tcpClose: true, tcpSkipInFlight: true, linkRemap: true } });
  assert.deepEqual([asked.tcpClose, asked.tcpSkipInFlight, asked.linkRemap], [true, true, true]);
});

test('phase helpers', () => {
  assert.ok(isFinalPhase('Succeeded') && isFinalPhase('Failed') && !isFinalPhase('Pending') && !isFinalPhase(undefined));
  assert.ok(isActivePhase('Dumping') && !isActivePhase('Pending') && !isActivePhase('Failed'));
});

test('a migratable verdict: every condition True, status fields in milliseconds', () => {
  const v = makeVerdict({ reasons: [], timings: { freezeMs: 41.6, dumpMs: 200, totalMs: 900 }, sizes: { imageBytes: 60000, shippedBytes: 15000 }, criu: { source: '4.2.1', target: '4.2.1' } });
  const st = statusFromVerdict(v);
  assert.equal(st.phase, 'Succeeded');
  assert.equal(st.migratable, true);
  assert.deepEqual(st.timings, { freezeMilliseconds: 42, dumpMilliseconds: 200, totalMilliseconds: 900 });
  assert.deepEqual(st.sizes, { imageBytes: 60000, shippedBytes: 15000 });
  const nonLazyMemory = { totalBytes: 3, mlockedBytes: 0, sharedMemoryBytes: 0, sysvShmBytes: 1, dirtyPrivateFileBytes: 2, tmpfsBytes: 0 };
  assert.deepEqual(statusFromVerdict({ ...v, sizes: { imageBytes: 1, nonLazyMemory } }).sizes, { imageBytes: 1, nonLazyMemory });
  const c = conditionsForVerdict(v);
  assert.deepEqual(c.map((x) => [x.type, x.status]), [
    ['PreflightPassed', 'True'],
    ['DumpChecked', 'True'],
    ['RestoreChecked', 'True'],
    ['Compatible', 'True'],
    ['Migratable', 'True'],
  ]);
});

test('a preflight blocker: later checks NotRun, Migratable False with the first code', () => {
  const v = makeVerdict({
    reasons: [
      { code: 'TCPEstablished', message: 'conn to 10.0.0.1:80', hint: 'h', phase: 'preflight' },
      { code: 'FileLocks', message: 'flock on /x', hint: 'h', phase: 'preflight' },
    ],
    timings: {},
    sizes: {},
    criu: { source: '4.2.1' },
  });
  const c = conditionsForVerdict(v);
  assert.deepEqual(c.map((x) => [x.type, x.status, x.reason]), [
    ['PreflightPassed', 'False', 'TCPEstablished'],
    ['DumpChecked', 'Unknown', 'NotRun'],
    ['RestoreChecked', 'Unknown', 'NotRun'],
    ['Compatible', 'Unknown', 'NotRun'],
    ['Migratable', 'False', 'TCPEstablished'],
  ]);
  assert.match(c[4]!.message, /TCPEstablished: conn.*FileLocks: flock/);
  assert.deepEqual(statusFromVerdict(v).reasons?.map((r) => r.code), ['TCPEstablished', 'FileLocks']);
});

test('a compat blocker next to a passing restore', () => {
  const v = makeVerdict({ reasons: [{ code: 'RootfsMismatch', message: 'bin/x', hint: 'h', phase: 'compat' }], timings: {}, sizes: {}, criu: { source: 'a', target: 'b' } });
  const c = conditionsForVerdict(v);
  assert.deepEqual(c.map((x) => x.status), ['True', 'True', 'True', 'False', 'False']);
});

test('a dump blocker that left images: the target side still ran, its checks are True', () => {
  const v = makeVerdict({
    reasons: [{ code: 'FreezeBudgetExceeded', message: 'frozen for 80 ms, over the budget of 1 ms', hint: 'h', phase: 'dump' }],
    timings: { freezeMs: 80, restoreMs: 300 },
    sizes: {},
    criu: { source: '4.2.1', target: '4.2.1' },
  });
  assert.deepEqual(conditionsForVerdict(v).map((x) => [x.type, x.status, x.reason]), [
    ['PreflightPassed', 'True', 'Passed'],
    ['DumpChecked', 'False', 'FreezeBudgetExceeded'],
    ['RestoreChecked', 'True', 'Passed'],
    ['Compatible', 'True', 'Passed'],
    ['Migratable', 'False', 'FreezeBudgetExceeded'],
  ]);
  // A failed dump leaves no images: nothing ran on the target.
  const failed = makeVerdict({ reasons: [{ code: 'DumpFailed', message: 'x', hint: 'h', phase: 'dump' }], timings: {}, sizes: {}, criu: { source: '4.2.1' } });
  assert.deepEqual(conditionsForVerdict(failed).map((x) => x.status), ['True', 'False', 'Unknown', 'Unknown', 'False']);
});

test('mergeConditions keeps lastTransitionTime when the status is unchanged', () => {
  const t0 = Date.UTC(2026, 0, 1);
  const a = mergeConditions(undefined, [{ type: 'Migratable', status: 'Unknown', reason: 'Probing', message: 'm' }], 1, t0);
  const b = mergeConditions(a, [{ type: 'Migratable', status: 'Unknown', reason: 'Dumping', message: 'm2' }], 1, t0 + 5000);
  assert.equal(b[0]!.lastTransitionTime, a[0]!.lastTransitionTime);
  const c = mergeConditions(b, [{ type: 'Migratable', status: 'True', reason: 'Migratable', message: 'ok' }], 2, t0 + 9000);
  assert.notEqual(c[0]!.lastTransitionTime, a[0]!.lastTransitionTime);
  assert.equal(c[0]!.observedGeneration, 2);
});

test('verdictFromStatus is the inverse of statusFromVerdict, and fills a reason from the catalog', () => {
  const nonLazyMemory = { totalBytes: 3, mlockedBytes: 0, sharedMemoryBytes: 0, sysvShmBytes: 1, dirtyPrivateFileBytes: 2, tmpfsBytes: 0 };
  const v = makeVerdict({
    reasons: [reason('FileLocks', 'task 7 holds a lock'), reason('CPUIncompatible', 'avx512f missing', 'pick another node', 'compat')],
    timings: { preflightMs: 3, freezeMs: 40, dumpMs: 200, transferMs: 10, restoreMs: 300, totalMs: 900 },
    sizes: { imageBytes: 60000, shippedBytes: 15000, workloadRssBytes: 1 << 20, nonLazyMemory },
    criu: { source: '4.2.1', target: '4.2.0' },
    criuLogExcerpt: 'Error (x): y',
  });
  assert.deepEqual(verdictFromStatus(statusFromVerdict(v)), v);
  // A Failed probe (no engine verdict) with a bare reason: never migratable, hint and phase from the catalog.
  const failed = verdictFromStatus({ phase: 'Failed', migratable: false, reasons: [{ code: 'PodNotFound', message: 'no pod web' }] });
  assert.equal(failed.migratable, false);
  assert.equal(failed.reasons[0]?.phase, 'setup');
  assert.match(failed.reasons[0]?.hint ?? '', /\S/);
  assert.deepEqual(failed.timings, {});
  // migratable only once Succeeded
  assert.equal(verdictFromStatus({ phase: 'Dumping', migratable: true }).migratable, false);
  const unknown = verdictFromStatus({ phase: 'Failed', reasons: [{ code: 'FromTheFuture', message: 'm' }] });
  assert.deepEqual(unknown.reasons[0], { code: 'FromTheFuture', message: 'm', hint: '', phase: 'setup' });
});
