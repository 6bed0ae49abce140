// Where the migprobe agent of a node listens: its pod in the agents' namespace (label
// app.kubernetes.io/name=migprobe-agent, spec.nodeName, Running, not being deleted, status.podIP), on the
// container port named "api" or "agent" (else the default port). One pure function, used by the controller
// (from its informer cache) and by a source agent finding its target agent (from the API server): a caller
// never names an agent's address.

import type { V1Pod } from '@kubernetes/client-node';

export const AGENT_LABEL = 'app.kubernetes.io/name';
export const AGENT_LABEL_VALUE = 'migprobe-agent';

export interface AgentEndpointOptions {
  namespace: string;
  scheme: 'http' | 'https';
  defaultPort: number;
}

/** The base URL of the agent on `node` among `pods`, or undefined when no running agent pod is there. */
export function agentEndpoint(pods: readonly V1Pod[], node: string, o: AgentEndpointOptions): string | undefined {
  const pod = pods.find(
    (a) =>
      a.metadata?.namespace === o.namespace &&
      a.metadata.labels?.[AGENT_LABEL] === AGENT_LABEL_VALUE &&
      a.metadata.deletionTimestamp === undefined &&
      a.spec?.nodeName === node &&
      a.status?.phase === 'Running' &&
      typeof a.status.podIP === 'string' &&
      a.status.podIP !== '',
  );
  if (!pod) return undefined;
  const ip = pod.status?.podIP ?? '';
  let port = o.defaultPort;
  for (const c of pod.spec?.containers ?? []) for (const cp of c.ports ?? []) if (cp.name === 'agent' || cp.name === 'api') port = cp.containerPort;
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return `${o.scheme}://${host}:${port}`;
}
