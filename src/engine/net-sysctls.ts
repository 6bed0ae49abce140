// Network namespace sysctls the restore sandbox carries over from the source container. A pod sets them in its
// spec (securityContext.sysctls), so the target's network namespace has them too; the sandbox, a fresh network
// namespace, starts from the kernel defaults. One of them decides whether a restore can work at all: a ping
// socket (ICMP "datagram" socket, SOCK_DGRAM + IPPROTO_ICMP) can only be created by a group inside
// net.ipv4.ping_group_range, whose default ("1 0") allows none, so CRIU's restore of one fails with "Can't
// create inet socket: Permission denied".
//
// Only namespaced sysctls that Kubernetes counts as safe, and that a restore depends on, are read and applied:
// read in the source container's network namespace at dump time, carried in the bundle's manifest, validated
// strictly on the target (the manifest comes from a peer) and written only inside the sandbox's namespace.

import type { Runner } from './exec.ts';

const MAX_GID = 4294967294;

/** sysctl name -> its /proc/sys path and a strict check of its value (as the kernel prints it). */
const ALLOWED: Readonly<Record<string, { path: string; valid: (v: string) => boolean }>> = {
  'net.ipv4.ping_group_range': {
    path: '/proc/sys/net/ipv4/ping_group_range',
    valid: (v) => {
      const m = /^(\d{1,10})\t(\d{1,10})$/.exec(v);
      return m !== null && Number(m[1]) <= MAX_GID && Number(m[2]) <= MAX_GID;
    },
  },
  'net.ipv4.ip_unprivileged_port_start': {
    path: '/proc/sys/net/ipv4/ip_unprivileged_port_start',
    valid: (v) => /^\d{1,5}$/.test(v) && Number(v) <= 65536,
  },
};

export const NET_SYSCTLS: readonly string[] = Object.keys(ALLOWED);

export type NetSysctls = Record<string, string>;

/** Strictly validated sysctls from a bundle's manifest: a known name and a well-formed value each, or an error. Pure. */
export function parseNetSysctls(v: unknown): NetSysctls {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('netSysctls must be an object');
  const out: NetSysctls = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const a = Object.hasOwn(ALLOWED, k) ? ALLOWED[k] : undefined;
    if (a === undefined) throw new Error(`netSysctls: ${k.slice(0, 80)} is not a sysctl migprobe carries (${NET_SYSCTLS.join(', ')})`);
    if (typeof val !== 'string' || !a.valid(val)) throw new Error(`netSysctls: ${k} has a malformed value`);
    out[k] = val;
  }
  return out;
}

/** `cat` output of the allowed sysctls' files, in NET_SYSCTLS order -> the values that are well-formed. Pure. */
export function sysctlsFromCat(stdout: string): NetSysctls {
  const lines = stdout.split('\n');
  const out: NetSysctls = {};
  NET_SYSCTLS.forEach((k, i) => {
    const v = (lines[i] ?? '').trim().replace(/\s+/g, '\t');
    if (ALLOWED[k]?.valid(v) === true) out[k] = v;
  });
  return out;
}

/** The allowed sysctls of a network namespace (e.g. /proc/<pid>/ns/net); empty when they cannot be read. */
export async function readNetSysctls(netnsPath: string, runner: Runner): Promise<NetSysctls> {
  const r = await runner('nsenter', [`--net=${netnsPath}`, '--', 'cat', ...NET_SYSCTLS.map((k) => ALLOWED[k]?.path ?? '')], { timeoutMs: 10_000 });
  return r.exitCode === 0 ? sysctlsFromCat(r.stdout) : {};
}

/** Write validated sysctls inside one network namespace (the sandbox's), each through `tee` on its /proc/sys file. */
export async function applyNetSysctls(netnsPath: string, sysctls: NetSysctls, runner: Runner): Promise<void> {
  for (const [k, v] of Object.entries(parseNetSysctls(sysctls))) {
    const path = ALLOWED[k]?.path ?? '';
    const r = await runner('nsenter', [`--net=${netnsPath}`, '--', 'tee', path], { input: `${v}\n`, timeoutMs: 10_000 });
    if (r.exitCode !== 0) throw new Error(`setting ${k} in the sandbox's network namespace failed: ${r.stderr.trim().slice(0, 200)}`);
  }
}
