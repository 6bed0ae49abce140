// The test bed's real three-node cluster works the way migprobe's e2e tests need it to: node-a, node-b and
// node-c Ready on their own runtimes, Deployments pinned to each node Running, kubectl exec and logs through the
// kubelets, a privileged DaemonSet's hostPaths at the usual places being its own node's, the pods of every two
// nodes reaching each other over the pod network, a pod reaching the API server through the `kubernetes`
// Service with its ServiceAccount token (in-cluster configuration), and the kubelet checkpoint API on a
// containerd v2 node writing an archive while the pod keeps running. Needs the cluster: hack/test.sh
// starts it for this folder; without it every test here fails saying how to start it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, rmSync } from 'node:fs';
import { request, Agent } from 'node:https';
import { randomBytes } from 'node:crypto';
import { cluster, checkpointContainer, type Cluster } from '../../testbed/index.ts';
import { run, waitFor } from '../../testbed/proc.ts';

let c: Cluster;
const ns = `smoke-${randomBytes(3).toString('hex')}`;

async function kubectl(args: string[], input?: string): Promise<string> {
  return (await run(c.kubectl, ['--kubeconfig', c.kubeconfigPath, ...args], { timeoutMs: 60_000, ...(input === undefined ? {} : { input }) })).stdout;
}

interface Pod {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; containerStatuses?: { ready: boolean; restartCount: number; containerID?: string }[] };
}

/**
 * An httpd serving the node's name on :8080, in a one-replica Deployment pinned to `node`: made the way a
 * user would (`kubectl create deployment`), then pinned, never pulled, quick to stop.
 */
async function webDeployment(node: string): Promise<string> {
  const script = `mkdir -p /www && echo ${node} > /www/index.html && echo serving on ${node} && exec httpd -f -p 8080 -h /www`;
  const d = JSON.parse(
    await kubectl(['create', 'deployment', `web-${node}`, '-n', ns, `--image=${c.images.test}`, '--dry-run=client', '-o', 'json', '--', '/bin/sh', '-c', script]),
  ) as { spec: { template: { spec: { nodeSelector?: Record<string, string>; terminationGracePeriodSeconds?: number; containers: { name: string; imagePullPolicy?: string }[] } } } };
  const pod = d.spec.template.spec;
  pod.nodeSelector = { 'kubernetes.io/hostname': node };
  pod.terminationGracePeriodSeconds = 1;
  for (const ct of pod.containers) Object.assign(ct, { name: 'web', imagePullPolicy: 'Never' });
  return JSON.stringify(d);
}

async function runningPod(node: string): Promise<Pod> {
  return await waitFor(`the web pod on ${node} to run`, 120_000, async () => {
    const pods = (JSON.parse(await kubectl(['get', 'pods', '-n', ns, '-l', `app=web-${node}`, '-o', 'json'])) as { items: Pod[] }).items;
    return pods.find((p) => p.status.phase === 'Running' && (p.status.containerStatuses ?? []).every((s) => s.ready));
  });
}

async function httpGetInPod(pod: string, url: string): Promise<string> {
  return await kubectl(['exec', '-n', ns, pod, '--', 'wget', '-qO-', url]);
}

before(async () => {
  c = await cluster();
  await kubectl(['create', 'namespace', ns]);
  await waitFor(`the default ServiceAccount of ${ns}`, 30_000, async () => {
    const r = await run(c.kubectl, ['--kubeconfig', c.kubeconfigPath, 'get', 'serviceaccount', '-n', ns, 'default'], { allowFail: true });
    return r.exitCode === 0 ? true : undefined;
  });
});

after(async () => {
  if (c) await run(c.kubectl, ['--kubeconfig', c.kubeconfigPath, 'delete', 'namespace', ns, '--wait=false'], { allowFail: true });
});

