import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeFacts } from '../engine/index.ts';
import type { MigrationNode, MigrationNodeStatus } from '../api/migrationnode.ts';
import { FakeClock } from '../kube/clock.ts';
import { KubeApiError } from '../kube/client.ts';
import { nullLogger } from '../kube/logger.ts';
import { NodeFactsPublisher, type MigrationNodeApi } from './nodefacts-publisher.ts';

const MEASURED: NodeFacts = {
  hostname: 'host',
  arch: 'x86_64',
  kernelRelease: '6.18.0',
  criuVersion: '4.2.1',
  criuFeatures: { uffd: true },
  memAvailableBytes: 1 << 30,
  cpu: { vendor: 'v', model: 'm', flags: ['sse2'] },
};

/** An API server holding MigrationNodes in memory, with failures to inject per call. */
class FakeApi implements MigrationNodeApi {
  objects = new Map<string, MigrationNode>();
  nodes = new Map<string, string>([['node-a', 'uid-a']]);
  calls: string[] = [];
  /** Errors thrown by the next calls of a method, in order. */
  fail: Partial<Record<keyof MigrationNodeApi, Error[]>> = {};
  private gen = 0;

  private check(m: keyof MigrationNodeApi): void {
    this.calls.push(m);
    const e = this.fail[m]?.shift();
    if (e !== undefined) throw e;
  }
  node(name: string): Promise<{ uid: string; containerRuntime?: string } | undefined> {
    this.check('node');
    const uid = this.nodes.get(name);
    return Promise.resolve(uid === undefined ? undefined : { uid, containerRuntime: 'containerd://2.2.9' });
  }
  get(name: string): Promise<MigrationNode | undefined> {
    this.check('get');
    const o = this.objects.get(name);
    return Promise.resolve(o === undefined ? undefined : structuredClone(o));
  }
  create(obj: MigrationNode): Promise<MigrationNode> {
    this.check('create');
    const name = obj.metadata.name ?? '';
    if (this.objects.has(name)) throw new KubeApiError(409, { kind: 'Status', code: 409, reason: 'AlreadyExists' });
    const o: MigrationNode = { ...structuredClone(obj), metadata: { ...obj.metadata, generation: 1, uid: `mn-${++this.gen}` } };
    this.objects.set(name, o);
    return Promise.resolve(structuredClone(o));
  }
  applyStatus(name: string, status: MigrationNodeStatus): Promise<MigrationNode> {
    this.check('applyStatus');
    const o = this.objects.get(name);
    if (o === undefined) throw new KubeApiError(404, { kind: 'Status', code: 404 });
    o.status = structuredClone(status);
    return Promise.resolve(structuredClone(o));
  }
}

function setup(opts: { intervalMs?: number; measure?: () => Promise<NodeFacts> } = {}): { clock: FakeClock; api: FakeApi; pub: NodeFactsPublisher } {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 12, 0, 0));
  const api = new FakeApi();
  const pub = new NodeFactsPublisher({
    nodeName: 'node-a',
    agentVersion: '0.1.0',
    intervalMs: opts.intervalMs ?? 600_000,
    measure: opts.measure ?? (() => Promise.resolve(structuredClone(MEASURED))),
    api,
    clock,
    log: nullLogger(),
  });
  return { clock, api, pub };
}

test('publishes at start: creates the MigrationNode owned by its Node, then applies the status', async () => {
  const { clock, api, pub } = setup();
  pub.start();
  await clock.advanceAsync(0);
  assert.deepEqual(api.calls, ['node', 'get', 'create', 'applyStatus']);
  const o = api.objects.get('node-a');
  assert.deepEqual(o?.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'node-a', uid: 'uid-a' }]);
  assert.equal(o?.spec, undefined);
  assert.equal(o?.status?.observedFacts?.kernelRelease, '6.18.0');
  assert.equal(o?.status?.observedFacts?.containerRuntime, 'containerd://2.2.9');
  assert.equal('hostname' in (o?.status?.observedFacts ?? {}), false);
  assert.equal(o?.status?.lastUpdateTime, '2026-01-01T12:00:00Z');
  assert.equal(o?.status?.conditions?.[0]?.reason, 'FactsPublished');
  assert.equal(pub.publishCount, 1);
  await pub.stop();
});

