// The test bed's real three-node Kubernetes cluster, started and torn down by the test bed itself:
//   control plane  etcd + kube-apiserver on node-a's IP (pods reach it through the `kubernetes` Service),
//                  kube-controller-manager, kube-scheduler, one kube-proxy (iptables mode) for the machine: the
//                  nodes share the host's netfilter, so its rules serve every node
//   node-a         172.30.0.11, pods 10.244.1.0/24, kubelet on containerd v2
//   node-b         172.30.0.12, pods 10.244.2.0/24, kubelet on containerd v2
//   node-c         172.30.0.13, pods 10.244.3.0/24, kubelet on containerd v2
// containerd v2 implements the kubelet checkpoint API and the CRI restore; MIGPROBE_CLUSTER_RUNTIMES (e.g.
// 1.6,2,2) puts a node on Debian's containerd 1.6 (CRI plugin on) instead.
// Each node is a mount namespace of its own (testbed/nodens.ts) in which its containerd and kubelet see
// the usual paths (/run/containerd/containerd.sock, /var/lib/containerd, /var/lib/kubelet, /var/log/pods,
// /etc/cni/net.d, /run/netns, /var/lib/migprobe) bound to the node's own folders: a chart's default hostPaths
// work on every node, and no two kubelets meet in a fixed path. Each node also has its own cgroupRoot
// (/mp-node-<x>), CNI bridge and pod CIDR, and a node IP on a veth. No registry: the pause and test images are
// built locally and imported into every node's runtime; pods use imagePullPolicy: Never. One cluster per
// machine (kube-proxy owns the host's KUBE-* netfilter chains). `clusterDown` leaves nothing: pods' processes and shims, the nodes' mount
// namespaces (with every mount made in them), cgroups in every hierarchy, links, netfilter chains, daemons,
// the sysctls the kubelets changed; it also cleans what a crashed earlier run left. The containerd image
// stores stay, so a warm start imports nothing.
// Logs: <stateDir>/logs (kubelets, controller-manager, scheduler, kube-proxy, node namespaces) and
// <stateDir>/node-*/containerd/containerd.log; they stay after a teardown, until the next start.

