// The agent's HTTP API on loopback with an injected engine, TokenReview, pod, probe and agent-pod lookups:
// authentication, authorization per endpoint and per probe, input validation, the node check, idempotent start, streaming with sha256 and size cap, cleanup.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { execa } from 'execa';
import { realClock } from '../kube/clock.ts';
import { nullLogger } from '../kube/logger.ts';
import type { NodeFacts } from '../engine/index.ts';
import { Authenticator } from '../agent-api/auth.ts';
import { AgentClient, AgentHttpError } from '../agent-api/client.ts';
import { AgentServer } from './server.ts';
import type { AgentEngine, PodInfo } from './deps.ts';
import type { OperationStatus, StartRequest } from '../agent-api/protocol.ts';
import type { V1Pod } from '@kubernetes/client-node';
import type { MigrationProbe } from '../api/v1alpha1.ts';
import { tarOf } from '../../test/agent/crafted-bundle.ts';

const UID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const facts: NodeFacts = { hostname: 'h', arch: 'x86_64', kernelRelease: '6.18', criuVersion: '4.2.1', criuFeatures: {}, memAvailableBytes: 1, cpu: { vendor: 'v', model: 'm', flags: [] } };
const opts = { tcpEstablished: false, fileLocks: false, extUnixSockets: false, ghostLimitBytes: 1048576, freezeBudgetMs: 2000, timeoutMs: 20_000 };
const agentPod = (node: string, port: number): V1Pod => ({
  metadata: { name: `agent-${node}`, namespace: 'sys', labels: { 'app.kubernetes.io/name': 'migprobe-agent' } },
  spec: { nodeName: node, containers: [{ name: 'agent', ports: [{ name: 'api', containerPort: port }] }] },
  status: { phase: 'Running', podIP: '127.0.0.1' },
});

async function agents(t: { after(fn: () => Promise<void>): void }, engineOverrides: Partial<AgentEngine> = {}, maxBundleBytes = 1 << 20) {
  const root = mkdtempSync(join(tmpdir(), 'migprobe-agent-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const pods: Record<string, PodInfo> = { 'ns/web': { nodeName: 'a', containerIds: { app: 'containerd://cid1' }, containerNames: ['app'] } };
  const probes: Record<string, MigrationProbe> = { 'ns/p': { metadata: { name: 'p', namespace: 'ns', uid: UID }, spec: { podName: 'web', targetNodeName: 'b', timeoutSeconds: 20 } } };
  const agentPods: V1Pod[] = [];
  const namespaces = new Set(['ns']);
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
      config: {
        nodeName, workRoot: join(root, nodeName), checkpointDir: join(root, 'checkpoints'), criu: 'criu', containerd: { namespace: 'k8s.io' }, maxBundleBytes, maxConcurrentDumps: 1, maxConcurrentRestores: 1, retainFinishedMs: 60_000,
        callers: { controllers: ['system:serviceaccount:sys:ctl'], peers: ['system:serviceaccount:sys:agent'] },
        peers: { namespace: 'sys', scheme: 'http', defaultPort: 1 },
      },
      engine,
      auth: new Authenticator({ allowedUsers: ['system:serviceaccount:sys:ctl', 'system:serviceaccount:sys:agent'], review, clock: realClock }),
      pods: async (ns, name) => pods[`${ns}/${name}`],
      probes: async (ns, name) => probes[`${ns}/${name}`],
      agentPods: async (node) => agentPods.filter((p) => p.spec?.nodeName === node),
      namespaces: async (name) => namespaces.has(name),
      peer: new AgentClient({ tokens: { token: async () => 'token-agent' } }),
      run: async (file, args, o) => {
        await execa(file, args, { timeout: o.timeoutMs });
      },
      clock: realClock,
      log: nullLogger(),
    });
    await srv.sweepWorkRoot();
    const addr = await srv.listen(host, 0);
    agentPods.push(agentPod(nodeName, addr.port));
    t.after(() => srv.close(1000));
    return { srv, url: `http://${host}:${addr.port}`, workRoot: join(root, nodeName) };
  };
  const src = await mk('a', '127.0.0.1');
  const dst = await mk('b', '127.0.0.1');
  const ctl = new AgentClient({ tokens: { token: async () => 'token-controller' } });
  const req: StartRequest = { protocol: 2, probeName: 'p', namespace: 'ns', podName: 'web', containerName: 'app', containerId: 'cid1', target: { nodeName: 'b' } };
  return { src, dst, ctl, req, restored, pods, probes, agentPods, namespaces, root };
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

