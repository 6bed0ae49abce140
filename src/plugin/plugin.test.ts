import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MigrationReadiness } from '../api/readiness.ts';
import { statusFromVerdict, type MigrationProbe, type MigrationProbeStatus } from '../api/v1alpha1.ts';
import { formatVerdict } from '../cli/format.ts';
import type { Clock } from '../kube/clock.ts';
import { reason } from '../reasons.ts';
import { makeVerdict } from '../verdict.ts';
import { runPlugin, type PluginApi, type PluginDeps } from './plugin.ts';
import { nodesFixture, readinessFixture } from './testdata.fixture.ts';

/** A clock where every timer fires at once, moving time forward by its delay: waits take no real time. */
function jumpingClock(): Clock & { t: number } {
  const c = {
    t: 1_000_000,
    now: () => c.t,
    setTimeout: (fn: () => void, ms: number) => {
      c.t += ms;
      queueMicrotask(fn);
      return {};
    },
    clearTimeout: () => undefined,
  };
  return c;
}

class ApiError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

interface Calls {
  created: MigrationProbe[];
  gets: number;
  readinessCreated: MigrationReadiness[];
  patches: { name: string; patch: Record<string, unknown> }[];
  connect: unknown[];
}

/** An API whose probe goes through `statuses` one GET at a time, and whose readiness answers `readiness(n)` on GET n. */
function fakeApi(opts: {
  contextNamespace?: string;
  statuses?: MigrationProbeStatus[];
  readiness?: (n: number, calls: Calls) => MigrationReadiness | undefined;
  fail?: Partial<Record<keyof PluginApi, ApiError>>;
}): { api: PluginApi; calls: Calls } {
  const calls: Calls = { created: [], gets: 0, readinessCreated: [], patches: [], connect: [] };
  let readinessGets = 0;
  const failing = <T>(k: keyof PluginApi, f: () => T): T => {
    const e = opts.fail?.[k];
    if (e !== undefined) throw e;
    return f();
  };
  const api: PluginApi = {
    contextNamespace: opts.contextNamespace ?? '',
    createProbe: async (namespace, body) =>
      failing('createProbe', () => {
        calls.created.push(body);
        return { ...body, metadata: { ...body.metadata, name: `${body.metadata.generateName ?? ''}abcde`, namespace } };
      }),
    getProbe: async (namespace, name) => {
      const st = opts.statuses?.[Math.min(calls.gets, (opts.statuses?.length ?? 1) - 1)];
      calls.gets++;
      return { metadata: { name, namespace }, spec: { podName: 'web', targetNodeName: 'node-b' }, ...(st === undefined ? {} : { status: st }) };
    },
    getReadiness: async () => failing('getReadiness', () => opts.readiness?.(readinessGets++, calls)),
    createReadiness: async (body) => failing('createReadiness', () => (calls.readinessCreated.push(body), body)),
    patchReadiness: async (name, patch) => failing('patchReadiness', () => (calls.patches.push({ name, patch }), readinessFixture())),
    listMigrationNodes: async () => failing('listMigrationNodes', () => nodesFixture()),
  };
  return { api, calls };
}

async function run(argv: string[], api: PluginApi, calls?: Calls, tty = false): Promise<{ code: number; out: string; err: string; clock: Clock & { t: number } }> {
  let out = '';
  let err = '';
  const clock = jumpingClock();
  const deps: PluginDeps = {
    connect: (o) => {
      calls?.connect.push(o);
      return api;
    },
    version: async () => '0.1.0',
    clock,
    freshToken: () => 'tok-1',
  };
  const code = await runPlugin(argv, deps, { out: (s) => (out += s), err: (s) => (err += s), errIsTTY: tty, columns: 100 });
  return { code, out, err, clock };
}

