// Helpers of the tests on the real kubelet cluster (testbed/cluster.ts): kubectl as a user runs it,
// workloads as Deployments pinned to a node, MigrationProbes applied and waited for, and the migprobe release
// installed from charts/migprobe with the images built from the Dockerfiles (the e2e tests and the demo share
// installRelease). Argument arrays only.

import { join } from 'node:path';
import { run, waitFor, type RunResult } from './proc.ts';
import { importImageToCluster } from './cluster.ts';
import type { Cluster } from './index.ts';
import { CHART_DIR, ROOT } from './paths.ts';
import type { MigrationProbe } from '../src/api/v1alpha1.ts';

export interface Kubectl {
  (args: string[], opts?: { input?: string; allowFail?: boolean; timeoutMs?: number }): Promise<RunResult>;
  kubeconfig: string;
  bin: string;
}

export function kubectlFor(bin: string, kubeconfig: string): Kubectl {
  const f = async (args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> =>
    await run(bin, ['--kubeconfig', kubeconfig, ...args], {
      timeoutMs: opts.timeoutMs ?? 60_000,
      ...(opts.input === undefined ? {} : { input: opts.input }),
      ...(opts.allowFail === undefined ? {} : { allowFail: opts.allowFail }),
    });
  return Object.assign(f, { kubeconfig, bin });
}

export interface ContainerSpec {
  name: string;
  command: string[];
  volumeMounts?: { name: string; mountPath: string }[];
}

export interface WorkloadSpec {
  name: string;
  namespace: string;
  node: string;
  image: string;
  containers: ContainerSpec[];
  volumes?: unknown[];
  hostNetwork?: boolean;
}

/** A one-replica Deployment pinned to `node` (nodeSelector on the hostname label), images never pulled. */
export function deploymentYaml(w: WorkloadSpec): string {
  const labels = { app: w.name };
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: w.name, namespace: w.namespace, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          nodeSelector: { 'kubernetes.io/hostname': w.node },
          terminationGracePeriodSeconds: 1,
          ...(w.hostNetwork === true ? { hostNetwork: true } : {}),
          containers: w.containers.map((c) => ({
            name: c.name,
            image: w.image,
            imagePullPolicy: 'Never',
            command: c.command,
            ...(c.volumeMounts === undefined ? {} : { volumeMounts: c.volumeMounts }),
          })),
          ...(w.volumes === undefined ? {} : { volumes: w.volumes }),
        },
      },
    },
  });
}

interface PodLite {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; containerStatuses?: { name: string; ready: boolean; containerID?: string; state?: Record<string, unknown> }[] };
}

/** Applies a Deployment and waits for its one pod to run with every container ready. */
export async function runWorkload(k: Kubectl, w: WorkloadSpec, timeoutMs = 120_000): Promise<PodLite> {
  await k(['apply', '-f', '-'], { input: deploymentYaml(w) });
  return await waitFor(`deployment ${w.namespace}/${w.name} to run on ${w.node}`, timeoutMs, async () => {
    const r = await k(['get', 'pods', '-n', w.namespace, '-l', `app=${w.name}`, '-o', 'json']);
    const pods = (JSON.parse(r.stdout) as { items: PodLite[] }).items;
    const p = pods.find((x) => x.status.phase === 'Running' && (x.status.containerStatuses ?? []).every((c) => c.ready));
    if (p !== undefined && (p.status.containerStatuses ?? []).length === w.containers.length) return p;
    if (pods.length > 0) throw new Error(`pod status: ${JSON.stringify(pods.map((x) => x.status))}`);
    return undefined;
  });
}

