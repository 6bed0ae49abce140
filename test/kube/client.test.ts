// src/kube/client.ts against the real kube-apiserver, on a small CRD with a status subresource:
// merge patch and server-side apply of /status with an explicit field manager (managedFields show it),
// and finalizer add/remove by guarded JSON patch that never drops another controller's finalizer, even
// when the list changed since it was read.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { kube, testbed } from '../../testbed/index.ts';
import {
  addFinalizer,
  applyStatus,
  getObject,
  kubeRequest,
  mergePatchStatus,
  removeFinalizer,
  resourcePath,
  KubeApiError,
  type ResourceRef,
} from '../../src/kube/client.ts';
import { isNotFound, safeMessage, statusOf } from '../../src/kube/errors.ts';
import { eventually } from './util.ts';

const GROUP = 'kubetest.migprobe.io';
const CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `gadgets.${GROUP}` },
  spec: {
    group: GROUP,
    scope: 'Namespaced',
    names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { size: { type: 'integer' } } },
              status: {
                type: 'object',
                properties: {
                  phase: { type: 'string' },
                  note: { type: 'string' },
                  conditions: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['type'],
                    items: {
                      type: 'object',
                      required: ['type', 'status'],
                      properties: { type: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' } },
                    },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

interface Gadget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; finalizers?: string[]; managedFields?: Array<{ manager?: string; subresource?: string }> };
  spec?: { size?: number };
  status?: { phase?: string; note?: string; conditions?: Array<{ type: string; status: string }> };
}

void test('client: status merge patch and server-side apply, guarded finalizer patches', async (t) => {
  const tb = await testbed();
  const kc = kube.client(tb);
  const ns = `client-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(kc, ns);
  const crdPath = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
  await kubeRequest(kc, { method: 'POST', path: crdPath, body: CRD }).catch((err: unknown) => {
    if (statusOf(err) !== 409) throw err;
  });
  const ref: ResourceRef = { group: GROUP, version: 'v1', plural: 'gadgets', namespace: ns, name: 'g1' };
  t.after(async () => {
    // Let nothing hold the object, then delete it and the namespace. The CRD stays (shared, harmless).
    const cur = await getObject<Gadget>(kc, ref).catch(() => undefined);
    if (cur) {
      await kubeRequest(kc, { method: 'PATCH', path: resourcePath(ref), body: { metadata: { finalizers: null } }, contentType: 'application/merge-patch+json' });
      await kubeRequest(kc, { method: 'DELETE', path: resourcePath(ref) }).catch(() => undefined);
    }
    await kube.deleteNamespace(kc, ns);
  });
  await eventually('the CRD to be served', 30_000, async () => {
    try {
      await kubeRequest(kc, { method: 'GET', path: resourcePath({ group: GROUP, version: 'v1', plural: 'gadgets', namespace: ns }) });
      return true;
    } catch {
      return false;
    }
  });
  await kubeRequest(kc, {
    method: 'POST',
    path: resourcePath({ group: GROUP, version: 'v1', plural: 'gadgets', namespace: ns }),
    body: { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g1' }, spec: { size: 1 } },
  });

  // Merge patch of /status: only status changes, the field manager is recorded for the status subresource.
  const m = await mergePatchStatus<Gadget>(kc, ref, { phase: 'Pending', note: 'hello' }, { fieldManager: 'migprobe-merge' });
  assert.equal(m.status?.phase, 'Pending');
  assert.ok(m.metadata.managedFields?.some((f) => f.manager === 'migprobe-merge' && f.subresource === 'status'));
  await mergePatchStatus(kc, ref, { phase: 'Dumping' }, { fieldManager: 'migprobe-merge' });

  // Conditional merge patch with a stale resourceVersion: 409.
  await assert.rejects(
    mergePatchStatus(kc, ref, { note: 'stale' }, { fieldManager: 'migprobe-merge', resourceVersion: m.metadata.resourceVersion ?? '' }),
    (err: unknown) => statusOf(err) === 409 && err instanceof KubeApiError && !/Bearer|authorization/i.test(err.message),
  );

  // Server-side apply of /status with our field manager, forcing ownership of phase.
  const a = await applyStatus<Gadget>(
    kc,
    { ...ref, kind: 'Gadget' },
    { phase: 'Succeeded', conditions: [{ type: 'Ready', status: 'True' }] },
    { fieldManager: 'migprobe-controller', force: true },
  );
  assert.equal(a.status?.phase, 'Succeeded');
  assert.equal(a.status?.note, 'hello', 'fields of other managers untouched');
  assert.deepEqual(a.status?.conditions, [{ type: 'Ready', status: 'True' }]);
  assert.equal(a.spec?.size, 1);
  assert.ok(a.metadata.managedFields?.some((f) => f.manager === 'migprobe-controller' && f.subresource === 'status'));

  // Finalizers: another controller's finalizer is never dropped.
  const f1 = await addFinalizer<Gadget>(kc, ref, 'other.io/keep', { fieldManager: 'other' });
  assert.deepEqual(f1?.metadata.finalizers, ['other.io/keep']);
  const f2 = await addFinalizer<Gadget>(kc, ref, 'migprobe.io/cleanup', { fieldManager: 'migprobe-controller' });
  assert.deepEqual(f2?.metadata.finalizers, ['other.io/keep', 'migprobe.io/cleanup']);
  const again = await addFinalizer<Gadget>(kc, ref, 'migprobe.io/cleanup', { fieldManager: 'migprobe-controller' });
  assert.deepEqual(again?.metadata.finalizers, ['other.io/keep', 'migprobe.io/cleanup'], 'idempotent');

  // Someone removes the first finalizer after we read the object: our stale index must not remove theirs.
  const stale = f2;
  assert.ok(stale);
  await kubeRequest(kc, {
    method: 'PATCH',
    path: resourcePath(ref),
    body: [
      { op: 'test', path: '/metadata/finalizers/0', value: 'other.io/keep' },
      { op: 'remove', path: '/metadata/finalizers/0' },
    ],
    contentType: 'application/json-patch+json',
  });
  await addFinalizer<Gadget>(kc, ref, 'third.io/x', { fieldManager: 'third' });
  // Now: [migprobe.io/cleanup, third.io/x]; the stale copy says migprobe's is at index 1 (third's place).
  const r = await removeFinalizer<Gadget>(kc, ref, 'migprobe.io/cleanup', { fieldManager: 'migprobe-controller', current: stale });
  assert.deepEqual(r?.metadata.finalizers, ['third.io/x'], 'the test op caught the stale index; retried on a fresh read');

  // Gone object: removeFinalizer resolves undefined (404 is "done").
  const missing = await removeFinalizer<Gadget>(kc, { ...ref, name: 'nope' }, 'migprobe.io/cleanup', { fieldManager: 'x' });
  assert.equal(missing, undefined);
  await assert.rejects(getObject(kc, { ...ref, name: 'nope' }), (err: unknown) => isNotFound(err) && safeMessage(err).startsWith('HTTP 404'));
});
