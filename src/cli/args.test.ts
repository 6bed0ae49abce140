import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PROBE_OPTIONS } from '../engine/index.ts';
import { UsageError, parseArgs, parseBytes } from './args.ts';

void test('check --pid with defaults', () => {
  assert.deepEqual(parseArgs(['check', '--pid', '42']), {
    kind: 'check',
    ref: { pid: 42 },
    opts: DEFAULT_PROBE_OPTIONS,
    target: {},
    json: false,
    verbose: false,
  });
});

void test('check --container with every option', () => {
  const c = parseArgs([
    'check', '--container=abc-1.x', '--namespace', 'default', '--address', '/run/c.sock', '--target-root', '/r',
    '--tcp-established', '--file-locks', '--ext-unix-sk', '--ghost-limit', '5M', '--freeze-budget', '300',
    '--timeout', '20', '--work-dir', '/w', '--json', '--verbose', '--non-lazy-memory-limit', '2M',
  ]);
  assert.deepEqual(c, {
    kind: 'check',
    ref: { containerId: 'abc-1.x', namespace: 'default', containerdAddress: '/run/c.sock' },
    opts: { tcpEstablished: true, fileLocks: true, extUnixSockets: true, ghostLimitBytes: 5 * 1024 * 1024, freezeBudgetMs: 300, timeoutMs: 20_000, nonLazyMemoryLimitBytes: 2 * 1024 * 1024 },
    target: { rootfs: '/r', containerdAddress: '/run/c.sock', namespace: 'default' },
    workDir: '/w',
    json: true,
    verbose: true,
  });
});

void test('--tcp-close, --skip-in-flight, --link-remap set their options, for check and restore-check', () => {
  for (const cmd of [['check', '--pid', '7'], ['restore-check', '--images', '/i']]) {
    const c = parseArgs([...cmd, '--tcp-close', '--skip-in-flight', '--link-remap']);
    assert.ok(c.kind === 'check' || c.kind === 'restore-check');
    assert.deepEqual(c.opts, { ...DEFAULT_PROBE_OPTIONS, tcpClose: true, tcpSkipInFlight: true, linkRemap: true });
  }
  const none = parseArgs(['check', '--pid', '7']);
  assert.ok(none.kind === 'check' && none.opts.tcpClose === undefined && none.opts.linkRemap === undefined);
  assert.throws(() => parseArgs(['check', '--pid', '7', '--tcp-close=yes']), UsageError);
  assert.throws(() => parseArgs(['facts', '--link-remap']), UsageError);
});

void test('restore-check, facts, version, help', () => {
  const r = parseArgs(['restore-check', '--archive', '/tmp/cp.tar.gz', '--target-root', '/r', '--json']);
  assert.equal(r.kind, 'restore-check');
  if (r.kind === 'restore-check') {
    assert.deepEqual(r.src, { archive: '/tmp/cp.tar.gz' });
    assert.deepEqual(r.target, { rootfs: '/r' });
  }
  const i = parseArgs(['restore-check', '--images', '/tmp/img']);
  assert.ok(i.kind === 'restore-check' && 'imagesDir' in i.src && i.src.imagesDir === '/tmp/img');
  assert.deepEqual(parseArgs(['facts', '--json']), { kind: 'facts', json: true });
  assert.deepEqual(parseArgs(['facts']), { kind: 'facts', json: false });
  assert.deepEqual(parseArgs(['version']), { kind: 'version' });
  assert.deepEqual(parseArgs(['--version']), { kind: 'version' });
  assert.deepEqual(parseArgs(['--help']), { kind: 'help' });
  assert.deepEqual(parseArgs(['check', '--help']), { kind: 'help', topic: 'check' });
});

void test('usage errors', () => {
  const bad: string[][] = [
    [],
    ['frobnicate'],
    ['check'],
    ['check', '--pid', '1', '--container', 'x'],
    ['check', '--pid', '0'],
    ['check', '--pid', '-3'],
    ['check', '--pid', '12abc'],
    ['check', '--pid'],
    ['check', '--pid', '1', '--pid', '2'],
    ['check', '--pid', '1', '--namespace', 'x'],
    ['check', '--container', '../etc'],
    ['check', '--container', '-x'],
    ['check', '--container', 'a'.repeat(129)],
    ['check', '--pid', '1', '--bogus'],
    ['check', '--pid', '1', '--json=yes'],
    ['check', '--pid', '1', 'extra'],
    ['check', '--pid', '1', '--ghost-limit', 'lots'],
    ['check', '--pid', '1', '--timeout', '0'],
    ['check', '--pid', '1', '--images', '/x'],
    ['restore-check'],
    ['restore-check', '--images', '/a', '--archive', '/b.tar'],
    ['restore-check', '--archive', '/b.zip'],
    ['restore-check', '--images', '/a', '--work-dir', '/w'],
    ['facts', '--pid', '1'],
    ['facts', '--verbose'],
    ['version', 'extra'],
  ];
  for (const argv of bad) assert.throws(() => parseArgs(argv), UsageError, argv.join(' '));
});

void test('parseBytes', () => {
  assert.equal(parseBytes('x', '1048576'), 1048576);
  assert.equal(parseBytes('x', '512K'), 512 * 1024);
  assert.equal(parseBytes('x', '2MiB'), 2 * 1024 * 1024);
  assert.equal(parseBytes('x', '1g'), 1024 ** 3);
  assert.throws(() => parseBytes('x', '1.5M'), UsageError);
});
