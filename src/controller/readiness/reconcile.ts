// The MigrationReadiness reconciler: level-based, recomputed from the informer caches on every call (the
// readiness, pods, nodes, agent pods, MigrationNodes, ReplicaSets, namespaces and the probes it made), so a
// conflict or a restart loses nothing. Status goes to /status with the cached resourceVersion as precondition.
//
// A run, as persisted in status (so a restarted controller resumes it):
// - Start (schedule.ts says when): runId+1, observedGeneration and observedRerun recorded, the candidate
//   targets screened once for the run (targets.ts: no dump for a pair that cannot work), phase Running.
// - Running: the pods are selected again (selection.ts), the planner (planner.ts) creates the probes the
//   budget allows, named `<readiness>-<runId>-<hash>` in the pod's namespace, labelled with the readiness and
//   the run and owned by the readiness (deleting it deletes them); the answer so far is aggregated
//   (aggregate.ts). Probes this controller created that the cache does not show yet count as running.
// - Complete (every pod answered): Drainable True/False, drift against the last completed run (drift.ts) as
//   changes, Events and metrics; the probes of older runs are deleted (the last run's stay, for the links).

import type { V1Namespace, V1Node, V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import { agentEndpoint } from '../../agent-api/peers.ts';
import type { MigrationNode } from '../../api/migrationnode.ts';
import {
  READINESS_KIND,
  READINESS_LABEL,
  READINESS_RUN_LABEL,
  RERUN_ANNOTATION,
  type MigrationReadiness,
  type ReadinessChange,
  type ReadinessStatus,
  type TargetStatus,
} from '../../api/readiness.ts';
import { API_VERSION, KIND, type MigrationProbe } from '../../api/v1alpha1.ts';
import type { Clock } from '../../kube/clock.ts';
import { metav1Time, setCondition, type Condition, type ConditionInput } from '../../kube/conditions.ts';
import type { Logger } from '../../kube/logger.ts';
import type { Cache, ReconcileResult } from '../reconcile.ts';
import { aggregate, measureBudget } from './aggregate.ts';
import { appendChanges, baselineOf, drift, isWorse } from './drift.ts';
import { budgetOf, plan, podKey, probeName, workItems, type ProbeView, type WorkItem } from './planner.ts';
import { nextRunMs, runTrigger, scheduleProblem, type RunTrigger } from './schedule.ts';
import { selectorProblem, selectPods, ownerKeyOf, type Selection } from './selection.ts';
import { screenTargets } from './targets.ts';

export interface ReadinessWriter {
  /** Merge patch of /status (keys set to null are removed), with metadata.resourceVersion as precondition. */
  patchStatus(r: MigrationReadiness, status: Record<string, unknown>): Promise<void>;
  /** Creates a probe; one that already exists (409) is not an error. */
  createProbe(p: MigrationProbe): Promise<void>;
  /** Deletes a probe; one already gone (404) is not an error. */
  deleteProbe(p: MigrationProbe): Promise<void>;
}

export interface ReadinessEventSink {
  event(r: MigrationReadiness, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface ReadinessMetricsSink {
  /** The readiness's gauges from its status (pods by state, drainable, last run). */
  observe(r: MigrationReadiness, status: ReadinessStatus): void;
  /** One verdict change of a finished run. */
  changed(r: MigrationReadiness, c: ReadinessChange): void;
  /** The screened pairs of a run start: source, target, eligible. */
  pairs(targets: readonly TargetStatus[]): void;
  /** The readiness is gone: drop its series. */
  forget(name: string): void;
}

export interface ReadinessDeps {
  readinesses: Cache<MigrationReadiness>;
  probes: Cache<MigrationProbe>;
  pods: Cache<V1Pod>;
  nodes: Cache<V1Node>;
  agentPods: Cache<V1Pod>;
  migrationNodes: Cache<MigrationNode>;
  replicaSets: Cache<V1ReplicaSet>;
  namespaces: Cache<V1Namespace>;
  writer: ReadinessWriter;
  events: ReadinessEventSink;
  metrics: ReadinessMetricsSink;
  clock: Clock;
  log: Logger;
  config: { agentNamespace: string; agentScheme: 'http' | 'https'; agentPort: number };
}

/** How long a created probe the cache does not show yet still counts as running (then the cache is trusted). */
const EXPECTATION_TTL_MS = 60_000;

/** The run a probe belongs to (its label), NaN when it has none. */
export function runOf(p: MigrationProbe): number {
  return Number(p.metadata.labels?.[READINESS_RUN_LABEL] ?? 'NaN');
}

export class ReadinessReconciler {
  private readonly d: ReadinessDeps;
  /** Probes created by this controller, by readiness, until the cache shows them. */
  private readonly expected = new Map<string, Map<string, ProbeView>>();

  constructor(deps: ReadinessDeps) {
    this.d = deps;
  }

  reconcile = async (name: string): Promise<ReconcileResult> => {
    const r = this.d.readinesses.get(name);
    if (r === undefined) {
      this.expected.delete(name);
      this.d.metrics.forget(name);
      return;
    }
    if (r.metadata.deletionTimestamp !== undefined) return; // its probes go with it (ownerReferences)
    const log = this.d.log.child({ readiness: name });
    const now = this.d.clock.now();
    const problem = this.specProblem(r);
    if (problem !== undefined) return this.invalid(r, problem, log);
    const trigger = runTrigger(r, now);
    if (trigger !== undefined) return this.startRun(r, trigger, now, log);
    const s = r.status ?? {};
    if (r.spec.suspend === true && s.runId === undefined) {
      await this.write(r, { ...s, phase: 'Pending', conditions: this.conditions(r, [{ type: 'Drainable', status: 'Unknown', reason: 'Suspended', message: 'spec.suspend is true: no run starts' }]) });
      return;
    }
    if (s.phase === 'Running') return this.running(r, now, log);
    this.d.metrics.observe(r, s);
    await this.deleteOlderRuns(r, s.runId ?? 0);
    return this.untilNextRun(r, now);
  };

  private specProblem(r: MigrationReadiness): { reason: string; message: string } | undefined {
    const src = r.spec.source;
    if ((src.nodeName ?? '') === '' && src.podSelector === undefined && src.namespaceSelector === undefined) {
      return { reason: 'InvalidSource', message: 'spec.source needs nodeName, podSelector or namespaceSelector' };
    }
    for (const [sel, field] of [
      [src.podSelector, 'spec.source.podSelector'],
      [src.namespaceSelector, 'spec.source.namespaceSelector'],
      [r.spec.targets?.nodeSelector, 'spec.targets.nodeSelector'],
    ] as const) {
      const p = selectorProblem(sel, field);
      if (p !== undefined) return { reason: 'InvalidSelector', message: p };
    }
    if (r.spec.schedule !== undefined) {
      const p = scheduleProblem(r.spec.schedule);
      if (p !== undefined) return { reason: 'InvalidSchedule', message: p };
    }
    return undefined;
  }

  private async invalid(r: MigrationReadiness, problem: { reason: string; message: string }, log: Logger): Promise<ReconcileResult> {
    const s = r.status ?? {};
    const conditions = this.conditions(r, [
      { type: 'SpecValid', status: 'False', reason: problem.reason, message: problem.message },
      { type: 'Drainable', status: 'Unknown', reason: problem.reason, message: 'the spec is invalid: no run starts' },
    ]);
    const changed = s.phase !== 'Failed' || s.observedGeneration !== r.metadata.generation;
    const next: ReadinessStatus = { ...s, phase: 'Failed', conditions, ...(r.metadata.generation !== undefined ? { observedGeneration: r.metadata.generation } : {}) };
    delete next.nextRunTime;
    await this.write(r, next);
    if (changed) {
      this.d.events.event(r, 'Warning', problem.reason, problem.message);
      log.info('invalid spec', problem);
    }
  }

  // ---- a new run ----

  private select(r: MigrationReadiness): Selection {
    return selectPods({
      readiness: r,
      pods: this.d.pods.list(),
      namespaces: (n) => this.d.namespaces.get(n),
      replicaSet: (ns, n) => this.d.replicaSets.get(`${ns}/${n}`),
    });
  }

  private hasAgent = (node: string): boolean =>
    agentEndpoint(this.d.agentPods.list(), node, { namespace: this.d.config.agentNamespace, scheme: this.d.config.agentScheme, defaultPort: this.d.config.agentPort }) !== undefined;

  private async startRun(r: MigrationReadiness, trigger: RunTrigger, now: number, log: Logger): Promise<ReconcileResult> {
    const s = r.status ?? {};
    const runId = (s.runId ?? 0) + 1;
    const selection = this.select(r);
    const sources = [...new Set([...(r.spec.source.nodeName ? [r.spec.source.nodeName] : []), ...selection.pods.map((p) => p.nodeName)])];
    const targets = screenTargets({ readiness: r, sources, nodes: this.d.nodes.list(), hasAgent: this.hasAgent, migrationNode: (n) => this.d.migrationNodes.get(n) });
    const agg = aggregate(selection, targets, []);
    const next = nextRunMs(r, now);
    const status: ReadinessStatus = {
      ...s,
      phase: 'Running',
      runId,
      lastRunTime: metav1Time(now),
      observedRerun: r.metadata.annotations?.[RERUN_ANNOTATION] ?? s.observedRerun ?? '',
      targets,
      pods: agg.pods,
      totals: agg.totals,
      reasonCounts: agg.reasonCounts,
      budgetObserved: { maxConcurrentProbes: 0, maxFrozenPerOwner: 0 },
      conditions: this.conditions(r, [
        { type: 'SpecValid', status: 'True', reason: 'Valid', message: 'the spec is valid' },
        { type: 'Drainable', status: 'Unknown', reason: 'Running', message: `run ${runId} started` },
      ]),
    };
    if (r.metadata.generation !== undefined) status.observedGeneration = r.metadata.generation;
    if (next !== undefined) status.nextRunTime = metav1Time(next);
    else delete status.nextRunTime;
    await this.write(r, status);
    this.d.metrics.pairs(targets);
    const eligible = targets.filter((t) => t.eligible).length;
    this.d.events.event(r, 'Normal', 'RunStarted', `run ${runId} (${trigger}): ${selection.pods.length} pods to probe (${selection.skipped.length} skipped), ${eligible} of ${targets.length} node pairs eligible`);
    log.info('run started', { runId, trigger, pods: selection.pods.length, skipped: selection.skipped.length, eligible, pairs: targets.length });
    return;
  }

  // ---- a run in progress ----

  private probesOf(name: string): MigrationProbe[] {
    return this.d.probes.list().filter((p) => p.metadata.labels?.[READINESS_LABEL] === name);
  }

  private async running(r: MigrationReadiness, now: number, log: Logger): Promise<ReconcileResult> {
    const name = r.metadata.name ?? '';
    const s = r.status ?? {};
    const runId = s.runId ?? 0;
    const targets = s.targets ?? [];
    const selection = this.select(r);
    const owners = new Map(selection.pods.map((p) => [podKey({ namespace: p.namespace, podName: p.name }), p.ownerKey] as const));
    const ownerOf = (ns: string, pod: string): string => owners.get(`${ns}/${pod}`) ?? ownerKeyOf(ns, pod, undefined);
    const all = this.probesOf(name);
    const views = this.views(name, all, ownerOf, now);
    const items = workItems(selection.pods, targets);
    const p = plan({ items, probes: views, runId, budget: budgetOf(r.spec), nowMs: now });
    for (const it of p.create) await this.create(r, runId, it, now, log);
    const runProbes = all.filter((x) => runOf(x) === runId);
    const agg = aggregate(selection, targets, runProbes);
    const budgetObserved = measureBudget(runProbes, (x) => ownerOf(x.metadata.namespace ?? '', x.spec.podName), now, s.budgetObserved);
    const status: ReadinessStatus = { ...s, pods: agg.pods, totals: agg.totals, reasonCounts: agg.reasonCounts, budgetObserved };
    const done = agg.complete && p.remaining === 0 && p.create.length === 0;
    if (!done) {
      status.conditions = this.conditions(r, [agg.drainable]);
      await this.write(r, status);
      if (p.waiting !== undefined) log.debug('fan-out waits', { why: p.waiting, remaining: p.remaining });
      return p.waitMs !== undefined ? { requeueAfterMs: Math.max(1, p.waitMs) } : undefined;
    }
    // The run is complete.
    const nowIso = metav1Time(now);
    const baseline = baselineOf(runId, agg.pods, targets);
    const changes = drift(s.baseline, baseline, nowIso);
    status.phase = 'Completed';
    status.lastCompletionTime = nowIso;
    status.baseline = baseline;
    status.changes = appendChanges(s.changes, changes);
    status.conditions = this.conditions(r, [agg.drainable]);
    const next = nextRunMs(r, now);
    if (next !== undefined) status.nextRunTime = metav1Time(next);
    await this.write(r, status);
    for (const c of changes) {
      this.d.events.event(r, isWorse(c) ? 'Warning' : 'Normal', changeReason(c), changeMessage(c));
      this.d.metrics.changed(r, c);
    }
    this.d.events.event(
      r,
      agg.drainable.status === 'True' ? 'Normal' : 'Warning',
      agg.drainable.status === 'True' ? 'Drainable' : 'NotDrainable',
      `run ${runId}: ${agg.totals.migratable} of ${agg.totals.pods - agg.totals.skipped} pods migratable; ${agg.drainable.message ?? ''}`,
    );
    log.info('run completed', { runId, ...agg.totals, drainable: agg.drainable.status, changes: changes.length, budgetObserved });
    await this.deleteOlderRuns(r, runId);
    return this.untilNextRun(r, now);
  }

  /** The readiness's probes as the planner sees them, with created ones the cache does not show yet. */
  private views(name: string, probes: readonly MigrationProbe[], ownerOf: (ns: string, pod: string) => string, now: number): ProbeView[] {
    const out: ProbeView[] = probes.map((p) => ({
      name: p.metadata.name ?? '',
      namespace: p.metadata.namespace ?? '',
      podName: p.spec.podName,
      container: p.spec.containerName ?? '',
      target: p.spec.targetNodeName,
      runId: runOf(p),
      ...(p.status?.phase !== undefined ? { phase: p.status.phase } : {}),
      createdMs: Date.parse(String(p.metadata.creationTimestamp ?? '')) || 0,
      ownerKey: ownerOf(p.metadata.namespace ?? '', p.spec.podName),
    }));
    const exp = this.expected.get(name);
    if (exp !== undefined) {
      const cached = new Set(out.map((v) => `${v.namespace}/${v.name}`));
      for (const [k, v] of exp) {
        if (cached.has(k) || now - v.createdMs > EXPECTATION_TTL_MS) exp.delete(k);
        else out.push(v);
      }
      if (exp.size === 0) this.expected.delete(name);
    }
    return out;
  }

  private async create(r: MigrationReadiness, runId: number, it: WorkItem, now: number, log: Logger): Promise<void> {
    const name = r.metadata.name ?? '';
    const probe = probeFor(r, runId, it);
    const key = `${it.namespace}/${probe.metadata.name ?? ''}`;
    const exp = this.expected.get(name) ?? new Map<string, ProbeView>();
    this.expected.set(name, exp);
    // Counted as running before the await: a reconcile that reads the cache meanwhile sees it.
    exp.set(key, { name: probe.metadata.name ?? '', namespace: it.namespace, podName: it.podName, container: it.container, target: it.target, runId, createdMs: now, ownerKey: it.ownerKey });
    try {
      await this.d.writer.createProbe(probe);
    } catch (e) {
      exp.delete(key);
      throw e;
    }
    log.info('probe created', { probe: key, target: it.target, container: it.container });
  }

  private async deleteOlderRuns(r: MigrationReadiness, runId: number): Promise<void> {
    for (const p of this.probesOf(r.metadata.name ?? '')) {
      if (runOf(p) < runId && p.metadata.deletionTimestamp === undefined) await this.d.writer.deleteProbe(p);
    }
  }

  private untilNextRun(r: MigrationReadiness, now: number): ReconcileResult {
    const at = Date.parse(r.status?.nextRunTime ?? '');
    if (r.spec.schedule === undefined || r.spec.suspend === true || Number.isNaN(at)) return;
    return { requeueAfterMs: Math.max(1000, at - now) };
  }

  // ---- status ----

  private conditions(r: MigrationReadiness, desired: readonly Omit<ConditionInput, 'observedGeneration'>[]): Condition[] {
    let list: Condition[] = [...(r.status?.conditions ?? [])];
    for (const d of desired) list = setCondition(list, r.metadata.generation === undefined ? d : { ...d, observedGeneration: r.metadata.generation }, this.d.clock.now()).conditions;
    return list;
  }

  /** Writes `next` when it differs from the cached status; keys that disappeared are removed (null). */
  private async write(r: MigrationReadiness, next: ReadinessStatus): Promise<void> {
    const old = (r.status ?? {}) as Record<string, unknown>;
    const patch: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(next)) if (JSON.stringify(old[k]) !== JSON.stringify(v)) patch[k] = v;
    for (const k of Object.keys(old)) if (!(k in next)) patch[k] = null;
    if (Object.keys(patch).length === 0) {
      this.d.metrics.observe(r, next);
      return;
    }
    await this.d.writer.patchStatus(r, patch);
    this.d.metrics.observe(r, next);
  }
}

/** The MigrationProbe of one work item: in the pod's namespace, labelled, owned by the readiness. */
export function probeFor(r: MigrationReadiness, runId: number, it: WorkItem): MigrationProbe {
  const name = r.metadata.name ?? '';
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: probeName(name, runId, it),
      namespace: it.namespace,
      labels: { [READINESS_LABEL]: name, [READINESS_RUN_LABEL]: String(runId) },
      ownerReferences: [{ apiVersion: API_VERSION, kind: READINESS_KIND, name, uid: r.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      podName: it.podName,
      containerName: it.container,
      targetNodeName: it.target,
      ...(r.spec.probeOptions !== undefined ? { options: r.spec.probeOptions } : {}),
      ...(r.spec.probeTimeoutSeconds !== undefined ? { timeoutSeconds: r.spec.probeTimeoutSeconds } : {}),
    },
  };
}

function changeReason(c: ReadinessChange): string {
  if (c.kind === 'Pod') return c.to === 'blocked' ? 'PodBlocked' : 'PodMigratable';
  return c.to === 'ineligible' ? 'NodePairIneligible' : 'NodePairEligible';
}

function changeMessage(c: ReadinessChange): string {
  const what = c.kind === 'Pod' ? `pod ${c.subject}` : `node pair ${c.subject}`;
  const why = (c.reasons ?? []).length > 0 ? ` (${(c.reasons ?? []).join(', ')})` : '';
  return `${what} was ${c.from}, is ${c.to}${why} (run ${c.runId})`;
}
