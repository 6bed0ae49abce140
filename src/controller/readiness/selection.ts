// Which pods a MigrationReadiness answers for, with `kubectl drain`'s semantics: the pods on the source node
// (narrowed by the pod and namespace selectors), minus those a drain leaves alone, each skipped with the
// reason stated (DaemonSet-owned, mirror/static, not Running or terminating, the migprobe agent itself).
// The owner each pod belongs to is resolved (Pod -> ReplicaSet -> Deployment; StatefulSet; Job; bare), because
// the disruption budget counts frozen pods per owner. Pure over cached objects.

import type { V1Namespace, V1OwnerReference, V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import { AGENT_LABEL, AGENT_LABEL_VALUE } from '../../agent-api/peers.ts';
import type { LabelSelector, MigrationReadiness } from '../../api/readiness.ts';

/** The annotation the kubelet puts on the API mirror of a static pod. */
export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export interface Owner {
  kind: string;
  name: string;
}

/** A pod the readiness probes: its containers (running, in spec order) and the owner its budget counts against. */
export interface SelectedPod {
  namespace: string;
  name: string;
  nodeName: string;
  containers: string[];
  owner?: Owner;
  /** namespace/Kind/name of the owner, or namespace/Pod/name for a bare pod: the budget's unit. */
  ownerKey: string;
}

export interface SkippedPod {
  namespace: string;
  name: string;
  nodeName: string;
  owner?: Owner;
  skipped: string;
}

export interface Selection {
  pods: SelectedPod[];
  skipped: SkippedPod[];
}

/** Does `labels` satisfy `sel`? An empty or absent selector matches everything (as in Kubernetes). */
export function matchesSelector(sel: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  if (sel === undefined) return true;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(l[e.key] ?? '')) return false;
        break;
      case 'NotIn':
        if (has && values.includes(l[e.key] ?? '')) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** Why a selector is unusable (Kubernetes' own rules), or undefined when it is fine. */
export function selectorProblem(sel: LabelSelector | undefined, field: string): string | undefined {
  for (const [i, e] of (sel?.matchExpressions ?? []).entries()) {
    const n = e.values?.length ?? 0;
    if ((e.operator === 'In' || e.operator === 'NotIn') && n === 0) return `${field}.matchExpressions[${i}]: operator ${e.operator} needs values`;
    if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && n > 0) return `${field}.matchExpressions[${i}]: operator ${e.operator} takes no values`;
    if (!['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(e.operator)) return `${field}.matchExpressions[${i}]: unknown operator ${String(e.operator)}`;
  }
  return undefined;
}

function controllerRef(refs: readonly V1OwnerReference[] | undefined): V1OwnerReference | undefined {
  return (refs ?? []).find((r) => r.controller === true) ?? refs?.[0];
}

/**
 * The workload a pod belongs to: a ReplicaSet's Deployment when the ReplicaSet (from the cache) is owned by
 * one, else the controlling owner itself (StatefulSet, Job, ReplicaSet, ...); undefined for a bare pod.
 */
export function resolveOwner(pod: V1Pod, replicaSet: (namespace: string, name: string) => V1ReplicaSet | undefined): Owner | undefined {
  const ref = controllerRef(pod.metadata?.ownerReferences);
  if (ref === undefined) return undefined;
  if (ref.kind === 'ReplicaSet') {
    const rs = replicaSet(pod.metadata?.namespace ?? '', ref.name);
    const up = controllerRef(rs?.metadata?.ownerReferences);
    if (up?.kind === 'Deployment') return { kind: 'Deployment', name: up.name };
  }
  return { kind: ref.kind, name: ref.name };
}

export function ownerKeyOf(namespace: string, podName: string, owner: Owner | undefined): string {
  return owner === undefined ? `${namespace}/Pod/${podName}` : `${namespace}/${owner.kind}/${owner.name}`;
}

/** Why a drain (and so this readiness) leaves the pod alone, or undefined when it must move. */
export function skipReason(pod: V1Pod): string | undefined {
  if (pod.metadata?.annotations?.[MIRROR_ANNOTATION] !== undefined) return 'a mirror pod of a static pod: the kubelet runs it from a file on its node; it cannot move';
  if (controllerRef(pod.metadata?.ownerReferences)?.kind === 'DaemonSet') return 'owned by a DaemonSet: it runs on every node and is not moved by a drain';
  if (pod.metadata?.labels?.[AGENT_LABEL] === AGENT_LABEL_VALUE) return 'the migprobe agent of this node (a DaemonSet pod)';
  if (pod.metadata?.deletionTimestamp !== undefined) return 'terminating';
  if (pod.status?.phase !== 'Running') return `not Running (phase ${pod.status?.phase ?? 'unknown'}): nothing to checkpoint`;
  if (runningContainers(pod).length === 0) return 'no container is running';
  return undefined;
}

/** Names of the pod's containers (spec order) whose status says running. */
export function runningContainers(pod: V1Pod): string[] {
  const running = new Set((pod.status?.containerStatuses ?? []).filter((c) => c.state?.running !== undefined).map((c) => c.name));
  return (pod.spec?.containers ?? []).map((c) => c.name).filter((n) => running.has(n));
}

export interface SelectionInput {
  readiness: Pick<MigrationReadiness, 'spec'>;
  pods: readonly V1Pod[];
  namespaces: (name: string) => V1Namespace | undefined;
  replicaSet: (namespace: string, name: string) => V1ReplicaSet | undefined;
}

/** The selected and skipped pods, each list sorted by namespace then name. */
export function selectPods(input: SelectionInput): Selection {
  const src = input.readiness.spec.source;
  const out: Selection = { pods: [], skipped: [] };
  for (const pod of input.pods) {
    const namespace = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    const nodeName = pod.spec?.nodeName ?? '';
    if (nodeName === '') continue; // not scheduled: on no node to drain
    if (src.nodeName !== undefined && src.nodeName !== '' && nodeName !== src.nodeName) continue;
    if (!matchesSelector(src.podSelector, pod.metadata?.labels)) continue;
    if (src.namespaceSelector !== undefined && !matchesSelector(src.namespaceSelector, input.namespaces(namespace)?.metadata?.labels)) continue;
    const owner = resolveOwner(pod, input.replicaSet);
    const why = skipReason(pod);
    if (why !== undefined) {
      out.skipped.push({ namespace, name, nodeName, ...(owner ? { owner } : {}), skipped: why });
      continue;
    }
    out.pods.push({ namespace, name, nodeName, containers: runningContainers(pod), ...(owner ? { owner } : {}), ownerKey: ownerKeyOf(namespace, name, owner) });
  }
  const byKey = (a: { namespace: string; name: string }, b: { namespace: string; name: string }): number => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);
  out.pods.sort(byKey);
  out.skipped.sort(byKey);
  return out;
}
