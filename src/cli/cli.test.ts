import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeVerdict } from '../verdict.ts';
import type { Verdict } from '../verdict.ts';
import type { NodeFacts } from '../engine/index.ts';
import { reason } from '../reasons.ts';
import { formatDetail, runCli } from './cli.ts';
import { RuntimeSocketError } from '../engine/index.ts';
import type { CliDeps } from './cli.ts';

const ok: Verdict = makeVerdict({
  reasons: [],
  timings: { preflightMs: 3, freezeMs: 120, totalMs: 900 },
  sizes: { imageBytes: 61_000, workloadRssBytes: 10 * 1024 * 1024 },
  criu: { source: '4.2.1', target: '4.2.1' },
});
const blocked: Verdict = makeVerdict({
  reasons: [reason('TCPEstablished', 'pid 12 fd 3: 10.0.0.2:41000 -> 10.0.0.1:80 established')],
  timings: { preflightMs: 3 },
  sizes: {},
  criu: { source: '4.2.1' },
});
const facts: NodeFacts = {
  hostname: 'n1', arch: 'x86_64', kernelRelease: '6.18.0', criuVersion: '4.2.1', criuFeatures: { timens: true, uffd: false },
  memAvailableBytes: 1024 ** 3, cpu: { vendor: 'GenuineIntel', model: 'Xeon', flags: ['fpu'] },
};

function harness(verdict: Verdict | Error, sockets: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const calls: unknown[] = [];
  const deps: CliDeps = {
    checkContainer: (...a) => {
      calls.push(['check', ...a]);
      const det = a[3].detail;
      if (det !== undefined) {
        det.restoreProof = { cpuTicksBefore: { '42': 7 }, cpuTicksAfter: { '42': 7 }, states: { '42': 'T' }, leftovers: [] };
      }
      return verdict instanceof Error ? Promise.reject(verdict) : Promise.resolve(verdict);
    },
    checkRestoreOnly: (...a) => {
      calls.push(['restore', ...a]);
      return verdict instanceof Error ? Promise.reject(verdict) : Promise.resolve(verdict);
    },
    nodeFacts: () => Promise.resolve(facts),
    version: () => Promise.resolve('0.1.0'),
    runtimeSocketProblem: (address) => sockets[address],
  };
  const io = { out: (s: string) => out.push(s), err: (s: string) => err.push(s) };
  return { deps, io, out, err, calls };
}

void test('migratable -> exit 0, --json prints exactly the verdict', async () => {
  const h = harness(ok);
  assert.equal(await runCli(['check', '--pid', '7', '--json'], h.deps, h.io), 0);
  assert.deepEqual(JSON.parse(h.out.join('')), ok);
  assert.deepEqual(h.err, []);
});

void test('not migratable -> exit 1, table names the code and the fix', async () => {
  const h = harness(blocked);
  assert.equal(await runCli(['check', '--container', 'abc'], h.deps, h.io), 1);
  const text = h.out.join('');
  assert.match(text, /NOT MIGRATABLE \(1 blocker\)/);
  assert.match(text, /TCPEstablished\s+preflight\s+pid 12 fd 3/);
  assert.match(text, /fix: set options\.tcpEstablished: true/);
  assert.deepEqual((h.calls[0] as unknown[])[1], { containerId: 'abc' });
});

void test('restore-check passes its source', async () => {
  const h = harness(ok);
  assert.equal(await runCli(['restore-check', '--images', '/img', '--json'], h.deps, h.io), 0);
  assert.deepEqual((h.calls[0] as unknown[]).slice(0, 2), ['restore', { imagesDir: '/img' }]);
});

void test('usage error and engine error -> exit 2 with a message on stderr', async () => {
  const h = harness(ok);
  assert.equal(await runCli(['check'], h.deps, h.io), 2);
  assert.match(h.err.join(''), /exactly one of --pid or --container/);
  assert.deepEqual(h.out, []);
  const e = harness(new Error('no process with PID 999999'));
  assert.equal(await runCli(['check', '--pid', '999999'], e.deps, e.io), 2);
  assert.match(e.err.join(''), /PID 999999/);
});

