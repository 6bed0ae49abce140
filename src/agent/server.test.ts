// The agent's HTTP API on loopback with an injected engine, TokenReview and pod lookup: authentication,
// input validation, the node check, idempotent start, streaming with sha256 and size cap, cleanup.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { execa } from 'execa';
import { realClock } from '../kube/clock.ts';
import { nullLogger } from '../kube/logger.ts';
import type { NodeFacts } from '../engine/api.ts';
import { Authenticator } from './auth.ts';
import { AgentClient, AgentHttpError } from './client.ts';
import { AgentServer } from './server.ts';
import type { AgentEngine, PodInfo } from './deps.ts';
import type { OperationStatus, StartRequest } from './protocol.ts';

const UID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const facts: NodeFacts = { hostname: 'h', arch: 'x86_64', kernelRelease: '6.18', criuVersion: '4.2.1', criuFeatures: {}, memAvailableBytes: 1, cpu: { vendor: 'v', model: 'm', flags: [] } };
const opts = { tcpEstablished: false, fileLocks: false, extUnixSockets: false, ghostLimitBytes: 1048576, freezeBudgetMs: 2000, timeoutMs: 20_000 };

async function agents(t: { after(fn: () => Promise<void>): void }, engineOverrides: Partial<AgentEngine> = {}, maxBundleBytes = 1 << 20) {
  const root = mkdtempSync(join(tmpdir(), 'migprobe-agent-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const pods: Record<string, PodInfo> = { 'ns/web': { nodeName: 'a', containerIds: { app: 'containerd://cid1' } } };
  const review = async (token: string, audiences: string[]) =>
    token === 'token-controller'
      ? { authenticated: true, username: 'system:serviceaccount:sys:ctl', audiences }
      : token === 'token-agent'
        ? { authenticated: true, username: 'system:serviceaccount:sys:agent', audiences }
        : token === 'token-stranger'
          ? { authenticated: true, username: 'system:serviceaccount:default:stranger', audiences }
          : { authenticated: false };
  const restored: string[][] = [];
  const engine: AgentEngine = {
    sourceDumpCheck: async (_ref, _o, workDir) => {
      const bundleDir = join(workDir, 'bundle');
      await mkdir(join(bundleDir, 'images'), { recursive: true });
      await writeFile(join(bundleDir, 'images', 'core-1.img'), Buffer.alloc(3000, 7));
      await writeFile(join(bundleDir, 'manifest.json'), '{}');
      return { reasons: [], timings: { freezeMs: 5, dumpMs: 50 }, sizes: { imageBytes: 3002 }, criuVersion: '4.2.1', bundleDir };
    },
    targetRestoreCheck: async (bundleDir) => {
      restored.push(readdirSync(join(bundleDir, 'images')));
      return { reasons: [], timings: { restoreMs: 30 }, criuVersion: '4.2.1', facts };
    },
    collectNodeFacts: async () => facts,
    checkRestoreOnly: async (src) => {
      restored.push(['archive' in src ? `archive:${readdirSync(join(src.archive, '..')).join(',')}` : `images:${readdirSync(src.imagesDir).join(',')}`]);
      return { migratable: true, reasons: [], timings: { restoreMs: 20 }, sizes: {}, criu: { target: '4.2.1' } };
    },
    ...engineOverrides,
  };
  const mk = async (nodeName: string, host: string) => {
    const srv = new AgentServer({
      config: { nodeName, workRoot: join(root, nodeName), checkpointDir: join(root, 'checkpoints'), criu: 'criu', containerd: { namespace: 'k8s.io' }, maxBundleBytes, maxConcurrentDumps: 1, maxConcurrentRestores: 1, retainFinishedMs: 60_000 },
      engine,
      auth: new Authenticator({ allowedUsers: ['system:serviceaccount:sys:ctl', 'system:serviceaccount:sys:agent'], review, clock: realClock }),
      pods: async (ns, name) => pods[`${ns}/${name}`],
      peer: new AgentClient({ tokens: { token: async () => 'token-agent' } }),
      run: async (file, args, o) => {
        await execa(file, args, { timeout: o.timeoutMs });
      },
      clock: realClock,
      log: nullLogger(),
    });
    await srv.sweepWorkRoot();
    const addr = await srv.listen(host, 0);
    t.after(() => srv.close(1000));
    return { srv, url: `http://${host}:${addr.port}`, workRoot: join(root, nodeName) };
  };
  const src = await mk('a', '127.0.0.1');
  const dst = await mk('b', '127.0.0.1');
  const ctl = new AgentClient({ tokens: { token: async () => 'token-controller' } });
  const req: StartRequest = { namespace: 'ns', podName: 'web', containerName: 'app', containerId: 'cid1', mode: 'Check', options: opts, target: { nodeName: 'b', url: dst.url } };
  return { src, dst, ctl, req, restored, pods, root };
}

async function until(ctl: AgentClient, url: string, pred: (s: OperationStatus) => boolean): Promise<OperationStatus> {
  for (let i = 0; i < 200; i++) {
    const s = await ctl.get(url, UID);
    if (s && pred(s)) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('operation did not finish');
}

function raw(url: string, method: string, path: string, headers: Record<string, string>, body = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = request(new URL(path, url), { method, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    r.on('error', reject);
    r.end(body);
  });
}

test('full source -> target run, idempotent start, artifacts deleted on both sides', async (t) => {
  const { src, dst, ctl, req, restored } = await agents(t);
  const s1 = await ctl.start(src.url, UID, req);
  const s2 = await ctl.start(src.url, UID, req);
  assert.equal(s1.startedAt, s2.startedAt, 'same operation');
  const done = await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.equal(done.state, 'Done', JSON.stringify(done));
  assert.equal(done.verdict?.migratable, true);
  assert.ok((done.verdict?.sizes.shippedBytes ?? 0) > 0);
  assert.deepEqual(done.verdict?.criu, { source: '4.2.1', target: '4.2.1' });
  assert.deepEqual(restored, [['core-1.img']]);
  assert.deepEqual(readdirSync(src.workRoot), []);
  assert.deepEqual(readdirSync(dst.workRoot), []);
  await ctl.delete(src.url, UID);
  assert.equal(await ctl.get(src.url, UID), undefined);
});

test('authentication: no token 401, unknown token 401, a ServiceAccount not on the allow-list 403', async (t) => {
  const { src } = await agents(t);
  assert.equal(await raw(src.url, 'GET', `/v1/probes/${UID}`, {}), 401);
  assert.equal(await raw(src.url, 'GET', `/v1/probes/${UID}`, { authorization: 'Bearer token-forged-xyz' }), 401);
  assert.equal(await raw(src.url, 'GET', `/v1/probes/${UID}`, { authorization: 'Bearer token-stranger' }), 403);
  assert.equal(await raw(src.url, 'GET', '/healthz', {}), 200);
});

test('input validation and the node check', async (t) => {
  const { src, ctl, req, pods } = await agents(t);
  const code = async (fn: () => Promise<unknown>): Promise<string> => {
    try {
      await fn();
      return 'ok';
    } catch (e) {
      return e instanceof AgentHttpError ? `${e.status} ${e.body?.code ?? ''}` : String(e);
    }
  };
  assert.equal(await code(() => ctl.start(src.url, 'not-a-uid', req)), '400 InvalidSpec');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, containerId: '../../x' })), '400 InvalidSpec');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, podName: 'other' })), '404 PodNotFound');
  pods['ns/elsewhere'] = { nodeName: 'z', containerIds: { app: 'containerd://cid1' } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, podName: 'elsewhere' })), '403 PodNotOnNode');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, containerId: 'cid2' })), '409 ContainerNotFound');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, target: { nodeName: 'a', url: req.target.url } })), '409 SameNode');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, mode: 'RestoreOnly', checkpointPath: '/etc' })), '404 CheckpointNotFound');
  assert.equal(readdirSync(src.workRoot).length, 0, 'no side effect');
});

