// Watches the MigrationProbes of one MigrationReadiness and keeps the most that were unfinished (not Succeeded
// or Failed) and active (node-side work running) at once, in the API server's order of events: the tests'
// own measurement of the fan-out budget, independent of what the controller reports in status.budgetObserved.

import * as k8s from '@kubernetes/client-node';
import { isActivePhase, isFinalPhase, type MigrationProbe, type Phase } from '../src/api/v1alpha1.ts';
import { READINESS_LABEL, READINESS_RUN_LABEL } from '../src/api/readiness.ts';

export interface ReadinessProbeWatch {
  stop(): void;
  max: { unfinished: number; active: number };
  /** Every probe seen, as "name (run N: pod -> target)". */
  seen: Set<string>;
}

export function watchReadinessProbes(kc: k8s.KubeConfig, namespace: string, readiness: string): ReadinessProbeWatch {
  const phases = new Map<string, Phase | undefined>();
  const max = { unfinished: 0, active: 0 };
  const seen = new Set<string>();
  let req: { abort(): void } | undefined;
  let stopped = false;
  const start = (): void => {
    void new k8s.Watch(kc)
      .watch(
        `/apis/migprobe.io/v1alpha1/namespaces/${namespace}/migrationprobes`,
        { labelSelector: `${READINESS_LABEL}=${readiness}` },
        (type: string, p: MigrationProbe) => {
          // ERROR (a Status, e.g. 410 Gone) and BOOKMARK events name no probe.
          if (!['ADDED', 'MODIFIED', 'DELETED'].includes(type) || p.metadata?.name === undefined) return;
          const name = p.metadata.name;
          seen.add(`${name} (run ${p.metadata.labels?.[READINESS_RUN_LABEL] ?? '?'}: ${p.spec.podName} -> ${p.spec.targetNodeName})`);
          if (type === 'DELETED') phases.delete(name);
          else phases.set(name, p.status?.phase);
          const all = [...phases.values()];
          max.unfinished = Math.max(max.unfinished, all.filter((ph) => !isFinalPhase(ph)).length);
          max.active = Math.max(max.active, all.filter((ph) => isActivePhase(ph)).length);
        },
        () => {
          if (!stopped) setTimeout(start, 200); // the watch was cut: go on (events are applied level-wise)
        },
      )
      .then((r) => {
        req = r;
        if (stopped) r.abort();
      });
  };
  start();
  return {
    stop: () => {
      stopped = true;
      req?.abort();
    },
    max,
    seen,
  };
}