const blocked = makeVerdict({ reasons: [reason('FileLocks', 'task 7 holds a lock')], timings: { totalMs: 30 }, sizes: {}, criu: { source: '4.2.1' } });
const fine = makeVerdict({ reasons: [], timings: { freezeMs: 12 }, sizes: {}, criu: { source: '4.2.1', target: '4.2.1' } });

test('check creates a probe named after pod and node, in the context namespace unless -n, --context passed on', async () => {
  const { api, calls } = fakeApi({ contextNamespace: 'team' });
  const r = await run(['check', 'web', '--to', 'node-b', '-c', 'app', '--context', 'prod', '--kubeconfig', '/k'], api, calls);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(calls.connect, [{ kubeconfig: '/k', context: 'prod' }]);
  assert.deepEqual(calls.created, [{
    apiVersion: 'migprobe.io/v1alpha1',
    kind: 'MigrationProbe',
    metadata: { generateName: 'web-to-node-b-', namespace: 'team' },
    spec: { podName: 'web', targetNodeName: 'node-b', containerName: 'app' },
  }]);
  assert.match(r.out, /^migrationprobe.migprobe.io\/web-to-node-b-abcde created \(namespace team\); add --wait/);
  assert.equal(calls.gets, 0, 'no wait without --wait');
  const other = fakeApi({ contextNamespace: 'team' });
  await run(['-n', 'shop', 'check', 'web', '--to', 'node-b', '--mode', 'RestoreOnly', '--checkpoint', '/cp/x.tar'], other.api);
  assert.equal(other.calls.created[0]?.metadata.namespace, 'shop');
  assert.deepEqual(other.calls.created[0]?.spec, { podName: 'web', targetNodeName: 'node-b', mode: 'RestoreOnly', checkpoint: { path: '/cp/x.tar' } });
  const none = fakeApi({});
  await run(['check', 'web', '--to', 'node-b'], none.api);
  assert.equal(none.calls.created[0]?.metadata.namespace, 'default');
});

test('check --wait prints the verdict as the CLI does, with the CLI exit codes', async () => {
  const cases: [MigrationProbeStatus, number][] = [
    [statusFromVerdict(fine), 0],
    [statusFromVerdict(blocked), 1],
    [{ phase: 'Failed', migratable: false, reasons: [{ code: 'TargetNodeNotFound', message: 'no node node-b' }] }, 2],
  ];
  for (const [final, want] of cases) {
    const { api, calls } = fakeApi({ statuses: [{ phase: 'Pending' }, { phase: 'Dumping' }, final] });
    const r = await run(['check', 'web', '--to', 'node-b', '--wait'], api, calls);
    assert.equal(r.code, want, `${JSON.stringify(final.reasons)}: ${r.err}`);
    assert.equal(calls.gets, 3, 'polled until the final phase');
    if (final.phase === 'Succeeded') assert.equal(r.out, formatVerdict(final.migratable === true ? fine : blocked, 100));
    else assert.match(r.out, /^PROBE FAILED[\s\S]*TargetNodeNotFound/);
  }
  const { api } = fakeApi({ statuses: [statusFromVerdict(blocked)] });
  const j = await run(['check', 'web', '--to', 'node-b', '--wait', '-o', 'json'], api);
  assert.equal(j.code, 1);
  assert.equal((JSON.parse(j.out) as MigrationProbe).status?.reasons?.[0]?.code, 'FileLocks');
});

test('check --wait gives up after --timeout with exit 2 and says how to wait longer', async () => {
  const { api, calls } = fakeApi({ statuses: [{ phase: 'Dumping' }] });
  const r = await run(['check', 'web', '--to', 'node-b', '--wait', '--timeout', '10s'], api, calls);
  assert.equal(r.code, 2);
  assert.match(r.err, /did not finish within 10s \(phase Dumping\): wait longer with --timeout, or see kubectl describe -n default mprobe\/web-to-node-b-abcde/);
  assert.equal(calls.gets, 10, 'one read a second');
});

