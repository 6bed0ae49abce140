// The agent's authorization rules as pure functions: who may call which endpoint, which live probe backs a start,
// which checkpoint names prove a namespace.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MigrationProbe } from '../api/v1alpha1.ts';
import { authorizeStart, checkpointOwnership, endpointRefusal, isRefusal } from './authz.ts';
import type { StartRequest } from '../agent-api/protocol.ts';

const UID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const CTL = 'system:serviceaccount:sys:ctl';
const PEER = 'system:serviceaccount:sys:agent';

test('endpoints: restore-check for peers only, the probe endpoints for the controller only', () => {
  const policy = { controllers: [CTL], peers: [PEER] };
  assert.equal(endpointRefusal(policy, CTL, 'probe'), undefined);
  assert.equal(endpointRefusal(policy, PEER, 'restore-check'), undefined);
  assert.match(endpointRefusal(policy, CTL, 'restore-check') ?? '', /only peer agents may \(--peer-service-account\)/);
  assert.match(endpointRefusal(policy, PEER, 'probe') ?? '', /only the controller may \(--allow-service-account\)/);
});

test('authorizeStart: mode, checkpoint and options from the live probe; every mismatch refused by name', () => {
  const req: StartRequest = { protocol: 2, probeName: 'p', namespace: 'ns', podName: 'web', containerName: 'app', containerId: 'c', target: { nodeName: 'b' } };
  const probe: MigrationProbe = {
    metadata: { name: 'p', namespace: 'ns', uid: UID },
    spec: { podName: 'web', targetNodeName: 'b', mode: 'RestoreOnly', checkpoint: { path: '/cp/x' }, options: { fileLocks: true }, timeoutSeconds: 30 },
  };
  const ok = authorizeStart(probe, UID, req, { containerNames: ['app', 'side'] });
  assert.ok(!isRefusal(ok));
  assert.equal(ok.mode, 'RestoreOnly');
  assert.equal(ok.checkpointPath, '/cp/x');
  assert.equal(ok.options.fileLocks, true);
  assert.equal(ok.options.timeoutMs, 30_000);
  const code = (p: MigrationProbe | undefined, r: StartRequest = req, uid = UID): string => {
    const v = authorizeStart(p, uid, r, { containerNames: ['app', 'side'] });
    return isRefusal(v) ? `${v.status} ${v.code}: ${v.message}` : 'ok';
  };
  assert.match(code(undefined), /^404 ProbeNotFound: no MigrationProbe ns\/p \(a probe must be in the namespace of the pod it names\)/);
  assert.match(code(probe, req, '1f8fad5b-d9cb-469f-a165-70867728950e'), /^404 ProbeNotFound: .* has UID 0f8fad5b/);
  assert.match(code({ ...probe, status: { phase: 'Succeeded' } }), /^404 ProbeNotFound: .* is finished/);
  assert.match(code({ ...probe, metadata: { ...probe.metadata, deletionTimestamp: '2026-12-02T00:00:00Z' } }), /being deleted/);
  assert.match(code(probe, { ...req, podName: 'db' }), /^403 ProbeMismatch: .* names pod web, not db/);
  assert.match(code(probe, { ...req, containerName: 'side' }), /^403 ProbeMismatch: .* names container app, not side/);
  assert.match(code({ ...probe, spec: { ...probe.spec, containerName: 'side' } }), /names container side, not app/);
  assert.match(code(probe, { ...req, target: { nodeName: 'c' } }), /^403 ProbeMismatch: .* names target node b, not c/);
});

test('checkpointOwnership: a <namespace>/ folder or the kubelet name of the namespace; other readings listed', () => {
  const ts = '2026-12-02T10:43:00Z';
  assert.deepEqual(checkpointOwnership('team/any/thing.tar', 'team'), { ok: true, how: 'folder', otherNamespaces: [] });
  assert.deepEqual(checkpointOwnership(`checkpoint-web-0_team-app-${ts}.tar`, 'team'), { ok: true, how: 'kubelet-name', otherNamespaces: [] });
  assert.deepEqual(checkpointOwnership('checkpoint-web-0_team-app-2026-12-02T10:43:00.123+01:00.tar', 'team'), { ok: true, how: 'kubelet-name', otherNamespaces: [] });
  // team-my-app: namespace team + container my-app, or namespace team-my + container app.
  assert.deepEqual(checkpointOwnership(`checkpoint-web_team-my-app-${ts}.tar`, 'team'), { ok: true, how: 'kubelet-name', otherNamespaces: ['team-my'] });
  assert.deepEqual(checkpointOwnership(`checkpoint-web_team-my-app-${ts}.tar`, 'team-my'), { ok: true, how: 'kubelet-name', otherNamespaces: ['team'] });
  const refused = (rel: string, ns: string): string => {
    const o = checkpointOwnership(rel, ns);
    return o.ok ? 'ok' : o.message;
  };
  assert.match(refused('other/x.tar', 'team'), /in folder other\/, not in team\/ .*put it in <checkpoint folder>\/team\//);
  assert.match(refused(`checkpoint-web_other-app-${ts}.tar`, 'team'), /is not of namespace team/);
  assert.match(refused(`checkpoint-web_teamx-app-${ts}.tar`, 'team'), /is not of namespace team/);
  assert.match(refused(`checkpoint-web_team-${ts}.tar`, 'team'), /is not of namespace team/);
  assert.match(refused('checkpoint-web-1712345.tar.gz', 'team'), /does not say its namespace/);
  assert.match(refused(`checkpoint-web_team-app-${ts}.tar.gz`, 'team'), /does not say its namespace/);
});