import { existsSync, readFileSync, writeFileSync, mkdirSync, rmSync, readdirSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import { request, Agent } from 'node:https';
import { startApiServer, isReady, apiGet, binariesFromEnv, signCert, kubeconfig, type ApiServerState } from './apiserver.ts';
import { startContainerd, stopContainerd, reviveContainerd, removeAllContainers, importArchive, type ContainerdState } from './containerd.ts';
import { buildImage, buildPauseImage } from './image.ts';
import { ensureCgroupRoot, removeCgroupRoot, cgroupPids } from './cgroups.ts';
import { addNodeLink, enableForwarding, restoreSysctls, writeCniConfig, removeNetwork, networkLeftovers, type NodeNet } from './cni.ts';
import { startKubelet, unmountUnder, mountsUnder, KUBELET_PORT } from './kubelet.ts';
import { createNodeNamespace, nodeBinds, hostPathOf, processesInMountNs, removeMountPoints, findHolder, mntInoOf, runOnNode as runInNs, type Bind, type NodeNamespace } from './nodens.ts';
import { startControlPlane, cleanupNetfilter, kubeChains } from './control.ts';
import { run, stopDaemon, isAlive, waitFor, sleep, tailOf, type RunResult } from './proc.ts';

export const CLUSTER_BASE = '/var/lib/migprobe-cluster';
export const DEFAULT_CLUSTER_NAME = 'cluster';

export interface ClusterNode {
  name: string;
  /** InternalIP; the kubelet serves on `kubeletUrl` (https://ip:10250), its certificate signed by `caFile`. */
  ip: string;
  kubeletUrl: string;
  /** `containerd 1.6` (Debian's) or `containerd 2` (built from its Go module). */
  runtime: string;
  /** The runtime, with host paths (its socket for `ctr --address`, root, state). */
  containerd: ContainerdState;
  net: NodeNet;
  /** The node's mount namespace: its holder PID (`nsenter --mount=/proc/<holderPid>/ns/mnt`) and inode. */
  ns: NodeNamespace;
  /** Node path -> host folder, e.g. /var/lib/kubelet -> <dir>/kubelet. */
  binds: Bind[];
  /** Host paths of the kubelet's root folder and of the folder the kubelet checkpoint API writes to. */
  kubeletRoot: string;
  checkpointsDir: string;
  cgroupRoot: string;
  kubeletPid: number;
  dir: string;
}

export interface Cluster {
  name: string;
  stateDir: string;
  /** Admin kubeconfig (system:masters, static token). */
  kubeconfigPath: string;
  apiserverUrl: string;
  caFile: string;
  adminToken: string;
  apiserver: ApiServerState;
  serviceCidr: string;
  /** The `kubernetes` Service's ClusterIP, what in-cluster config dials. */
  kubernetesServiceIP: string;
  clusterCidr: string;
  nodes: ClusterNode[];
  controllerManagerPid: number;
  schedulerPid: number;
  proxyPid: number;
  /** Refs of the images every node's runtime holds. */
  images: { test: string; pause: string };
  criu: string;
  kubectl: string;
  helm: string;
  helm3: string;
  /** Host sysctls as they were before the cluster started, restored by clusterDown. */
  sysctls: Record<string, string>;
  /** Node name -> its mount namespace, written as soon as it exists (teardown of a half-started cluster). */
  namespaces: Record<string, NodeNamespace>;
  /** Milliseconds from start to every node Ready (and the default ServiceAccount, kube-proxy's first rule). */
  readyMs: number;
}

export interface ClusterBinaries {
  kubelet: string;
  controllerManager: string;
  scheduler: string;
  proxy: string;
  containerd2Dir: string;
  cniBinDir: string;
  tini: string;
}

const HOW_PROVISION = 'run `bash hack/provision.sh`, then `. ~/.cache/migprobe/env.sh`; hack/test.sh and hack/testbed.sh do both';

export function clusterBinariesFromEnv(): ClusterBinaries {
  const need = (v: string, what: string): string => {
    const p = process.env[v] ?? '';
    if (!p || !existsSync(p)) throw new Error(`${what} is missing (${v}=${p || 'unset'}): ${HOW_PROVISION}`);
    return p;
  };
  const tini = ['/usr/bin/tini', '/usr/sbin/tini'].find((p) => existsSync(p));
  if (!tini) throw new Error(`tini is missing (Debian package tini): ${HOW_PROVISION}`);
  const cniBinDir = need('MIGPROBE_CNI_BIN_DIR', 'the CNI plugins folder');
  for (const p of ['bridge', 'host-local', 'loopback']) {
    if (!existsSync(join(cniBinDir, p))) throw new Error(`CNI plugin ${p} is missing in ${cniBinDir} (Debian package containernetworking-plugins): ${HOW_PROVISION}`);
  }
  return {
    kubelet: need('MIGPROBE_KUBELET', 'kubelet'),
    controllerManager: need('MIGPROBE_KUBE_CONTROLLER_MANAGER', 'kube-controller-manager'),
    scheduler: need('MIGPROBE_KUBE_SCHEDULER', 'kube-scheduler'),
    proxy: need('MIGPROBE_KUBE_PROXY', 'kube-proxy'),
    containerd2Dir: need('MIGPROBE_CONTAINERD2_DIR', 'containerd v2'),
    cniBinDir,
    tini,
  };
}

/** A node's container runtime: 1 is Debian's containerd 1.6, 2 is containerd v2 (built from its Go module). */
export type RuntimeMajor = 1 | 2;

/** The runtimes of node-a, node-b and node-c, in that order. */
export type Runtimes = readonly [RuntimeMajor, RuntimeMajor, RuntimeMajor];

/** The cluster's nodes by the letter of their names, in order: node-a is 1 (172.30.0.11, 10.244.1.0/24), ... */
export const NODE_LETTERS = ['a', 'b', 'c'] as const;

/**
 * Every node on containerd 2, unless MIGPROBE_CLUSTER_RUNTIMES says otherwise: the e2e tests check each verdict
 * against a real migration (kubelet checkpoint API on the source, CRI restore on the target), and only containerd 2
 * does both. The simulated test bed keeps containerd 1.6 under the same engine code.
 */
export const DEFAULT_RUNTIMES: Runtimes = [2, 2, 2];

/**
 * MIGPROBE_CLUSTER_RUNTIMES: the runtimes of node-a, node-b and node-c, e.g. `2,2,2` (the default) or `1.6,2,2`.
 * Two entries (what the two-node cluster took) name node-a and node-b; node-c is then 2. Pure.
 */
export function runtimesOf(spec: string | undefined): [RuntimeMajor, RuntimeMajor, RuntimeMajor] {
  if (spec === undefined || spec.trim() === '') return [...DEFAULT_RUNTIMES];
  const parts = spec.split(',').map((x) => x.trim());
  const bad = (why: string): Error =>
    new Error(
      `MIGPROBE_CLUSTER_RUNTIMES=${spec}: ${why}; give node-a, node-b and node-c each 1.6 (Debian's containerd) or 2 (containerd v2), ` +
        'e.g. 2,2,2 (the default) or 1.6,2,2 (two entries name node-a and node-b; node-c is then 2)',
    );
  if (parts.length !== 2 && parts.length !== 3) throw bad(`${parts.length} ${parts.length === 1 ? 'entry' : 'entries'}, not 3`);
  const major = (x: string | undefined, node: string): RuntimeMajor => {
    if (x === '1.6') return 1;
    if (x === '2') return 2;
    throw bad(`${node} has "${x ?? ''}"`);
  };
  return [major(parts[0], 'node-a'), major(parts[1], 'node-b'), parts.length === 3 ? major(parts[2], 'node-c') : 2];
}

/** Where a node keeps its containerd's root (the image store, kept between runs) and state. Pure. */
export function runtimeDirOf(nodeDir: string, major: RuntimeMajor): string {
  return join(nodeDir, major === 2 ? 'containerd-2' : 'containerd-1.6');
}

/** Everything about a cluster that does not depend on a run: names, addresses, folders. Pure. */
export function clusterLayout(
  name: string,
  runtimes: Runtimes = DEFAULT_RUNTIMES,
): {
  stateDir: string;
  serviceCidr: string;
  kubernetesServiceIP: string;
  clusterCidr: string;
  nodeIPCidr: string;
  apiserverPort: number;
  nodes: { name: string; ip: string; major: RuntimeMajor; runtimeDir: string; cgroupRoot: string; dir: string; net: NodeNet }[];
} {
  const stateDir = join(CLUSTER_BASE, name);
  const node = (n: (typeof NODE_LETTERS)[number], index: number, major: RuntimeMajor) => {
    const dir = join(stateDir, `node-${n}`);
    return {
      name: `node-${n}`,
      ip: `172.30.0.${10 + index}`,
      major,
      runtimeDir: runtimeDirOf(dir, major),
      cgroupRoot: `/mp-node-${n}`,
      dir,
      net: {
        ip: `172.30.0.${10 + index}`,
        link: `mp-node-${n}`,
        podCidr: `10.244.${index}.0/24`,
        bridge: `mp-cni-${n}`,
        network: `mp-node-${n}`,
      },
    };
  };
  return {
    stateDir,
    serviceCidr: '10.96.0.0/24',
    kubernetesServiceIP: '10.96.0.1',
    clusterCidr: '10.244.0.0/16',
    nodeIPCidr: '172.30.0.0/24',
    apiserverPort: 6443,
    nodes: NODE_LETTERS.map((n, i) => node(n, i + 1, runtimes[i] ?? 2)),
  };
}

export function stateFileOf(name: string): string {
  return join(CLUSTER_BASE, name, 'state.json');
}

function readState(name: string): Partial<Cluster> | undefined {
  const f = stateFileOf(name);
  if (!existsSync(f)) return undefined;
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as Partial<Cluster>;
  } catch {
    return undefined;
  }
}