/** A readiness that answers the request `tok-1` after `runs` GETs, Running with progress in between. */
function answering(runs: number, final: (r: MigrationReadiness) => void = () => undefined): (n: number) => MigrationReadiness | undefined {
  return (n) => {
    const r = readinessFixture();
    if (n === 0) return undefined; // startRun's GET: not there yet
    if (n < runs) {
      r.status = { ...r.status, phase: 'Running', observedRerun: 'tok-1', pods: (r.status?.pods ?? []).slice(0, n - 1), totals: { pods: 3, migratable: 0, blocked: 0, pending: 3, skipped: 0, probes: 2 } };
    } else final(r);
    return r;
  };
}

test('drain-check creates drain-NODE with the rerun token, waits with progress lines, prints the table; exit 1 when not drainable', async () => {
  const { api, calls } = fakeApi({ readiness: answering(3) });
  const r = await run(['drain-check', 'node-a', '--to', 'pool=general'], api, calls);
  assert.equal(r.code, 1, r.err);
  assert.deepEqual(calls.readinessCreated, [{
    apiVersion: 'migprobe.io/v1alpha1',
    kind: 'MigrationReadiness',
    metadata: { name: 'drain-node-a', annotations: { 'migprobe.io/rerun': 'tok-1' } },
    spec: { source: { nodeName: 'node-a' }, targets: { nodeSelector: { matchLabels: { pool: 'general' } } } },
  }]);
  assert.deepEqual(r.err.split('\n').filter((l) => l !== ''), [
    'drain-node-a: Running, run 3: probes 0/2 done, pods 0/3 decided (0s)',
    'drain-node-a: Running, run 3: probes 1/2 done, pods 1/3 decided (1s)',
    'drain-node-a: Completed, run 3: probes 2/2 done, pods 3/3 decided (2s)',
  ]);
  assert.match(r.out, /^NAMESPACE\s+POD\s+OWNER/);
  assert.match(r.out, /Drainable: False \(PodsBlocked\)/);
  const ok = fakeApi({ readiness: answering(2, (x) => (x.status!.conditions = [{ type: 'Drainable', status: 'True', reason: 'AllPodsHaveATarget', message: 'every pod can move', lastTransitionTime: '' }])) });
  assert.equal((await run(['drain-check', 'node-a'], ok.api)).code, 0);
});

test('drain-check on a terminal redraws one progress line in place', async () => {
  const { api } = fakeApi({ readiness: answering(3) });
  const r = await run(['drain-check', 'node-a'], api, undefined, true);
  assert.equal(r.err.split('\r').length - 1, 3);
  assert.ok(r.err.endsWith('\n') && !r.err.slice(0, -1).includes('\n'), JSON.stringify(r.err));
  assert.ok(r.err.includes('\u001b[K'), 'each redraw clears the rest of the line');
});

test('drain-check on an existing readiness asks for a re-run, replacing the targets; a previous run is not the answer', async () => {
  const { api, calls } = fakeApi({
    readiness: (n) => {
      const r = readinessFixture();
      // GETs 0..2: the previous run's answer (another token); then ours.
      if (n <= 2) r.status = { ...r.status, observedRerun: 'older' };
      return r;
    },
  });
  const r = await run(['drain-check', 'node-a', '--to-nodes', 'node-b,node-c', '-o', 'yaml'], api, calls);
  assert.equal(r.code, 1);
  assert.deepEqual(calls.patches, [{ name: 'drain-node-a', patch: { metadata: { annotations: { 'migprobe.io/rerun': 'tok-1' } }, spec: { targets: { nodeNames: ['node-b', 'node-c'], nodeSelector: null } } } }]);
  assert.deepEqual(calls.readinessCreated, []);
  assert.match(r.err, /^drain-node-a: waiting for the controller \(0s\)\ndrain-node-a: Completed/);
  assert.match(r.out, /^apiVersion: migprobe.io\/v1alpha1\nkind: MigrationReadiness\n/);
  const plain = fakeApi({ readiness: () => readinessFixture() });
  await run(['drain-check', 'node-a'], plain.api, plain.calls);
  assert.deepEqual(plain.calls.patches[0]?.patch, { metadata: { annotations: { 'migprobe.io/rerun': 'tok-1' } } }, 'no --to: the targets stay');
  const wrong = await run(['drain-check', 'node-z', '--name', 'drain-node-a'], fakeApi({ readiness: () => readinessFixture() }).api);
  assert.equal(wrong.code, 2);
  assert.match(wrong.err, /selects pods on node-a, not node-z: give another name with --name/);
});