test('node-a, node-b and node-c are Ready, each on its runtime (containerd 2 by default) and with its node IP', async () => {
  const nodes = (JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as {
    items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[]; addresses: { type: string; address: string }[]; nodeInfo: { containerRuntimeVersion: string } } }[];
  }).items;
  assert.deepEqual(nodes.map((n) => n.metadata.name).sort(), ['node-a', 'node-b', 'node-c']);
  assert.deepEqual(c.nodes.map((n) => n.name), ['node-a', 'node-b', 'node-c']);
  for (const n of nodes) {
    const want = c.nodes.find((x) => x.name === n.metadata.name);
    assert.ok(want);
    assert.equal(n.status.conditions.find((x) => x.type === 'Ready')?.status, 'True', `${n.metadata.name} Ready`);
    assert.equal(n.status.addresses.find((a) => a.type === 'InternalIP')?.address, want.ip);
  }
  for (const want of c.nodes) {
    const got = nodes.find((n) => n.metadata.name === want.name)?.status.nodeInfo.containerRuntimeVersion ?? '';
    assert.match(got, want.runtime === 'containerd 2' ? /^containerd:\/\/2\./ : /^containerd:\/\/1\.6\./, `${want.name} runs ${want.runtime}`);
  }
  assert.ok(c.nodes.some((n) => n.runtime === 'containerd 2'), 'a node implements the kubelet checkpoint API');
});

test('a Deployment pinned to each node runs there; kubectl logs and exec reach every kubelet', async () => {
  for (const { name } of c.nodes) await kubectl(['apply', '-f', '-'], await webDeployment(name));
  for (const { name: node } of c.nodes) {
    const p = await runningPod(node);
    assert.equal(p.spec.nodeName, node);
    const want = c.nodes.find((x) => x.name === node);
    assert.ok(p.status.podIP?.startsWith(want?.net.podCidr.replace(/\.0\/24$/, '.') ?? 'none'), `pod IP ${p.status.podIP} in ${want?.net.podCidr}`);
    assert.match(await kubectl(['logs', '-n', ns, p.metadata.name]), new RegExp(`serving on ${node}`));
    assert.equal((await kubectl(['exec', '-n', ns, p.metadata.name, '--', 'cat', '/www/index.html'])).trim(), node);
  }
});

test("a privileged DaemonSet's hostPaths at the usual places are its own node's (a chart's defaults work on every node)", async () => {
  const labels = { app: 'hostpaths' };
  const hostPath = (name: string, path: string, type: string): Record<string, unknown> => ({ name, hostPath: { path, type } });
  await kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'hostpaths', namespace: ns },
      spec: {
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            hostPID: true,
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'c',
                image: c.images.test,
                imagePullPolicy: 'Never',
                command: ['sleep', '100000'],
                securityContext: { privileged: true },
                volumeMounts: [
                  { name: 'sock', mountPath: '/run/containerd/containerd.sock' },
                  { name: 'pods', mountPath: '/var/lib/kubelet/pods' },
                ],
              },
            ],
            volumes: [hostPath('sock', '/run/containerd/containerd.sock', 'Socket'), hostPath('pods', '/var/lib/kubelet/pods', 'Directory')],
          },
        },
      },
    }),
  );
  const pods = await waitFor(`the DaemonSet on all ${c.nodes.length} nodes`, 120_000, async () => {
    const items = (JSON.parse(await kubectl(['get', 'pods', '-n', ns, '-l', 'app=hostpaths', '-o', 'json'])) as { items: (Pod & { metadata: { uid: string } })[] }).items;
    const running = items.filter((p) => p.status.phase === 'Running');
    return running.length === c.nodes.length ? running : undefined;
  });
  assert.deepEqual(pods.map((p) => p.spec.nodeName).sort(), c.nodes.map((n) => n.name), 'one pod per node');
  for (const p of pods) {
    const seen = (await kubectl(['exec', '-n', ns, p.metadata.name, '--', 'ls', '/var/lib/kubelet/pods'])).split('\n');
    assert.ok(seen.includes(p.metadata.uid), `${p.spec.nodeName}: its own pod's folder`);
    for (const other of pods.filter((x) => x !== p)) assert.ok(!seen.includes(other.metadata.uid), `${p.spec.nodeName}: not ${other.spec.nodeName}'s pod`);
    assert.match(await kubectl(['exec', '-n', ns, p.metadata.name, '--', 'ls', '-l', '/run/containerd/containerd.sock']), /^s/);
  }
  await kubectl(['delete', 'daemonset', '-n', ns, 'hostpaths', '--wait=false']);
});

