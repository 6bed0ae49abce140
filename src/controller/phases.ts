// The probe's phase machine, as a table. Pure.
//
//   (none) -> Pending -> Preflight -> Dumping -> Transferring -> Restoring -> Succeeded
//      \________\___________\___________\____________\______________\-----> Failed
//
// Every non-final phase has a timeout measured from status.phaseStartTime (persisted, so a restarted controller
// keeps counting), and the active phases share the spec's timeoutSeconds measured from status.startTime.

import type { MigrationProbeSpec, Phase } from '../api/v1alpha1.ts';
import { timeoutSecondsOf } from '../api/v1alpha1.ts';
import type { OperationStage } from '../agent-api/protocol.ts';

export interface PhaseConfig {
  /** How long a probe may wait in Pending for a free slot (per pod, per node). */
  pendingTimeoutMs: number;
  /** Preflight is a /proc scan plus the start of the dump: it is short. */
  preflightTimeoutMs: number;
  /** Slack on top of spec.timeoutSeconds for the agent to report (its own CRIU calls are bounded by it). */
  graceMs: number;
}

export const DEFAULT_PHASE_CONFIG: PhaseConfig = { pendingTimeoutMs: 10 * 60_000, preflightTimeoutMs: 60_000, graceMs: 15_000 };

export interface PhaseRow {
  /** Phases this one may move to. */
  next: readonly Phase[];
  /** Timeout of the phase itself (ms from phaseStartTime); undefined: none (final phases). */
  timeoutMs: ((spec: MigrationProbeSpec, cfg: PhaseConfig) => number) | undefined;
  /** Event reason written when the probe enters the phase. */
  eventReason: string;
  /** Event message / condition message while in the phase. */
  message: string;
  /** Position, for "never move backwards". */
  rank: number;
}

const whole = (spec: MigrationProbeSpec, cfg: PhaseConfig): number => timeoutSecondsOf(spec) * 1000 + cfg.graceMs;

export const PHASE_TABLE: Readonly<Record<Phase, PhaseRow>> = {
  Pending: {
    next: ['Preflight', 'Dumping', 'Transferring', 'Restoring', 'Succeeded', 'Failed'],
    timeoutMs: (_s, c) => c.pendingTimeoutMs,
    eventReason: 'Pending',
    message: 'waiting for a free slot (one probe per pod, a limited number of dumps per node)',
    rank: 0,
  },
  Preflight: {
    next: ['Dumping', 'Transferring', 'Restoring', 'Succeeded', 'Failed'],
    timeoutMs: (s, c) => Math.min(c.preflightTimeoutMs, whole(s, c)),
    eventReason: 'Preflight',
    message: 'the agent on the source node scans the container before anything is frozen',
    rank: 1,
  },
  Dumping: {
    next: ['Transferring', 'Restoring', 'Succeeded', 'Failed'],
    timeoutMs: whole,
    eventReason: 'Dumping',
    message: 'criu dump --leave-running of the container (memory contents are not written)',
    rank: 2,
  },
  Transferring: {
    next: ['Restoring', 'Succeeded', 'Failed'],
    timeoutMs: whole,
    eventReason: 'Transferring',
    message: 'the image set travels to the agent on the target node',
    rank: 3,
  },
  Restoring: {
    next: ['Succeeded', 'Failed'],
    timeoutMs: whole,
    eventReason: 'Restoring',
    message: 'restore check in a sandbox on the target node (restored tasks never run)',
    rank: 4,
  },
  Succeeded: { next: [], timeoutMs: undefined, eventReason: 'Succeeded', message: 'the probe finished', rank: 5 },
  Failed: { next: [], timeoutMs: undefined, eventReason: 'Failed', message: 'the probe could not finish', rank: 5 },
};

export function canTransition(from: Phase | undefined, to: Phase): boolean {
  if (from === undefined) return true;
  return PHASE_TABLE[from].next.includes(to);
}

/** The phase an agent stage means. */
export function phaseForStage(stage: OperationStage): Phase {
  switch (stage) {
    case 'preflight':
      return 'Preflight';
    case 'dump':
      return 'Dumping';
    case 'transfer':
      return 'Transferring';
    case 'restore':
    case 'done':
      return 'Restoring';
  }
}

/** The phase to show for an agent stage, never moving backwards. */
export function progressPhase(current: Phase, stage: OperationStage): Phase {
  const p = phaseForStage(stage);
  return PHASE_TABLE[p].rank > PHASE_TABLE[current].rank && canTransition(current, p) ? p : current;
}

export type TimeoutCheck = { timedOut: false; nextCheckInMs?: number } | { timedOut: true; message: string };

/**
 * Whether the probe ran out of time in `phase` (entered at `phaseStartMs`) or as a whole (started at
 * `startMs`). When not, says how long until it would.
 */
export function checkTimeout(phase: Phase, spec: MigrationProbeSpec, cfg: PhaseConfig, nowMs: number, phaseStartMs: number | undefined, startMs: number | undefined): TimeoutCheck {
  const row = PHASE_TABLE[phase];
  if (row.timeoutMs === undefined) return { timedOut: false };
  let next: number | undefined;
  if (phaseStartMs !== undefined) {
    const limit = row.timeoutMs(spec, cfg);
    const left = phaseStartMs + limit - nowMs;
    if (left <= 0) return { timedOut: true, message: `phase ${phase} took longer than ${Math.round(limit / 1000)}s` };
    next = left;
  }
  if (startMs !== undefined && phase !== 'Pending') {
    const limit = whole(spec, cfg);
    const left = startMs + limit - nowMs;
    if (left <= 0) return { timedOut: true, message: `the probe took longer than its timeoutSeconds (${timeoutSecondsOf(spec)}s) in phase ${phase}` };
    next = next === undefined ? left : Math.min(next, left);
  }
  return next === undefined ? { timedOut: false } : { timedOut: false, nextCheckInMs: next };
}
