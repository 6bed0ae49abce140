// One operation per probe UID and per container, cancellation, recovery and hashing, on the test bed (real
// containers in its containerd, the real engine and CRIU, pod lookups and TokenReview against its API server):
// two concurrent PUTs for one UID run one dump and answer the other 409; another UID for the same container is
// refused while it runs; DELETE during a dump (CRIU held with the workload frozen) cancels it and the workload
// runs; recovery ignores a forged marker inside a bundle, at a wrong depth or in a wrong format; a mapped path the
// workload turned into a symlink to a host file is not hashed. Each leaves nothing on the node.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient, AgentHttpError } from '../../src/agent-api/client.ts';
import { isProbeUid, type StartRequest } from '../../src/agent-api/protocol.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';
import * as k8s from '@kubernetes/client-node';
import { resolveContainer } from '../../src/engine/container.ts';
import { MARKER_NAME, recoverFrozen } from '../../src/engine/dump.ts';
import { hashMappedFiles } from '../../src/engine/facts.ts';
import { defaultProbeDeps, sourceDumpCheck } from '../../src/engine/probe.ts';
import { kube, type RunningContainer } from '../../testbed/index.ts';
import { counter, counterAdvances, taskStates } from '../engine/engine-helpers.ts';
import { startWorkload } from '../engine/workloads.ts';
import { startBedAgent, workLeft, type BedAgent } from './agent-bed.ts';

const UID = '3b1d2c4e-5f60-4a7b-8c9d-0e1f2a3b4c5d';
const UID2 = '9a8b7c6d-5e4f-4321-8fed-cba987654321';

/**
 * A "target agent" that accepts connections and never answers (holds a source operation in its restore stage),
 * registered as the agent pod of node agenthttp-target in the agent's namespace (the source agent finds it there).
 */