test('a pod on each node reaches the pods on every other node over the pod network (a->b, b->c, c->a and back)', async () => {
  const pods = new Map<string, Pod>();
  for (const n of c.nodes) pods.set(n.name, await runningPod(n.name));
  for (const [from, fromPod] of pods) {
    for (const [to, toPod] of pods) {
      if (from === to) continue;
      assert.equal((await httpGetInPod(fromPod.metadata.name, `http://${toPod.status.podIP}:8080/index.html`)).trim(), to, `${from} -> ${to}`);
    }
  }
});

test('a pod reaches the API server through the kubernetes Service with its ServiceAccount token (in-cluster config)', async () => {
  const a = await runningPod('node-a');
  const env = await kubectl(['exec', '-n', ns, a.metadata.name, '--', 'env']);
  assert.match(env, new RegExp(`KUBERNETES_SERVICE_HOST=${c.kubernetesServiceIP.replace(/\./g, '\\.')}\\n`));
  assert.match(env, /KUBERNETES_SERVICE_PORT=443\n/);
  // From inside the pod: who the API server says the pod is (busybox's TLS does not verify the certificate).
  const review = await kubectl([
    'exec', '-n', ns, a.metadata.name, '--', 'sh', '-c',
    'wget -qO- --header "Content-Type: application/json" --header "Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)" ' +
      '--post-data \'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}\' ' +
      'https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authentication.k8s.io/v1/selfsubjectreviews',
  ]);
  const user = (JSON.parse(review) as { status: { userInfo: { username: string } } }).status.userInfo.username;
  assert.equal(user, `system:serviceaccount:${ns}:default`);
  // What an in-cluster client does with the same files: verify the API server's certificate against the
  // pod's ca.crt for the Service's address, then authenticate with the pod's token.
  const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
  const ca = await kubectl(['exec', '-n', ns, a.metadata.name, '--', 'cat', `${sa}/ca.crt`]);
  const token = (await kubectl(['exec', '-n', ns, a.metadata.name, '--', 'cat', `${sa}/token`])).trim();
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      `https://${c.kubernetesServiceIP}:443/api`,
      { agent: new Agent({ ca }), headers: { Authorization: `Bearer ${token}` }, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
});

test('the kubelet checkpoint API on a containerd 2 node writes an archive under its checkpoints folder and the pod keeps running', async () => {
  const v2 = c.nodes.find((n) => n.runtime === 'containerd 2');
  assert.ok(v2, 'a containerd 2 node');
  const other = c.nodes.find((n) => n !== v2);
  assert.ok(other);
  const b = await runningPod(v2.name);
  const before = b.status.containerStatuses?.[0]?.containerID;
  const t0 = Date.now();
  const { path, hostPath: archive } = await checkpointContainer(c, v2.name, ns, b.metadata.name, 'web');
  const ms = Date.now() - t0;
  try {
    assert.match(path, /^\/var\/lib\/kubelet\/checkpoints\/checkpoint-/, 'the path as the node sees it');
    assert.ok(archive.startsWith(`${v2.checkpointsDir}/`), `${archive} under ${v2.checkpointsDir}`);
    assert.ok(existsSync(archive) && statSync(archive).size > 0);
    const entries = (await run('tar', ['-tf', archive])).stdout.split('\n');
    assert.ok(entries.some((e) => /(^|\/)checkpoint\/inventory\.img$/.test(e)), `CRIU images in the archive: ${entries.slice(0, 20).join(' ')}`);
    assert.ok(entries.some((e) => /(^|\/)config\.dump$/.test(e)));
    const after = await runningPod(v2.name);
    assert.equal(after.status.containerStatuses?.[0]?.containerID, before, 'same container');
    assert.equal(after.status.containerStatuses?.[0]?.restartCount, 0);
    const a = await runningPod(other.name);
    assert.equal((await httpGetInPod(a.metadata.name, `http://${after.status.podIP}:8080/index.html`)).trim(), v2.name, 'still serving');
    console.error(`kubelet checkpoint of a busybox httpd: ${ms} ms, ${statSync(archive).size} bytes`);
  } finally {
    rmSync(archive, { force: true });
  }
  // containerd 1.6 has no CheckpointContainer: the API says so rather than pretending.
  for (const n of c.nodes.filter((x) => x.runtime === 'containerd 1.6')) {
    const p = await runningPod(n.name);
    await assert.rejects(checkpointContainer(c, n.name, ns, p.metadata.name, 'web'), /not implemented/);
  }
});
