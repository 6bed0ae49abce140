// A kubelet of the test bed's cluster: its configuration (pure), its start in its node's mount namespace,
// and unmounting what is left under a folder (a safety net of teardown: the node's own mounts go with its
// namespace). Facts of this machine it is configured for: cgroup v1 (cgroupfs, a cgroupRoot of its own), a
// node IP on a veth (never loopback), no swap, no registry (images are never pulled, so image garbage
// collection is off).

import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, startDaemon } from './proc.ts';
import { inNode } from './nodens.ts';

export interface KubeletSpec {
  nodeName: string;
  nodeIP: string;
  rootDir: string;
  cgroupRoot: string;
  /** The node's containerd socket. */
  runtimeSocket: string;
  kubeconfigPath: string;
  caFile: string;
  /** Serving certificate and key, signed by the cluster CA for `nodeIP`. */
  certFile: string;
  keyFile: string;
  podLogsDir: string;
}

export const KUBELET_PORT = 10250;

/** The KubeletConfiguration (JSON, which the kubelet's YAML reader takes). Pure. */
export function kubeletConfig(s: KubeletSpec): string {
  return JSON.stringify(
    {
      kind: 'KubeletConfiguration',
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      // Each kubelet serves on its own node IP, so all use the usual port; no read-only or healthz port to clash.
      address: s.nodeIP,
      port: KUBELET_PORT,
      readOnlyPort: 0,
      healthzPort: 0,
      // Bearer tokens checked by TokenReview (the test bed's admin token works), client certificates of the
      // cluster CA (the API server's, for exec and logs), and every request authorized by SubjectAccessReview.
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: true, cacheTTL: '10s' },
        x509: { clientCAFile: s.caFile },
      },
      authorization: { mode: 'Webhook', webhook: { cacheAuthorizedTTL: '10s', cacheUnauthorizedTTL: '5s' } },
      tlsCertFile: s.certFile,
      tlsPrivateKeyFile: s.keyFile,
      cgroupDriver: 'cgroupfs',
      cgroupRoot: s.cgroupRoot,
      cgroupsPerQOS: true,
      enforceNodeAllocatable: ['pods'],
      failCgroupV1: false,
      failSwapOn: false,
      containerRuntimeEndpoint: `unix://${s.runtimeSocket}`,
      podLogsDir: s.podLogsDir,
      clusterDomain: 'cluster.local',
      resolvConf: '/etc/resolv.conf',
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      // A busy shared disk must not evict the test's pods.
      evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
      maxPods: 50,
      serializeImagePulls: false,
      volumeStatsAggPeriod: '0s',
      containerLogMaxSize: '1Mi',
      rotateCertificates: false,
      serverTLSBootstrap: false,
      shutdownGracePeriod: '0s',
      registerNode: true,
    },
    null,
    2,
  );
}

export function kubeletArgs(s: KubeletSpec, configPath: string): string[] {
  return [
    `--config=${configPath}`,
    `--kubeconfig=${s.kubeconfigPath}`,
    `--root-dir=${s.rootDir}`,
    `--hostname-override=${s.nodeName}`,
    `--node-ip=${s.nodeIP}`,
    '--v=1',
  ];
}

/**
 * Writes the kubelet's config into `dir` and starts it, in the node mount namespace held by `nodeNs` (where
 * its paths are the node's; testbed/nodens.ts); returns its PID.
 */
export function startKubelet(bin: string, s: KubeletSpec, dir: string, logFile: string, nodeNs: number): number {
  const configPath = join(dir, 'kubelet-config.json');
  writeFileSync(configPath, kubeletConfig(s));
  return startDaemon('nsenter', [...inNode(nodeNs), bin, ...kubeletArgs(s, configPath)], logFile);
}

/** Mount points at or under `dir`, deepest last mounted first, from a mountinfo text. Pure. */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(prefix)));
  return points.reverse();
}

/** Unmounts everything at or under `dir` (lazily when busy). Returns what is still mounted. */
export async function unmountUnder(dir: string): Promise<string[]> {
  for (let round = 0; round < 3; round++) {
    const points = mountsUnder(readFileSync('/proc/self/mountinfo', 'utf8'), dir);
    if (points.length === 0) return [];
    for (const p of points) {
      const r = await run('umount', [p], { allowFail: true, timeoutMs: 15_000 });
      if (r.exitCode !== 0) await run('umount', ['-l', p], { allowFail: true, timeoutMs: 15_000 });
    }
  }
  return mountsUnder(readFileSync('/proc/self/mountinfo', 'utf8'), dir);
}