/** Names of other clusters with a state file on this machine. */
function otherClusters(name: string): string[] {
  if (!existsSync(CLUSTER_BASE)) return [];
  return readdirSync(CLUSTER_BASE).filter((n) => n !== name && existsSync(stateFileOf(n)));
}

// The kubelet changes these (protectKernelDefaults off) and the CNI bridge plugin turns on forwarding;
// teardown puts back what was there.
const KUBELET_SYSCTLS = ['vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes'];

function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of KUBELET_SYSCTLS) {
    const f = `/proc/sys/${k}`;
    if (existsSync(f)) out[f] = readFileSync(f, 'utf8').trim();
  }
  return out;
}

function restoreAllSysctls(before: Record<string, string>): void {
  restoreSysctls(before);
  for (const [f, v] of Object.entries(before)) {
    if (!KUBELET_SYSCTLS.some((k) => f === `/proc/sys/${k}`)) continue;
    try {
      writeFileSync(f, v);
    } catch {
      /* a read-only sysctl here: nothing to put back */
    }
  }
}

/** True when every daemon of the cluster runs and its API server is ready. */
export async function clusterHealthy(c: Partial<Cluster>): Promise<boolean> {
  if (!c.apiserver || !c.nodes) return false;
  const pids = [c.controllerManagerPid, c.schedulerPid, c.proxyPid, ...c.nodes.flatMap((n) => [n.kubeletPid, n.containerd.pid, n.ns.holderPid])];
  if (pids.some((p) => !p || !isAlive(p))) return false;
  return await isReady(c.apiserver);
}

interface NodeList {
  items?: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[];
}

