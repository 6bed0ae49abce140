// The demo: on the running test bed, start the controller and two agents as nodes node-a and node-b (on
// 127.0.0.2 and 127.0.0.3), run two real containers as pods on node-a, apply examples/ probes targeting
// node-b, wait for their verdicts and show `kubectl get migrationprobes -o wide`. Cleans up after itself
// (pass --keep to leave everything running and print how to look at it).
//
//   node hack/demo.ts [--keep]        (needs the test bed: bash hack/testbed.sh up)

import { randomBytes } from 'node:crypto';
import { kube, testbed, type RunningContainer } from '../test/testbed/index.ts';
import { REPO, startOperator } from '../test/operator/harness.ts';
import { isFinal, waitProbe, workloadPod } from '../test/operator/lib.ts';

async function main(): Promise<number> {
  const keep = process.argv.includes('--keep');
  const tb = await testbed();
  const namespace = `migprobe-demo-${randomBytes(3).toString('hex')}`;
  console.log(`# starting the controller and two agents (nodes node-a, node-b); probes in namespace ${namespace}`);
  const op = await startOperator({ tb, namespace, nodes: ['node-a', 'node-b'] });
  const containers: RunningContainer[] = [];
  try {
    console.log('# running two real containers as pods on node-a: web (busybox sleep) and locked (holds a file lock)');
    containers.push(await workloadPod(op, 'web', 'node-a', ['sleep', '100000']));
    containers.push(await workloadPod(op, 'locked', 'node-a', ['/usr/local/bin/flocker', 'flock']));
    const files = ['examples/probe-migratable.yaml', 'examples/probe-blocked.yaml'];
    console.log(`$ kubectl apply -n ${namespace} ${files.map((f) => `-f ${f}`).join(' ')}`);
    const applied = await op.kubectl(['apply', '-n', namespace, ...files.flatMap((f) => ['-f', `${REPO}/${f}`])]);
    process.stdout.write(applied.stdout + '\n');
    console.log(`$ kubectl wait -n ${namespace} --for=condition=Migratable migrationprobe/web-to-node-b --timeout=180s`);
    const w = await op.kubectl(['wait', '-n', namespace, '--for=condition=Migratable', 'migrationprobe/web-to-node-b', '--timeout=180s'], { reject: false });
    process.stdout.write((w.stdout || w.stderr) + '\n');
    await waitProbe(op, 'locked-to-node-b', isFinal, 180_000);
    console.log(`$ kubectl get migrationprobes -n ${namespace} -o wide`);
    process.stdout.write((await op.kubectl(['get', 'migrationprobes', '-n', namespace, '-o', 'wide'])).stdout + '\n');
    const timingsPath = '{.status.timings}{"\\n"}{.status.sizes}{"\\n"}';
    console.log(`$ kubectl get migrationprobe web-to-node-b -n ${namespace} -o jsonpath='${timingsPath}'`);
    process.stdout.write((await op.kubectl(['get', 'migrationprobe', 'web-to-node-b', '-n', namespace, '-o', `jsonpath=${timingsPath}`])).stdout + '\n');
    console.log(`$ kubectl get migrationprobe locked-to-node-b -n ${namespace} -o jsonpath='{.status.reasons}'`);
    process.stdout.write((await op.kubectl(['get', 'migrationprobe', 'locked-to-node-b', '-n', namespace, '-o', 'jsonpath={.status.reasons}'])).stdout + '\n');
    if (keep) {
      console.log(`\n# left running (--keep). KUBECONFIG=${tb.kubeconfigPath}; controller log: ${op.controller.logFile}`);
      console.log('# stop with Ctrl-C');
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
    }
    return w.exitCode === 0 ? 0 : 1;
  } finally {
    for (const c of containers) await c.remove().catch(() => undefined);
    for (const name of ['web', 'locked']) await kube.deletePod(op.kc, namespace, name).catch(() => undefined);
    await op.stop();
    await kube.deleteNamespace(op.kc, namespace).catch(() => undefined);
    await kube.deleteNamespace(op.kc, op.agentNamespace).catch(() => undefined);
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`demo failed: ${(e as Error).message}`);
    process.exit(2);
  },
);
