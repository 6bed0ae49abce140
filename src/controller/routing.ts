// Which probe keys an event concerns: the controller's informer handlers only enqueue keys (level-based
// reconcile reads the caches). Pure over a list of probes, so the routing is tested without a cluster.

import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { isFinalPhase, type MigrationProbe } from '../api/v1alpha1.ts';
import { objectKey } from '../kube/client.ts';
import { enqueueHandlers, type InformerHandlers } from '../kube/informer.ts';
import { keyOf } from './reconcile.ts';

/** Probes still worth reconciling when something else changes: not final, or final but being deleted. */
function live(probes: readonly MigrationProbe[]): MigrationProbe[] {
  return probes.filter((p) => !isFinalPhase(p.status?.phase) || p.metadata.deletionTimestamp !== undefined);
}

/** Probes waiting for a slot: a probe that leaves an active phase frees one, so these are woken at once. */
export function pendingKeys(probes: readonly MigrationProbe[]): string[] {
  return probes.filter((p) => p.status?.phase === undefined || p.status.phase === 'Pending').map(keyOf);
}

/** Live probes of a pod (same namespace, spec.podName). */
export function keysForPod(probes: readonly MigrationProbe[], pod: V1Pod): string[] {
  const ns = pod.metadata?.namespace;
  const name = pod.metadata?.name;
  return live(probes).filter((p) => p.metadata.namespace === ns && p.spec.podName === name).map(keyOf);
}

/** Live probes that name a node as their target or run on it as their source. */
export function keysForNode(probes: readonly MigrationProbe[], node: string | undefined): string[] {
  if (node === undefined) return [];
  return live(probes).filter((p) => p.spec.targetNodeName === node || p.status?.sourceNodeName === node).map(keyOf);
}

export interface Routing {
  probes: InformerHandlers<MigrationProbe>;
  pods: InformerHandlers<V1Pod>;
  nodes: InformerHandlers<V1Node>;
  agentPods: InformerHandlers<V1Pod>;
}

/** The handlers for each informer, given the probe cache and the queue. */
export function routing(list: () => readonly MigrationProbe[], queue: { add(key: string): void }): Routing {
  const wakePending = (): void => pendingKeys(list()).forEach((k) => queue.add(k));
  return {
    probes: {
      onAdd: (p) => queue.add(objectKey(p)),
      onUpdate: (o, p) => {
        queue.add(objectKey(p));
        if (isFinalPhase(p.status?.phase) && !isFinalPhase(o.status?.phase)) wakePending();
      },
      onDelete: (p) => {
        queue.add(objectKey(p));
        wakePending();
      },
    },
    pods: enqueueHandlers<V1Pod>(queue, (pod) => keysForPod(list(), pod)),
    nodes: enqueueHandlers<V1Node>(queue, (n) => keysForNode(list(), n.metadata?.name)),
    // An agent pod coming or going on a node changes what the probes of that node can do.
    agentPods: enqueueHandlers<V1Pod>(queue, (a) => keysForNode(list(), a.spec?.nodeName)),
  };
}
