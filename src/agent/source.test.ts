// The source side's orchestration on a fake clock: a busy target (429) is retried after its Retry-After and
// no sooner, retries stop at the probe's timeout, and a finished operation is forgotten after
// retainFinishedMs. The engine and the peer agent are fakes; tar is real.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { FakeClock } from '../kube/clock.ts';
import { nullLogger } from '../kube/logger.ts';
import type { NodeFacts, RestoreCheckResult } from '../engine/index.ts';
import { AgentHttpError } from '../agent-api/client.ts';
import type { AgentEngine } from './deps.ts';
import { OperationRegistry } from './operations.ts';
import type { StartRequest } from '../agent-api/protocol.ts';
import type { V1Pod } from '@kubernetes/client-node';
import type { MigrationProbe } from '../api/v1alpha1.ts';
import { SourceSide } from './source.ts';

const UID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const facts: NodeFacts = { hostname: 'h', arch: 'x86_64', kernelRelease: '6.18', criuVersion: '4.2.1', criuFeatures: {}, memAvailableBytes: 1, cpu: { vendor: 'v', model: 'm', flags: [] } };
const req: StartRequest = { protocol: 2, probeName: 'p', namespace: 'ns', podName: 'web', containerName: 'app', containerId: 'cid1', target: { nodeName: 'b' } };
const probe = (timeoutSeconds = 20): MigrationProbe => ({ metadata: { name: 'p', namespace: 'ns', uid: UID }, spec: { podName: 'web', containerName: 'app', targetNodeName: 'b', timeoutSeconds } });
const targetPod: V1Pod = { metadata: { name: 'agent-b', namespace: 'sys', labels: { 'app.kubernetes.io/name': 'migprobe-agent' } }, spec: { nodeName: 'b', containers: [] }, status: { phase: 'Running', podIP: '127.0.0.1' } };
const busy = (): AgentHttpError => new AgentHttpError(429, { code: 'Busy', message: 'too many restore checks running on this node' }, 3000);

/** Resolves when `pred` holds, letting real I/O (tar, fs) run between looks. */
async function until(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('condition not reached');
}

function side(t: { after(fn: () => Promise<void>): void }, answers: (() => Promise<RestoreCheckResult>)[], timeoutSeconds = 20) {
  const root = mkdtempSync(join(tmpdir(), 'migprobe-source-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const clock = new FakeClock();
  const ops = new OperationRegistry({ workRoot: root, retainFinishedMs: 60_000, clock });
  const calls: number[] = [];
  const engine: AgentEngine = {
    sourceDumpCheck: async (_ref, _o, workDir) => {
      const bundleDir = join(workDir, 'bundle');
      await mkdir(join(bundleDir, 'images'), { recursive: true });
      await writeFile(join(bundleDir, 'images', 'core-1.img'), Buffer.alloc(3000, 7));
      return { reasons: [], timings: { freezeMs: 5, dumpMs: 50 }, sizes: { imageBytes: 3000 }, criuVersion: '4.2.1', bundleDir };
    },
    targetRestoreCheck: () => Promise.reject(new Error('not on the source')),
    collectNodeFacts: async () => facts,
    checkRestoreOnly: () => Promise.reject(new Error('not on the source')),
  };
  const src = new SourceSide({
    config: {
      nodeName: 'a', workRoot: root, criu: 'criu', containerd: { namespace: 'k8s.io' }, maxBundleBytes: 1 << 20, maxConcurrentDumps: 1, maxConcurrentRestores: 1, retainFinishedMs: 60_000,
      callers: { controllers: [], peers: [] },
      peers: { namespace: 'sys', scheme: 'http', defaultPort: 1 },
    },
    engine,
    pods: async () => ({ nodeName: 'a', containerIds: { app: 'containerd://cid1' }, containerNames: ['app'] }),
    probes: async () => probe(timeoutSeconds),
    agentPods: async () => [targetPod],
    namespaces: async () => false,
    run: async (file, args, o) => {
      await execa(file, args, { timeout: o.timeoutMs });
    },
    clock,
    ops,
    nodeFacts: async () => facts,
    peer: {
      restoreCheck: async () => {
        calls.push(clock.now());
        const next = answers.shift();
        if (next === undefined) throw new Error('no more answers');
        return await next();
      },
    },
  });
  return { src, clock, ops, calls };
}

test('a busy target is asked again after its Retry-After on the clock, and not before', async (t) => {
  const ok = async (): Promise<RestoreCheckResult> => ({ reasons: [], timings: { restoreMs: 30 }, criuVersion: '4.2.2', facts });
  const { src, clock, ops, calls } = side(t, [() => Promise.reject(busy()), () => Promise.reject(busy()), ok]);
  const t0 = clock.now();
  await src.start(UID, req, nullLogger());
  await until(() => calls.length === 1 && clock.pending() === 1);
  await clock.advanceAsync(2999);
  assert.equal(calls.length, 1, 'not before Retry-After');
  await clock.advanceAsync(1);
  await until(() => calls.length === 2 && clock.pending() === 1);
  await clock.advanceAsync(3000);
  await ops.get(UID)?.done;
  assert.deepEqual(calls, [t0, t0 + 3000, t0 + 6000]);
  const st = ops.get(UID)?.status;
  assert.equal(st?.state, 'Done', JSON.stringify(st));
  assert.equal(st?.verdict?.migratable, true);
  assert.deepEqual(st?.verdict?.criu, { source: '4.2.1', target: '4.2.2' });
  assert.equal(st?.verdict?.timings.totalMs, 6000);
  assert.ok((st?.verdict?.sizes.shippedBytes ?? 0) > 0);
});

test('retries stop at the probe timeout: RestoreFailed from the last answer; the operation is forgotten after retainFinishedMs', async (t) => {
  const { src, clock, ops, calls } = side(t, Array.from({ length: 20 }, () => () => Promise.reject(busy())), 10);
  await src.start(UID, req, nullLogger());
  for (let i = 1; i <= 3; i++) {
    await until(() => calls.length === i && clock.pending() === 1);
    await clock.advanceAsync(3000);
  }
  // At +9000 ms the next try would end past the 10 s timeout: no more sleeping.
  await until(() => ops.get(UID)?.status.state !== 'Running');
  await ops.get(UID)?.done;
  assert.equal(calls.length, 4);
  const st = ops.get(UID)?.status;
  assert.equal(st?.state, 'Done', JSON.stringify(st));
  assert.deepEqual(st?.verdict?.reasons.map((r) => `${r.code}/${r.phase}`), ['RestoreFailed/restore']);
  assert.equal(clock.pending(), 1, 'only the expiry timer');
  await clock.advanceAsync(59_999);
  assert.ok(ops.get(UID), 'remembered until retainFinishedMs');
  await clock.advanceAsync(1);
  assert.equal(ops.get(UID), undefined);
});
