// From the current run's probes to the readiness's answer: per pod migratable (every running container
// migratable to one target), the best target (migratable with the lowest freeze), every compatible target,
// the reasons otherwise (each code once, naming the targets); totals, counts by reason, the Drainable
// condition, and the budget as measured on the probes themselves. Pure.

import type { PodReadiness, PodTargetResult, ReadinessStatus, TargetStatus } from '../../api/readiness.ts';
import { isActivePhase, isFinalPhase, type MigrationProbe, type StatusReason } from '../../api/v1alpha1.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import { itemKey } from './planner.ts';
import type { Selection, SelectedPod } from './selection.ts';
import { statusReason } from './targets.ts';

/** Reasons of several targets, each code once; its message names the targets that have it. */
export function unionReasons(byTarget: readonly { target: string; reasons: readonly StatusReason[] }[]): StatusReason[] {
  const order: string[] = [];
  const seen = new Map<string, { first: StatusReason; targets: string[] }>();
  for (const { target, reasons } of byTarget) {
    for (const r of reasons) {
      const s = seen.get(r.code);
      if (s === undefined) {
        seen.set(r.code, { first: r, targets: [target] });
        order.push(r.code);
      } else if (!s.targets.includes(target)) s.targets.push(target);
    }
  }
  return order.map((code) => {
    const s = seen.get(code)!;
    return { ...s.first, message: `to ${s.targets.join(', ')}: ${s.first.message}` };
  });
}

function probeKey(p: MigrationProbe): string {
  return itemKey({ namespace: p.metadata.namespace ?? '', podName: p.spec.podName, container: p.spec.containerName ?? '', target: p.spec.targetNodeName });
}

/** One target's result for a pod, or undefined while a container's probe is missing or unfinished. */
function targetResult(pod: SelectedPod, target: string, probes: ReadonlyMap<string, MigrationProbe>): PodTargetResult | undefined {
  const reasons: StatusReason[] = [];
  const names: string[] = [];
  let migratable = true;
  let freeze: number | undefined;
  for (const container of pod.containers) {
    const p = probes.get(itemKey({ namespace: pod.namespace, podName: pod.name, container, target }));
    if (p === undefined || !isFinalPhase(p.status?.phase)) return undefined;
    names.push(p.metadata.name ?? '');
    if (p.status?.phase !== 'Succeeded' || p.status.migratable !== true) migratable = false;
    for (const r of p.status?.reasons ?? []) reasons.push(pod.containers.length > 1 ? { ...r, message: `container ${container}: ${r.message}` } : r);
    const f = p.status?.timings?.freezeMilliseconds;
    if (f !== undefined) freeze = Math.max(freeze ?? 0, f);
  }
  if (!migratable && reasons.length === 0) reasons.push(statusReason('InternalError', 'a probe finished not migratable without a reason'));
  return { nodeName: target, migratable, ...(reasons.length > 0 ? { reasons } : {}), ...(freeze !== undefined ? { freezeMilliseconds: freeze } : {}), probes: names };
}

export function podReadiness(pod: SelectedPod, targets: readonly TargetStatus[], probes: ReadonlyMap<string, MigrationProbe>): PodReadiness {
  const base: PodReadiness = { namespace: pod.namespace, name: pod.name, nodeName: pod.nodeName, ...(pod.owner ? { owner: pod.owner } : {}) };
  const pairs = targets.filter((t) => t.sourceNodeName === pod.nodeName);
  const eligible = pairs.filter((t) => t.eligible).map((t) => t.nodeName);
  if (eligible.length === 0) {
    const reasons =
      pairs.length === 0
        ? [statusReason('TargetNodeNotFound', `no candidate target node for ${pod.nodeName}: name some in spec.targets, or run the migprobe agent on other nodes`)]
        : unionReasons(pairs.map((t) => ({ target: t.nodeName, reasons: t.reasons ?? [] })));
    return { ...base, migratable: false, reasons, targets: [] };
  }
  const results = eligible.map((t) => targetResult(pod, t, probes));
  const known = results.filter((r): r is PodTargetResult => r !== undefined);
  if (known.length < results.length) return { ...base, targets: known };
  const ok = known.filter((r) => r.migratable).sort((a, b) => (a.freezeMilliseconds ?? Infinity) - (b.freezeMilliseconds ?? Infinity) || a.nodeName.localeCompare(b.nodeName));
  if (ok.length > 0) return { ...base, migratable: true, bestTarget: ok[0]!.nodeName, compatibleTargets: ok.map((r) => r.nodeName), targets: known };
  return { ...base, migratable: false, reasons: unionReasons(known.map((r) => ({ target: r.nodeName, reasons: r.reasons ?? [] }))), compatibleTargets: [], targets: known };
}

export interface Budgeted {
  maxConcurrentProbes: number;
  maxFrozenPerOwner: number;
}

