// Argument arrays for `criu dump` and `criu restore`. Pure: no I/O, unit tested in criu-args.test.ts.
//
// Choices, with the reason for each:
// - `--leave-running`: the dump check must never stop the workload.
// - `--lazy-pages` + `--ps-socket`: memory pages stay in the workload; CRIU would serve them from a page server on
//   a socket it inherits from us, where PS_IOV_CLOSE already waits: nothing will be fetched (see dump.ts). Page
//   contents are never written, and no port is opened.
// - `--network-lock skip` unless established TCP connections are allowed: with --leave-running nothing is killed
//   and no connection changes hands, so the lock only adds freeze time (and needs nftables in the container's
//   netns). With `tcpEstablished`, `nftables`: sockets sit in repair mode during the dump and the peers must not
//   see resets. The default (iptables) is not installed on typical nodes.
// - `--cpu-cap` on BOTH dump and restore: without it on dump CRIU writes no usable cpuinfo check, and without it on
//   restore it skips the check. We pass the default set (fpu,ins) explicitly.
// - Cgroup mounts, host bind mounts and (by default) tmpfs mounts are external: cgroup and bind mounts must be
//   (CRIU refuses them otherwise), tmpfs because CRIU tars every tmpfs while the workload is frozen.
// - `--manage-cgroups soft` on dump records the cgroup set; restore puts it under a private `--cgroup-root`.
// - `-v2` on the hot path (-v4 doubles the freeze for large memory).
// - `--tcp-close` (asked for) on dump AND restore: CRIU refuses images dumped with it unless the restore has it too;
//   no connection is repaired, so the network lock stays `skip` even with `tcpEstablished`.
// - `--skip-in-flight` and `--link-remap` (asked for) on dump only: they change what the dump records, and the
//   restore reads that from the images.

import type { ProbeOptions } from './api.ts';

export interface ExternalMount {
  /** Mount point inside the container, e.g. `/sys/fs/cgroup/memory`. */
  mountpoint: string;
  /** Key CRIU records in the images and the restore maps to a host path. */
  key: string;
  kind: 'cgroup' | 'bind' | 'tmpfs' | 'other';
  /** For bind mounts: the host path it comes from (the restore maps the key back to it when it exists). */
  hostPath?: string;
  /** A bind of a file, not a folder (e.g. a masked path bound from /dev/null): its stand-in on restore is a file. */
  file?: boolean;
}

export interface DumpArgsInput {
  pid: number;
  imagesDir: string;
  logFile: string;
  /** The container's root as the host sees it, e.g. /proc/<pid>/root. */
  root?: string;
  externalMounts: readonly ExternalMount[];
  /** Inode of the container's own network namespace, when it has one: kept out of the images. */
  netnsInode?: number;
  netnsKey?: string;
  /**
   * Lazy pages, served from a socket CRIU inherits (`psSocketFd`, no port, nothing listening) or from a TCP
   * page server on address:port.
   */
  lazyPages?: { psSocketFd: number } | { address: string; port: number };
  statusFd?: number;
  /** Freezer cgroup of the container (v1 path like /sys/fs/cgroup/freezer/k8s.io/<id>). */
  freezeCgroup?: string;
  /** Keep the default: `true` in the dump check, `false` for a baseline full dump that exits. */
  leaveRunning: boolean;
  verbosity?: number;
  options: Pick<
    ProbeOptions,
    'tcpEstablished' | 'fileLocks' | 'extUnixSockets' | 'ghostLimitBytes' | 'allowUprobes' | 'tcpClose' | 'tcpSkipInFlight' | 'linkRemap'
  >;
}

export const NETNS_KEY = 'migprobe-netns';
export const CPU_CAP = 'fpu,ins';

export function networkLockFor(options: Pick<ProbeOptions, 'tcpEstablished' | 'tcpClose'>): 'skip' | 'nftables' {
  // with --tcp-close CRIU repairs no connection (it records them closed), so nothing needs the lock
  return options.tcpEstablished && options.tcpClose !== true ? 'nftables' : 'skip';
}

