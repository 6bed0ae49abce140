// MigrationProbe v1alpha1: TypeScript types matching crds/migprobe.io_migrationprobes.yaml, and the pure
// mapping from an engine Verdict to the resource's status. No I/O.

import { DEFAULT_PROBE_OPTIONS, NON_LAZY_MEMORY_LIMIT_BYTES, type ProbeOptions } from '../engine/index.ts';
import { setCondition, type Condition } from '../kube/conditions.ts';
import { isReasonCode, type NonLazyMemory, type ProbePhase, type Reason, type Verdict } from '../verdict.ts';
import { REASON_CATALOG } from '../reasons.ts';

export const GROUP = 'migprobe.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'MigrationProbe';
export const PLURAL = 'migrationprobes';
export const FINALIZER = 'migprobe.io/cleanup';
export const FIELD_MANAGER = 'migprobe-controller';

export const PHASES = ['Pending', 'Preflight', 'Dumping', 'Transferring', 'Restoring', 'Succeeded', 'Failed'] as const;
export type Phase = (typeof PHASES)[number];
export const FINAL_PHASES: readonly Phase[] = ['Succeeded', 'Failed'];
/** Phases in which node-side work runs. */
export const ACTIVE_PHASES: readonly Phase[] = ['Preflight', 'Dumping', 'Transferring', 'Restoring'];

export function isFinalPhase(p: Phase | undefined): boolean {
  return p !== undefined && FINAL_PHASES.includes(p);
}
export function isActivePhase(p: Phase | undefined): boolean {
  return p !== undefined && ACTIVE_PHASES.includes(p);
}

