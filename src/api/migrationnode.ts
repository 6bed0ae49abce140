// MigrationNode v1alpha1 (cluster-scoped, one per node, named after it): the facts a node's agent observed
// (architecture, kernel, CRIU version and features, CPU), and facts an administrator declares in its spec,
// which win (planning a kernel upgrade, or a test making one node differ). Types and pure functions only.
//
// Why an object of its own rather than Node annotations: writing annotations needs `patch` on Nodes, which
// would let every agent relabel or untaint any node (and so attract workloads); RBAC cannot narrow that to
// annotations. A dedicated kind needs only `migrationnodes` and `migrationnodes/status`, and leaves the Node
// objects every kubelet and the scheduler watch untouched.

import { compareFacts, type NodeFacts } from '../engine/index.ts';
import type { Condition } from '../kube/conditions.ts';
import type { ObjectMeta } from './v1alpha1.ts';

export const MIGRATION_NODE_KIND = 'MigrationNode';
export const MIGRATION_NODE_PLURAL = 'migrationnodes';
/** Condition the agent sets on every publish: True (FactsPublished) or False (FactsUnavailable). */
export const PUBLISHED_CONDITION = 'Published';

/** Facts as stored in status (and, partly, in spec.factsOverride): NodeFacts without the hostname. */
export interface NodeFactsView {
  arch?: string;
  kernelRelease?: string;
  criuVersion?: string;
  /** `criu check --feature X` answers for the features migprobe asks about. */
  criuFeatures?: Record<string, boolean>;
  memAvailableBytes?: number;
  cpu?: { vendor?: string; model?: string; flags?: string[] };
  /** Container runtime as the Node reports it, e.g. containerd://2.2.9 (informational). */
  containerRuntime?: string;
}

export interface MigrationNodeSpec {
  /**
   * Facts that replace what the agent observes, field by field (criuFeatures key by key, cpu field by field).
   * For planning (the kernel a node is about to get) and for making a node's facts differ on purpose.
   */
  factsOverride?: NodeFactsView;
}

export interface MigrationNodeStatus {
  /** What the agent on the node measured. */
  observedFacts?: NodeFactsView;
  /** The agent's version and when it last published. */
  agentVersion?: string;
  lastUpdateTime?: string;
  conditions?: Condition[];
}

/** metav1.OwnerReference: the agent makes its node's Node the owner, so the MigrationNode goes with it. */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface MigrationNode {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta & { ownerReferences?: OwnerReference[] };
  spec?: MigrationNodeSpec;
  status?: MigrationNodeStatus;
}

/** One ordered node pair of the compatibility matrix. */
export interface NodePair {
  source: string;
  target: string;
  compatible: boolean;
  /** Why not (compareFacts' reasons, by code), empty when compatible. */
  reasons: { code: string; message: string }[];
}

/** The view of what the engine measured (the hostname dropped: the object is named after the Node), with the
 * runtime the Node reports when known. Pure. */
export function observedFactsOf(f: NodeFacts, containerRuntime?: string): NodeFactsView {
  return {
    arch: f.arch,
    kernelRelease: f.kernelRelease,
    criuVersion: f.criuVersion,
    criuFeatures: { ...f.criuFeatures },
    memAvailableBytes: f.memAvailableBytes,
    cpu: { vendor: f.cpu.vendor, model: f.cpu.model, flags: [...f.cpu.flags] },
    ...(containerRuntime !== undefined && containerRuntime !== '' ? { containerRuntime } : {}),
  };
}

/** Engine NodeFacts from a view (missing fields read as unknown: '' / 0 / none). Pure. */
export function toNodeFacts(name: string, v: NodeFactsView): NodeFacts {
  return {
    hostname: name,
    arch: v.arch ?? '',
    kernelRelease: v.kernelRelease ?? '',
    criuVersion: v.criuVersion ?? '',
    criuFeatures: { ...(v.criuFeatures ?? {}) },
    memAvailableBytes: v.memAvailableBytes ?? 0,
    cpu: { vendor: v.cpu?.vendor ?? '', model: v.cpu?.model ?? '', flags: [...(v.cpu?.flags ?? [])] },
  };
}

/** Observed facts with spec.factsOverride laid over them: field by field, criuFeatures key by key, cpu field by field. Pure. */
export function effectiveFacts(mn: Pick<MigrationNode, 'spec' | 'status'>): NodeFactsView {
  const seen = mn.status?.observedFacts ?? {};
  const over = mn.spec?.factsOverride ?? {};
  const out: NodeFactsView = { ...seen, ...over };
  if (seen.criuFeatures !== undefined || over.criuFeatures !== undefined) {
    out.criuFeatures = { ...(seen.criuFeatures ?? {}), ...(over.criuFeatures ?? {}) };
  }
  if (seen.cpu !== undefined || over.cpu !== undefined) out.cpu = { ...(seen.cpu ?? {}), ...(over.cpu ?? {}) };
  return out;
}

/** True when the agent has published (or an administrator declared) enough to compare: arch, kernel and CRIU. */
export function hasFacts(v: NodeFactsView): boolean {
  return (v.arch ?? '') !== '' && (v.kernelRelease ?? '') !== '' && (v.criuVersion ?? '') !== '';
}

/**
 * Static compatibility of one ordered pair, before any dump: compareFacts with a workload of no resident memory
 * (the margin alone must fit). A node without facts is reported as such, never as compatible. Pure.
 */
export function comparePair(source: { name: string; facts: NodeFactsView }, target: { name: string; facts: NodeFactsView }): NodePair {
  const missing = [source, target].filter((n) => !hasFacts(n.facts)).map((n) => n.name);
  if (missing.length > 0) {
    return {
      source: source.name,
      target: target.name,
      compatible: false,
      reasons: [{ code: 'NodeFactsUnknown', message: `no MigrationNode facts for ${missing.join(' and ')}: is the migprobe agent running there?` }],
    };
  }
  const reasons = compareFacts(toNodeFacts(source.name, source.facts), toNodeFacts(target.name, target.facts), 0);
  return { source: source.name, target: target.name, compatible: reasons.length === 0, reasons: reasons.map((r) => ({ code: r.code, message: r.message })) };
}

/** Every ordered pair of distinct nodes, sorted by source then target. Pure. */
export function pairMatrix(nodes: readonly MigrationNode[]): NodePair[] {
  const all = nodes
    .map((n) => ({ name: n.metadata.name ?? '', facts: effectiveFacts(n) }))
    .filter((n) => n.name !== '')
    .sort((a, b) => a.name.localeCompare(b.name));
  const out: NodePair[] = [];
  for (const s of all) for (const t of all) if (s.name !== t.name) out.push(comparePair(s, t));
  return out;
}
