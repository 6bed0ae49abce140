// The cluster's network on the host: a node IP per node on a veth end with a /32 (the kubelet refuses a
// loopback node IP and this kernel has no `dummy` links), a CNI config per node (bridge + host-local, one pod
// CIDR per node; containerd adds loopback itself), IP forwarding, and the teardown of all of it: CNI network
// namespaces of the cluster's pods, their veths, the bridges, the node links, CNI's cached results.

import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './proc.ts';

export interface NodeNet {
  /** The node's InternalIP, held with a /32 by the host end of a veth pair named `link`. */
  ip: string;
  link: string;
  /** This node's pod CIDR (a /24); its first address is the bridge's, the pods' gateway. */
  podCidr: string;
  bridge: string;
  /** CNI network name; host-local keeps its leases under `ipamDir`. */
  network: string;
  ipamDir: string;
}

/** The gateway of a /24 pod CIDR: its .1 address. Pure. */
export function gatewayOf(podCidr: string): string {
  const base = podCidr.split('/')[0] ?? '';
  return base.replace(/\.\d+$/, '.1');
}

/** Whether `ip` lies in the /24 `cidr`. Pure. */
export function inCidr24(ip: string, cidr: string): boolean {
  const prefix = (cidr.split('/')[0] ?? '').split('.').slice(0, 3).join('.');
  return ip.startsWith(`${prefix}.`);
}

/** The CNI conflist of a node. Pure. */
export function cniConfig(n: NodeNet): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: n.network,
      plugins: [
        {
          type: 'bridge',
          bridge: n.bridge,
          isGateway: true,
          // Pods reach the other node's pods and the node IPs by plain host routing: no NAT.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: n.podCidr, gateway: gatewayOf(n.podCidr) }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: n.ipamDir,
          },
        },
      ],
    },
    null,
    2,
  );
}

export function writeCniConfig(confDir: string, n: NodeNet): void {
  mkdirSync(confDir, { recursive: true });
  mkdirSync(n.ipamDir, { recursive: true });
  writeFileSync(join(confDir, '10-migprobe.conflist'), cniConfig(n));
}

/** Creates the node's veth pair and puts its IP (/32) on the host end. Idempotent. */
export async function addNodeLink(n: NodeNet): Promise<void> {
  const peer = `${n.link}-p`;
  if ((await run('ip', ['link', 'show', n.link], { allowFail: true })).exitCode !== 0) {
    await run('ip', ['link', 'add', n.link, 'type', 'veth', 'peer', 'name', peer]);
  }
  const addrs = (await run('ip', ['-o', '-4', 'addr', 'show', 'dev', n.link])).stdout;
  if (!addrs.includes(` ${n.ip}/32 `)) await run('ip', ['addr', 'add', `${n.ip}/32`, 'dev', n.link]);
  await run('ip', ['link', 'set', peer, 'up']);
  await run('ip', ['link', 'set', n.link, 'up']);
}

const SYSCTLS = ['/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/bridge/bridge-nf-call-iptables'];

/**
 * Turns on forwarding (pods of one node reach the other's through the host) and bridge netfilter (a pod
 * reaching a Service whose endpoint sits on its own bridge). Returns the values before, to restore at teardown.
 */
export function enableForwarding(): Record<string, string> {
  const before: Record<string, string> = {};
  for (const f of SYSCTLS) {
    if (!existsSync(f)) continue;
    before[f] = readFileSync(f, 'utf8').trim();
    writeFileSync(f, '1');
  }
  return before;
}

export function restoreSysctls(before: Record<string, string>): void {
  for (const [f, v] of Object.entries(before)) {
    if (SYSCTLS.includes(f) && existsSync(f)) writeFileSync(f, v);
  }
}

