// The readiness metrics (prom-client through kube/metrics.ts). Labels are bounded: readiness and node names,
// states, kinds and reason codes; never a pod name.
//
//   migprobe_readiness_pods{readiness,node,state}        gauge, state = migratable|blocked|pending|skipped
//   migprobe_readiness_drainable{readiness,node}          gauge 0/1 (1 only when the Drainable condition is True)
//   migprobe_readiness_verdict_changes_total{readiness,kind,to,reason}
//                                                         counter, kind = Pod|NodePair,
//                                                         to = migratable|blocked|eligible|ineligible, reason = first code or ""
//   migprobe_node_pair_compatible{source,target}          gauge 0/1, from the screening at a run's start
//   migprobe_readiness_last_run_timestamp_seconds{readiness}  gauge, start of the last run

import type { Registry } from 'prom-client';
import { counter, gauge } from '../../kube/metrics.ts';
import type { ReadinessMetricsSink } from './reconcile.ts';

const STATES = ['migratable', 'blocked', 'pending', 'skipped'] as const;

export function readinessMetrics(registry: Registry): ReadinessMetricsSink {
  const pods = gauge(registry, { name: 'migprobe_readiness_pods', help: 'Pods of a MigrationReadiness by state in its current run', labelNames: ['readiness', 'node', 'state'] });
  const drainable = gauge(registry, { name: 'migprobe_readiness_drainable', help: '1 when the last completed run found every pod migratable to a target (Drainable True), else 0', labelNames: ['readiness', 'node'] });
  const changes = counter(registry, {
    name: 'migprobe_readiness_verdict_changes_total',
    help: 'Verdict changes between two runs: a pod migratable<->blocked, a node pair eligible<->ineligible (reason: the first code, "" when better)',
    labelNames: ['readiness', 'kind', 'to', 'reason'],
  });
  const pairs = gauge(registry, { name: 'migprobe_node_pair_compatible', help: '1 when the ordered node pair passed the static screening (node state, agent, facts), else 0', labelNames: ['source', 'target'] });
  const lastRun = gauge(registry, { name: 'migprobe_readiness_last_run_timestamp_seconds', help: 'Start of the last run of a MigrationReadiness (Unix seconds)', labelNames: ['readiness'] });
  /** The node label each readiness was last exported with (removed when it changes or the readiness goes). */
  const nodeOf = new Map<string, string>();
  const drop = (readiness: string, node: string): void => {
    for (const state of STATES) pods.remove({ readiness, node, state });
    drainable.remove({ readiness, node });
  };
  return {
    observe(r, s) {
      const readiness = r.metadata.name ?? '';
      const node = r.spec.source.nodeName ?? '';
      const before = nodeOf.get(readiness);
      if (before !== undefined && before !== node) drop(readiness, before);
      nodeOf.set(readiness, node);
      const t = s.totals;
      if (t !== undefined) {
        pods.set({ readiness, node, state: 'migratable' }, t.migratable);
        pods.set({ readiness, node, state: 'blocked' }, t.blocked);
        pods.set({ readiness, node, state: 'pending' }, t.pending);
        pods.set({ readiness, node, state: 'skipped' }, t.skipped);
      }
      const d = (s.conditions ?? []).find((c) => c.type === 'Drainable');
      if (d !== undefined && d.status !== 'Unknown') drainable.set({ readiness, node }, d.status === 'True' ? 1 : 0);
      const at = Date.parse(s.lastRunTime ?? '');
      if (!Number.isNaN(at)) lastRun.set({ readiness }, at / 1000);
    },
    changed(r, c) {
      changes.inc({ readiness: r.metadata.name ?? '', kind: c.kind, to: c.to, reason: c.reasons?.[0] ?? '' });
    },
    pairs(targets) {
      for (const t of targets) pairs.set({ source: t.sourceNodeName ?? '', target: t.nodeName }, t.eligible ? 1 : 0);
    },
    forget(readiness) {
      const node = nodeOf.get(readiness);
      if (node !== undefined) drop(readiness, node);
      nodeOf.delete(readiness);
      lastRun.remove({ readiness });
    },
  };
}