test('image set over the target cap: ImageTooLarge; corrupted: TransferFailed', async (t) => {
  const small = await agents(t, {}, 100);
  await small.ctl.start(small.src.url, UID, small.req);
  const d1 = await until(small.ctl, small.src.url, (s) => s.state !== 'Running');
  assert.equal(d1.verdict?.migratable, false);
  assert.equal(d1.verdict?.reasons[0]?.code, 'ImageTooLarge');
  // A body that does not match its declared sha256.
  const { dst } = await agents(t);
  const hdr = Buffer.from(JSON.stringify({ namespace: 'ns', podName: 'web', sourceNodeName: 'a', options: opts })).toString('base64url');
  const status = await raw(dst.url, 'POST', `/v1/probes/${UID}/restore-check`, {
    authorization: 'Bearer token-agent',
    'x-migprobe-sha256': 'a'.repeat(64),
    'x-migprobe-request': hdr,
    'content-length': '5',
  }, 'hello');
  assert.equal(status, 400);
  assert.deepEqual(readdirSync(dst.workRoot), []);
});

test('an unreachable target agent: Failed with AgentUnavailable (no verdict), work folder removed', async (t) => {
  const { src, ctl, req } = await agents(t);
  // A port nothing listens on: bind one, then close it.
  const { createServer } = await import('node:net');
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
  await ctl.start(src.url, UID, { ...req, target: { nodeName: 'b', url: `http://127.0.0.1:${port}` } });
  const d = await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.equal(d.state, 'Failed', JSON.stringify(d));
  assert.equal(d.error?.code, 'AgentUnavailable');
  assert.equal(d.error?.phase, 'transfer');
  assert.match(d.error?.message ?? '', /target node b did not answer/);
  assert.equal(d.verdict, undefined);
  assert.deepEqual(readdirSync(src.workRoot), []);
});

