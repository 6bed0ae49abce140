// The MigrationReadiness CRD on the real kube-apiserver: cluster-scoped, short name, CEL (a source, a 5-field
// schedule, a name short enough to label probes), bounds, printer columns, status subresource, `kubectl explain`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { testbed } from '../../testbed/index.ts';
import { ensureCrd } from './harness.ts';

test('MigrationReadiness CRD: CEL (source, schedule, name), bounds, status subresource, columns, explain', { timeout: 120_000 }, async (t) => {
  const tb = await testbed();
  await ensureCrd(tb);
  const id = randomBytes(3).toString('hex');
  const k = (args: string[], input?: string) => execa(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, ...args], { reject: false, ...(input !== undefined ? { input } : {}) });
  const made: string[] = [];
  t.after(async () => {
    for (const n of made) await k(['delete', 'migrationreadiness', n, '--wait=false']);
  });
  const doc = (name: string, spec: string) => `apiVersion: migprobe.io/v1alpha1\nkind: MigrationReadiness\nmetadata: {name: ${name}}\nspec: ${spec}\n`;

  const name = `r-${id}`;
  made.push(name);
  const ok = await k(['apply', '-f', '-'], doc(name, '{source: {nodeName: node-a}, targets: {nodeNames: [node-b]}, schedule: "*/5 * * * *", budget: {maxFrozenPerOwner: 1}}'));
  assert.equal(ok.exitCode, 0, ok.stderr);
  const noSource = await k(['apply', '-f', '-'], doc(`r2-${id}`, '{source: {}}'));
  assert.match(noSource.stderr, /spec.source needs nodeName, podSelector or namespaceSelector/);
  const badCron = await k(['apply', '-f', '-'], doc(`r3-${id}`, '{source: {nodeName: a}, schedule: "* * * *"}'));
  assert.match(badCron.stderr, /spec.schedule needs 5 cron fields/);
  const longName = await k(['apply', '-f', '-'], doc(`r-${'x'.repeat(70)}`, '{source: {nodeName: a}}'));
  assert.match(longName.stderr, /at most 63 characters/);
  const bounds = await k(['apply', '-f', '-'], doc(`r4-${id}`, '{source: {nodeName: a, podSelector: {matchExpressions: [{key: app, operator: Near}]}}, budget: {maxConcurrentProbes: 0, minSecondsBetweenProbes: -1}, probeTimeoutSeconds: 1}'));
  for (const f of ['spec.budget.maxConcurrentProbes', 'spec.budget.minSecondsBetweenProbes', 'spec.probeTimeoutSeconds', 'operator']) assert.ok(bounds.stderr.includes(f), `${f}: ${bounds.stderr}`);
  const scope = await k(['get', 'mpready', name, '-o', 'jsonpath={.metadata.namespace}|{.spec.budget.maxFrozenPerOwner}']);
  assert.equal(scope.stdout, '|1', 'cluster-scoped, no defaults forced into the spec');

  const st = await k(['patch', 'mpready', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({
    status: {
      phase: 'Completed', runId: 1, lastRunTime: '2026-01-01T10:00:00Z', totals: { pods: 3, migratable: 1, blocked: 1, pending: 0, skipped: 1, probes: 2 },
      conditions: [{ type: 'Drainable', status: 'False', reason: 'PodsBlocked', message: '1 of 2 pods cannot be live-migrated: ns/locked (FileLocks)', lastTransitionTime: '2026-01-01T10:01:00Z' }],
    },
  })]);
  assert.equal(st.exitCode, 0, st.stderr);
  const wide = (await k(['get', 'migrationreadinesses', '-o', 'wide'])).stdout;
  assert.match(wide.split('\n')[0] ?? '', /NAME\s+NODE\s+PODS\s+MIGRATABLE\s+BLOCKED\s+DRAINABLE\s+LAST RUN\s+PHASE\s+SCHEDULE\s+AGE/);
  assert.match(wide, new RegExp(`${name}\\s+node-a\\s+3\\s+1\\s+1\\s+False\\s+\\S+\\s+Completed\\s+\\*/5 \\* \\* \\* \\*`));
  const byCategory = await k(['get', 'migprobe']);
  assert.match(byCategory.stdout, new RegExp(name));
  const badPhase = await k(['patch', 'mpready', name, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Exploded"}}']);
  assert.match(badPhase.stderr, /Unsupported value: "Exploded"/);

  // The API server publishes a new CRD's OpenAPI a few seconds after it is Established.
  const explainOf = async (field: string): Promise<string> => {
    for (let i = 0; ; i++) {
      const r = await k(['explain', field]);
      if (r.exitCode === 0 || i >= 30) return r.stdout + r.stderr;
      await new Promise((res) => setTimeout(res, 500));
    }
  };
  const explain = { stdout: await explainOf('migrationreadiness.spec.targets') };
  assert.match(explain.stdout, /screened\s+before\s+any\s+dump/);
  const explainCond = { stdout: await explainOf('migrationreadiness.status.conditions') };
  assert.match(explainCond.stdout, /kubectl\s+wait\s+--for=condition=Drainable/);
});