async function silentPeer(t: { after(fn: () => Promise<void>): void }, a: BedAgent): Promise<void> {
  const socks = new Set<Socket>();
  const srv = createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(async () => {
    for (const s of socks) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  const addr = srv.address();
  a.peers.defaultPort = typeof addr === 'object' && addr ? addr.port : 0;
  await kube.createRunningPod(a.kc, { namespace: a.namespace, name: 'agent-target', nodeName: 'agenthttp-target', containerName: 'agent', containerId: 'agent-target', image: 'migprobe-agent:dev', labels: { 'app.kubernetes.io/name': 'migprobe-agent' }, podIP: '127.0.0.1' });
  t.after(() => kube.deletePod(a.kc, a.namespace, 'agent-target'));
}

/** A Running Pod for the container and a MigrationProbe of it (the agent works only for a live probe): the request and the probe's UID. */
async function podFor(a: BedAgent, c: RunningContainer, name: string): Promise<{ req: StartRequest; uid: string }> {
  await kube.createRunningPod(a.kc, { namespace: a.namespace, name, nodeName: a.nodeName, containerName: 'app', containerId: c.id, image: c.image });
  const api = a.kc.makeApiClient(k8s.CustomObjectsApi);
  const p = (await api.createNamespacedCustomObject({
    group: 'migprobe.io',
    version: 'v1alpha1',
    namespace: a.namespace,
    plural: 'migrationprobes',
    body: { apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationProbe', metadata: { name, namespace: a.namespace }, spec: { podName: name, targetNodeName: 'agenthttp-target', timeoutSeconds: 60 } },
  })) as MigrationProbe;
  const req: StartRequest = { protocol: 2, probeName: name, namespace: a.namespace, podName: name, containerName: 'app', containerId: c.id, target: { nodeName: 'agenthttp-target' } };
  return { req, uid: p.metadata.uid ?? '' };
}

async function untilGone(ctl: AgentClient, a: BedAgent, uid: string, withinMs = 20_000): Promise<void> {
  const end = Date.now() + withinMs;
  while ((await ctl.get(a.url, uid)) !== undefined) {
    if (Date.now() > end) throw new Error(`operation ${uid} still known after ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function assertRunning(c: RunningContainer): Promise<void> {
  const states = await taskStates([c.pid]);
  assert.ok(!states.some((s) => s === 't' || s === 'T'), `workload states: ${states.join(',')}`);
  await counterAdvances(c, await counter(c));
}

test('two concurrent PUTs for one UID: one dump runs, the other gets 409 OperationInProgress; another UID for the container gets 409 ContainerBusy', async (t) => {
  let dumps = 0;
  // The pod lookup answers after 300 ms (a slow API server): both PUTs are in flight at once.
  const a = await startBedAgent(t, {
    pods: (real) => async (ns, name) => {
      await new Promise((r) => setTimeout(r, 300));
      return await real(ns, name);
    },
    engine: (real) => ({
      ...real,
      sourceDumpCheck: async (...args) => {
        dumps++;
        return await real.sourceDumpCheck(...args);
      },
    }),
  });
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const { req, uid: UID } = await podFor(a, c, 'web');
  t.after(() => kube.deletePod(a.kc, a.namespace, 'web'));
  await silentPeer(t, a);
  const token = await a.token();
  const ctl = new AgentClient({ tokens: { token: async () => token } });
  const both = await Promise.allSettled([ctl.start(a.url, UID, req), ctl.start(a.url, UID, req)]);
  const ok = both.filter((r) => r.status === 'fulfilled');
  const refused = both.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  assert.equal(ok.length, 1, JSON.stringify(both));
  assert.equal(refused.length, 1);
  const e = refused[0];
  assert.ok(e instanceof AgentHttpError, String(e));
  assert.equal(e.status, 409);
  assert.equal(e.body?.code, 'OperationInProgress');
  assert.match(e.body?.message ?? '', /already being started on this agent \(a concurrent PUT\)/);
  assert.equal(e.retryAfterMs, 1000);
  // The operation runs (held in its restore stage by the silent target); another probe of the container waits.
  for (let i = 0; i < 400 && (await ctl.get(a.url, UID))?.state === 'Running' && (await ctl.get(a.url, UID))?.stage !== 'restore'; i++) await new Promise((r) => setTimeout(r, 50));
  const running = await ctl.get(a.url, UID);
  assert.equal(running?.stage, 'restore', JSON.stringify(running));
  await assert.rejects(ctl.start(a.url, UID2, req), (x: AgentHttpError) => x.status === 409 && x.body?.code === 'ContainerBusy' && /one operation per container/.test(x.body.message));
  // A repeated PUT once it runs is idempotent.
  assert.equal((await ctl.start(a.url, UID, req)).uid, UID);
  assert.equal(dumps, 1, 'exactly one dump');
  // DELETE cancels the waiting upload; nothing is left.
  await ctl.delete(a.url, UID);
  await untilGone(ctl, a, UID);
  assert.equal(await ctl.get(a.url, UID2), undefined);
  assert.deepEqual(await workLeft(a), []);
  await assertRunning(c);
});

test('DELETE during a dump that holds the workload frozen cancels it: CRIU interrupted, the workload runs, nothing left', async (t) => {
  let held: (criuPid: number) => void = () => undefined;
  const criuHeld = new Promise<number>((r) => (held = r));
  const a = await startBedAgent(t, {
    engine: (real) => ({
      ...real,
      // The real source half, with CRIU stopped (SIGSTOP) the moment the workload is seen stopped: a dump
      // that hangs while it holds the workload.
      sourceDumpCheck: (ref, opts, workDir, signal) =>
        sourceDumpCheck(ref, opts, workDir, { ...defaultProbeDeps, dumpHooks: { onWorkloadStopped: (pid) => {
          process.kill(pid, 'SIGSTOP');
          held(pid);
        } } }, signal),
    }),
  });
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const { req, uid: UID } = await podFor(a, c, 'web2');
  t.after(() => kube.deletePod(a.kc, a.namespace, 'web2'));
  await silentPeer(t, a);
  const token = await a.token();
  const ctl = new AgentClient({ tokens: { token: async () => token }, timeoutMs: 20_000 });
  await ctl.start(a.url, UID, req);
  const criuPid = await Promise.race([criuHeld, new Promise<number>((_, rej) => setTimeout(() => rej(new Error('CRIU never held the workload')), 30_000))]);
  const during = await taskStates([c.pid]);
  assert.ok(during.some((s) => s === 't' || s === 'T'), `the workload is held by CRIU: ${during.join(',')}`);
  assert.equal((await ctl.get(a.url, UID))?.stage, 'dump');
  const t0 = Date.now();
  await ctl.delete(a.url, UID);
  await untilGone(ctl, a, UID);
  const ms = Date.now() - t0;
  assert.ok(ms < 20_000, `cancelled in ${ms} ms`);
  assert.ok(!existsSync(`/proc/${criuPid}/comm`) || (await readFile(`/proc/${criuPid}/comm`, 'utf8')).trim() !== 'criu', 'CRIU is gone');
  await assertRunning(c);
  assert.deepEqual(await workLeft(a), [], 'work folder and marker removed');
});

test('recovery ignores a forged marker inside a received bundle, at a wrong depth, in a wrong place or format; acts on its own', async (t) => {
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const root = await mkdtemp(join(tmpdir(), 'agenthttp-recover-'));
  t.after(async () => {
    try {
      process.kill(c.pid, 'SIGCONT');
    } catch {
      // the container is gone already
    }
    await rm(root, { recursive: true, force: true });
  });
  // The workload is left in a stop, as a crashed dump could leave it; a forged freezer folder records writes.
  process.kill(c.pid, 'SIGSTOP');
  for (let i = 0; i < 100 && !(await taskStates([c.pid])).includes('T'); i++) await new Promise((r) => setTimeout(r, 10));
  const fakeFreezer = join(root, 'fake-freezer');
  await mkdir(fakeFreezer);
  await writeFile(join(fakeFreezer, 'freezer.state'), 'FROZEN');
  const marker = { pid: c.pid, pids: [c.pid], since: new Date().toISOString() };
  const forged: [string, unknown, number][] = [
    [`${UID}.target/bundle/${MARKER_NAME}`, marker, 0o600], // inside a received bundle
    [`${UID}.target/${MARKER_NAME}`, marker, 0o600], // a target folder
    [`${UID}/bundle/${MARKER_NAME}`, marker, 0o600], // two levels deep
    [`not-a-probe/${MARKER_NAME}`, marker, 0o600], // a folder that is no probe's
    [`${UID2}/${MARKER_NAME}`, marker, 0o644], // readable by others: not how dumpCheck writes it
    [`aaaaaaaa-0000-4000-8000-000000000001/${MARKER_NAME}`, { ...marker, freezerCgroupDir: fakeFreezer }, 0o600], // format
    [`aaaaaaaa-0000-4000-8000-000000000002/${MARKER_NAME}`, { ...marker, exec: ['rm', '-rf', '/'] }, 0o600],
  ];
  for (const [rel, m, mode] of forged) {
    await mkdir(join(root, rel, '..'), { recursive: true });
    await writeFile(join(root, rel), JSON.stringify(m), { mode });
  }
  await mkdir(join(root, 'aaaaaaaa-0000-4000-8000-000000000003'));
  await symlink(join(root, `${UID}.target/${MARKER_NAME}`), join(root, 'aaaaaaaa-0000-4000-8000-000000000003', MARKER_NAME)); // a symlink
  const rec = await recoverFrozen(root, isProbeUid); // as main.ts calls it
  // Those in the folders of its own layout are reported as ignored (with why); the rest are not even looked at.
  const seen = ['9a8b7c6d-5e4f-4321-8fed-cba987654321', 'aaaaaaaa-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000003'];
  assert.deepEqual(rec.map((r) => r.marker.slice(root.length + 1)).sort(), seen.map((d) => `${d}/${MARKER_NAME}`), JSON.stringify(rec));
  assert.ok(rec.every((r) => r.actions.length === 1 && r.actions[0]?.startsWith('ignored: ')), JSON.stringify(rec));
  assert.ok((await taskStates([c.pid])).includes('T'), 'nothing acted on the forged markers: still stopped');
  assert.equal(await readFile(join(fakeFreezer, 'freezer.state'), 'utf8'), 'FROZEN', 'the forged freezer folder was not written');
  // Its own marker, where and as dumpCheck writes it: acted on.
  await mkdir(join(root, UID), { recursive: true });
  await writeFile(join(root, UID, MARKER_NAME), JSON.stringify(marker), { mode: 0o600 });
  const own = await recoverFrozen(root, isProbeUid);
  const mine = own.find((r) => r.marker === join(root, UID, MARKER_NAME));
  assert.ok(mine?.actions.some((x) => x.startsWith('SIGCONT')), JSON.stringify(own));
  await assertRunning(c);
  assert.ok(!existsSync(join(root, UID, MARKER_NAME)));
});

test('hashing mapped files: a path the workload turned into a symlink to a host file (or through a symlinked folder) is not hashed', async (t) => {
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '16']);
  const info = await resolveContainer({ pid: c.pid });
  const hostDir = await mkdtemp(join(tmpdir(), 'agenthttp-host-'));
  const fakeProc = await mkdtemp(join(tmpdir(), 'agenthttp-proc-'));
  t.after(async () => {
    await rm(hostDir, { recursive: true, force: true });
    await rm(fakeProc, { recursive: true, force: true });
  });
  await writeFile(join(hostDir, 'secret'), 'host secret, not the container\'s');
  // In the container's root filesystem (its writable layer): a file link and a folder link to the host.
  const croot = `/proc/${c.pid}/root`;
  await symlink(join(hostDir, 'secret'), join(croot, 'evil.so'));
  await symlink(hostDir, join(croot, 'evildir'));
  // The maps as the workload makes them look after swapping files for links (the race, made deterministic):
  // the paths of real mappings, then the links. The process root is the container's real one.
  await mkdir(join(fakeProc, String(c.pid)));
  await symlink(croot, join(fakeProc, String(c.pid), 'root'));
  const line = (p: string): string => `7f0000000000-7f0000001000 r--p 00000000 00:00 1234 ${p}`;
  await writeFile(join(fakeProc, String(c.pid), 'maps'), ['/bin/busybox', '/evil.so', '/evildir/secret', '/usr/local/bin/memhog'].map(line).join('\n') + '\n');
  const digests = await hashMappedFiles({ ...info, pids: [c.pid] }, { proc: fakeProc });
  assert.deepEqual(digests.map((d) => d.path).sort(), ['bin/busybox', 'usr/local/bin/memhog'], JSON.stringify(digests));
  await rm(join(croot, 'evil.so'));
  await rm(join(croot, 'evildir'));
});