async function readyNodes(api: ApiServerState): Promise<string[]> {
  const r = await apiGet(api, '/api/v1/nodes');
  if (r.status !== 200) return [];
  const list = JSON.parse(r.body) as NodeList;
  return (list.items ?? [])
    .filter((n) => n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'))
    .map((n) => n.metadata.name);
}

/** Starts the cluster `name` (or returns it when it is already up and healthy). */
export async function clusterUp(name: string, log: (msg: string) => void = () => undefined): Promise<Cluster> {
  const old = readState(name);
  if (old && (await clusterHealthy(old))) {
    log(`cluster ${name} is already up`);
    return old as Cluster;
  }
  const others = otherClusters(name);
  if (others.length > 0) {
    throw new Error(
      `cluster ${others.join(', ')} is up on this machine, and one cluster at a time fits (kube-proxy owns the host's KUBE-* netfilter chains): ` +
        `bash hack/testbed.sh cluster-down ${others[0]}`,
    );
  }
  const t0 = Date.now();
  // When each step of the start was done, in ms since t0: the ready message says where the time went.
  const steps: Record<string, number> = {};
  const mark = (step: string): void => {
    steps[step] ??= Date.now() - t0;
  };
  // A crashed earlier run of this name, or pieces of one: clean first.
  const left = await clusterDown(name);
  mark('cleaned');
  if (left.length > 0) throw new Error(`cluster ${name}: an earlier run left things behind that could not be removed:\n  ${left.join('\n  ')}`);
  const bins = clusterBinariesFromEnv();
  const apiBins = binariesFromEnv();
  const criu = process.env.MIGPROBE_CRIU ?? '';
  if (!criu || !existsSync(criu)) throw new Error(`MIGPROBE_CRIU is not set or missing: ${HOW_PROVISION}`);
  const lay = clusterLayout(name, runtimesOf(process.env.MIGPROBE_CLUSTER_RUNTIMES));
  const cache = process.env.MIGPROBE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/migprobe');
  mkdirSync(lay.stateDir, { recursive: true });
  const stateFile = stateFileOf(name);
  // The last run's logs stayed for a post-mortem; this run starts its own.
  rmSync(join(lay.stateDir, 'logs'), { recursive: true, force: true });
  for (const n of lay.nodes) rmSync(join(n.runtimeDir, 'containerd.log'), { force: true });

  // Record the host's sysctls before anything changes them, so a crash mid-start still restores them.
  const sysctls = { ...readSysctls(), ...enableForwarding() };
  const early: Partial<Cluster> = { name, stateDir: lay.stateDir, sysctls, namespaces: {} };
  writeFileSync(stateFile, JSON.stringify(early, null, 2));
  const logs = join(lay.stateDir, 'logs');
  mkdirSync(logs, { recursive: true });

  const images = join(cache, 'images');
  // The pause program holds the nodes' mount namespaces, and its image is the runtimes' sandbox image.
  const pause = await buildPauseImage(images);
  const nodeA = lay.nodes[0];
  if (!nodeA) throw new Error('cluster layout has no nodes');
  for (const n of lay.nodes) {
    await addNodeLink(n.net);
    ensureCgroupRoot(n.cgroupRoot);
    writeCniConfig(join(n.dir, 'cni'), n.net);
  }
  const users = [
    // The identities the bootstrap RBAC policy (and the Node authorizer) already know.
    ...lay.nodes.map((n) => ({ name: `system:node:${n.name}`, groups: ['system:nodes'] })),
    { name: 'system:kube-controller-manager', groups: [] },
    { name: 'system:kube-scheduler', groups: [] },
    { name: 'system:kube-proxy', groups: [] },
  ];
  // etcd + kube-apiserver (on node-a's IP, there now) take longest to be ready: they start first, and the node
  // namespaces and runtimes come up beside them. (A failure on either side is awaited below; teardown finds the
  // daemons of a half-started cluster by their command lines.)
  const apiserverUp = startApiServer({
    dir: join(lay.stateDir, 'apiserver'),
    host: nodeA.ip,
    binaries: apiBins,
    cluster: { serviceCidr: lay.serviceCidr, serviceIP: lay.kubernetesServiceIP, port: lay.apiserverPort, users },
  }).then((api) => {
    mark('kube-apiserver ready');
    return api;
  });
  apiserverUp.catch(() => undefined);
  const testImage = buildImage(images);
  testImage.catch(() => undefined);
  const namespaces: Record<string, NodeNamespace> = {};
  for (const n of lay.nodes) {
    namespaces[n.name] = await createNodeNamespace(n.dir, n.runtimeDir, pause.binary, join(logs, `ns-${n.name}.log`));
    writeFileSync(stateFile, JSON.stringify({ ...early, namespaces }, null, 2));
  }
  mark('node namespaces');
  const nsOf = (node: string): NodeNamespace => {
    const ns = namespaces[node];
    if (!ns) throw new Error(`no mount namespace for ${node}`);
    return ns;
  };
  const [test, apiserver, runtimes] = await Promise.all([
    testImage,
    apiserverUp,
    Promise.all(
      lay.nodes.map(async (n) => {
        const st = await startContainerd({
          dir: n.runtimeDir,
          criuBinDir: dirname(criu),
          ...(n.major === 2 ? { binDir: bins.containerd2Dir } : {}),
          cri: { major: n.major, sandboxImage: pause.ref, cniConfDir: '/etc/cni/net.d', cniBinDir: bins.cniBinDir },
          reaper: bins.tini,
          nodeNs: nsOf(n.name).holderPid,
        });
        // Containers a crashed run left in this store would otherwise meet the new kubelet.
        await removeAllContainers(st);
        await importArchive(st, pause.tarball, pause.ref);
        const t = await testImage;
        await importArchive(st, t.tarball, t.ref);
        mark(`${n.name} runtime ready`);
        return st;
      }),
    ),
  ]);

  const token = (user: string): string => {
    const t = apiserver.tokens?.[user];
    if (!t) throw new Error(`no token minted for ${user}`);
    return t;
  };
  const kc = (file: string, user: string): string => {
    const p = join(apiserver.dir, file);
    writeFileSync(p, kubeconfig(apiserver.url, apiserver.caFile, token(user)), { mode: 0o600 });
    return p;
  };
  const control = startControlPlane(
    { controllerManager: bins.controllerManager, scheduler: bins.scheduler, proxy: bins.proxy },
    {
      controllerManagerKubeconfig: kc('controller-manager.kubeconfig', 'system:kube-controller-manager'),
      schedulerKubeconfig: kc('scheduler.kubeconfig', 'system:kube-scheduler'),
      proxyKubeconfig: kc('proxy.kubeconfig', 'system:kube-proxy'),
      saKeyFile: join(apiserver.dir, 'sa.key'),
      caFile: apiserver.caFile,
      clusterCidr: lay.clusterCidr,
      serviceCidr: lay.serviceCidr,
      proxyNodeName: nodeA.name,
      nodeIPCidr: lay.nodeIPCidr,
    },
    {
      controllerManager: join(logs, 'kube-controller-manager.log'),
      scheduler: join(logs, 'kube-scheduler.log'),
      proxy: join(logs, 'kube-proxy.log'),
    },
  );

  await Promise.all(lay.nodes.map(async (n) => await signCert(apiserver.dir, `kubelet-${n.name}`, `/CN=system:node:${n.name}/O=system:nodes`, [n.ip])));
  const nodes: ClusterNode[] = [];
  for (const [i, n] of lay.nodes.entries()) {
    const containerd = runtimes[i];
    if (!containerd) throw new Error(`no runtime for ${n.name}`);
    const ns = nsOf(n.name);
    const binds = nodeBinds(n.dir, n.runtimeDir);
    // The kubelet's paths are the node's (its mount namespace binds them to the node's folders).
    const kubeletPid = startKubelet(
      bins.kubelet,
      {
        nodeName: n.name,
        nodeIP: n.ip,
        rootDir: '/var/lib/kubelet',
        cgroupRoot: n.cgroupRoot,
        runtimeSocket: '/run/containerd/containerd.sock',
        kubeconfigPath: kc(`kubelet-${n.name}.kubeconfig`, `system:node:${n.name}`),
        caFile: apiserver.caFile,
        certFile: join(apiserver.dir, `kubelet-${n.name}.crt`),
        keyFile: join(apiserver.dir, `kubelet-${n.name}.key`),
        podLogsDir: '/var/log/pods',
      },
      n.dir,
      join(logs, `kubelet-${n.name}.log`),
      ns.holderPid,
    );
    const kubeletRoot = hostPathOf(binds, '/var/lib/kubelet');
    nodes.push({
      name: n.name,
      ip: n.ip,
      kubeletUrl: `https://${n.ip}:${KUBELET_PORT}`,
      runtime: n.major === 2 ? 'containerd 2' : 'containerd 1.6',
      containerd,
      net: n.net,
      ns,
      binds,
      kubeletRoot,
      checkpointsDir: join(kubeletRoot, 'checkpoints'),
      cgroupRoot: n.cgroupRoot,
      kubeletPid,
      dir: n.dir,
    });
  }
  const c: Cluster = {
    name,
    stateDir: lay.stateDir,
    kubeconfigPath: apiserver.kubeconfigPath,
    apiserverUrl: apiserver.url,
    caFile: apiserver.caFile,
    adminToken: apiserver.adminToken,
    apiserver,
    serviceCidr: lay.serviceCidr,
    kubernetesServiceIP: lay.kubernetesServiceIP,
    clusterCidr: lay.clusterCidr,
    nodes,
    ...control,
    images: { test: test.ref, pause: pause.ref },
    criu,
    kubectl: process.env.MIGPROBE_KUBECTL ?? 'kubectl',
    helm: process.env.MIGPROBE_HELM ?? 'helm',
    helm3: process.env.MIGPROBE_HELM3 ?? 'helm',
    sysctls,
    namespaces,
    readyMs: 0,
  };
  writeFileSync(stateFile, JSON.stringify(c, null, 2));

  mark('kubelets started');
  await waitReady(c, logs, mark);
  c.readyMs = Date.now() - t0;
  writeFileSync(stateFile, JSON.stringify(c, null, 2));
  log(
    `cluster ${name} ready in ${c.readyMs} ms (${Object.entries(steps).map(([k, v]) => `${k} at ${v}`).join(', ')}): ` +
      `${c.apiserverUrl}, ${nodes.map((n) => `${n.name} ${n.ip} (${n.runtime})`).join(', ')}`,
  );
  return c;
}

/**
 * Waits for every node Ready, the default ServiceAccount, and kube-proxy's rule for the `kubernetes` Service.
 * `mark` records when each was reached (and each node's first Ready).
 */
async function waitReady(c: Cluster, logs: string, mark: (step: string) => void): Promise<void> {
  const daemons = (): void => {
    const all: [string, number][] = [
      ['kube-controller-manager', c.controllerManagerPid],
      ['kube-scheduler', c.schedulerPid],
      ['kube-proxy', c.proxyPid],
      ...c.nodes.map((n): [string, number] => [`kubelet-${n.name}`, n.kubeletPid]),
    ];
    for (const [what, pid] of all) {
      if (!isAlive(pid)) throw new Error(`${what} exited: ${tailOf(join(logs, `${what}.log`), 15)}`);
    }
  };
  await waitFor(
    `every node Ready (${c.nodes.map((n) => n.name).join(', ')})`,
    120_000,
    async () => {
      const ready = await readyNodes(c.apiserver);
      for (const n of ready) mark(`${n} Ready`);
      return c.nodes.every((n) => ready.includes(n.name)) ? true : undefined;
    },
    daemons,
  );
  await waitFor(
    'the default ServiceAccount (kube-controller-manager)',
    60_000,
    async () => ((await apiGet(c.apiserver, '/api/v1/namespaces/default/serviceaccounts/default')).status === 200 ? true : undefined),
    daemons,
  );
  mark('default ServiceAccount');
  await waitFor(
    `kube-proxy's rule for the kubernetes Service ${c.kubernetesServiceIP}`,
    60_000,
    async () => ((await run('iptables', ['-t', 'nat', '-S', 'KUBE-SERVICES'], { allowFail: true })).stdout.includes(`${c.kubernetesServiceIP}/32`) ? true : undefined),
    daemons,
  );
  mark('kube-proxy rule');
}

// What the cluster runs on the host; `pause` holds the node namespaces, `nsenter` starts into them.
const OUR_DAEMONS = new Set(['kubelet', 'kube-apiserver', 'etcd', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy', 'containerd', 'containerd-shim-runc-v2', 'tini', 'pause', 'nsenter', 'unshare']);

/**
 * Live processes of the cluster: one of its daemons whose command line names `stateDir`, or any process in
 * one of the mount namespaces `mountNs` (the nodes': runtimes, shims, kubelets, holders).
 */
export function clusterProcesses(stateDir: string, mountNs: number[] = []): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    const ino = mountNs.length > 0 ? mntInoOf(pid) : undefined;
    let ours = ino !== undefined && mountNs.includes(ino);
    if (!ours) {
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      } catch {
        continue;
      }
      ours = OUR_DAEMONS.has(basename(argv[0] ?? '')) && argv.some((a) => a.includes(`${stateDir}/`));
    }
    if (ours && isAlive(pid)) pids.push(pid);
  }
  return pids;
}

