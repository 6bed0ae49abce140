// MigrationReadiness v1alpha1 (cluster-scoped): "can node X be drained by live migration, and where does each
// pod go?" It selects pods (a source node and/or pod and namespace selectors) and candidate targets, fans
// out MigrationProbes for every selected pod's containers x eligible target under a disruption budget, and
// aggregates them. Types only; the planner and aggregation live in src/controller/readiness/.

import type { Condition } from '../kube/conditions.ts';
import type { ObjectMeta, ProbeSpecOptions, StatusReason } from './v1alpha1.ts';

export const READINESS_KIND = 'MigrationReadiness';
export const READINESS_PLURAL = 'migrationreadinesses';
/** Label on every MigrationProbe a readiness creates: the readiness's name. */
export const READINESS_LABEL = 'migprobe.io/readiness';
/** Label: the run (status.runId) a probe belongs to. */
export const READINESS_RUN_LABEL = 'migprobe.io/readiness-run';
/** Annotation a user (or `kubectl migprobe drain-check`) changes to ask for a new run now. */
export const RERUN_ANNOTATION = 'migprobe.io/rerun';

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface ReadinessSpec {
  /** Which pods: those on nodeName (the node to drain), narrowed by the selectors when given. At least one is set. */
  source: { nodeName?: string; podSelector?: LabelSelector; namespaceSelector?: LabelSelector };
  /** Candidate targets: names and/or a node label selector. Default: every other node with a migprobe agent. */
  targets?: { nodeNames?: string[]; nodeSelector?: LabelSelector };
  budget?: {
    /** At most this many pods of one owner (Deployment, StatefulSet, ...) frozen at once. Default 1. */
    maxFrozenPerOwner?: number;
    /** At most this many probes of this readiness running at once. Default 2. */
    maxConcurrentProbes?: number;
    /** At least this long between two probe starts of this readiness (spreads freezes over time). Default 0. */
    minSecondsBetweenProbes?: number;
  };
  /** Options every probe gets (as MigrationProbe spec.options). */
  probeOptions?: ProbeSpecOptions;
  /** Each probe's timeout (MigrationProbe spec.timeoutSeconds). */
  probeTimeoutSeconds?: number;
  /** Cron schedule (5 fields, UTC) re-running the readiness; none: it runs once, and again on spec change or rerun. */
  schedule?: string;
  suspend?: boolean;
}

export type ReadinessPhase = 'Pending' | 'Running' | 'Completed' | 'Failed';

export interface TargetStatus {
  nodeName: string;
  /** The source node of the pair (every selected pod's node; one entry per source node x target). */
  sourceNodeName?: string;
  /** False when static node facts (or the node's state) rule it out before any dump. */
  eligible: boolean;
  reasons?: StatusReason[];
}

export interface PodTargetResult {
  nodeName: string;
  migratable: boolean;
  reasons?: StatusReason[];
  freezeMilliseconds?: number;
  probes?: string[];
}

export interface PodReadiness {
  namespace: string;
  name: string;
  /** The node the pod runs on. */
  nodeName?: string;
  owner?: { kind: string; name: string };
  /** Undefined until every probe of this pod finished. */
  migratable?: boolean;
  bestTarget?: string;
  compatibleTargets?: string[];
  /** Reason codes when not migratable to any target (union over targets, each once). */
  reasons?: StatusReason[];
  targets?: PodTargetResult[];
  /** Skipped pods (DaemonSet, mirror pods, not running) say why and count as neither. */
  skipped?: string;
}

export interface ReadinessChange {
  time: string;
  runId: number;
  kind: 'Pod' | 'NodePair';
  /** namespace/name for a pod, source->target for a pair. */
  subject: string;
  from: string;
  to: string;
  reasons?: string[];
}

export interface ReadinessBaseline {
  runId: number;
  pods: { namespace: string; name: string; migratable: boolean; reasons?: string[] }[];
  pairs: { source: string; target: string; eligible: boolean; reasons?: string[] }[];
}

export interface ReadinessStatus {
  observedGeneration?: number;
  phase?: ReadinessPhase;
  runId?: number;
  lastRunTime?: string;
  lastCompletionTime?: string;
  nextRunTime?: string;
  /** The rerun annotation value the current run answered. */
  observedRerun?: string;
  totals?: { pods: number; migratable: number; blocked: number; pending: number; skipped: number; probes: number };
  reasonCounts?: { code: string; pods: number }[];
  targets?: TargetStatus[];
  pods?: PodReadiness[];
  /** Newest last, at most 50. */
  changes?: ReadinessChange[];
  /** The verdicts of the last completed run, kept while the next one runs: drift is measured against them. */
  baseline?: ReadinessBaseline;
  /** Measured over the current run: the most probes running at once, and the most pods of one owner frozen at once. */
  budgetObserved?: { maxConcurrentProbes: number; maxFrozenPerOwner: number };
  conditions?: Condition[];
}

export interface MigrationReadiness {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: ReadinessSpec;
  status?: ReadinessStatus;
}