async function linksOf(netns: string): Promise<{ addrs: string[]; peerIndexes: number[] }> {
  const addrs = (await run('ip', ['-n', netns, '-o', '-4', 'addr', 'show'], { allowFail: true })).stdout
    .split('\n')
    .map((l) => /inet (\d+\.\d+\.\d+\.\d+)\//.exec(l)?.[1])
    .filter((a): a is string => a !== undefined);
  const peerIndexes = (await run('ip', ['-n', netns, '-o', 'link', 'show'], { allowFail: true })).stdout
    .split('\n')
    .map((l) => /@if(\d+):/.exec(l)?.[1])
    .filter((i): i is string => i !== undefined)
    .map(Number);
  return { addrs, peerIndexes };
}

/** Host links enslaved to `bridge`: interface index -> name. */
async function bridgePorts(bridge: string): Promise<Map<number, string>> {
  const out = (await run('ip', ['-o', 'link', 'show', 'master', bridge], { allowFail: true })).stdout;
  const ports = new Map<number, string>();
  for (const l of out.split('\n')) {
    const m = /^(\d+): ([^:@]+)/.exec(l);
    if (m?.[1] && m[2]) ports.set(Number(m[1]), m[2]);
  }
  return ports;
}

/**
 * CNI network namespaces (/var/run/netns/cni-*) of the cluster's pods: those holding an address in a node's
 * pod CIDR, or a veth whose host end is a port of a node's bridge.
 */
export async function clusterNetns(nodes: NodeNet[]): Promise<string[]> {
  const dir = '/var/run/netns';
  if (!existsSync(dir)) return [];
  const ports = new Set<number>();
  for (const n of nodes) for (const i of (await bridgePorts(n.bridge)).keys()) ports.add(i);
  const ours: string[] = [];
  for (const ns of readdirSync(dir).filter((x) => x.startsWith('cni-'))) {
    const { addrs, peerIndexes } = await linksOf(ns);
    const byAddr = addrs.some((a) => nodes.some((n) => inCidr24(a, n.podCidr)));
    if (byAddr || peerIndexes.some((i) => ports.has(i))) ours.push(ns);
  }
  return ours;
}

/** Deletes the pods' network namespaces, the bridges, the node links and CNI's cached results of `nodes`. */
export async function removeNetwork(nodes: NodeNet[]): Promise<void> {
  for (const ns of await clusterNetns(nodes)) await run('ip', ['netns', 'del', ns], { allowFail: true });
  for (const n of nodes) {
    // A port left on the bridge (its netns was gone already) goes with its pair.
    for (const name of (await bridgePorts(n.bridge)).values()) await run('ip', ['link', 'del', name], { allowFail: true });
    await run('ip', ['link', 'del', n.bridge], { allowFail: true });
    await run('ip', ['link', 'del', n.link], { allowFail: true });
    rmSync(n.ipamDir, { recursive: true, force: true });
  }
  // libcni caches every ADD's result under /var/lib/cni/results/<network>-<sandbox>-<ifname>, the pod's
  // own network's and containerd's loopback network's (cni-loopback) alike.
  const results = '/var/lib/cni/results';
  if (existsSync(results)) {
    const files = readdirSync(results);
    const ours = files.filter((f) => nodes.some((n) => f.startsWith(`${n.network}-`)));
    const sandboxes = ours.map((f) => /-([0-9a-f]{64})-[^-]+$/.exec(f)?.[1]).filter((id): id is string => id !== undefined);
    const loopbacks = files.filter((f) => sandboxes.some((id) => f === `cni-loopback-${id}-lo`));
    for (const f of [...ours, ...loopbacks]) rmSync(join(results, f), { force: true });
  }
}

/** What of `nodes`' network is still on the host (for teardown's final check). */
export async function networkLeftovers(nodes: NodeNet[]): Promise<string[]> {
  const left = (await clusterNetns(nodes)).map((ns) => `netns ${ns}`);
  for (const n of nodes) {
    for (const l of [n.bridge, n.link, `${n.link}-p`]) {
      if ((await run('ip', ['link', 'show', l], { allowFail: true })).exitCode === 0) left.push(`link ${l}`);
    }
  }
  return left;
}