test('full source -> target run, idempotent start, artifacts deleted on both sides; a target URL from the caller is ignored', async (t) => {
  const { src, dst, ctl, req, restored } = await agents(t);
  // A decoy the caller names as the target: the agent finds the target agent from its pod instead.
  const { createServer } = await import('node:net');
  let decoyHits = 0;
  const decoy = createServer((c) => {
    decoyHits++;
    c.destroy();
  });
  const decoyPort = await new Promise<number>((resolve) => decoy.listen(0, '127.0.0.1', () => resolve((decoy.address() as { port: number }).port)));
  t.after(() => new Promise<void>((r) => decoy.close(() => r())));
  const withUrl = { ...req, target: { nodeName: 'b', url: `http://127.0.0.1:${decoyPort}` } } as StartRequest;
  const s1 = await ctl.start(src.url, UID, withUrl);
  const s2 = await ctl.start(src.url, UID, req);
  assert.equal(s1.startedAt, s2.startedAt, 'same operation');
  const done = await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.equal(done.state, 'Done', JSON.stringify(done));
  assert.equal(done.verdict?.migratable, true);
  assert.ok((done.verdict?.sizes.shippedBytes ?? 0) > 0);
  assert.deepEqual(done.verdict?.criu, { source: '4.2.1', target: '4.2.1' });
  assert.deepEqual(restored, [['core-1.img']]);
  assert.equal(decoyHits, 0, 'the caller\'s URL was never dialled');
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

test('authorization per endpoint: the controller may not call restore-check, a peer agent may not start, read or delete probes', async (t) => {
  const { src, dst, req } = await agents(t);
  const hdr = Buffer.from(JSON.stringify({ namespace: 'ns', podName: 'web', sourceNodeName: 'a', options: opts })).toString('base64url');
  const restoreHeaders = { 'x-migprobe-sha256': 'a'.repeat(64), 'x-migprobe-request': hdr, 'content-length': '5' };
  assert.equal(await raw(dst.url, 'POST', `/v1/probes/${UID}/restore-check`, { ...restoreHeaders, authorization: 'Bearer token-controller' }, 'hello'), 403);
  const body = JSON.stringify(req);
  assert.equal(await raw(src.url, 'PUT', `/v1/probes/${UID}`, { authorization: 'Bearer token-agent', 'content-type': 'application/json', 'content-length': String(body.length) }, body), 403);
  assert.equal(await raw(src.url, 'GET', `/v1/probes/${UID}`, { authorization: 'Bearer token-agent' }), 403);
  assert.equal(await raw(src.url, 'DELETE', `/v1/probes/${UID}`, { authorization: 'Bearer token-agent' }), 403);
  assert.deepEqual(readdirSync(src.workRoot), []);
  assert.deepEqual(readdirSync(dst.workRoot), []);
});

async function code(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    return e instanceof AgentHttpError ? `${e.status} ${e.body?.code ?? ''}` : String(e);
  }
}

test('input validation, the live probe check and the node check', async (t) => {
  const { src, ctl, req, pods, probes } = await agents(t);
  const p = probes['ns/p']!;
  assert.equal(await code(() => ctl.start(src.url, 'not-a-uid', req)), '400 InvalidSpec');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, containerId: '../../x' })), '400 InvalidSpec');
  // The probe must exist in the pod's namespace with the path's UID, be live, and name this pod, container, target.
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'nope' })), '404 ProbeNotFound');
  assert.equal(await code(() => ctl.start(src.url, '1f8fad5b-d9cb-469f-a165-70867728950e', req)), '404 ProbeNotFound');
  probes['other/q'] = { ...p, metadata: { ...p.metadata, name: 'q', namespace: 'other' } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'q' })), '404 ProbeNotFound', 'a probe of another namespace than the pod');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, podName: 'other' })), '403 ProbeMismatch');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, containerName: 'sidecar' })), '403 ProbeMismatch');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, target: { nodeName: 'c' } })), '403 ProbeMismatch');
  probes['ns/done'] = { ...p, metadata: { ...p.metadata, name: 'done' }, status: { phase: 'Failed' } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'done' })), '404 ProbeNotFound');
  probes['ns/gone'] = { ...p, metadata: { ...p.metadata, name: 'gone', deletionTimestamp: new Date().toISOString() } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'gone' })), '404 ProbeNotFound');
  // The node and container checks.
  pods['ns/elsewhere'] = { nodeName: 'z', containerIds: { app: 'containerd://cid1' }, containerNames: ['app'] };
  probes['ns/pe'] = { ...p, metadata: { ...p.metadata, name: 'pe' }, spec: { ...p.spec, podName: 'elsewhere' } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'pe', podName: 'elsewhere' })), '403 PodNotOnNode');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, containerId: 'cid2' })), '409 ContainerNotFound');
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, target: { nodeName: 'a' } })), '409 SameNode');
  // No agent pod on the probe's target node.
  probes['ns/pc'] = { ...p, metadata: { ...p.metadata, name: 'pc' }, spec: { ...p.spec, targetNodeName: 'c' } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'pc', target: { nodeName: 'c' } })), '409 AgentUnavailable');
  probes['ns/ro'] = { ...p, metadata: { ...p.metadata, name: 'ro' }, spec: { ...p.spec, mode: 'RestoreOnly', checkpoint: { path: '/etc' } } };
  assert.equal(await code(() => ctl.start(src.url, UID, { ...req, probeName: 'ro' })), '404 CheckpointNotFound');
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
  const { src, ctl, req, agentPods } = await agents(t);
  // The target node's agent pod says a port nothing listens on: bind one, then close it.
  const { createServer } = await import('node:net');
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
  agentPods.splice(0, agentPods.length, agentPod('b', port));
  await ctl.start(src.url, UID, req);
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

