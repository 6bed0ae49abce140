// `node testbed/cluster-cli.ts up|down|status [name]`: starts, stops or shows the test bed's real
// three-node cluster (testbed/cluster.ts), whose daemons outlive this process, with its state in
// /var/lib/migprobe-cluster/<name>/state.json. Used by hack/testbed.sh (cluster-up, cluster-down,
// cluster-status) and hack/test.sh. `down` exits 1 and lists what it could not remove.

import { existsSync, readFileSync } from 'node:fs';
import { clusterUp, clusterDown, clusterHealthy, stateFileOf, DEFAULT_CLUSTER_NAME, type Cluster } from './cluster.ts';

const [cmd = 'status', name = DEFAULT_CLUSTER_NAME] = process.argv.slice(2);
if (!/^[a-z0-9-]{1,32}$/.test(name)) {
  console.error(`bad cluster name ${name}`);
  process.exit(2);
}
try {
  if (cmd === 'up') {
    await clusterUp(name, (m) => console.error(m));
    console.log(stateFileOf(name));
  } else if (cmd === 'down') {
    const t0 = Date.now();
    const left = await clusterDown(name);
    if (left.length > 0) {
      console.error(`cluster ${name}: left behind after teardown:\n  ${left.join('\n  ')}`);
      process.exit(1);
    }
    console.error(`cluster ${name} down in ${Date.now() - t0} ms, nothing left`);
  } else if (cmd === 'status') {
    const f = stateFileOf(name);
    if (!existsSync(f)) {
      console.log(`cluster ${name}: down`);
      process.exit(1);
    }
    const c = JSON.parse(readFileSync(f, 'utf8')) as Cluster;
    const ok = await clusterHealthy(c);
    const nodes = (c.nodes ?? []).map((n) => `  ${n.name} ${n.ip} ${n.runtime} (kubelet ${n.kubeletUrl}, runtime ${n.containerd.address})`);
    console.log([`cluster ${name}: ${ok ? 'up' : 'broken (bash hack/testbed.sh cluster-down, then cluster-up)'}`, `  kube-apiserver ${c.apiserverUrl} (kubeconfig ${c.kubeconfigPath})`, ...nodes, `  images ${c.images?.test} ${c.images?.pause}`].join('\n'));
    process.exit(ok ? 0 : 1);
  } else {
    console.error('usage: node testbed/cluster-cli.ts up|down|status [name]');
    process.exit(2);
  }
} catch (err) {
  console.error(`cluster: ${(err as Error).message}`);
  process.exit(1);
}