async function killAll(pids: number[], graceMs: number): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
  for (const p of pids.filter(isAlive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const hard = Date.now() + 5000;
  while (pids.some(isAlive) && Date.now() < hard) await sleep(50);
}

/**
 * Stops the cluster `name` and removes everything it made on the host, whether it is up, half up or
 * crashed (its state file lost, even). Returns what is still there afterwards (empty: nothing left).
 */
export async function clusterDown(name: string): Promise<string[]> {
  const lay = clusterLayout(name);
  const c = readState(name);
  const dir = lay.stateDir;
  const namespaces: Record<string, NodeNamespace> = { ...(c?.namespaces ?? {}) };
  const createdMountPoints = new Set(Object.values(namespaces).flatMap((ns) => ns.createdMountPoints));
  // The nodes' mount namespaces: as recorded, and as their live holders say (a state file may be lost).
  const mountNs = (): number[] => {
    const inos = Object.values(namespaces).map((ns) => ns.mntIno);
    for (const n of lay.nodes) {
      const h = findHolder(n.dir);
      const ino = h === undefined ? undefined : mntInoOf(h);
      if (ino !== undefined) inos.push(ino);
    }
    return [...new Set(inos)];
  };
  const ours = (pid: number | undefined): boolean => pid !== undefined && pid > 0 && clusterProcesses(dir, mountNs()).includes(pid);
  const stopOurs = async (pid: number | undefined, graceMs = 5000): Promise<void> => {
    if (ours(pid)) await stopDaemon(pid ?? 0, graceMs);
  };

  // Consumers first: nothing may restart pods while the runtimes are emptied. The control plane goes with
  // them (its data is per run; the API server's graceful shutdown would take seconds for nothing).
  for (const n of c?.nodes ?? []) await stopOurs(n.kubeletPid);
  await Promise.all([stopOurs(c?.controllerManagerPid), stopOurs(c?.schedulerPid), stopOurs(c?.proxyPid), stopOurs(c?.apiserver?.apiserverPid, 500)]);
  await stopOurs(c?.apiserver?.etcdPid, 500);

  // Every container and sandbox through each runtime, then the runtime. One that crashed is started again
  // in its node namespace (a new one if that is gone too), so that it finds its shims and has them clean up.
  for (const n of lay.nodes) {
    for (const major of [1, 2] as const) {
      const cdir = runtimeDirOf(n.dir, major);
      const st: ContainerdState = c?.nodes?.find((x) => x.name === n.name && x.containerd.dir === cdir)?.containerd ?? {
        dir: cdir,
        address: join(cdir, 'state', 'containerd.sock'),
        namespace: 'k8s.io',
        root: join(cdir, 'root'),
        state: join(cdir, 'state'),
        pid: 0,
        ...(major === 2 && process.env.MIGPROBE_CONTAINERD2_DIR ? { ctr: join(process.env.MIGPROBE_CONTAINERD2_DIR, 'ctr') } : {}),
      };
      // A clean teardown removed the state folder: then nothing of that runtime can still be running.
      if (!existsSync(join(cdir, 'config.toml')) || !existsSync(st.state) || readdirSync(st.state).length === 0) continue;
      try {
        if (!ours(st.pid)) {
          st.pid = 0;
          let holder = findHolder(n.dir);
          if (holder === undefined) {
            const pause = await buildPauseImage(join(process.env.MIGPROBE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/migprobe'), 'images'));
            const ns = await createNodeNamespace(n.dir, cdir, pause.binary, join(dir, 'logs', `ns-${n.name}-teardown.log`));
            namespaces[`${n.name}-teardown`] = ns;
            for (const p of ns.createdMountPoints) createdMountPoints.add(p);
            holder = ns.holderPid;
          }
          st.nodeNs = holder;
          await reviveContainerd(st);
        }
        await stopContainerd(st);
      } catch {
        /* what it could not remove, the sweeps below do */
      }
    }
  }

  // Whatever still runs: the daemons and everything in the node namespaces (holders included, so the
  // namespaces end and every mount made in them with them), and the pods' processes by their cgroups.
  await killAll(clusterProcesses(dir, mountNs()), 3000);
  for (const n of lay.nodes) await killAll(cgroupPids(n.cgroupRoot), 1000);

  const left: string[] = [];
  await removeNetwork(lay.nodes.map((n) => n.net));
  left.push(...(await unmountUnder(dir)).map((m) => `mount ${m}`));
  for (const n of lay.nodes) left.push(...(await removeCgroupRoot(n.cgroupRoot)).map((d) => `cgroup ${d}`));
  left.push(...(await cleanupNetfilter(process.env.MIGPROBE_KUBE_PROXY)).map((ch) => `netfilter ${ch}`));
  await killAll(clusterProcesses(dir, mountNs()), 3000);
  if (c?.sysctls) restoreAllSysctls(c.sysctls);
  left.push(...removeMountPoints([...createdMountPoints]).map((p) => `mount point ${p}`));

  // Per-run state goes; the runtimes' image stores and the last run's logs stay.
  rmSync(join(dir, 'apiserver'), { recursive: true, force: true });
  for (const n of lay.nodes) {
    for (const major of [1, 2] as const) {
      const cdir = runtimeDirOf(n.dir, major);
      for (const b of nodeBinds(n.dir, cdir)) if (b.hostPath !== join(cdir, 'root')) rmSync(b.hostPath, { recursive: true, force: true });
      // Beside the image store, the config and the log: the opt folder, an interrupted import's copy.
      for (const e of existsSync(cdir) ? readdirSync(cdir) : []) {
        if (!['root', 'config.toml', 'containerd.log'].includes(e)) rmSync(join(cdir, e), { recursive: true, force: true });
      }
    }
  }
  for (const ino of Object.values(namespaces).map((ns) => ns.mntIno)) {
    left.push(...processesInMountNs(ino).map((p) => `process ${p} in node mount namespace ${ino}`));
  }
  left.push(...clusterProcesses(dir).map((p) => `process ${p}: ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 120)}`));
  left.push(...mountsUnder(readFileSync('/proc/self/mountinfo', 'utf8'), dir).map((m) => `mount ${m}`));
  left.push(...(await networkLeftovers(lay.nodes.map((n) => n.net))));
  left.push(...(await kubeChains()).map((ch) => `netfilter ${ch}`));
  const uniq = [...new Set(left)];
  if (uniq.length === 0) rmSync(stateFileOf(name), { force: true });
  return uniq;
}

/**
 * Imports an OCI image archive (tarred OCI layout, e.g. `buildah push IMAGE oci-archive:FILE`) into every
 * node's runtime as `ref` (normalized the way the kubelet asks for it: `migprobe-agent:0.1.0` becomes
 * `docker.io/library/migprobe-agent:0.1.0`). Returns the normalized ref to put in pod specs.
 */
export async function importImageToCluster(c: Cluster, archive: string, ref: string): Promise<string> {
  const refs = await Promise.all(c.nodes.map(async (n) => await importArchive(n.containerd, archive, ref)));
  return refs[0] ?? ref;
}

/** POST to a kubelet's own HTTPS port with the admin token; resolves status and body. */
export async function kubeletRequest(c: Cluster, node: string, method: string, path: string, timeoutMs = 120_000): Promise<{ status: number; body: string }> {
  const n = nodeOf(c, node);
  const agent = new Agent({ ca: readFileSync(c.caFile) });
  return await new Promise((resolve, reject) => {
    const req = request(`${n.kubeletUrl}${path}`, { method, agent, headers: { Authorization: `Bearer ${c.adminToken}` }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`kubelet ${node} ${method} ${path}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The kubelet checkpoint API (`POST /checkpoint/{namespace}/{pod}/{container}`) on `node`: the runtime
 * dumps the container with CRIU, leaves it running, and writes an archive under the kubelet's checkpoints
 * folder. Returns the archive's path as the node (and a pod's hostPath) sees it,
 * /var/lib/kubelet/checkpoints/..., and as the host does. Only containerd v2 nodes implement it.
 */
export async function checkpointContainer(
  c: Cluster,
  node: string,
  namespace: string,
  pod: string,
  container: string,
): Promise<{ path: string; hostPath: string }> {
  const r = await kubeletRequest(c, node, 'POST', `/checkpoint/${namespace}/${pod}/${container}`);
  if (r.status !== 200) throw new Error(`kubelet checkpoint API on ${node} answered ${r.status}: ${r.body.slice(0, 1000)}`);
  const items = (JSON.parse(r.body) as { items?: string[] }).items ?? [];
  const first = items[0];
  if (!first) throw new Error(`kubelet checkpoint API on ${node} answered without an archive: ${r.body.slice(0, 500)}`);
  return { path: first, hostPath: hostPathOnNode(c, node, first) };
}

function nodeOf(c: Cluster, node: string): ClusterNode {
  const n = c.nodes.find((x) => x.name === node);
  if (!n) throw new Error(`no node ${node} in cluster ${c.name} (nodes: ${c.nodes.map((x) => x.name).join(', ')})`);
  return n;
}

/** The host path of a path as `node` sees it (/var/lib/kubelet/x -> <node dir>/kubelet/x; others unchanged). */
export function hostPathOnNode(c: Cluster, node: string, path: string): string {
  return hostPathOf(nodeOf(c, node).binds, path);
}

/**
 * Runs a command on `node` as a shell there would: in the node's mount namespace, where /run/containerd,
 * /var/lib/containerd, /var/lib/kubelet, ... are that node's (e.g. migprobe's CLI against a pod's container).
 */
export async function runOnNode(
  c: Cluster,
  node: string,
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; allowFail?: boolean; input?: string } = {},
): Promise<RunResult> {
  return await runInNs(nodeOf(c, node).ns.holderPid, cmd, args, opts);
}
