// The MigrationProbe reconciler: level-based and idempotent. It reads only the informer caches (probes, pods,
// nodes, agent pods), talks to the node agents by probe UID, and writes status to /status with the object's
// resourceVersion as a precondition (a stale cache answers 409 and the key is retried).
//
// Protocol with the agents, so that a restarted controller can resume from persisted status:
// - Pending: validate; take a slot (one probe per pod, `maxDumpsPerNode` per source node); PUT the operation to
//   the source agent (idempotent by UID); then write phase Preflight. A crash between the PUT and the write
//   repeats the PUT, which finds the same operation.
// - Preflight..Restoring: GET the operation. Its stage moves the phase forward; Done writes the verdict; a 404
//   means the agent lost it (restarted): Failed/AgentUnavailable. An unreachable agent fails the probe after
//   `agentGraceMs`; every phase has a timeout (phases.ts).
// - Deletion: the finalizer asks both agents to delete the probe's artifacts, then lets go.
// - Succeeded/Failed: deleted `ttlSecondsAfterFinished` after completionTime.

import type { V1Node, V1Pod } from '@kubernetes/client-node';
import {
  conditionsForFailure,
  conditionsForVerdict,
  FINALIZER,
  isActivePhase,
  isFinalPhase,
  mergeConditions,
  statusFromVerdict,
  toStatusReasons,
  type DesiredCondition,
  type MigrationProbe,
  type MigrationProbeStatus,
  type Phase,
  type StatusReason,
} from '../api/v1alpha1.ts';
import { AgentHttpError, AgentUnreachableError } from '../agent-api/client.ts';
import { agentEndpoint } from '../agent-api/peers.ts';
import { AGENT_PROTOCOL, containerdIdOf, type OperationStatus, type StartRequest } from '../agent-api/protocol.ts';
import type { Clock } from '../kube/clock.ts';
import { metav1Time } from '../kube/conditions.ts';
import type { Logger } from '../kube/logger.ts';
import { reason as catalogReason } from '../reasons.ts';
import { isReasonCode, type ReasonCode } from '../verdict.ts';
import { checkTimeout, DEFAULT_PHASE_CONFIG, PHASE_TABLE, progressPhase, type PhaseConfig } from './phases.ts';

export interface Cache<T> {
  get(key: string): T | undefined;
  list(): T[];
}

export interface ProbeWriter {
  /** Merge patch of /status, with metadata.resourceVersion as precondition. */
  patchStatus(p: MigrationProbe, status: MigrationProbeStatus): Promise<void>;
  addFinalizer(p: MigrationProbe): Promise<void>;
  /** Removes FINALIZER with a JSON patch that tests the list first. */
  removeFinalizer(p: MigrationProbe): Promise<void>;
  delete(p: MigrationProbe): Promise<void>;
}

export interface AgentApi {
  start(baseUrl: string, uid: string, req: StartRequest): Promise<OperationStatus>;
  get(baseUrl: string, uid: string): Promise<OperationStatus | undefined>;
  delete(baseUrl: string, uid: string): Promise<void>;
}

