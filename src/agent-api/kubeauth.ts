// The Kubernetes side of agent authentication: TokenReview (the agent checks a caller) and TokenRequest (the
// controller and the agents get a token for the agent audience). Thin I/O over kube/client.ts.

import type { KubeConfig } from '@kubernetes/client-node';
import { kubeRequest } from '../kube/client.ts';
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
