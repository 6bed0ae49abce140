// The pure parts of the test bed's cluster: the three nodes' layout, containerd's configs (Debian's 1.6 and
// v2), the kubelet's, the CNI config, image ref normalization, and the parsers teardown relies on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterLayout, runtimesOf } from '../../testbed/cluster.ts';
import { containerdConfig, normalizeRef } from '../../testbed/containerd.ts';
import { cniConfig, gatewayOf, inCidr24 } from '../../testbed/cni.ts';
import { kubeletConfig, mountsUnder } from '../../testbed/kubelet.ts';
import { kubeChainsOf, proxyArgs } from '../../testbed/control.ts';
import { nodeBinds, hostPathOf } from '../../testbed/nodens.ts';

const paths = { dir: '/x/n', address: '/x/n/containerd.sock', root: '/x/n/root', state: '/x/n/state' };
const cri = { sandboxImage: 'migprobe.test/pause:abc', cniConfDir: '/x/n/cni', cniBinDir: '/usr/lib/cni' };

test('the three nodes never share an address, a bridge, a pod CIDR, a cgroupRoot or a folder', () => {
  const l = clusterLayout('t');
  assert.deepEqual(
    l.nodes.map((n) => [n.name, n.ip, n.net.podCidr, n.cgroupRoot]),
    [
      ['node-a', '172.30.0.11', '10.244.1.0/24', '/mp-node-a'],
      ['node-b', '172.30.0.12', '10.244.2.0/24', '/mp-node-b'],
      ['node-c', '172.30.0.13', '10.244.3.0/24', '/mp-node-c'],
    ],
  );
  for (const [i, a] of l.nodes.entries()) {
    for (const b of l.nodes.slice(i + 1)) {
      for (const k of ['ip', 'cgroupRoot', 'dir', 'runtimeDir'] as const) assert.notEqual(a[k], b[k], `${a.name}/${b.name} ${k}`);
      for (const k of ['ip', 'link', 'bridge', 'podCidr', 'network'] as const) assert.notEqual(a.net[k], b.net[k], `${a.name}/${b.name} net.${k}`);
    }
  }
  assert.deepEqual(
    l.nodes.map((n) => n.major),
    [2, 2, 2],
    'every node on containerd 2 by default',
  );
  for (const n of l.nodes) {
    assert.ok(inCidr24(n.ip, l.nodeIPCidr));
    assert.equal(n.net.ip, n.ip);
    assert.ok(n.net.podCidr.startsWith('10.244.') && l.clusterCidr === '10.244.0.0/16');
    assert.ok(n.net.link.length <= 15 && `${n.net.link}-p`.length <= 15 && n.net.bridge.length <= 15, 'Linux link names are at most 15 characters');
    assert.ok(n.dir.startsWith(`${l.stateDir}/`));
  }
  assert.ok(inCidr24(l.kubernetesServiceIP, l.serviceCidr));
});