export interface EventSink {
  event(p: MigrationProbe, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface ProbeMetricsSink {
  /** Called once, when a probe reaches Succeeded or Failed (after the status write succeeded). */
  finished(p: MigrationProbe, status: MigrationProbeStatus): void;
}

export interface ReconcilerConfig extends PhaseConfig {
  maxDumpsPerNode: number;
  agentNamespace: string;
  agentPort: number;
  agentScheme: 'http' | 'https';
  /** How long an unreachable agent is waited for before the probe fails with AgentUnavailable. */
  agentGraceMs: number;
  /** How often a running operation is polled. */
  pollMs: number;
  /** How long the finalizer retries an agent that does not answer before letting go. */
  finalizerGraceMs: number;
}

export const DEFAULT_RECONCILER_CONFIG: ReconcilerConfig = {
  ...DEFAULT_PHASE_CONFIG,
  maxDumpsPerNode: 2,
  agentNamespace: 'migprobe-system',
  agentPort: 9443,
  agentScheme: 'http',
  agentGraceMs: 20_000,
  pollMs: 1000,
  finalizerGraceMs: 60_000,
};

export { AGENT_LABEL, AGENT_LABEL_VALUE } from '../agent-api/peers.ts';

export interface ReconcilerDeps {
  probes: Cache<MigrationProbe>;
  pods: Cache<V1Pod>;
  nodes: Cache<V1Node>;
  agentPods: Cache<V1Pod>;
  writer: ProbeWriter;
  agents: AgentApi;
  events: EventSink;
  metrics: ProbeMetricsSink;
  clock: Clock;
  log: Logger;
  config?: Partial<ReconcilerConfig>;
}

export type ReconcileResult = { requeueAfterMs?: number } | void;

interface Admission {
  key: string;
  node: string;
  podKey: string;
}

type Validated = { ok: true; sourceNode: string; containerName: string; containerId: string; sourceUrl: string } | { ok: false; reason: StatusReason };

export class ProbeReconciler {
  private readonly d: ReconcilerDeps;
  readonly config: ReconcilerConfig;
  /** Slots this controller handed out whose status write the cache may not show yet, by probe UID. */
  private readonly admitted = new Map<string, Admission>();
  /** First time an agent did not answer for a probe UID (in memory: a restart waits a fresh grace). */
  private readonly unreachableSince = new Map<string, number>();

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    this.config = { ...DEFAULT_RECONCILER_CONFIG, ...deps.config };
  }

  /** Active probes per source node as this controller counts them (cache plus fresh admissions). */
  activeOnNode(node: string, exceptUid?: string): number {
    const uids = new Set<string>();
    for (const p of this.d.probes.list()) {
      const uid = p.metadata.uid ?? '';
      if (uid !== exceptUid && isActivePhase(p.status?.phase) && p.status?.sourceNodeName === node) uids.add(uid);
    }
    for (const [uid, a] of this.admitted) if (uid !== exceptUid && a.node === node) uids.add(uid);
    return uids.size;
  }

  reconcile = async (key: string): Promise<ReconcileResult> => {
    const p = this.d.probes.get(key);
    if (!p) {
      for (const [uid, a] of this.admitted) if (a.key === key) this.release(uid);
      return;
    }
    const uid = p.metadata.uid ?? '';
    const log = this.d.log.child({ probe: key });
    if (p.metadata.deletionTimestamp !== undefined) return this.finalize(p, log);
    const phase = p.status?.phase;
    if (isFinalPhase(phase)) {
      this.release(uid);
      return this.ttl(p);
    }
    if (!(p.metadata.finalizers ?? []).includes(FINALIZER)) {
      await this.d.writer.addFinalizer(p);
      return; // the update comes back through the informer
    }
    if (phase === undefined || phase === 'Pending') return this.pending(p, log);
    return this.active(p, phase, log);
  };

  // ---- Pending: validate, take a slot, start the source operation ----

  private async pending(p: MigrationProbe, log: Logger): Promise<ReconcileResult> {
    const uid = p.metadata.uid ?? '';
    const now = this.d.clock.now();
    const v = this.validate(p);
    if (!v.ok) {
      this.release(uid);
      await this.fail(p, v.reason, log);
      return;
    }
    const phaseStart = p.status?.phaseStartTime ?? isoOf(p.metadata.creationTimestamp);
    const to = checkTimeout('Pending', p.spec, this.config, now, parseMs(phaseStart), undefined);
    if (to.timedOut) {
      this.release(uid);
      await this.fail(p, mkReason('Timeout', `no free slot: ${to.message}`, 'setup'), log);
      return;
    }
    const podKey = `${p.metadata.namespace ?? ''}/${p.spec.podName}`;
    const wait = this.admissionBlocker(p, v.sourceNode, podKey);
    if (wait !== undefined) {
      if (p.status?.phase !== 'Pending') await this.writePending(p, v.sourceNode, wait);
      return { requeueAfterMs: this.config.pollMs };
    }
    // Take the slot synchronously (no await between the check and this line).
    this.admitted.set(uid, { key: keyOf(p), node: v.sourceNode, podKey });
    // Names only: the agent reads this probe itself (mode, checkpoint, options) and finds the target agent itself.
    const req: StartRequest = {
      protocol: AGENT_PROTOCOL,
      probeName: p.metadata.name ?? '',
      namespace: p.metadata.namespace ?? '',
      podName: p.spec.podName,
      containerName: v.containerName,
      containerId: v.containerId,
      target: { nodeName: p.spec.targetNodeName },
    };
    let op: OperationStatus;
    try {
      op = await this.d.agents.start(v.sourceUrl, uid, req);
      this.unreachableSince.delete(uid);
    } catch (e) {
      this.release(uid);
      // Busy, shutting down, or a conflict that passes (409 with Retry-After: the UID or the container has a
      // running operation on the agent): wait and retry.
      if (e instanceof AgentHttpError && (e.status === 429 || e.status === 503 || (e.status === 409 && e.retryAfterMs !== undefined))) {
        if (p.status?.phase !== 'Pending') await this.writePending(p, v.sourceNode, 'the source agent is busy');
        return { requeueAfterMs: e.retryAfterMs ?? 1000 };
      }
      if (e instanceof AgentHttpError) {
        const code = e.body?.code;
        const msg = e.body?.message ?? e.message;
        if (code !== undefined && isReasonCode(code) && code !== 'InternalError') {
          await this.fail(p, mkReason(code, msg, 'setup'), log);
        } else {
          await this.fail(p, mkReason('AgentUnavailable', `the agent on node ${v.sourceNode} refused the probe: ${msg}`, 'setup'), log);
        }
        return;
      }
      return this.unreachable(p, v.sourceNode, e, log);
    }
    const next = progressPhase('Preflight', op.stage);
    const nowIso = metav1Time(now);
    const status: MigrationProbeStatus = {
      ...this.base(p),
      phase: next,
      sourceNodeName: v.sourceNode,
      startTime: p.status?.startTime ?? nowIso,
      phaseStartTime: nowIso,
      conditions: this.conds(p, [{ type: 'Migratable', status: 'Unknown', reason: next, message: PHASE_TABLE[next].message }]),
    };
    await this.d.writer.patchStatus(p, status);
    this.d.events.event(p, 'Normal', 'Started', `probe of ${p.spec.podName} on ${v.sourceNode} -> ${p.spec.targetNodeName} started`);
    log.info('probe started', { source: v.sourceNode, target: p.spec.targetNodeName, phase: next });
    return { requeueAfterMs: this.config.pollMs };
  }

  /** Why this probe must wait, or undefined when it may start now. */
  private admissionBlocker(p: MigrationProbe, node: string, podKey: string): string | undefined {
    const uid = p.metadata.uid ?? '';
    if (this.admitted.has(uid)) return undefined; // already holds its slot (a retry)
    for (const o of this.d.probes.list()) {
      if (o.metadata.uid === uid || o.metadata.namespace !== p.metadata.namespace || o.spec.podName !== p.spec.podName) continue;
      if (isActivePhase(o.status?.phase)) return `probe ${o.metadata.name ?? ''} of the same pod is running`;
    }
    for (const [u, a] of this.admitted) if (u !== uid && a.podKey === podKey) return 'another probe of the same pod is starting';
    const n = this.activeOnNode(node, uid);
    if (n >= this.config.maxDumpsPerNode) return `${n} probes are running on node ${node} (limit ${this.config.maxDumpsPerNode})`;
    return undefined;
  }

  private async writePending(p: MigrationProbe, sourceNode: string, why: string): Promise<void> {
    const nowIso = metav1Time(this.d.clock.now());
    await this.d.writer.patchStatus(p, {
      ...this.base(p),
      phase: 'Pending',
      sourceNodeName: sourceNode,
      phaseStartTime: p.status?.phaseStartTime ?? nowIso,
      conditions: this.conds(p, [{ type: 'Migratable', status: 'Unknown', reason: 'Pending', message: why }]),
    });
    if (p.status?.phase === undefined) this.d.events.event(p, 'Normal', 'Pending', why);
  }

  /** Bad input and cluster state, checked from the caches. */
  validate(p: MigrationProbe): Validated {
    const ns = p.metadata.namespace ?? '';
    const pod = this.d.pods.get(`${ns}/${p.spec.podName}`);
    if (!pod) return setupFailure('PodNotFound', `pod ${p.spec.podName} not found in namespace ${ns}`);
    const sourceNode = pod.spec?.nodeName;
    if (pod.metadata?.deletionTimestamp !== undefined || pod.status?.phase !== 'Running' || !sourceNode) {
      return setupFailure('PodNotRunning', `pod ${p.spec.podName} is ${pod.metadata?.deletionTimestamp !== undefined ? 'terminating' : (pod.status?.phase ?? 'not scheduled')}`);
    }
    const containers = pod.spec?.containers ?? [];
    const containerName = p.spec.containerName ?? containers[0]?.name;
    if (containerName === undefined || !containers.some((c) => c.name === containerName)) {
      return setupFailure('ContainerNotFound', `pod ${p.spec.podName} has no container ${containerName ?? '(none)'}; it has: ${containers.map((c) => c.name).join(', ')}`);
    }
    const cs = (pod.status?.containerStatuses ?? []).find((c) => c.name === containerName);
    const containerId = containerdIdOf(cs?.containerID);
    if (!cs || cs.state?.running === undefined) return setupFailure('PodNotRunning', `container ${containerName} of pod ${p.spec.podName} is not running`);
    if (containerId === undefined) return setupFailure('ContainerNotFound', `container ${containerName} has no containerd container ID (${cs.containerID ?? 'none'}); only containerd is supported`);
    const target = this.d.nodes.get(p.spec.targetNodeName);
    if (!target) return setupFailure('TargetNodeNotFound', `node ${p.spec.targetNodeName} not found`);
    const ready = (target.status?.conditions ?? []).find((c) => c.type === 'Ready');
    if (ready?.status !== 'True' || target.spec?.unschedulable === true) {
      return setupFailure('TargetNodeNotReady', `node ${p.spec.targetNodeName} is ${target.spec?.unschedulable === true ? 'cordoned' : 'not Ready'}`);
    }
    if (sourceNode === p.spec.targetNodeName) return setupFailure('SameNode', `pod ${p.spec.podName} already runs on node ${sourceNode}`);
    const sourceUrl = this.agentUrl(sourceNode);
    if (sourceUrl === undefined) return setupFailure('AgentUnavailable', `no running migprobe agent on the source node ${sourceNode}`);
    // The source agent finds the target agent itself; this only fails early and clearly when there is none.
    if (this.agentUrl(p.spec.targetNodeName) === undefined) return setupFailure('AgentUnavailable', `no running migprobe agent on the target node ${p.spec.targetNodeName}`);
    return { ok: true, sourceNode, containerName, containerId, sourceUrl };
  }

  /** The agent's URL on `node`, from its pod (label, spec.nodeName, status.podIP, port named "agent"). */
  agentUrl(node: string): string | undefined {
    return agentEndpoint(this.d.agentPods.list(), node, { namespace: this.config.agentNamespace, scheme: this.config.agentScheme, defaultPort: this.config.agentPort });
  }

  // ---- Preflight..Restoring: follow the source operation ----

  private async active(p: MigrationProbe, phase: Phase, log: Logger): Promise<ReconcileResult> {
    const uid = p.metadata.uid ?? '';
    const now = this.d.clock.now();
    const source = p.status?.sourceNodeName ?? '';
    const to = checkTimeout(phase, p.spec, this.config, now, parseMs(p.status?.phaseStartTime), parseMs(p.status?.startTime));
    if (to.timedOut) {
      await this.fail(p, mkReason('Timeout', to.message, phaseToProbePhase(phase)), log);
      this.cleanupAgents(p, log);
      return;
    }
    const url = this.agentUrl(source);
    if (url === undefined) return this.unreachable(p, source, new AgentUnreachableError(`no running agent pod on node ${source}`), log);
    let op: OperationStatus | undefined;
    try {
      op = await this.d.agents.get(url, uid);
      this.unreachableSince.delete(uid);
    } catch (e) {
      if (e instanceof AgentHttpError && e.status !== 401 && e.status !== 403 && e.status < 500) throw e;
      return this.unreachable(p, source, e, log);
    }
    if (op === undefined) {
      await this.fail(p, mkReason('AgentUnavailable', `the agent on node ${source} does not know this probe any more (it restarted during phase ${phase})`, phaseToProbePhase(phase)), log);
      return;
    }
    if (op.state === 'Running') {
      const next = progressPhase(phase, op.stage);
      if (next !== phase) {
        await this.d.writer.patchStatus(p, {
          ...this.base(p),
          phase: next,
          phaseStartTime: metav1Time(now),
          conditions: this.conds(p, [{ type: 'Migratable', status: 'Unknown', reason: next, message: PHASE_TABLE[next].message }]),
        });
        this.d.events.event(p, 'Normal', PHASE_TABLE[next].eventReason, PHASE_TABLE[next].message);
      }
      return { requeueAfterMs: Math.min(this.config.pollMs, to.nextCheckInMs ?? this.config.pollMs) };
    }
    if (op.state === 'Done' && op.verdict) {
      await this.succeed(p, op, log);
    } else {
      const r = op.error ?? mkReason('InternalError', 'the agent reported a failure without a reason', 'setup');
      await this.fail(p, r, log);
    }
    this.cleanupAgents(p, log);
    return;
  }

  private async unreachable(p: MigrationProbe, node: string, e: unknown, log: Logger): Promise<ReconcileResult> {
    const uid = p.metadata.uid ?? '';
    const now = this.d.clock.now();
    const since = this.unreachableSince.get(uid) ?? now;
    this.unreachableSince.set(uid, since);
    const msg = e instanceof Error ? e.message : String(e);
    if (now - since >= this.config.agentGraceMs) {
      this.unreachableSince.delete(uid);
      this.release(uid);
      await this.fail(p, mkReason('AgentUnavailable', `the agent on node ${node} did not answer for ${Math.round((now - since) / 1000)}s: ${msg}`.slice(0, 2048), phaseToProbePhase(p.status?.phase ?? 'Pending')), log);
      return;
    }
    log.warn('agent unreachable; retrying', { node, error: msg });
    return { requeueAfterMs: Math.min(2000, this.config.agentGraceMs - (now - since) + 1) };
  }

  // ---- Final writes ----

  private async succeed(p: MigrationProbe, op: OperationStatus, log: Logger): Promise<void> {
    const v = op.verdict!;
    const now = this.d.clock.now();
    const status: MigrationProbeStatus = {
      ...this.base(p),
      ...statusFromVerdict(v),
      completionTime: metav1Time(now),
      phaseStartTime: metav1Time(now),
      conditions: this.conds(p, conditionsForVerdict(v, p.spec.mode ?? 'Check')),
    };
    await this.d.writer.patchStatus(p, status);
    this.release(p.metadata.uid ?? '');
    const codes = v.reasons.map((r) => r.code);
    if (v.migratable) this.d.events.event(p, 'Normal', 'Migratable', `${p.spec.podName} can be live-migrated to ${p.spec.targetNodeName} (freeze ${v.timings.freezeMs ?? '?'} ms)`);
    else this.d.events.event(p, 'Warning', 'NotMigratable', `${p.spec.podName} cannot be live-migrated to ${p.spec.targetNodeName}: ${codes.join(', ')}`);
    this.d.metrics.finished(p, status);
    log.info('probe finished', { migratable: v.migratable, reasons: codes });
  }

  private async fail(p: MigrationProbe, r: StatusReason, log: Logger): Promise<void> {
    const now = this.d.clock.now();
    const status: MigrationProbeStatus = {
      ...this.base(p),
      phase: 'Failed',
      migratable: false,
      reasons: toStatusReasons([{ code: r.code as ReasonCode, message: r.message, hint: r.hint ?? '', phase: r.phase ?? 'setup' }]),
      completionTime: metav1Time(now),
      phaseStartTime: metav1Time(now),
      conditions: this.conds(p, conditionsForFailure(r)),
    };
    await this.d.writer.patchStatus(p, status);
    this.release(p.metadata.uid ?? '');
    this.d.events.event(p, 'Warning', 'Failed', `${r.code}: ${r.message}`.slice(0, 1024));
    this.d.metrics.finished(p, status);
    log.info('probe failed', { reason: r.code, message: r.message });
  }

  private base(p: MigrationProbe): MigrationProbeStatus {
    const s: MigrationProbeStatus = {};
    if (p.metadata.generation !== undefined) s.observedGeneration = p.metadata.generation;
    return s;
  }

  private conds(p: MigrationProbe, desired: DesiredCondition[]) {
    return mergeConditions(p.status?.conditions, desired, p.metadata.generation, this.d.clock.now());
  }

  private release(uid: string): void {
    this.admitted.delete(uid);
  }

  /** Best effort: the agents delete what they kept for this probe (they delete bundles on their own anyway). */
  private cleanupAgents(p: MigrationProbe, log: Logger): void {
    const uid = p.metadata.uid ?? '';
    for (const node of new Set([p.status?.sourceNodeName, p.spec.targetNodeName])) {
      if (!node) continue;
      const url = this.agentUrl(node);
      if (url === undefined) continue;
      this.d.agents.delete(url, uid).catch((e: unknown) => log.debug('agent cleanup failed', { node, error: (e as Error).message }));
    }
  }

  // ---- Deletion and TTL ----

  private async finalize(p: MigrationProbe, log: Logger): Promise<ReconcileResult> {
    const uid = p.metadata.uid ?? '';
    this.release(uid);
    this.unreachableSince.delete(uid);
    if (!(p.metadata.finalizers ?? []).includes(FINALIZER)) return;
    const errors: string[] = [];
    for (const node of new Set([p.status?.sourceNodeName, p.spec.targetNodeName])) {
      if (!node) continue;
      const url = this.agentUrl(node);
      if (url === undefined) continue; // no agent there: nothing it could delete
      try {
        await this.d.agents.delete(url, uid);
      } catch (e) {
        errors.push(`${node}: ${(e as Error).message}`);
      }
    }
    if (errors.length > 0) {
      const since = parseMs(isoOf(p.metadata.deletionTimestamp)) ?? this.d.clock.now();
      if (this.d.clock.now() - since < this.config.finalizerGraceMs) {
        log.warn('agent cleanup failed; retrying', { errors });
        return { requeueAfterMs: 2000 };
      }
      this.d.events.event(p, 'Warning', 'CleanupFailed', `could not reach agents to delete node-side artifacts: ${errors.join('; ')}`.slice(0, 1024));
    }
    await this.d.writer.removeFinalizer(p);
    log.info('finalizer removed');
    return;
  }

  private async ttl(p: MigrationProbe): Promise<ReconcileResult> {
    const ttl = p.spec.ttlSecondsAfterFinished;
    const done = parseMs(p.status?.completionTime);
    if (ttl === undefined || done === undefined) return;
    const left = done + ttl * 1000 - this.d.clock.now();
    if (left > 0) return { requeueAfterMs: left };
    await this.d.writer.delete(p);
    return;
  }
}

export function keyOf(p: MigrationProbe): string {
  return `${p.metadata.namespace ?? ''}/${p.metadata.name ?? ''}`;
}

function setupFailure(code: ReasonCode, message: string): { ok: false; reason: StatusReason } {
  return { ok: false, reason: mkReason(code, message, 'setup') };
}

function mkReason(code: ReasonCode, message: string, phase: StatusReason['phase']): StatusReason {
  const r = catalogReason(code, message, undefined, phase);
  return { code: r.code, message: r.message, hint: r.hint, phase: r.phase };
}

function phaseToProbePhase(p: Phase): NonNullable<StatusReason['phase']> {
  switch (p) {
    case 'Preflight':
      return 'preflight';
    case 'Dumping':
      return 'dump';
    case 'Transferring':
      return 'transfer';
    case 'Restoring':
      return 'restore';
    default:
      return 'setup';
  }
}

function isoOf(t: string | Date | undefined): string | undefined {
  if (t === undefined) return undefined;
  return typeof t === 'string' ? t : t.toISOString();
}

function parseMs(t: string | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}
