// The cluster's network on the host: a node IP per node on a veth end with a /32 (the kubelet refuses a
// loopback node IP and this kernel has no `dummy` links), a CNI config per node (bridge + host-local, one pod
// CIDR per node; containerd adds loopback itself), IP forwarding, and the teardown of the host's part: the
// bridges, any pod veth still on them, the node links. (The pods' network namespaces, and CNI's leases and
// cached results, live in the node's mount namespace under /run/netns and /var/lib/cni, and go with it.)

import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './proc.ts';

export interface NodeNet {
  /** The node's InternalIP, held with a /32 by the host end of a veth pair named `link`. */
  ip: string;
  link: string;
  /** This node's pod CIDR (a /24); its first address is the bridge's, the pods' gateway. */
  podCidr: string;
  bridge: string;
  /** CNI network name. */
  network: string;
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

/** Deletes the bridges (and any pod veth still on them) and the node links of `nodes`. */
export async function removeNetwork(nodes: NodeNet[]): Promise<void> {
  for (const n of nodes) {
    for (const name of (await bridgePorts(n.bridge)).values()) await run('ip', ['link', 'del', name], { allowFail: true });
    await run('ip', ['link', 'del', n.bridge], { allowFail: true });
    await run('ip', ['link', 'del', n.link], { allowFail: true });
  }
}

/** What of `nodes`' network is still on the host (for teardown's final check). */
export async function networkLeftovers(nodes: NodeNet[]): Promise<string[]> {
  const left: string[] = [];
  for (const n of nodes) {
    for (const l of [n.bridge, n.link, `${n.link}-p`]) {
      if ((await run('ip', ['link', 'show', l], { allowFail: true })).exitCode === 0) left.push(`link ${l}`);
    }
  }
  return left;
}