test('engine failure: Failed with InternalError, work folder removed', async (t) => {
  const { src, ctl, req } = await agents(t, {
    sourceDumpCheck: async () => {
      throw new Error('boom');
    },
  });
  await ctl.start(src.url, UID, req);
  const d = await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.equal(d.state, 'Failed');
  assert.equal(d.error?.code, 'InternalError');
  assert.deepEqual(readdirSync(src.workRoot), []);
});

test('RestoreOnly: an archive or an image folder from the checkpoint folder goes to the target restore-only check', async (t) => {
  const { src, ctl, req, restored, root } = await agents(t);
  await mkdir(join(root, 'checkpoints', 'folder'), { recursive: true });
  await writeFile(join(root, 'checkpoints', 'folder', 'inventory.img'), 'x');
  await writeFile(join(root, 'checkpoints', 'cp.tar'), 'not really a tar');
  await ctl.start(src.url, UID, { ...req, mode: 'RestoreOnly', checkpointPath: join(root, 'checkpoints', 'cp.tar') });
  const d = await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.equal(d.verdict?.migratable, true, JSON.stringify(d));
  await ctl.delete(src.url, UID);
  await ctl.start(src.url, UID, { ...req, mode: 'RestoreOnly', checkpointPath: join(root, 'checkpoints', 'folder') });
  await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.deepEqual(restored, [['archive:cp.tar'], ['images:inventory.img']]);
  // Outside the checkpoint folder, or missing: CheckpointNotFound.
  await ctl.delete(src.url, UID);
  await assert.rejects(ctl.start(src.url, UID, { ...req, mode: 'RestoreOnly', checkpointPath: join(root, 'checkpoints', 'nope') }), (e: AgentHttpError) => e.body?.code === 'CheckpointNotFound');
  await assert.rejects(ctl.start(src.url, UID, { ...req, mode: 'RestoreOnly', checkpointPath: join(root, 'checkpoints', '..', 'a') }), AgentHttpError);
});