void test('a containerd socket that is not there is a usage error naming --address, before any engine call', async () => {
  const missing = { '/run/containerd/containerd.sock': 'it does not exist', '/x.sock': 'it is not a socket' };
  const c = harness(ok, missing);
  assert.equal(await runCli(['check', '--container', 'abc'], c.deps, c.io), 2);
  assert.match(c.err.join(''), /no containerd socket at \/run\/containerd\/containerd\.sock \(it does not exist\): give this node's containerd socket with --address SOCK\n/);
  assert.deepEqual(c.calls, []);
  const a = harness(ok, missing);
  assert.equal(await runCli(['restore-check', '--archive', 'cp.tar', '--address', '/x.sock'], a.deps, a.io), 2);
  assert.match(a.err.join(''), /\/x\.sock \(it is not a socket\).*--address SOCK, or the checkpoint's root filesystem with --target-root DIR/);
  assert.deepEqual(a.calls, []);
  // restore-check dials the default socket only when the image must come from containerd: the engine says so.
  const r = harness(new RuntimeSocketError('/run/containerd/containerd.sock', 'it does not exist'), missing);
  assert.equal(await runCli(['restore-check', '--archive', 'cp.tar'], r.deps, r.io), 2);
  assert.match(r.err.join(''), /--address SOCK, or the checkpoint's root filesystem with --target-root DIR/);
  // --pid dials no socket.
  const p = harness(ok, missing);
  assert.equal(await runCli(['check', '--pid', '7'], p.deps, p.io), 0);
});

void test('facts, version, help', async () => {
  const h = harness(ok);
  assert.equal(await runCli(['facts', '--json'], h.deps, h.io), 0);
  assert.deepEqual(JSON.parse(h.out.join('')), facts);
  const t = harness(ok);
  assert.equal(await runCli(['facts'], t.deps, t.io), 0);
  assert.match(t.out.join(''), /Kernel\s+6\.18\.0/);
  assert.match(t.out.join(''), /Missing\s+uffd/);
  const v = harness(ok);
  assert.equal(await runCli(['version'], v.deps, v.io), 0);
  assert.equal(v.out.join(''), 'migprobe 0.1.0\n');
  const u = harness(ok);
  assert.equal(await runCli(['--help'], u.deps, u.io), 0);
  assert.match(u.out.join(''), /Exit status: 0 migratable, 1 not migratable, 2 usage or internal error/);
});

void test('--verbose prints the restore proof on stderr and leaves stdout to the verdict', async () => {
  const h = harness(ok);
  assert.equal(await runCli(['check', '--pid', '7', '--json', '--verbose'], h.deps, h.io), 0);
  assert.deepEqual(JSON.parse(h.out.join('')), ok);
  assert.match(h.err.join(''), /restore proof: 1 restored task\(s\), states T, CPU time unchanged/);
  assert.match(h.err.join(''), /leftovers after teardown: none/);
  const quiet = harness(ok);
  await runCli(['check', '--pid', '7', '--json'], quiet.deps, quiet.io);
  assert.deepEqual(quiet.err, []);
  assert.equal((quiet.calls[0] as unknown[])[4] !== undefined && 'detail' in ((quiet.calls[0] as unknown[])[4] as object), false);
  assert.match(formatDetail({}), /no restore ran/);
  assert.match(
    formatDetail({ restoreProof: { cpuTicksBefore: { '1': 1 }, cpuTicksAfter: { '1': 2 }, states: { '1': 'T' }, leftovers: ['mount /x'] } }),
    /CPU time MOVED[\s\S]*leftovers after teardown: mount \/x/,
  );
  assert.match(
    formatDetail({
      restoreProof: {
        cpuTicksBefore: {}, cpuTicksAfter: {}, states: {}, leftovers: [],
        freezeStatesNotRestored: ['freezer.state=FROZEN'], thawed: ['/sys/fs/cgroup/freezer/x/freezer.state: FROZEN -> THAWED'],
      },
    }),
    /not restored \(the tasks were restored stopped\): freezer\.state=FROZEN\nfrozen cgroups thawed by teardown: \/sys\/fs\/cgroup\/freezer\/x/,
  );
});