export const CONDITION_TYPES = ['PreflightPassed', 'DumpChecked', 'RestoreChecked', 'Compatible', 'Migratable'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

export type ProbeMode = 'Check' | 'RestoreOnly';

export interface ProbeSpecOptions {
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  extUnixSockets?: boolean;
  tcpClose?: boolean;
  tcpSkipInFlight?: boolean;
  linkRemap?: boolean;
  ghostLimitBytes?: number;
  freezeBudgetMilliseconds?: number;
  nonLazyMemoryLimitBytes?: number;
}

export interface MigrationProbeSpec {
  podName: string;
  containerName?: string;
  targetNodeName: string;
  mode?: ProbeMode;
  checkpoint?: { path: string };
  options?: ProbeSpecOptions;
  timeoutSeconds?: number;
  ttlSecondsAfterFinished?: number;
}

export type { Condition };

export interface StatusReason {
  code: string;
  message: string;
  hint?: string;
  phase?: ProbePhase;
}

export interface StatusTimings {
  preflightMilliseconds?: number;
  freezeMilliseconds?: number;
  dumpMilliseconds?: number;
  transferMilliseconds?: number;
  restoreMilliseconds?: number;
  totalMilliseconds?: number;
}

export interface StatusSizes {
  imageBytes?: number;
  shippedBytes?: number;
  workloadRssBytes?: number;
  nonLazyMemory?: NonLazyMemory;
}

export interface MigrationProbeStatus {
  phase?: Phase;
  migratable?: boolean;
  sourceNodeName?: string;
  reasons?: StatusReason[];
  timings?: StatusTimings;
  sizes?: StatusSizes;
  criu?: { source?: string; target?: string };
  criuLogExcerpt?: string;
  startTime?: string;
  phaseStartTime?: string;
  completionTime?: string;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface ObjectMeta {
  name?: string;
  /** A name prefix the API server completes with a random suffix (on create, when name is not set). */
  generateName?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
}

export interface MigrationProbe {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: MigrationProbeSpec;
  status?: MigrationProbeStatus;
}

/** Engine options from a probe spec, with the CRD's defaults applied (also for objects the API server did not default). */
export function probeOptionsFromSpec(spec: MigrationProbeSpec): ProbeOptions {
  const o = spec.options ?? {};
  return {
    tcpEstablished: o.tcpEstablished ?? false,
    fileLocks: o.fileLocks ?? false,
    extUnixSockets: o.extUnixSockets ?? false,
    ghostLimitBytes: o.ghostLimitBytes ?? DEFAULT_PROBE_OPTIONS.ghostLimitBytes,
    freezeBudgetMs: o.freezeBudgetMilliseconds ?? DEFAULT_PROBE_OPTIONS.freezeBudgetMs,
    nonLazyMemoryLimitBytes: o.nonLazyMemoryLimitBytes ?? NON_LAZY_MEMORY_LIMIT_BYTES,
    timeoutMs: timeoutSecondsOf(spec) * 1000,
    ...(o.tcpClose === true ? { tcpClose: true } : {}),
    ...(o.tcpSkipInFlight === true ? { tcpSkipInFlight: true } : {}),
    ...(o.linkRemap === true ? { linkRemap: true } : {}),
  };
}

export function timeoutSecondsOf(spec: MigrationProbeSpec): number {
  return spec.timeoutSeconds ?? 300;
}

/** Reasons as stored in status (a verdict's reasons carry every field already). */
export function toStatusReasons(reasons: readonly Reason[]): StatusReason[] {
  return reasons.map((r) => ({ code: r.code, message: truncate(r.message, 4096), hint: truncate(r.hint, 4096), phase: r.phase }));
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** A desired condition, before lastTransitionTime/observedGeneration bookkeeping. */
export interface DesiredCondition {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

const STAGE_OF_CONDITION: Record<Exclude<ConditionType, 'Migratable'>, ProbePhase[]> = {
  PreflightPassed: ['preflight'],
  DumpChecked: ['dump'],
  RestoreChecked: ['transfer', 'restore'],
  Compatible: ['compat'],
};

/**
 * The five conditions a finished verdict implies. A check whose own phase has blockers is False; a check that
 * never ran because an earlier one failed is Unknown (reason NotRun); otherwise True. The target side's checks
 * (RestoreChecked, Compatible) ran when the verdict names the target's CRIU.
 */
export function conditionsForVerdict(v: Verdict, mode: ProbeMode = 'Check'): DesiredCondition[] {
  const order: Exclude<ConditionType, 'Migratable'>[] = ['PreflightPassed', 'DumpChecked', 'RestoreChecked', 'Compatible'];
  const out: DesiredCondition[] = [];
  const targetSide: ConditionType[] = ['RestoreChecked', 'Compatible'];
  let blockedEarlier = false;
  for (const type of order) {
    const phases = STAGE_OF_CONDITION[type];
    const hits = v.reasons.filter((r) => phases.includes(r.phase));
    if ((type === 'PreflightPassed' || type === 'DumpChecked') && mode === 'RestoreOnly') {
      out.push({ type, status: 'Unknown', reason: 'NotRun', message: 'mode RestoreOnly checks an existing checkpoint' });
      continue;
    }
    if (hits.length > 0) {
      out.push({ type, status: 'False', reason: hits[0]!.code, message: summarize(hits) });
      // Compatibility is checked on the target alongside the restore: it still ran.
      if (type !== 'Compatible') blockedEarlier = true;
    } else if (blockedEarlier && !(targetSide.includes(type) && v.criu.target)) {
      // The target side runs whenever the dump produced images, a dump blocker notwithstanding (src/engine/compose.ts).
      out.push({ type, status: 'Unknown', reason: 'NotRun', message: type === 'Compatible' ? 'the target side did not run' : 'an earlier check found a blocker' });
    } else {
      out.push({ type, status: 'True', reason: 'Passed', message: passedMessage(type) });
    }
  }
  out.push(
    v.migratable
      ? { type: 'Migratable', status: 'True', reason: 'Migratable', message: 'no blocker found: the container can be live-migrated to the target node' }
      : { type: 'Migratable', status: 'False', reason: v.reasons[0]?.code ?? 'NotMigratable', message: summarize(v.reasons) },
  );
  return out;
}

/** Conditions for a probe that failed before or outside the engine (bad input, agent lost, timeout). */
export function conditionsForFailure(reason: StatusReason): DesiredCondition[] {
  return [{ type: 'Migratable', status: 'False', reason: conditionReason(reason.code), message: reason.message }];
}

function conditionReason(code: string): string {
  return /^[A-Za-z][A-Za-z0-9_,:]*$/.test(code) ? code : 'Failed';
}

function passedMessage(type: ConditionType): string {
  switch (type) {
    case 'PreflightPassed':
      return 'the /proc scan found no blocker';
    case 'DumpChecked':
      return 'criu dump --leave-running of the container succeeded';
    case 'RestoreChecked':
      return 'the image set restored in the target sandbox';
    case 'Compatible':
      return 'the node pair is compatible';
    default:
      return 'passed';
  }
}

function summarize(reasons: readonly Pick<Reason, 'code' | 'message'>[]): string {
  const s = reasons.map((r) => `${r.code}: ${r.message}`).join('; ');
  return truncate(s, 32768);
}

/** The status fields a finished verdict sets (phase Succeeded; conditions are applied separately). */
export function statusFromVerdict(v: Verdict): Pick<MigrationProbeStatus, 'phase' | 'migratable' | 'reasons' | 'timings' | 'sizes' | 'criu' | 'criuLogExcerpt'> {
  const timings: StatusTimings = {};
  if (v.timings.preflightMs !== undefined) timings.preflightMilliseconds = Math.round(v.timings.preflightMs);
  if (v.timings.freezeMs !== undefined) timings.freezeMilliseconds = Math.round(v.timings.freezeMs);
  if (v.timings.dumpMs !== undefined) timings.dumpMilliseconds = Math.round(v.timings.dumpMs);
  if (v.timings.transferMs !== undefined) timings.transferMilliseconds = Math.round(v.timings.transferMs);
  if (v.timings.restoreMs !== undefined) timings.restoreMilliseconds = Math.round(v.timings.restoreMs);
  if (v.timings.totalMs !== undefined) timings.totalMilliseconds = Math.round(v.timings.totalMs);
  const sizes: StatusSizes = {};
  if (v.sizes.imageBytes !== undefined) sizes.imageBytes = Math.round(v.sizes.imageBytes);
  if (v.sizes.shippedBytes !== undefined) sizes.shippedBytes = Math.round(v.sizes.shippedBytes);
  if (v.sizes.workloadRssBytes !== undefined) sizes.workloadRssBytes = Math.round(v.sizes.workloadRssBytes);
  if (v.sizes.nonLazyMemory !== undefined) sizes.nonLazyMemory = { ...v.sizes.nonLazyMemory };
  const criu: { source?: string; target?: string } = {};
  if (v.criu.source !== undefined) criu.source = v.criu.source;
  if (v.criu.target !== undefined) criu.target = v.criu.target;
  const out: ReturnType<typeof statusFromVerdict> = {
    phase: 'Succeeded',
    migratable: v.migratable,
    reasons: toStatusReasons(v.reasons),
    timings,
    sizes,
    criu,
  };
  if (v.criuLogExcerpt !== undefined) out.criuLogExcerpt = truncate(v.criuLogExcerpt, 8192);
  return out;
}

/**
 * The Verdict a probe's status holds (the inverse of statusFromVerdict), so a client prints a probe's answer
 * exactly as the CLI prints its own (src/cli/format.ts). A reason without a hint or phase gets the catalog's;
 * a code this build does not know (a newer controller) keeps its text, with phase setup and no hint. Pure.
 */
export function verdictFromStatus(s: MigrationProbeStatus): Verdict {
  const reasons: Reason[] = (s.reasons ?? []).map((r) => {
    const info = isReasonCode(r.code) ? REASON_CATALOG[r.code] : undefined;
    // Only the printed text of an unknown code is used: the formatter reads code, phase, message and hint.
    return { code: r.code as Reason['code'], message: r.message, hint: r.hint ?? info?.hint ?? '', phase: r.phase ?? info?.phase ?? 'setup' };
  });
  const t = s.timings ?? {};
  const z = s.sizes ?? {};
  const v: Verdict = {
    migratable: s.phase === 'Succeeded' && s.migratable === true,
    reasons,
    timings: {
      ...(t.preflightMilliseconds === undefined ? {} : { preflightMs: t.preflightMilliseconds }),
      ...(t.freezeMilliseconds === undefined ? {} : { freezeMs: t.freezeMilliseconds }),
      ...(t.dumpMilliseconds === undefined ? {} : { dumpMs: t.dumpMilliseconds }),
      ...(t.transferMilliseconds === undefined ? {} : { transferMs: t.transferMilliseconds }),
      ...(t.restoreMilliseconds === undefined ? {} : { restoreMs: t.restoreMilliseconds }),
      ...(t.totalMilliseconds === undefined ? {} : { totalMs: t.totalMilliseconds }),
    },
    sizes: {
      ...(z.imageBytes === undefined ? {} : { imageBytes: z.imageBytes }),
      ...(z.shippedBytes === undefined ? {} : { shippedBytes: z.shippedBytes }),
      ...(z.workloadRssBytes === undefined ? {} : { workloadRssBytes: z.workloadRssBytes }),
      ...(z.nonLazyMemory === undefined ? {} : { nonLazyMemory: { ...z.nonLazyMemory } }),
    },
    criu: {
      ...(s.criu?.source === undefined ? {} : { source: s.criu.source }),
      ...(s.criu?.target === undefined ? {} : { target: s.criu.target }),
    },
  };
  if (s.criuLogExcerpt !== undefined) v.criuLogExcerpt = s.criuLogExcerpt;
  return v;
}

/**
 * Applies desired conditions to an existing list (kube/conditions.ts rules: lastTransitionTime changes only
 * when a condition's status changes; observedGeneration is set on every one).
 */
export function mergeConditions(existing: readonly Condition[] | undefined, desired: readonly DesiredCondition[], generation: number | undefined, nowMs: number): Condition[] {
  let list: Condition[] = [...(existing ?? [])];
  for (const d of desired) {
    list = setCondition(list, generation === undefined ? d : { ...d, observedGeneration: generation }, nowMs).conditions;
  }
  return list;
}

export function conditionOf(p: MigrationProbe, type: ConditionType): Condition | undefined {
  return p.status?.conditions?.find((c) => c.type === type);
}
