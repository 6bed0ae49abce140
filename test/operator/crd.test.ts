// The MigrationProbe CRD on the real kube-apiserver: accepted, defaults applied, bounds and CEL rules enforced,
// printer columns and `kubectl explain` served.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { kube, testbed } from '../../testbed/index.ts';
import { ensureCrd } from './harness.ts';

test('MigrationProbe CRD: defaults, bounds, CEL (immutable spec, RestoreOnly needs a checkpoint), columns, explain', { timeout: 120_000 }, async (t) => {
  const tb = await testbed();
  await ensureCrd(tb);
  const kc = kube.client(tb);
  const ns = `mp-crd-${randomBytes(3).toString('hex')}`;
  await kube.ensureNamespace(kc, ns);
  t.after(async () => {
    await execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'delete', 'migrationprobes', '--all', '-n', ns, '--wait=false'], { reject: false });
    await kube.deleteNamespace(kc, ns);
  });
  const k = (args: string[], input?: string) =>
    execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, '-n', ns, ...args], { reject: false, ...(input !== undefined ? { input } : {}) });
  const probe = (name: string, spec: string) => `apiVersion: migprobe.io/v1alpha1\nkind: MigrationProbe\nmetadata: {name: ${name}}\nspec: ${spec}\n`;

  const ok = await k(['apply', '-f', '-'], probe('p1', '{podName: web, targetNodeName: node-b}'));
  assert.equal(ok.exitCode, 0, ok.stderr);
  const got = JSON.parse((await k(['get', 'mprobe', 'p1', '-o', 'json'])).stdout) as { spec: Record<string, unknown> };
  assert.deepEqual(got.spec, {
    podName: 'web',
    targetNodeName: 'node-b',
    mode: 'Check',
    timeoutSeconds: 300,
    options: {
      tcpEstablished: false,
      fileLocks: false,
      extUnixSockets: false,
      tcpClose: false,
      tcpSkipInFlight: false,
      linkRemap: false,
      ghostLimitBytes: 1048576,
      freezeBudgetMilliseconds: 2000,
      nonLazyMemoryLimitBytes: 67108864,
    },
  });

  const immut = await k(['patch', 'mprobe', 'p1', '--type=merge', '-p', '{"spec":{"targetNodeName":"node-c"}}']);
  assert.notEqual(immut.exitCode, 0);
  assert.match(immut.stderr, /spec is immutable/);

  const noCp = await k(['apply', '-f', '-'], probe('p2', '{podName: web, targetNodeName: node-b, mode: RestoreOnly}'));
  assert.match(noCp.stderr, /mode RestoreOnly requires spec.checkpoint/);
  const cpWithCheck = await k(['apply', '-f', '-'], probe('p3', '{podName: web, targetNodeName: node-b, checkpoint: {path: /var/lib/kubelet/checkpoints/x.tar}}'));
  assert.match(cpWithCheck.stderr, /only allowed with mode RestoreOnly/);
  const dotdot = await k(['apply', '-f', '-'], probe('p4', '{podName: web, targetNodeName: node-b, mode: RestoreOnly, checkpoint: {path: /a/../b}}'));
  assert.match(dotdot.stderr, /must not contain '\.\.'/);
  const bounds = await k(['apply', '-f', '-'], probe('p5', '{podName: Web_1, targetNodeName: node-b, timeoutSeconds: 1, options: {ghostLimitBytes: -1, freezeBudgetMilliseconds: 0}}'));
  for (const f of ['spec.podName', 'spec.timeoutSeconds', 'spec.options.ghostLimitBytes', 'spec.options.freezeBudgetMilliseconds']) assert.ok(bounds.stderr.includes(f), `${f}: ${bounds.stderr}`);
  const ro = await k(['apply', '-f', '-'], probe('p6', '{podName: web, targetNodeName: node-b, mode: RestoreOnly, checkpoint: {path: /var/lib/kubelet/checkpoints/x.tar}}'));
  assert.equal(ro.exitCode, 0, ro.stderr);

  // Status subresource: status cannot be written through the main resource; phase is an enum.
  const badPhase = await k(['patch', 'mprobe', 'p1', '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Exploded"}}']);
  assert.match(badPhase.stderr, /Unsupported value: "Exploded"/);
  const st = await k(['patch', 'mprobe', 'p1', '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Succeeded","migratable":true,"sourceNodeName":"node-a","timings":{"freezeMilliseconds":42}}}']);
  assert.equal(st.exitCode, 0, st.stderr);

  const wide = (await k(['get', 'migrationprobes', '-o', 'wide'])).stdout;
  assert.match(wide.split('\n')[0] ?? '', /NAME\s+PHASE\s+MIGRATABLE\s+POD\s+SOURCE\s+TARGET\s+FREEZE\s+REASON\s+AGE/);
  assert.match(wide, /p1\s+Succeeded\s+true\s+web\s+node-a\s+node-b\s+42/);
  const byCategory = await k(['get', 'migprobe']);
  assert.match(byCategory.stdout, /p1/);

  const explain = await execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'explain', 'migrationprobe.status.conditions']);
  assert.match(explain.stdout, /kubectl wait --for=condition=Migratable/);
  const explainSpec = await execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, 'explain', 'migrationprobe.spec.targetNodeName']);
  assert.match(explainSpec.stdout, /SameNode/);
});