test('drain-check: a failed run and a timeout are errors (exit 2)', async () => {
  const failed = fakeApi({ readiness: answering(1, (x) => { x.status!.phase = 'Failed'; x.status!.conditions = [{ type: 'Drainable', status: 'Unknown', reason: 'NoTargets', message: 'no eligible target', lastTransitionTime: '' }]; }) });
  const f = await run(['drain-check', 'node-a'], failed.api);
  assert.equal(f.code, 2);
  assert.match(f.err, /error: the run failed: NoTargets: no eligible target/);
  const slow = fakeApi({ readiness: (n) => (n === 0 ? undefined : { ...readinessFixture(), status: { phase: 'Running', observedRerun: 'tok-1' } }) });
  const s = await run(['drain-check', 'node-a', '--timeout', '30s'], slow.api);
  assert.equal(s.code, 2);
  assert.match(s.err, /did not finish its run within 30s: wait longer with --timeout/);
});

test('nodes prints the matrix, -o json the MigrationNode list', async () => {
  const { api } = fakeApi({});
  const t = await run(['nodes'], api);
  assert.equal(t.code, 0);
  assert.match(t.out, /SOURCE \\ TARGET\s+node-a\s+node-b\s+node-c/);
  const j = await run(['nodes', '-o', 'json'], api);
  const list = JSON.parse(j.out) as { kind: string; items: { metadata: { name: string } }[] };
  assert.equal(list.kind, 'List');
  assert.deepEqual(list.items.map((i) => i.metadata.name), ['node-b', 'node-c', 'node-a']);
});

test('errors: usage points to the command help, API errors get a hint, a bad kubeconfig names the flags', async () => {
  const { api } = fakeApi({});
  const u = await run(['check', 'web'], api);
  assert.equal(u.code, 2);
  assert.equal(u.err, "error: check needs the target node: --to NODE\nSee 'kubectl migprobe check --help' for usage.\n");
  const missing = fakeApi({ fail: { listMigrationNodes: new ApiError(404, 'HTTP 404: the server could not find the requested resource') } });
  const m = await run(['nodes'], missing.api);
  assert.equal(m.code, 2);
  assert.match(m.err, /migrationnodes list: HTTP 404.*CRDs are not installed.*kubectl get crd migrationnodes\.migprobe\.io.*--context/);
  const denied = fakeApi({ fail: { createProbe: new ApiError(403, 'HTTP 403: forbidden') } });
  assert.match((await run(['check', 'web', '--to', 'b'], denied.api)).err, /migrationprobes create: HTTP 403: forbidden: your user may not do this/);
  let err = '';
  const code = await runPlugin(['nodes'], {
    connect: () => { throw new Error('no context "x" in the kubeconfig'); },
    version: async () => '0',
    clock: jumpingClock(),
    freshToken: () => 't',
  }, { out: () => undefined, err: (s) => (err += s), errIsTTY: false, columns: 80 });
  assert.equal(code, 2);
  assert.match(err, /cannot load the kubeconfig: no context "x" in the kubeconfig \(give the file with --kubeconfig or KUBECONFIG, the context with --context\)/);
  const h = await run(['drain-check', '--help'], api);
  assert.equal(h.code, 0);
  assert.match(h.out, /^kubectl migprobe drain-check NODE/);
  assert.equal((await run(['version'], api)).out, 'kubectl-migprobe 0.1.0\n');
});