/**
 * The most probes of the run in an active phase (Preflight..Restoring) at once, overall and of one owner:
 * a sweep over [startTime, completionTime) of every probe that started (half-open, so a probe that ended in the
 * second another started is not counted twice; the whole-second times can only under-count, so the live count
 * is taken too), the live count now, and what was measured before in this run.
 */
export function measureBudget(probes: readonly MigrationProbe[], ownerOf: (p: MigrationProbe) => string, nowMs: number, before?: Budgeted): Budgeted {
  const ev: { t: number; d: number; owner: string }[] = [];
  for (const p of probes) {
    const start = Date.parse(p.status?.startTime ?? '');
    if (Number.isNaN(start)) continue;
    const end = Date.parse(p.status?.completionTime ?? '');
    ev.push({ t: start, d: 1, owner: ownerOf(p) }, { t: Number.isNaN(end) ? nowMs + 1 : end, d: -1, owner: ownerOf(p) });
  }
  ev.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let max = 0;
  let maxOwner = 0;
  const perOwner = new Map<string, number>();
  for (const e of ev) {
    now += e.d;
    const o = (perOwner.get(e.owner) ?? 0) + e.d;
    perOwner.set(e.owner, o);
    max = Math.max(max, now);
    maxOwner = Math.max(maxOwner, o);
  }
  const live = probes.filter((p) => isActivePhase(p.status?.phase));
  const liveOwner = new Map<string, number>();
  for (const p of live) liveOwner.set(ownerOf(p), (liveOwner.get(ownerOf(p)) ?? 0) + 1);
  return {
    maxConcurrentProbes: Math.max(max, live.length, before?.maxConcurrentProbes ?? 0),
    maxFrozenPerOwner: Math.max(maxOwner, ...liveOwner.values(), before?.maxFrozenPerOwner ?? 0),
  };
}

export interface Aggregate {
  pods: PodReadiness[];
  totals: NonNullable<ReadinessStatus['totals']>;
  reasonCounts: { code: string; pods: number }[];
  /** Every selected pod has its answer. */
  complete: boolean;
  drainable: Omit<ConditionInput, 'observedGeneration'>;
}

const MAX_LISTED = 20;

/** The run's answer from the selection, the screened targets and the run's probes. */
export function aggregate(selection: Selection, targets: readonly TargetStatus[], runProbes: readonly MigrationProbe[]): Aggregate {
  const byItem = new Map(runProbes.map((p) => [probeKey(p), p] as const));
  const answered = selection.pods.map((p) => podReadiness(p, targets, byItem));
  const skipped: PodReadiness[] = selection.skipped.map((s) => ({ namespace: s.namespace, name: s.name, nodeName: s.nodeName, ...(s.owner ? { owner: s.owner } : {}), skipped: s.skipped }));
  const pods = [...answered, ...skipped].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const blocked = answered.filter((p) => p.migratable === false);
  const migratable = answered.filter((p) => p.migratable === true).length;
  const pending = answered.filter((p) => p.migratable === undefined).length;
  const counts = new Map<string, number>();
  for (const p of blocked) for (const r of p.reasons ?? []) counts.set(r.code, (counts.get(r.code) ?? 0) + 1);
  const reasonCounts = [...counts.entries()].map(([code, n]) => ({ code, pods: n })).sort((a, b) => b.pods - a.pods || a.code.localeCompare(b.code));
  const complete = pending === 0;
  let drainable: Aggregate['drainable'];
  if (!complete) {
    drainable = { type: 'Drainable', status: 'Unknown', reason: 'Running', message: `${answered.length - pending} of ${answered.length} pods answered` };
  } else if (blocked.length > 0) {
    const listed = blocked.slice(0, MAX_LISTED).map((p) => `${p.namespace}/${p.name} (${(p.reasons ?? []).map((r) => r.code).join(', ')})`);
    const more = blocked.length > MAX_LISTED ? `, and ${blocked.length - MAX_LISTED} more` : '';
    drainable = { type: 'Drainable', status: 'False', reason: 'PodsBlocked', message: `${blocked.length} of ${answered.length} pods cannot be live-migrated: ${listed.join(', ')}${more}` };
  } else if (answered.length === 0) {
    drainable = { type: 'Drainable', status: 'True', reason: 'NoPodsToMove', message: `no pod to move (${skipped.length} skipped)` };
  } else {
    drainable = { type: 'Drainable', status: 'True', reason: 'AllPodsMigratable', message: `every one of ${answered.length} pods can be live-migrated to at least one target` };
  }
  return {
    pods,
    totals: { pods: pods.length, migratable, blocked: blocked.length, pending, skipped: skipped.length, probes: runProbes.length },
    reasonCounts,
    complete,
    drainable,
  };
}
