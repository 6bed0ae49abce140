// Drift: what changed between the last completed run and this one. A pod that was migratable and is now
// blocked (or back), a node pair that was eligible and is now screened out (or back), each becomes a
// ReadinessChange (kept in status, newest last, bounded), and the reconciler turns each into an Event
// (Warning for worse, Normal for better) and a metric. Pods or pairs present in only one run are not changes.
// Pure.

import type { PodReadiness, ReadinessBaseline, ReadinessChange, TargetStatus } from '../../api/readiness.ts';

export const MAX_CHANGES = 50;

/** The verdicts of a finished run, as kept for the next one to compare with. */
export function baselineOf(runId: number, pods: readonly PodReadiness[], targets: readonly TargetStatus[]): ReadinessBaseline {
  return {
    runId,
    pods: pods
      .filter((p) => p.skipped === undefined && p.migratable !== undefined)
      .map((p) => ({ namespace: p.namespace, name: p.name, migratable: p.migratable === true, ...(p.reasons?.length ? { reasons: p.reasons.map((r) => r.code) } : {}) })),
    pairs: targets.map((t) => ({ source: t.sourceNodeName ?? '', target: t.nodeName, eligible: t.eligible, ...(t.reasons?.length ? { reasons: t.reasons.map((r) => r.code) } : {}) })),
  };
}

/** Changes from `before` to `after` (sorted: pods by namespace/name, then pairs by source->target). */
export function drift(before: ReadinessBaseline | undefined, after: ReadinessBaseline, time: string): ReadinessChange[] {
  if (before === undefined) return [];
  const out: ReadinessChange[] = [];
  const oldPods = new Map<string, ReadinessBaseline['pods'][number]>(before.pods.map((p) => [`${p.namespace}/${p.name}`, p] as const));
  for (const p of after.pods) {
    const subject = `${p.namespace}/${p.name}`;
    const o = oldPods.get(subject);
    if (o === undefined || o.migratable === p.migratable) continue;
    const verdict = (m: boolean): string => (m ? 'migratable' : 'blocked');
    out.push({ time, runId: after.runId, kind: 'Pod', subject, from: verdict(o.migratable), to: verdict(p.migratable), ...(p.migratable ? {} : { reasons: p.reasons ?? [] }) });
  }
  const oldPairs = new Map<string, ReadinessBaseline['pairs'][number]>(before.pairs.map((p) => [`${p.source}->${p.target}`, p] as const));
  for (const p of after.pairs) {
    const subject = `${p.source}->${p.target}`;
    const o = oldPairs.get(subject);
    if (o === undefined || o.eligible === p.eligible) continue;
    const verdict = (e: boolean): string => (e ? 'eligible' : 'ineligible');
    out.push({ time, runId: after.runId, kind: 'NodePair', subject, from: verdict(o.eligible), to: verdict(p.eligible), ...(p.eligible ? {} : { reasons: p.reasons ?? [] }) });
  }
  return out;
}

/** `existing` then `added`, keeping the newest `max`. */
export function appendChanges(existing: readonly ReadinessChange[] | undefined, added: readonly ReadinessChange[], max = MAX_CHANGES): ReadinessChange[] {
  const all = [...(existing ?? []), ...added];
  return all.slice(Math.max(0, all.length - max));
}

/** Worse (blocked, ineligible) or better. */
export function isWorse(c: ReadinessChange): boolean {
  return c.to === 'blocked' || c.to === 'ineligible';
}
