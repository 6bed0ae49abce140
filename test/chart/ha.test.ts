// Two controller replicas as the chart runs them (ci/metrics-ha-values.yaml): the real controller, twice, out
// of cluster, authenticated as the chart's controller ServiceAccount (so only the chart's RBAC applies), with
// the flags the chart renders. One holds the Lease; both answer the chart's liveness and readiness paths (a
// standby that is never Ready would stall every rolling update of a 2-replica Deployment); when the leader
// stops, the other takes the Lease over.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, kube, testbed } from '../../testbed/index.ts';
import { run, waitFor } from '../../testbed/proc.ts';
import { CHART_DIR, RBAC_DENIAL, ROOT, at, chartControllerArgs, findObject, helmTemplate, parseObjects, tlsPems, tokenKubeconfig } from './lib.ts';

async function httpStatus(url: string): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await r.body?.cancel();
    return r.status;
  } catch {
    return 0;
  }
}

test('two controller replicas: one leads, both are live and ready, the standby takes over', { timeout: 180_000 }, async (t) => {
  const tb = await testbed();
  const id = randomBytes(3).toString('hex');
  const ns = `mp-ha-${id}`;
  const release = `ha${id}`;
  const tmp = mkdtempSync(join(tmpdir(), 'migprobe-ha-'));
  const children: ChildProcess[] = [];
  const kubectl = async (args: string[]) => await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, ...args], { timeoutMs: 60_000 });
  t.after(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await new Promise((r) => c.once('exit', r));
      }
    }
    await run(tb.helm, ['uninstall', release, '-n', ns, '--ignore-not-found', '--kubeconfig', tb.kubeconfigPath], { allowFail: true });
    await kube.deleteNamespace(kube.client(tb), ns);
    rmSync(tmp, { recursive: true, force: true });
  });

  const values = ['-f', join(CHART_DIR, 'ci', 'metrics-ha-values.yaml'), '--set', 'metrics.serviceMonitor.enabled=false'];
  await run(tb.helm, ['install', release, CHART_DIR, '-n', ns, '--create-namespace', '--kubeconfig', tb.kubeconfigPath, ...values], { timeoutMs: 120_000 });
  const objs = parseObjects(await helmTemplate(tb.helm, { release, namespace: ns, args: values }));
  const dep = findObject(objs, 'Deployment', '-controller');
  assert.equal(at(dep, 'spec', 'replicas'), 2);
  const ctr = at(dep, 'spec', 'template', 'spec', 'containers', 0);
  const liveness = at(ctr, 'livenessProbe', 'httpGet', 'path') as string;
  const readiness = at(ctr, 'readinessProbe', 'httpGet', 'path') as string;
  const sa = at(dep, 'spec', 'template', 'spec', 'serviceAccountName') as string;
  const args = chartControllerArgs(objs, ns, ['--metrics-bind', '--token-file', '--agent-ca-file']);
  assert.ok(args.includes('--leader-elect'));
  const lease = args.find((a) => a.startsWith('--lease-name='))?.split('=')[1] ?? '';

  // What the pod would have: the API token of its ServiceAccount, the projected agent token, the CA file.
  const apiToken = (await kubectl(['create', 'token', sa, '-n', ns, '--duration=3600s'])).stdout.trim();
  const agentToken = (await kubectl(['create', 'token', sa, '-n', ns, '--duration=3600s', '--audience=migprobe-agent'])).stdout.trim();
  const secret = JSON.parse((await kubectl(['-n', ns, 'get', 'secret', `${release}-migprobe-agent-tls`, '-o', 'json'])).stdout) as { data?: Record<string, string> };
  writeFileSync(join(tmp, 'kubeconfig'), tokenKubeconfig(tb, apiToken), { mode: 0o600 });
  writeFileSync(join(tmp, 'token'), agentToken, { mode: 0o600 });
  writeFileSync(join(tmp, 'ca.crt'), tlsPems(secret).ca);

  const replicas: { name: string; url: string; proc: ChildProcess; log: string }[] = [];
  for (const name of ['replica-0', 'replica-1']) {
    const port = await freePort();
    const log = join(tmp, `${name}.log`);
    const fd = openSync(log, 'a');
    const proc = spawn(
      process.execPath,
      [
        join(ROOT, 'src', 'controller', 'main.ts'),
        ...args,
        '--kubeconfig', join(tmp, 'kubeconfig'),
        '--token-file', join(tmp, 'token'),
        '--agent-ca-file', join(tmp, 'ca.crt'),
        '--metrics-bind', `127.0.0.1:${port}`,
        '--identity', name,
        // Only this test's namespace: the shared test bed holds other tests' probes.
        '--watch-namespace', ns,
      ],
      { cwd: ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, POD_NAMESPACE: ns, POD_NAME: name } },
    );
    closeSync(fd);
    children.push(proc);
    replicas.push({ name, url: `http://127.0.0.1:${port}`, proc, log });
  }
  const logs = (): string => replicas.map((r) => `${r.name}:\n${readFileSync(r.log, 'utf8').slice(-2500)}`).join('\n');

  const holder = async (): Promise<string> =>
    (await run(tb.kubectl, ['--kubeconfig', tb.kubeconfigPath, '-n', ns, 'get', 'lease', lease, '-o', 'jsonpath={.spec.holderIdentity}'], { allowFail: true })).stdout;
  const leader = await waitFor('a replica to hold the Lease', 30_000, async () => {
    const h = await holder();
    return h === 'replica-0' || h === 'replica-1' ? h : undefined;
  }).catch((e: unknown) => assert.fail(`${(e as Error).message}\n${logs()}`));

  for (const r of replicas) {
    const live = await waitFor(`${r.name} ${liveness} = 200`, 20_000, async () => ((await httpStatus(`${r.url}${liveness}`)) === 200 ? true : undefined)).catch(
      () => false,
    );
    assert.ok(live, `${r.name} does not answer 200 on the chart's liveness path ${liveness}\n${logs()}`);
    const ready = await waitFor(`${r.name} ${readiness} = 200`, 20_000, async () => ((await httpStatus(`${r.url}${readiness}`)) === 200 ? true : undefined)).catch(
      () => false,
    );
    assert.ok(ready, `${r.name} (${r.name === leader ? 'leader' : 'standby'}) does not answer 200 on the chart's readiness path ${readiness}: a Deployment with 2 replicas could never finish a rolling update\n${logs()}`);
  }

  // The leader stops (as on a rolling update): it releases the Lease and the standby takes over.
  const first = replicas.find((r) => r.name === leader);
  assert.ok(first);
  first.proc.kill('SIGTERM');
  await new Promise((r) => first.proc.once('exit', r));
  const next = await waitFor('the standby to take the Lease over', 40_000, async () => {
    const h = await holder();
    return h !== '' && h !== leader ? h : undefined;
  }).catch((e: unknown) => assert.fail(`${(e as Error).message}\n${logs()}`));
  assert.notEqual(next, leader);

  const denials = logs()
    .split('\n')
    .filter((l) => RBAC_DENIAL.test(l));
  assert.deepEqual(denials, [], 'RBAC denials in the controllers\' logs');
});