test("MIGPROBE_CLUSTER_RUNTIMES picks each node's runtime; each runtime keeps its own image store", () => {
  assert.deepEqual(runtimesOf(undefined), [2, 2, 2]);
  assert.deepEqual(runtimesOf(''), [2, 2, 2]);
  assert.deepEqual(runtimesOf('2,2,2'), [2, 2, 2]);
  assert.deepEqual(runtimesOf('1.6,2,2'), [1, 2, 2]);
  assert.deepEqual(runtimesOf('2,2,1.6'), [2, 2, 1]);
  assert.deepEqual(runtimesOf(' 1.6 , 1.6 , 1.6 '), [1, 1, 1]);
  // Two entries, as the two-node cluster took them: node-a and node-b; node-c is containerd 2.
  assert.deepEqual(runtimesOf('1.6,2'), [1, 2, 2]);
  assert.deepEqual(runtimesOf('2,2'), [2, 2, 2]);
  assert.throws(() => runtimesOf('2'), /MIGPROBE_CLUSTER_RUNTIMES=2: 1 entry, not 3; .*e\.g\. 2,2,2/);
  assert.throws(() => runtimesOf('2,2,2,2'), /4 entries, not 3/);
  assert.throws(() => runtimesOf('1,2,2'), /node-a has "1"; give node-a, node-b and node-c each 1\.6 \(Debian's containerd\) or 2/);
  assert.throws(() => runtimesOf('2,2,'), /node-c has ""/);
  const [a, b, c] = clusterLayout('t', [2, 2, 2]).nodes;
  assert.equal(a?.major, 2);
  assert.ok(a?.runtimeDir.endsWith('/node-a/containerd-2') && b?.runtimeDir.endsWith('/node-b/containerd-2') && c?.runtimeDir.endsWith('/node-c/containerd-2'));
  const mixed = clusterLayout('t', [1, 2, 1]).nodes;
  assert.ok(mixed[0]?.runtimeDir.endsWith('/node-a/containerd-1.6') && mixed[2]?.runtimeDir.endsWith('/node-c/containerd-1.6'));
});

test('containerd 1.6 CRI config: the pause image, clamped oom_score_adj, the node CNI folder, cgroupfs', () => {
  const t = containerdConfig(paths, { major: 1, ...cri });
  assert.match(t, /^version = 2$/m);
  assert.match(t, /sandbox_image = "migprobe\.test\/pause:abc"/);
  assert.match(t, /restrict_oom_score_adj = true/);
  assert.match(t, /conf_dir = "\/x\/n\/cni"/);
  assert.match(t, /bin_dir = "\/usr\/lib\/cni"/);
  assert.match(t, /SystemdCgroup = false/);
  assert.match(t, /path = "\/x\/n\/opt"/);
  assert.doesNotMatch(t, /disabled_plugins = \["io\.containerd\.grpc\.v1\.cri"\]/);
});

test('containerd 2 CRI config: version 3, pinned sandbox image, NRI off, restore via create on', () => {
  const t = containerdConfig(paths, { major: 2, ...cri });
  assert.match(t, /^version = 3$/m);
  assert.match(t, /\[plugins\."io\.containerd\.cri\.v1\.images"\.pinned_images\]\n\s+sandbox = "migprobe\.test\/pause:abc"/);
  assert.match(t, /restrict_oom_score_adj = true/);
  assert.match(t, /enable_experimental_restore_via_create = true/);
  assert.match(t, /bin_dirs = \["\/usr\/lib\/cni"\]/);
  assert.match(t, /disabled_plugins = \["io\.containerd\.nri\.v1\.nri"\]/);
});

test('the simulated test bed containerd keeps its CRI plugin off', () => {
  assert.match(containerdConfig(paths), /disabled_plugins = \["io\.containerd\.grpc\.v1\.cri"\]/);
});

test('image refs are normalized the way the kubelet asks the runtime for them', () => {
  assert.equal(normalizeRef('migprobe-agent:0.1.0'), 'docker.io/library/migprobe-agent:0.1.0');
  assert.equal(normalizeRef('acme/agent:1'), 'docker.io/acme/agent:1');
  assert.equal(normalizeRef('localhost/migprobe-controller:0.1.0'), 'localhost/migprobe-controller:0.1.0');
  assert.equal(normalizeRef('migprobe.test/testbed:abc'), 'migprobe.test/testbed:abc');
  assert.equal(normalizeRef('registry:5000/x:1'), 'registry:5000/x:1');
});

test('CNI: a bridge per node with its own pod CIDR, gateway .1, no NAT', () => {
  const n = clusterLayout('t').nodes[1]?.net;
  assert.ok(n);
  const conf = JSON.parse(cniConfig(n)) as { name: string; plugins: { type: string; bridge: string; ipMasq: boolean; isGateway: boolean; ipam: { ranges: { subnet: string; gateway: string }[][] } }[] };
  const br = conf.plugins[0];
  assert.equal(conf.name, n.network);
  assert.equal(br?.type, 'bridge');
  assert.equal(br?.bridge, n.bridge);
  assert.equal(br?.ipMasq, false);
  assert.equal(br?.isGateway, true);
  assert.deepEqual(br?.ipam.ranges, [[{ subnet: '10.244.2.0/24', gateway: '10.244.2.1' }]]);
  assert.equal(gatewayOf('10.244.1.0/24'), '10.244.1.1');
  assert.ok(inCidr24('10.244.1.7', '10.244.1.0/24') && !inCidr24('10.244.10.7', '10.244.1.0/24'));
});

test('kubelet: serves on its node IP, webhook authn/authz, its own cgroupRoot, cgroupfs, no image GC', () => {
  const cfg = JSON.parse(
    kubeletConfig({
      nodeName: 'node-a',
      nodeIP: '172.30.0.11',
      rootDir: '/x/kubelet',
      cgroupRoot: '/mp-node-a',
      runtimeSocket: '/x/containerd.sock',
      kubeconfigPath: '/x/kc',
      caFile: '/x/ca.crt',
      certFile: '/x/k.crt',
      keyFile: '/x/k.key',
      podLogsDir: '/x/logs',
    }),
  ) as Record<string, unknown> & { authentication: { webhook: { enabled: boolean }; anonymous: { enabled: boolean } }; authorization: { mode: string } };
  assert.equal(cfg.address, '172.30.0.11');
  assert.equal(cfg.port, 10250);
  assert.equal(cfg.readOnlyPort, 0);
  assert.equal(cfg.healthzPort, 0);
  assert.equal(cfg.cgroupRoot, '/mp-node-a');
  assert.equal(cfg.cgroupDriver, 'cgroupfs');
  assert.equal(cfg.containerRuntimeEndpoint, 'unix:///x/containerd.sock');
  assert.equal(cfg.imageGCHighThresholdPercent, 100);
  assert.equal(cfg.authentication.webhook.enabled, true);
  assert.equal(cfg.authentication.anonymous.enabled, false);
  assert.equal(cfg.authorization.mode, 'Webhook');
});

test('kube-proxy leaves the host sysctls alone and serves NodePorts on the node IPs only', () => {
  const a = proxyArgs({
    controllerManagerKubeconfig: '',
    schedulerKubeconfig: '',
    proxyKubeconfig: '/k',
    saKeyFile: '',
    caFile: '',
    clusterCidr: '10.244.0.0/16',
    serviceCidr: '10.96.0.0/24',
    proxyNodeName: 'node-a',
    nodeIPCidr: '172.30.0.0/24',
  });
  for (const f of ['--proxy-mode=iptables', '--iptables-localhost-nodeports=false', '--conntrack-max-per-core=0', '--nodeport-addresses=172.30.0.0/24']) {
    assert.ok(a.includes(f), f);
  }
});

test('mountsUnder: only the folder and what is below it, last mounted first', () => {
  const info = [
    '30 1 0:40 / /var/lib/c/x rw - tmpfs tmpfs rw',
    '31 30 0:41 / /var/lib/c/x/pods/a rw - tmpfs tmpfs rw',
    '32 1 0:42 / /var/lib/c/xy rw - tmpfs tmpfs rw',
    '33 1 0:43 / /var/lib/c/x/with\\040space rw - tmpfs tmpfs rw',
  ].join('\n');
  assert.deepEqual(mountsUnder(info, '/var/lib/c/x'), ['/var/lib/c/x/with space', '/var/lib/c/x/pods/a', '/var/lib/c/x']);
});

test('kubeChainsOf finds the KUBE-* chains of every table', () => {
  const save = ['*mangle', ':PREROUTING ACCEPT [0:0]', ':KUBE-KUBELET-CANARY - [0:0]', 'COMMIT', '*nat', ':KUBE-SERVICES - [0:0]', ':CNI-abc - [0:0]', '-A PREROUTING -j KUBE-SERVICES', 'COMMIT'].join('\n');
  assert.deepEqual(kubeChainsOf(save), ['mangle/KUBE-KUBELET-CANARY', 'nat/KUBE-SERVICES']);
});

test("a node sees the usual paths, bound to its own folders; other paths are the host's", () => {
  const binds = nodeBinds('/c/node-a', '/c/node-a/containerd-1.6');
  assert.equal(hostPathOf(binds, '/var/lib/kubelet/checkpoints/x.tar'), '/c/node-a/kubelet/checkpoints/x.tar');
  assert.equal(hostPathOf(binds, '/run/containerd/containerd.sock'), '/c/node-a/containerd-1.6/state/containerd.sock');
  assert.equal(hostPathOf(binds, '/var/lib/containerd'), '/c/node-a/containerd-1.6/root');
  assert.equal(hostPathOf(binds, '/var/lib/kubeletx'), '/var/lib/kubeletx');
  assert.equal(hostPathOf(binds, '/sys/fs/cgroup'), '/sys/fs/cgroup');
  const nodePaths = binds.map((b) => b.nodePath);
  for (const p of ['/run/containerd', '/var/lib/containerd', '/var/lib/kubelet', '/var/log/pods', '/etc/cni/net.d', '/run/netns', '/var/lib/migprobe']) {
    assert.ok(nodePaths.includes(p), p);
  }
});
