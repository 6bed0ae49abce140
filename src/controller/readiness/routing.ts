// Which readiness keys an informer event concerns (handlers only enqueue; reconcile reads the caches). Pure
// over the readiness cache.

import type { V1Pod } from '@kubernetes/client-node';
import { READINESS_LABEL, type MigrationReadiness } from '../../api/readiness.ts';
import type { MigrationProbe } from '../../api/v1alpha1.ts';
import { enqueueHandlers, type InformerHandlers } from '../../kube/informer.ts';

/** The readiness a probe belongs to (its label), if any. */
export function keysForProbe(p: MigrationProbe): string[] {
  const r = p.metadata.labels?.[READINESS_LABEL];
  return r === undefined || r === '' ? [] : [r];
}

/** Running readinesses whose selection could include this pod: same source node, or no source node. */
export function keysForPod(readinesses: readonly MigrationReadiness[], pod: V1Pod): string[] {
  const node = pod.spec?.nodeName ?? '';
  if (node === '') return [];
  return readinesses
    .filter((r) => r.status?.phase === 'Running' && ((r.spec.source.nodeName ?? '') === '' || r.spec.source.nodeName === node))
    .map((r) => r.metadata.name ?? '');
}

export interface ReadinessRouting {
  readinesses: InformerHandlers<MigrationReadiness>;
  probes: InformerHandlers<MigrationProbe>;
  pods: InformerHandlers<V1Pod>;
}

function handlers<T>(queue: { add(key: string): void }, map: (obj: T) => string[]): InformerHandlers<T> {
  const add = (obj: T): void => map(obj).forEach((k) => queue.add(k));
  return { onAdd: add, onUpdate: (_old, obj) => add(obj), onDelete: add };
}

export function readinessRouting(list: () => readonly MigrationReadiness[], queue: { add(key: string): void }): ReadinessRouting {
  return {
    readinesses: handlers<MigrationReadiness>(queue, (r) => [r.metadata.name ?? '']),
    probes: handlers<MigrationProbe>(queue, keysForProbe),
    pods: enqueueHandlers<V1Pod>(queue, (pod) => keysForPod(list(), pod)),
  };
}
