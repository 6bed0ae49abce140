// Candidate targets of a MigrationReadiness and their screening BEFORE any dump: a pair (source node, target)
// whose target is missing, not Ready, cordoned or without an agent, or whose static node facts
// (MigrationNode: architecture, kernel, CRIU version and features, CPU) rule a restore out, gets
// `eligible: false` with every reason that applies; no probe is ever made for it. Pure over cached objects.
//
// Candidates: spec.targets.nodeNames and/or the nodes matching spec.targets.nodeSelector; with neither, every
// other node that runs a migprobe agent. The source node is never its own target (a named one says SameNode).

import type { V1Node } from '@kubernetes/client-node';
import { comparePair, effectiveFacts, type MigrationNode } from '../../api/migrationnode.ts';
import type { MigrationReadiness, TargetStatus } from '../../api/readiness.ts';
import type { StatusReason } from '../../api/v1alpha1.ts';
import { reason as catalogReason } from '../../reasons.ts';
import { isReasonCode, type ReasonCode } from '../../verdict.ts';
import { matchesSelector } from './selection.ts';

export interface ScreeningInput {
  readiness: Pick<MigrationReadiness, 'spec'>;
  /** Source nodes: spec.source.nodeName, and the node of every selected pod. */
  sources: readonly string[];
  nodes: readonly V1Node[];
  hasAgent: (node: string) => boolean;
  migrationNode: (node: string) => MigrationNode | undefined;
}

export function statusReason(code: ReasonCode, message: string): StatusReason {
  const r = catalogReason(code, message);
  return { code: r.code, message: r.message, hint: r.hint, phase: r.phase };
}

function isReady(n: V1Node): boolean {
  return (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Candidate target names for `source`, sorted, and whether each was named explicitly. */
export function candidates(input: Omit<ScreeningInput, 'sources' | 'migrationNode'>, source: string): { name: string; named: boolean }[] {
  const t = input.readiness.spec.targets;
  const named = new Set(t?.nodeNames ?? []);
  const out = new Map<string, boolean>();
  for (const n of named) out.set(n, true);
  if (t?.nodeSelector !== undefined) {
    for (const n of input.nodes) {
      const name = n.metadata?.name ?? '';
      if (name !== '' && name !== source && matchesSelector(t.nodeSelector, n.metadata?.labels)) out.set(name, named.has(name));
    }
  }
  if (named.size === 0 && t?.nodeSelector === undefined) {
    for (const n of input.nodes) {
      const name = n.metadata?.name ?? '';
      if (name !== '' && name !== source && input.hasAgent(name)) out.set(name, false);
    }
  }
  return [...out.entries()].map(([name, isNamed]) => ({ name, named: isNamed })).sort((a, b) => a.name.localeCompare(b.name));
}

/** Every reason the pair source -> target cannot work, found without touching a workload. Empty: eligible. */
export function screenPair(input: Omit<ScreeningInput, 'sources'>, source: string, target: string): StatusReason[] {
  if (source === target) return [statusReason('SameNode', `node ${target} is the source node itself`)];
  const node = input.nodes.find((n) => n.metadata?.name === target);
  if (node === undefined) return [statusReason('TargetNodeNotFound', `node ${target} not found`)];
  const out: StatusReason[] = [];
  if (!isReady(node)) out.push(statusReason('TargetNodeNotReady', `node ${target} is not Ready`));
  if (node.spec?.unschedulable === true) out.push(statusReason('TargetNodeUnschedulable', `node ${target} is cordoned (unschedulable)`));
  if (!input.hasAgent(source)) out.push(statusReason('AgentUnavailable', `no running migprobe agent on the source node ${source}`));
  if (!input.hasAgent(target)) out.push(statusReason('AgentUnavailable', `no running migprobe agent on node ${target}`));
  const facts = (name: string): { name: string; facts: ReturnType<typeof effectiveFacts> } => {
    const mn = input.migrationNode(name);
    return { name, facts: mn === undefined ? {} : effectiveFacts(mn) };
  };
  const pair = comparePair(facts(source), facts(target));
  for (const r of pair.reasons) {
    out.push(isReasonCode(r.code) ? { ...statusReason(r.code, r.message), phase: 'compat' } : { code: r.code, message: r.message, phase: 'compat' });
  }
  return out;
}

/** One TargetStatus per (source, candidate), sorted by source then target. */
export function screenTargets(input: ScreeningInput): TargetStatus[] {
  const out: TargetStatus[] = [];
  for (const source of [...new Set(input.sources)].sort()) {
    for (const c of candidates(input, source)) {
      const reasons = screenPair(input, source, c.name);
      out.push({ sourceNodeName: source, nodeName: c.name, eligible: reasons.length === 0, ...(reasons.length > 0 ? { reasons } : {}) });
    }
  }
  return out;
}

/** The eligible targets of pods on `source`. */
export function eligibleTargets(targets: readonly TargetStatus[], source: string): string[] {
  return targets.filter((t) => t.eligible && t.sourceNodeName === source).map((t) => t.nodeName);
}
