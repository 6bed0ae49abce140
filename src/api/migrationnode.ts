// MigrationNode v1alpha1 (cluster-scoped, one per node, named after it): the facts a node's agent observed
// (architecture, kernel, CRIU version and features, CPU), and facts an administrator declares in its spec,
// which win (planning a kernel upgrade, or a test making one node differ). Types and pure functions only.
//
// Why an object of its own rather than Node annotations: writing annotations needs `patch` on Nodes, which
// would let every agent relabel or untaint any node (and so attract workloads); RBAC cannot narrow that to
// annotations. A dedicated kind needs only `migrationnodes` and `migrationnodes/status`, and leaves the Node
// objects every kubelet and the scheduler watch untouched.

import type { NodeFacts } from '../engine/index.ts';
import type { Condition } from '../kube/conditions.ts';
import type { ObjectMeta } from './v1alpha1.ts';

export const MIGRATION_NODE_KIND = 'MigrationNode';
export const MIGRATION_NODE_PLURAL = 'migrationnodes';

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

export interface MigrationNode {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
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