test('RestoreOnly: a checkpoint of the probe\'s namespace (kubelet name or <namespace>/ folder) goes to the target restore-only check; another namespace\'s is CheckpointNotAllowed', async (t) => {
  const { src, ctl, req, restored, root, probes, namespaces } = await agents(t);
  const cps = join(root, 'checkpoints');
  const restoreOnly = (path: string): void => {
    const p = probes['ns/p']!;
    probes['ns/p'] = { ...p, spec: { ...p.spec, mode: 'RestoreOnly', checkpoint: { path } } };
  };
  await mkdir(join(cps, 'ns', 'folder'), { recursive: true });
  await writeFile(join(cps, 'ns', 'folder', 'inventory.img'), 'x');
  const mine = 'checkpoint-web_ns-app-2026-12-02T10:43:00Z.tar';
  // A tar (the target reads an archive through before the engine unpacks it), the engine is a fake.
  await writeFile(join(cps, mine), tarOf([{ path: 'checkpoint/', type: 'Directory' }, { path: 'checkpoint/inventory.img', body: 'x' }]));
  restoreOnly(join(cps, mine));
  await ctl.start(src.url, UID, req);
  const d = await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.equal(d.verdict?.migratable, true, JSON.stringify(d));
  await ctl.delete(src.url, UID);
  restoreOnly(join(cps, 'ns', 'folder'));
  await ctl.start(src.url, UID, req);
  await until(ctl, src.url, (s) => s.state !== 'Running');
  assert.deepEqual(restored, [[`archive:${mine}`], ['images:inventory.img']]);
  await ctl.delete(src.url, UID);
  // Outside the checkpoint folder, or missing: CheckpointNotFound.
  const refusal = async (path: string): Promise<string> => {
    restoreOnly(path);
    return await code(() => ctl.start(src.url, UID, req));
  };
  assert.equal(await refusal(join(cps, 'ns', 'nope')), '404 CheckpointNotFound');
  assert.equal(await refusal(join(cps, '..', 'a')), '404 CheckpointNotFound');
  // Another namespace's, by the kubelet's name or by folder: refused before the file is looked at (it need not exist).
  assert.equal(await refusal(join(cps, 'checkpoint-web_other-app-2026-12-02T10:43:00Z.tar')), '403 CheckpointNotAllowed');
  assert.equal(await refusal(join(cps, 'other', 'folder')), '403 CheckpointNotAllowed');
  // A name that says no namespace, and a link in ns/ to another namespace's checkpoint.
  await writeFile(join(cps, 'cp.tar'), 'x');
  assert.equal(await refusal(join(cps, 'cp.tar')), '403 CheckpointNotAllowed');
  await writeFile(join(cps, 'checkpoint-db_other-app-2026-12-02T10:43:00Z.tar'), 'x');
  await symlink(join(cps, 'checkpoint-db_other-app-2026-12-02T10:43:00Z.tar'), join(cps, 'ns', 'link.tar'));
  assert.equal(await refusal(join(cps, 'ns', 'link.tar')), '403 CheckpointNotAllowed');
  // ns-my-app reads as namespace ns + container my-app, or ns-my + app: refused while namespace ns-my exists.
  const ambiguous = 'checkpoint-web_ns-my-app-2026-12-02T10:43:00Z.tar';
  await writeFile(join(cps, ambiguous), 'x');
  namespaces.add('ns-my');
  assert.equal(await refusal(join(cps, ambiguous)), '403 CheckpointNotAllowed');
  assert.equal(readdirSync(src.workRoot).length, 0, 'no side effect');
  assert.equal(restored.length, 2);
});