test('re-publishes every interval with fresh facts, never touching spec; a deleted object comes back', async () => {
  let mem = 1000;
  const { clock, api, pub } = setup({ intervalMs: 60_000, measure: () => Promise.resolve({ ...structuredClone(MEASURED), memAvailableBytes: mem }) });
  pub.start();
  await clock.advanceAsync(0);
  // The administrator overrides a fact (spec.generation moves on).
  const o = api.objects.get('node-a');
  assert.ok(o);
  o.spec = { factsOverride: { kernelRelease: '5.10.0' } };
  o.metadata.generation = 2;
  mem = 2000;
  api.calls = [];
  await clock.advanceAsync(59_999);
  assert.deepEqual(api.calls, [], 'nothing before the interval');
  await clock.advanceAsync(1);
  assert.deepEqual(api.calls, ['node', 'get', 'applyStatus']);
  const after = api.objects.get('node-a');
  assert.deepEqual(after?.spec, { factsOverride: { kernelRelease: '5.10.0' } });
  assert.equal(after?.status?.observedFacts?.memAvailableBytes, 2000);
  assert.equal(after?.status?.conditions?.[0]?.observedGeneration, 2);
  assert.equal(after?.status?.lastUpdateTime, '2026-01-01T12:01:00Z');
  // Deleted by someone: re-created on the next interval, with a new UID.
  api.objects.delete('node-a');
  await clock.advanceAsync(60_000);
  assert.equal(api.objects.get('node-a')?.metadata.uid, 'mn-2');
  assert.equal(pub.publishCount, 3);
  await pub.stop();
});

test('failures are retried with backoff (1 s, 2 s, 4 s ...) and then the interval resumes', async () => {
  const { clock, api, pub } = setup({ intervalMs: 600_000 });
  const down = (): Error => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  api.fail.node = [down(), down(), down()];
  pub.start();
  await clock.advanceAsync(0);
  assert.equal(api.calls.length, 1);
  await clock.advanceAsync(999);
  assert.equal(api.calls.length, 1, 'first retry after 1 s');
  await clock.advanceAsync(1);
  assert.equal(api.calls.length, 2);
  await clock.advanceAsync(1999);
  assert.equal(api.calls.length, 2, 'second retry after 2 s more');
  await clock.advanceAsync(1);
  assert.equal(api.calls.length, 3);
  await clock.advanceAsync(4000);
  assert.equal(pub.publishCount, 1, 'the fourth attempt publishes');
  const n = api.calls.length;
  await clock.advanceAsync(599_999);
  assert.equal(api.calls.length, n, 'then the full interval');
  await clock.advanceAsync(1);
  assert.equal(pub.publishCount, 2);
  await pub.stop();
});

test('429 waits for Retry-After; a create that lost a race (409) reads the winner and applies', async () => {
  const { clock, api, pub } = setup();
  api.fail.get = [new KubeApiError(429, { kind: 'Status', code: 429, details: { retryAfterSeconds: 30 } })];
  pub.start();
  await clock.advanceAsync(29_999);
  assert.equal(pub.publishCount, 0);
  await clock.advanceAsync(1);
  assert.equal(pub.publishCount, 1);
  await pub.stop();

  const b = setup();
  b.api.fail.create = [new KubeApiError(409, { kind: 'Status', code: 409 })];
  b.api.objects.set('node-a', { metadata: { name: 'node-a', generation: 1 } });
  // The first GET misses the object another attempt creates right after.
  const realGet = b.api.get.bind(b.api);
  let first = true;
  b.api.get = (name: string) => {
    if (first) {
      first = false;
      b.api.calls.push('get');
      return Promise.resolve(undefined);
    }
    return realGet(name);
  };
  b.pub.start();
  await b.clock.advanceAsync(0);
  assert.deepEqual(b.api.calls, ['node', 'get', 'create', 'get', 'applyStatus']);
  assert.equal(b.pub.publishCount, 1);
  await b.pub.stop();
});

test('a failed measurement is written as Published=False and retried; a missing Node creates nothing', async () => {
  let broken = true;
  const { clock, api, pub } = setup({ measure: () => (broken ? Promise.reject(new Error('criu --version timed out')) : Promise.resolve(structuredClone(MEASURED))) });
  pub.start();
  await clock.advanceAsync(0);
  const o = api.objects.get('node-a');
  assert.equal(o?.status?.conditions?.[0]?.status, 'False');
  assert.match(o?.status?.conditions?.[0]?.message ?? '', /criu --version timed out/);
  assert.equal(o?.status?.observedFacts, undefined);
  broken = false;
  await clock.advanceAsync(1000);
  assert.equal(api.objects.get('node-a')?.status?.conditions?.[0]?.status, 'True');
  await pub.stop();

  const b = setup();
  b.api.nodes.clear();
  b.pub.start();
  await b.clock.advanceAsync(10_000);
  assert.equal(b.api.objects.size, 0);
  assert.ok(b.api.calls.every((c) => c === 'node'), b.api.calls.join(','));
  await b.pub.stop();
});

test('stop() cancels the next attempt', async () => {
  const { clock, api, pub } = setup({ intervalMs: 1000 });
  pub.start();
  await clock.advanceAsync(0);
  await pub.stop();
  const n = api.calls.length;
  await clock.advanceAsync(10_000);
  assert.equal(api.calls.length, n);
  assert.equal(clock.pending(), 0);
});
