import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REASON_CODES } from './verdict.ts';
import { REASON_CATALOG, catalogEntries, catalogMarkdown, reason } from './reasons.ts';

void test('every reason code has a phase, a description and a hint', () => {
  for (const code of REASON_CODES) {
    const info = REASON_CATALOG[code];
    assert.ok(info, `${code} has no catalog entry`);
    assert.ok(info.description.length > 10, `${code} description`);
    assert.ok(info.hint.length > 10, `${code} hint`);
    assert.ok(!info.description.includes('\n') && !info.hint.includes('\n'), `${code} is one line`);
  }
  assert.equal(Object.keys(REASON_CATALOG).length, REASON_CODES.length, 'no stale catalog entries');
});

void test('reason() uses the catalog defaults and honours overrides', () => {
  const r = reason('TCPEstablished', 'pid 7 fd 3: 10.0.0.1:80 <-> 10.0.0.2:5000');
  assert.equal(r.phase, 'preflight');
  assert.match(r.hint, /tcpEstablished: true/);
  const g = reason('GhostFileTooLarge', 'x', 'raise options.ghostLimitBytes above 5000000', 'dump');
  assert.equal(g.hint, 'raise options.ghostLimitBytes above 5000000');
  assert.equal(g.phase, 'dump');
});

void test('hints of the options-driven codes name the option', () => {
  assert.match(REASON_CATALOG.FileLocks.hint, /options\.fileLocks/);
  assert.match(REASON_CATALOG.ExternalUnixSocket.hint, /options\.extUnixSockets/);
  assert.match(REASON_CATALOG.GhostFileTooLarge.hint, /options\.ghostLimitBytes/);
  assert.match(REASON_CATALOG.FreezeBudgetExceeded.hint, /options\.freezeBudgetMilliseconds/);
  assert.match(REASON_CATALOG.TCPEstablished.hint, /options\.tcpClose: true \(CLI --tcp-close/);
  assert.match(REASON_CATALOG.LinkRemapNeeded.hint, /options\.linkRemap: true \(CLI --link-remap/);
});

void test('catalog markdown has one row per code', () => {
  const md = catalogMarkdown();
  assert.equal(catalogEntries().length, REASON_CODES.length);
  for (const code of REASON_CODES) assert.ok(md.includes(`| \`${code}\` |`), code);
});
