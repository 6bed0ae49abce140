// The Kubernetes side of agent authentication and authorization: TokenReview (agent) and TokenRequest (callers),
// plus what the agent reads with its own credentials: a pod, a MigrationProbe, the agent pods of a node (in its own
// namespace), whether a namespace exists. Thin I/O over kube/client.ts.

import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION, type MigrationProbe } from '../api/v1alpha1.ts';
import { AGENT_LABEL, AGENT_LABEL_VALUE } from './peers.ts';
import { kubeRequest } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import type { AgentPodLister, NamespaceLookup, PodLookup, ProbeLookup } from './deps.ts';
import type { ReviewResult, TokenRequester, TokenReviewer } from './auth.ts';

export function kubeTokenReviewer(kc: KubeConfig): TokenReviewer {
  return async (token, audiences) => {
    const r = await kubeRequest<{ status?: { authenticated?: boolean; user?: { username?: string }; audiences?: string[] } }>(kc, {
      method: 'POST',
      path: '/apis/authentication.k8s.io/v1/tokenreviews',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
      timeoutMs: 10_000,
    });
    const st = r.status ?? {};
    const out: ReviewResult = { authenticated: st.authenticated === true, audiences: Array.isArray(st.audiences) ? st.audiences.filter((a) => typeof a === 'string') : [] };
    if (st.user?.username !== undefined) out.username = st.user.username;
    return out;
  };
}

/** TokenRequest for `namespace/name` (the caller needs `create` on `serviceaccounts/token` for it). */
export function kubeTokenRequester(kc: KubeConfig, serviceAccount: string): TokenRequester {
  const [ns, name] = serviceAccount.split('/');
  if (!ns || !name) throw new Error(`--token-service-account must be namespace/name, not ${serviceAccount}`);
  return async (audiences, expirationSeconds) => {
    const r = await kubeRequest<{ status?: { token?: string; expirationTimestamp?: string } }>(kc, {
      method: 'POST',
      path: `/api/v1/namespaces/${encodeURIComponent(ns)}/serviceaccounts/${encodeURIComponent(name)}/token`,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences, expirationSeconds } },
      timeoutMs: 10_000,
    });
    const token = r.status?.token;
    if (!token) throw new Error('TokenRequest answered without a token');
    const exp = Date.parse(r.status?.expirationTimestamp ?? '');
    return { token, expiresAtMs: Number.isNaN(exp) ? Date.now() + expirationSeconds * 1000 : exp };
  };
}

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
