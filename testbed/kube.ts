// Stand-ins for kubelets: Node objects that are Ready, and Pod objects bound to them whose status says
// Running with the containerd ID of a real container. Status goes through the status subresource.

import * as k8s from '@kubernetes/client-node';
import type { Testbed } from './index.ts';

export function client(tb: Pick<Testbed, 'kubeconfigPath'>): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(tb.kubeconfigPath);
  return kc;
}

function isNotFound(err: unknown): boolean {
  const e = err as { code?: number; statusCode?: number };
  return e.code === 404 || e.statusCode === 404;
}

/** Creates (or replaces) a Node whose Ready condition is True (or False), with an InternalIP. */
export async function createReadyNode(
  kc: k8s.KubeConfig,
  name: string,
  internalIP: string,
  opts: { ready?: boolean; labels?: Record<string, string> } = {},
): Promise<k8s.V1Node> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.deleteNode({ name }).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
  const node = await core.createNode({
    body: {
      metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...(opts.labels ?? {}) } },
      spec: {},
    },
  });
  const now = new Date();
  node.status = {
    addresses: [
      { type: 'InternalIP', address: internalIP },
      { type: 'Hostname', address: name },
    ],
    conditions: [
      {
        type: 'Ready',
        status: opts.ready === false ? 'False' : 'True',
        reason: opts.ready === false ? 'KubeletNotReady' : 'KubeletReady',
        message: 'set by the migprobe test bed',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
    ],
    nodeInfo: {
      architecture: 'amd64',
      operatingSystem: 'linux',
      kernelVersion: '',
      osImage: 'migprobe test bed',
      containerRuntimeVersion: 'containerd://1.6',
      kubeletVersion: 'v1.34.4',
      kubeProxyVersion: '',
      bootID: '',
      machineID: '',
      systemUUID: '',
    },
  };
  return await core.replaceNodeStatus({ name, body: node });
}

export interface PodSpecLite {
  namespace: string;
  name: string;
  nodeName: string;
  containerName: string;
  containerId: string;
  image: string;
  labels?: Record<string, string>;
  podIP?: string;
  /** More containers in the pod (name -> containerd ID). */
  extraContainers?: { name: string; containerId: string; image: string }[];
}

/** Creates a Pod bound to `nodeName` and sets its status to Running with the given containerd IDs. */
export async function createRunningPod(kc: k8s.KubeConfig, p: PodSpecLite): Promise<k8s.V1Pod> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const containers = [{ name: p.containerName, containerId: p.containerId, image: p.image }, ...(p.extraContainers ?? [])];
  const pod = await core.createNamespacedPod({
    namespace: p.namespace,
    body: {
      metadata: { name: p.name, namespace: p.namespace, labels: p.labels ?? {} },
      spec: {
        nodeName: p.nodeName,
        automountServiceAccountToken: false,
        containers: containers.map((c) => ({ name: c.name, image: c.image })),
      },
    },
  });
  const now = new Date();
  pod.status = {
    phase: 'Running',
    ...(p.podIP ? { podIP: p.podIP, podIPs: [{ ip: p.podIP }] } : {}),
    hostIP: '127.0.0.1',
    startTime: now,
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
    containerStatuses: containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.image,
      containerID: `containerd://${c.containerId}`,
      ready: true,
      restartCount: 0,
      started: true,
      state: { running: { startedAt: now } },
    })),
  };
  return await core.replaceNamespacedPodStatus({ name: p.name, namespace: p.namespace, body: pod });
}

export async function ensureNamespace(kc: k8s.KubeConfig, name: string, labels: Record<string, string> = {}): Promise<void> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  try {
    await core.readNamespace({ name });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await core.createNamespace({ body: { metadata: { name, labels } } });
  }
}

export async function deleteNamespace(kc: k8s.KubeConfig, name: string): Promise<void> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.deleteNamespace({ name }).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}

/** Deletes a Pod at once: with no kubelet to confirm, a graceful delete of a bound pod would never finish. */
export async function deletePod(kc: k8s.KubeConfig, namespace: string, name: string): Promise<void> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}