export function dumpArgs(i: DumpArgsInput): string[] {
  const a: string[] = ['dump', '-t', String(i.pid), '--images-dir', i.imagesDir, '-o', i.logFile, `-v${i.verbosity ?? 2}`];
  if (i.leaveRunning) a.push('--leave-running');
  if (i.root !== undefined) a.push('--root', i.root);
  a.push('--manage-cgroups=soft');
  if (i.freezeCgroup !== undefined) a.push('--freeze-cgroup', i.freezeCgroup);
  for (const m of i.externalMounts) a.push('--external', `mnt[${m.mountpoint}]:${m.key}`);
  if (i.netnsInode !== undefined) a.push('--external', `net[${i.netnsInode}]:${i.netnsKey ?? NETNS_KEY}`);
  a.push('--network-lock', networkLockFor(i.options));
  if (i.options.tcpEstablished) a.push('--tcp-established');
  if (i.options.fileLocks) a.push('--file-locks');
  if (i.options.extUnixSockets) a.push('--ext-unix-sk');
  // a uprobe's [uprobes] area: CRIU refuses the task without it, and the restore needs it too
  if (i.options.allowUprobes === true) a.push('--allow-uprobes');
  if (i.options.tcpClose === true) a.push('--tcp-close');
  if (i.options.tcpSkipInFlight === true) a.push('--skip-in-flight');
  if (i.options.linkRemap === true) a.push('--link-remap');
  a.push('--ghost-limit', String(Math.max(0, Math.floor(i.options.ghostLimitBytes))));
  a.push(`--cpu-cap=${CPU_CAP}`);
  if (i.lazyPages !== undefined) {
    a.push('--lazy-pages');
    if ('psSocketFd' in i.lazyPages) a.push('--ps-socket', String(i.lazyPages.psSocketFd));
    else a.push('--address', i.lazyPages.address, '--port', String(i.lazyPages.port));
  }
  if (i.statusFd !== undefined) a.push('--status-fd', String(i.statusFd));
  return a;
}

export interface RestoreArgsInput {
  imagesDir: string;
  logFile: string;
  /** The overlay mounted as the container's root inside the sandbox. */
  root: string;
  /** Private cgroup root for every controller. */
  cgroupRoot: string;
  /** key -> host path (inside the sandbox's mount namespace). */
  externalMounts: readonly { key: string; path: string }[];
  /** fd number (in CRIU) of the sandbox network namespace, when the images have the netns external. */
  netnsFd?: number;
  netnsKey?: string;
  pidfile: string;
  options: Pick<ProbeOptions, 'tcpEstablished' | 'fileLocks' | 'extUnixSockets' | 'allowUprobes' | 'tcpClose'>;
  verbosity?: number;
  /** Check the CPU against cpuinfo.img (default true; false when the images have no cpuinfo.img). */
  cpuCap?: boolean;
}

export function restoreArgs(i: RestoreArgsInput): string[] {
  const a: string[] = [
    'restore',
    '--images-dir',
    i.imagesDir,
    '-o',
    i.logFile,
    `-v${i.verbosity ?? 2}`,
    '--restore-detached',
    '--leave-stopped',
    '--root',
    i.root,
    '--manage-cgroups=soft',
    '--cgroup-root',
    i.cgroupRoot,
    '--pidfile',
    i.pidfile,
  ];
  for (const m of i.externalMounts) a.push('--external', `mnt[${m.key}]:${m.path}`);
  if (i.netnsFd !== undefined) a.push('--inherit-fd', `fd[${i.netnsFd}]:${i.netnsKey ?? NETNS_KEY}`);
  if (i.options.tcpEstablished) a.push('--tcp-established');
  if (i.options.fileLocks) a.push('--file-locks');
  if (i.options.extUnixSockets) a.push('--ext-unix-sk');
  if (i.options.allowUprobes === true) a.push('--allow-uprobes');
  if (i.options.tcpClose === true) a.push('--tcp-close');
  if (i.cpuCap !== false) a.push(`--cpu-cap=${CPU_CAP}`);
  return a;
}

/** A CRIU external-mount key that is stable, short and free of CRIU's separators. */
export function mountKey(kind: ExternalMount['kind'], mountpoint: string): string {
  const slug = mountpoint.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]+/g, '_') || 'root';
  return `${kind}:${slug}`.replace(/:/g, '-');
}
