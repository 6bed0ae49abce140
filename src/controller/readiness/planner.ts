// The disruption-aware fan-out: which (pod, container, target) probes of the current run to create now. Each
// probe freezes its container for a moment, so like a PodDisruptionBudget the plan holds, at every instant:
//
//   - at most budget.maxConcurrentProbes probes of this readiness not finished (default 2);
//   - at most budget.maxFrozenPerOwner pods of one owner (Deployment, StatefulSet, Job, ...; a bare pod is
//     its own owner) with an unfinished probe (default 1);
//   - never one pod with two unfinished probes (two targets or two containers);
//   - at least budget.minSecondsBetweenProbes between two probe creations (default 0).
//
// "Not finished" counts Pending probes too (one may start at any moment) and probes of older runs that still
// run, so the budget is never exceeded, even across a spec change. The controller's per-node dump limit
// (--max-dumps-per-node, ProbeReconciler) applies below this. Pure; the clock is a number.

import { createHash } from 'node:crypto';
import type { MigrationReadiness, TargetStatus } from '../../api/readiness.ts';
import { isFinalPhase, type Phase } from '../../api/v1alpha1.ts';
import type { SelectedPod } from './selection.ts';
import { eligibleTargets } from './targets.ts';

export interface Budget {
  maxConcurrentProbes: number;
  maxFrozenPerOwner: number;
  minSecondsBetweenProbes: number;
}

export const DEFAULT_BUDGET: Budget = { maxConcurrentProbes: 2, maxFrozenPerOwner: 1, minSecondsBetweenProbes: 0 };

export function budgetOf(spec: MigrationReadiness['spec']): Budget {
  const b = spec.budget ?? {};
  return {
    maxConcurrentProbes: Math.max(1, b.maxConcurrentProbes ?? DEFAULT_BUDGET.maxConcurrentProbes),
    maxFrozenPerOwner: Math.max(1, b.maxFrozenPerOwner ?? DEFAULT_BUDGET.maxFrozenPerOwner),
    minSecondsBetweenProbes: Math.max(0, b.minSecondsBetweenProbes ?? DEFAULT_BUDGET.minSecondsBetweenProbes),
  };
}

/** One probe the run needs: a running container of a selected pod to one eligible target. */
export interface WorkItem {
  namespace: string;
  podName: string;
  container: string;
  target: string;
  ownerKey: string;
}

/** What the planner needs of a probe of this readiness (from the cache, or just created and not cached yet). */
export interface ProbeView {
  name: string;
  namespace: string;
  podName: string;
  container: string;
  target: string;
  runId: number;
  phase?: Phase;
  createdMs: number;
  ownerKey: string;
}

export const podKey = (x: { namespace: string; podName: string }): string => `${x.namespace}/${x.podName}`;
export const itemKey = (x: { namespace: string; podName: string; container: string; target: string }): string => `${x.namespace}/${x.podName}/${x.container}/${x.target}`;

/** Every (pod, container, eligible target) of the run, in pod order, then container, then target. */
export function workItems(pods: readonly SelectedPod[], targets: readonly TargetStatus[]): WorkItem[] {
  const out: WorkItem[] = [];
  for (const p of pods) {
    for (const container of p.containers) {
      for (const target of eligibleTargets(targets, p.nodeName)) out.push({ namespace: p.namespace, podName: p.name, container, target, ownerKey: p.ownerKey });
    }
  }
  return out;
}

export interface PlanInput {
  items: readonly WorkItem[];
  /** Every probe of this readiness, any run. */
  probes: readonly ProbeView[];
  runId: number;
  budget: Budget;
  nowMs: number;
}

export interface Plan {
  create: WorkItem[];
  /** Items of the run with no probe yet, after this plan. */
  remaining: number;
  /** When minSecondsBetweenProbes holds the next creation back: how long. */
  waitMs?: number;
  /** Why the next item waits (for a log line). */
  waiting?: string;
}

export function plan(input: PlanInput): Plan {
  const { budget } = input;
  const done = new Set(input.probes.filter((p) => p.runId === input.runId).map(itemKey));
  const active = input.probes.filter((p) => !isFinalPhase(p.phase));
  const activePods = new Set(active.map(podKey));
  const ownerPods = new Map<string, Set<string>>();
  const addOwnerPod = (owner: string, pod: string): void => {
    const s = ownerPods.get(owner) ?? new Set<string>();
    s.add(pod);
    ownerPods.set(owner, s);
  };
  for (const p of active) addOwnerPod(p.ownerKey, podKey(p));
  let running = active.length; // every unfinished probe counts, Pending ones too
  let lastStart = input.probes.reduce((m, p) => Math.max(m, p.createdMs), Number.NEGATIVE_INFINITY);
  const create: WorkItem[] = [];
  let remaining = 0;
  let waitMs: number | undefined;
  let waiting: string | undefined;
  for (const it of input.items) {
    if (done.has(itemKey(it))) continue;
    remaining++;
    const pk = podKey(it);
    if (running >= budget.maxConcurrentProbes) {
      waiting ??= `${running} probes not finished (budget.maxConcurrentProbes ${budget.maxConcurrentProbes})`;
      continue;
    }
    if (activePods.has(pk)) continue; // this pod is being probed: its next probe waits, other pods may go
    const ownerBusy = ownerPods.get(it.ownerKey)?.size ?? 0;
    if (ownerBusy >= budget.maxFrozenPerOwner) {
      waiting ??= `${ownerBusy} pods of ${it.ownerKey} being probed (budget.maxFrozenPerOwner ${budget.maxFrozenPerOwner})`;
      continue;
    }
    const gapMs = budget.minSecondsBetweenProbes * 1000;
    if (gapMs > 0 && input.nowMs - lastStart < gapMs) {
      waitMs = lastStart + gapMs - input.nowMs;
      waiting ??= `budget.minSecondsBetweenProbes ${budget.minSecondsBetweenProbes}`;
      continue;
    }
    create.push(it);
    done.add(itemKey(it));
    remaining--;
    running++;
    activePods.add(pk);
    addOwnerPod(it.ownerKey, pk);
    lastStart = input.nowMs;
  }
  return { create, remaining, ...(waitMs !== undefined ? { waitMs } : {}), ...(waiting !== undefined ? { waiting } : {}) };
}

/** The probe's name: `<readiness>-<runId>-<hash of pod, container, target>`, at most 63 characters. */
export function probeName(readiness: string, runId: number, it: Pick<WorkItem, 'namespace' | 'podName' | 'container' | 'target'>): string {
  const hash = createHash('sha256').update(itemKey(it)).digest('hex').slice(0, 10);
  const tail = `-${runId}-${hash}`;
  const prefix = readiness.slice(0, 63 - tail.length).replace(/[-.]+$/, '');
  return `${prefix}${tail}`;
}
