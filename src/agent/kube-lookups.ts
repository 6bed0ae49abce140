// What the agent reads from the API server with its own credentials, to authorize a request against the object it
// concerns: a pod, a MigrationProbe, the agent pods of a node (in its own namespace), whether a namespace exists.
// Thin I/O over kube/client.ts.

import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION, type MigrationProbe } from '../api/v1alpha1.ts';
import { AGENT_LABEL, AGENT_LABEL_VALUE } from '../agent-api/peers.ts';
import { kubeRequest } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import type { AgentPodLister, NamespaceLookup, PodLookup, ProbeLookup } from './deps.ts';

export function kubePodLookup(kc: KubeConfig): PodLookup {
  return async (namespace, name) => {
    try {
      const pod = await kubeRequest<{ spec?: { nodeName?: string; containers?: { name: string }[] }; status?: { containerStatuses?: { name: string; containerID?: string }[] } }>(kc, {
        method: 'GET',
        path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
        timeoutMs: 10_000,
      });
      const ids: Record<string, string> = {};
      for (const c of pod.status?.containerStatuses ?? []) if (c.containerID) ids[c.name] = c.containerID;
      return { nodeName: pod.spec?.nodeName, containerIds: ids, containerNames: (pod.spec?.containers ?? []).map((c) => c.name) };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  };
}

/** GET the MigrationProbe (the agent needs `get` on migrationprobes); undefined on 404. */
export function kubeProbeLookup(kc: KubeConfig): ProbeLookup {
  return async (namespace, name) => {
    try {
      return await kubeRequest<MigrationProbe>(kc, {
        method: 'GET',
        path: `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}/${encodeURIComponent(name)}`,
        timeoutMs: 10_000,
      });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  };
}

/** LIST the agent pods on `node` in `namespace` (the agent's own; it needs `list` on pods there). */
export function kubeAgentPodLister(kc: KubeConfig, namespace: string): AgentPodLister {
  return async (node) => {
    const r = await kubeRequest<{ items?: V1Pod[] }>(kc, {
      method: 'GET',
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
      query: { labelSelector: `${AGENT_LABEL}=${AGENT_LABEL_VALUE}`, fieldSelector: `spec.nodeName=${node}` },
      timeoutMs: 10_000,
    });
    return r.items ?? [];
  };
}

/** GET the namespace (the agent needs `get` on namespaces). */
export function kubeNamespaceLookup(kc: KubeConfig): NamespaceLookup {
  return async (name) => {
    try {
      await kubeRequest<unknown>(kc, { method: 'GET', path: `/api/v1/namespaces/${encodeURIComponent(name)}`, timeoutMs: 10_000 });
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  };
}
