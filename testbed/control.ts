// The cluster's control-plane daemons beside the API server: kube-controller-manager (ServiceAccount tokens
// and default ServiceAccounts, Deployments, ReplicaSets, DaemonSets, namespaces, garbage collection),
// kube-scheduler, and the one kube-proxy of the machine (iptables mode; all nodes share the host's
// netfilter, so one proxy serves them). Also the removal of every netfilter rule they and the kubelets made
// (the machine holds one cluster at a time, so every KUBE-* chain is this cluster's).

import { run, startDaemon } from './proc.ts';

export interface ControlPlaneSpec {
  /** Kubeconfigs per component, each with its own identity. */
  controllerManagerKubeconfig: string;
  schedulerKubeconfig: string;
  proxyKubeconfig: string;
  saKeyFile: string;
  caFile: string;
  clusterCidr: string;
  serviceCidr: string;
  /** The node whose name kube-proxy takes (it serves all nodes of the machine). */
  proxyNodeName: string;
  /** CIDR of the node IPs: NodePorts answer there only, not on the machine's other addresses. */
  nodeIPCidr: string;
}

/** Pure. */
export function controllerManagerArgs(s: ControlPlaneSpec): string[] {
  return [
    `--kubeconfig=${s.controllerManagerKubeconfig}`,
    `--service-account-private-key-file=${s.saKeyFile}`,
    `--root-ca-file=${s.caFile}`,
    // Each controller acts as its own ServiceAccount with its bootstrap role, as on kubeadm clusters.
    '--use-service-account-credentials=true',
    `--service-cluster-ip-range=${s.serviceCidr}`,
    `--cluster-cidr=${s.clusterCidr}`,
    '--leader-elect=false',
    '--secure-port=0',
    '--v=1',
  ];
}

/** Pure. */
export function schedulerArgs(s: ControlPlaneSpec): string[] {
  return [
    `--kubeconfig=${s.schedulerKubeconfig}`,
    '--leader-elect=false',
    '--secure-port=0',
    '--v=1',
  ];
}

/** Pure. */
export function proxyArgs(s: ControlPlaneSpec): string[] {
  return [
    `--kubeconfig=${s.proxyKubeconfig}`,
    '--proxy-mode=iptables',
    `--cluster-cidr=${s.clusterCidr}`,
    `--hostname-override=${s.proxyNodeName}`,
    `--nodeport-addresses=${s.nodeIPCidr}`,
    // Leave the host's sysctls alone: localhost NodePorts would set route_localnet; 0 keeps conntrack's limits.
    '--iptables-localhost-nodeports=false',
    '--conntrack-max-per-core=0',
    '--conntrack-tcp-timeout-established=0',
    '--conntrack-tcp-timeout-close-wait=0',
    // Empty: no health or metrics server (a fixed port would clash with anything else on the machine).
    '--healthz-bind-address=',
    '--metrics-bind-address=',
    '--v=1',
  ];
}

export function startControlPlane(
  bins: { controllerManager: string; scheduler: string; proxy: string },
  s: ControlPlaneSpec,
  logs: { controllerManager: string; scheduler: string; proxy: string },
): { controllerManagerPid: number; schedulerPid: number; proxyPid: number } {
  return {
    controllerManagerPid: startDaemon(bins.controllerManager, controllerManagerArgs(s), logs.controllerManager),
    schedulerPid: startDaemon(bins.scheduler, schedulerArgs(s), logs.scheduler),
    proxyPid: startDaemon(bins.proxy, proxyArgs(s), logs.proxy),
  };
}

/** Chains of kube-proxy and the kubelets (KUBE-*) in an iptables-save text, as `table/chain`. Pure. */
export function kubeChainsOf(save: string): string[] {
  const out: string[] = [];
  let table = '';
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    const m = /^:(KUBE-[A-Za-z0-9_-]+) /.exec(line);
    if (m?.[1]) out.push(`${table}/${m[1]}`);
  }
  return out;
}

const FAMILIES = ['iptables', 'ip6tables'] as const;

/** KUBE-* chains in the host's iptables (IPv4 and IPv6), as `iptables:table/chain`. */
export async function kubeChains(): Promise<string[]> {
  const out: string[] = [];
  for (const fam of FAMILIES) {
    const save = await run(`${fam}-save`, [], { allowFail: true, timeoutMs: 30_000 });
    out.push(...kubeChainsOf(save.stdout).map((c) => `${fam}:${c}`));
  }
  return out;
}

/**
 * Removes kube-proxy's rules (`kube-proxy --cleanup`) and any KUBE-* chain left by the kubelets (their
 * canary and hint chains). Returns what is left.
 */
export async function cleanupNetfilter(proxyBin: string | undefined): Promise<string[]> {
  if ((await kubeChains()).length === 0) return [];
  if (proxyBin) await run(proxyBin, ['--cleanup', '--v=0'], { allowFail: true, timeoutMs: 60_000 });
  for (const c of await kubeChains()) {
    const [fam, rest] = c.split(':') as [string, string];
    const [table, chain] = rest.split('/') as [string, string];
    // Rules jumping to the chain first, then the chain itself.
    const save = (await run(`${fam}-save`, ['-t', table], { allowFail: true })).stdout;
    for (const rule of save.split('\n').filter((l) => l.startsWith('-A ') && l.includes(` -j ${chain}`))) {
      const args = rule.slice(3).match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
      await run(fam, ['-t', table, '-D', ...args.map((a) => a.replace(/^"|"$/g, ''))], { allowFail: true });
    }
    await run(fam, ['-t', table, '-F', chain], { allowFail: true });
    await run(fam, ['-t', table, '-X', chain], { allowFail: true });
  }
  return await kubeChains();
}
