// Proves the API server is real: it answers /readyz, serves a CRD with a status subresource and printer
// columns, and kubectl shows those columns.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import * as k8s from '@kubernetes/client-node';
import { testbed, kube } from '../../testbed/index.ts';
import { apiGet } from '../../testbed/apiserver.ts';
import { run, waitFor } from '../../testbed/proc.ts';

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.migprobe.io
spec:
  group: smoke.migprobe.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Verdict, type: string, jsonPath: .status.verdict}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
          status: {type: object, properties: {verdict: {type: string}}}
`;

test('kube-apiserver answers /readyz and reports its version', async () => {
  const tb = await testbed();
  const ready = await apiGet(tb.apiserver, '/readyz');
  assert.equal(ready.status, 200);
  assert.equal(ready.body, 'ok');
  const ver = JSON.parse((await apiGet(tb.apiserver, '/version')).body) as { gitVersion: string };
  assert.match(ver.gitVersion, /^v1\.\d+\.\d+/);
});

test('a CRD with a status subresource and printer columns is served, and kubectl get shows the columns', async (t) => {
  const tb = await testbed();
  const dir = mkdtempSync(join(tmpdir(), 'smoke-crd-'));
  const kubectl = async (...args: string[]): Promise<string> =>
    (await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, ...args], { timeoutMs: 60_000 })).stdout;
  t.after(async () => {
    await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'delete', 'crd', 'widgets.smoke.migprobe.io', '--ignore-not-found'], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(join(dir, 'crd.yaml'), CRD);
  await kubectl('apply', '-f', join(dir, 'crd.yaml'));
  await kubectl('wait', '--for=condition=Established', 'crd/widgets.smoke.migprobe.io', '--timeout=30s');

  const kc = kube.client(tb);
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  const ns = 'default';
  await waitFor('widgets to be served', 20_000, async () => {
    await api.listNamespacedCustomObject({ group: 'smoke.migprobe.io', version: 'v1', namespace: ns, plural: 'widgets' });
    return true;
  });
  await api.createNamespacedCustomObject({
    group: 'smoke.migprobe.io', version: 'v1', namespace: ns, plural: 'widgets',
    body: { apiVersion: 'smoke.migprobe.io/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 7 }, status: { verdict: 'ignored' } },
  });
  // The status subresource ignores status on create and takes it only through /status.
  const created = (await api.getNamespacedCustomObject({ group: 'smoke.migprobe.io', version: 'v1', namespace: ns, plural: 'widgets', name: 'w1' })) as { status?: unknown };
  assert.equal(created.status, undefined);
  await api.patchNamespacedCustomObjectStatus(
    { group: 'smoke.migprobe.io', version: 'v1', namespace: ns, plural: 'widgets', name: 'w1', body: { status: { verdict: 'Migratable' } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  const table = await kubectl('get', 'widgets', '-n', ns);
  const [header, row] = table.split('\n');
  assert.match(header ?? '', /^NAME\s+SIZE\s+VERDICT/);
  assert.match(row ?? '', /^w1\s+7\s+Migratable/);
});