export function probeYaml(namespace: string, name: string, spec: MigrationProbe['spec']): string {
  return JSON.stringify({ apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationProbe', metadata: { name, namespace }, spec });
}

export async function getProbe(k: Kubectl, namespace: string, name: string): Promise<MigrationProbe> {
  return JSON.parse((await k(['get', 'migrationprobe', '-n', namespace, name, '-o', 'json'])).stdout) as MigrationProbe;
}

/** Waits for a MigrationProbe to reach Succeeded or Failed, and returns it. */
export async function waitFinal(k: Kubectl, namespace: string, name: string, timeoutMs = 180_000): Promise<MigrationProbe> {
  let last: MigrationProbe | undefined;
  try {
    return await waitFor(`probe ${namespace}/${name} to finish`, timeoutMs, async () => {
      last = await getProbe(k, namespace, name);
      const ph = last.status?.phase;
      return ph === 'Succeeded' || ph === 'Failed' ? last : undefined;
    });
  } catch (e) {
    throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(last?.status)}`);
  }
}

export const codes = (p: MigrationProbe): string[] => (p.status?.reasons ?? []).map((r) => r.code);

export interface ReleaseImages {
  agent: string;
  agentArchive: string;
  controller: string;
  controllerArchive: string;
}

/** Builds (or reuses, by content) the two images with hack/images.sh and reads what it exported. */
export async function releaseImages(): Promise<ReleaseImages> {
  const r = await run('bash', [join(ROOT, 'hack/images.sh')], { timeoutMs: 1_800_000 });
  const env = new Map<string, string>();
  for (const m of r.stdout.matchAll(/^export (MIGPROBE_IMAGE_[A-Z_]+)=(\S+)$/gm)) env.set(m[1] ?? '', m[2] ?? '');
  const get = (key: string): string => {
    const v = env.get(key);
    if (v === undefined || v === '') throw new Error(`hack/images.sh did not print ${key}: ${r.stdout}`);
    return v;
  };
  return {
    agent: get('MIGPROBE_IMAGE_AGENT'),
    agentArchive: get('MIGPROBE_IMAGE_AGENT_ARCHIVE'),
    controller: get('MIGPROBE_IMAGE_CONTROLLER'),
    controllerArchive: get('MIGPROBE_IMAGE_CONTROLLER_ARCHIVE'),
  };
}

/** Helm (4) against the cluster. */
export function helmFor(c: Pick<Cluster, 'helm' | 'kubeconfigPath'>): (args: string[], timeoutMs?: number) => Promise<string> {
  return async (args, timeoutMs = 300_000) => (await run(c.helm, [...args, '--kubeconfig', c.kubeconfigPath], { timeoutMs })).stdout;
}

function repoTag(ref: string): { repository: string; tag: string } {
  const i = ref.lastIndexOf(':');
  return { repository: ref.slice(0, i), tag: ref.slice(i + 1) };
}

/**
 * As a user installs migprobe: the images (built or reused) imported into every node, the release namespace
 * labelled for privileged pods, `helm install` of charts/migprobe with those images (never pulled) and `--wait`.
 * `values` are extra `--set` pairs. Returns the helm command line and how long each step took.
 */
export async function installRelease(
  c: Cluster,
  k: Kubectl,
  o: { release: string; namespace: string; values?: string[] },
): Promise<{ command: string[]; timings: Record<string, number> }> {
  const timings: Record<string, number> = {};
  let t = Date.now();
  const imgs = await releaseImages();
  timings.imagesMs = Date.now() - t;
  t = Date.now();
  const a = repoTag(await importImageToCluster(c, imgs.agentArchive, imgs.agent));
  const ctl = repoTag(await importImageToCluster(c, imgs.controllerArchive, imgs.controller));
  timings.importMs = Date.now() - t;
  await k(['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: o.namespace, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } }),
  });
  const command = [
    'install', o.release, CHART_DIR, '-n', o.namespace,
    '--set', `agent.image.repository=${a.repository}`, '--set', `agent.image.tag=${a.tag}`, '--set', 'agent.image.pullPolicy=Never',
    '--set', `controller.image.repository=${ctl.repository}`, '--set', `controller.image.tag=${ctl.tag}`, '--set', 'controller.image.pullPolicy=Never',
    ...(o.values ?? []).flatMap((v) => ['--set', v]),
    '--wait', '--timeout', '5m',
  ];
  t = Date.now();
  await helmFor(c)(command);
  timings.helmInstallMs = Date.now() - t;
  return { command, timings };
}
