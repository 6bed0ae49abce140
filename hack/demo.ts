// The demo: migprobe as it ships, on the test bed's real three-node Kubernetes cluster (kubelets on node-a,
// node-b and node-c). Builds or reuses the images from the Dockerfiles, `helm install`s charts/migprobe with them, runs two
// real kubelet pods on node-a (web: a busybox loop; locked: holds a file lock), applies the examples/ probes
// targeting node-b, waits for their verdicts, shows `kubectl get migrationprobes -o wide` and `kubectl describe`
// of one probe, then `helm uninstall`s. hack/demo.sh starts the cluster and tears it down.
//
//   node hack/demo.ts [--keep]        (needs the cluster: bash hack/testbed.sh cluster-up)

import { cluster } from '../testbed/index.ts';
import { ROOT as REPO } from '../testbed/paths.ts';
import { helmFor, installRelease, kubectlFor } from '../testbed/kube-kit.ts';
import { waitFor } from '../testbed/proc.ts';

const RELEASE = 'migprobe';
const SYSTEM_NS = 'migprobe-system';

function pod(name: string, image: string, command: string[]): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels: { app: name } },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': 'node-a' },
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'app', image, imagePullPolicy: 'Never', command }],
    },
  });
}

async function main(): Promise<number> {
  const keep = process.argv.includes('--keep');
  const c = await cluster();
  const k = kubectlFor(c.kubectl, c.kubeconfigPath);
  const show = async (args: string[], opts: { allowFail?: boolean } = {}): Promise<number> => {
    console.log(`$ kubectl ${args.map((a) => a.replace(`${REPO}/`, '')).join(' ')}`);
    const r = await k(args, { ...opts, timeoutMs: 240_000 });
    process.stdout.write(`${(r.stdout || r.stderr).trimEnd()}\n\n`);
    return r.exitCode;
  };
  console.log(`# cluster: ${c.nodes.map((n) => `${n.name} (${n.ip}, ${n.runtime})`).join(', ')}; KUBECONFIG=${c.kubeconfigPath}`);
  await show(['get', 'nodes', '-o', 'wide']);
  console.log('# building (or reusing) the images from Dockerfile.agent and Dockerfile.controller, importing them into every node, helm install');
  const { command, timings } = await installRelease(c, k, { release: RELEASE, namespace: SYSTEM_NS });
  console.log(`$ helm ${command.map((a) => a.replace(REPO + '/', '')).join(' ')}`);
  console.log(`# images ${(timings.imagesMs ?? 0) / 1000} s, import ${(timings.importMs ?? 0) / 1000} s, helm install --wait ${(timings.helmInstallMs ?? 0) / 1000} s\n`);
  try {
    await show(['get', 'pods', '-n', SYSTEM_NS, '-o', 'wide']);
    console.log('# two real kubelet pods on node-a: web (a busybox loop) and locked (holds a file lock)');
    for (const p of [pod('web', c.images.test, ['/bin/sh', '-c', 'while true; do date > /tmp/now; sleep 1; done']), pod('locked', c.images.test, ['/usr/local/bin/flocker', 'flock'])]) {
      await k(['apply', '-f', '-'], { input: p });
    }
    await show(['wait', '--for=condition=Ready', 'pod/web', 'pod/locked', '--timeout=120s']);
    await show(['apply', '-f', `${REPO}/examples/probe-migratable.yaml`, '-f', `${REPO}/examples/probe-blocked.yaml`]);
    const waited = await show(['wait', '--for=condition=Migratable', 'migrationprobe/web-to-node-b', '--timeout=180s'], { allowFail: true });
    await waitFor('locked-to-node-b to finish', 180_000, async () => {
      const phase = (await k(['get', 'migrationprobe', 'locked-to-node-b', '-o', 'jsonpath={.status.phase}'])).stdout;
      return phase === 'Succeeded' || phase === 'Failed' ? phase : undefined;
    });
    await show(['get', 'migrationprobes', '-o', 'wide']);
    await show(['describe', 'migrationprobe', 'web-to-node-b']);
    await show(['get', 'migrationprobe', 'locked-to-node-b', '-o', 'jsonpath={.status.reasons}{"\\n"}']);
    if (keep) {
      console.log(`# left running (--keep). KUBECONFIG=${c.kubeconfigPath}; stop with Ctrl-C`);
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
    }
    return waited === 0 ? 0 : 1;
  } finally {
    await k(['delete', 'migrationprobes', '--all', '--wait=true', '--timeout=120s'], { allowFail: true });
    await k(['delete', 'pod', 'web', 'locked', '--wait=false'], { allowFail: true });
    console.log(`$ helm uninstall ${RELEASE} -n ${SYSTEM_NS}`);
    process.stdout.write(`${(await helmFor(c)(['uninstall', RELEASE, '-n', SYSTEM_NS, '--wait', '--timeout', '3m'])).trimEnd()}\n`);
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`demo failed: ${(e as Error).message}`);
    process.exit(2);
  },
);
