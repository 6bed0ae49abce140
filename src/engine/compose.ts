// The one place a verdict is assembled, from the two halves of a probe: the source half (preflight, dump check,
// bundle), the hand-over of the bundle (a local tar+gzip on one host, an HTTP upload between agents) and the
// target half (compatibility, restore check). Pure: `migprobe check` (probe.ts checkContainer) and the source
// agent (src/agent/source.ts) both call these, so the same workload gets the same verdict on one host and in
// the cluster. Every decision about what a verdict means lives here:
//
//   when the target half runs   whenever the dump itself produced images (`hasImages`), even when the source half
//                               already named a blocker (FreezeBudgetExceeded, an unmeasured freeze, tasks left
//                               stopped): the verdict then lists every blocker at once, not only the first one.
//                               A preflight blocker never dumps (nothing is frozen), a failed or timed-out dump
//                               leaves no images: neither gets a restore check.
//   reasons                     source, then hand-over, then target, in that order; an exact repeat (same code,
//                               phase and message, e.g. RootfsMismatch from compat and from the restore) is one.
//   CRIU log excerpt            every failed CRIU step's lines, dump's first, joined by a newline.
//   timings                     the source's (preflight, freeze, dump), transferMs whenever a hand-over was tried,
//                               restoreMs when the target answered, totalMs always.
//   sizes                       the source's (image bytes, workload RSS); shippedBytes when the bundle reached the
//                               target.
//   CRIU versions               each side's when known (an empty version is left out).

import type { DumpCheckResult, RestoreCheckResult } from './api.ts';
import { makeVerdict, type ProbePhase, type Reason, type Verdict } from '../verdict.ts';

/** How the hand-over of the bundle went. */
export interface TransferOutcome {
  ms: number;
  /** Bytes that reached the target (absent when the bundle never got there). */
  shippedBytes?: number;
  /** Why the image set did not reach the target or was not checked there, when it did not. */
  failure?: Reason;
}

export interface ComposeInput {
  dump: DumpCheckResult;
  transfer?: TransferOutcome;
  restore?: RestoreCheckResult;
  totalMs: number;
}

/**
 * Whether the target half runs: the source half left images behind. The source half (probe.ts) keeps
 * `bundleDir` only when CRIU's dump exited 0 within its timeout, whatever blockers it also found.
 */
export function hasImages(dump: DumpCheckResult): dump is DumpCheckResult & { bundleDir: string } {
  return typeof dump.bundleDir === 'string' && dump.bundleDir.length > 0;
}

/** An exact repeat (same code, phase and message) is one blocker; order is kept. */
export function dedupe(reasons: readonly Reason[]): Reason[] {
  const out: Reason[] = [];
  for (const r of reasons) {
    if (!out.some((o) => o.code === r.code && o.phase === r.phase && o.message === r.message)) out.push(r);
  }
  return out;
}

export function composeVerdict(i: ComposeInput): Verdict {
  const reasons: Reason[] = [...i.dump.reasons];
  if (i.transfer?.failure) reasons.push(i.transfer.failure);
  if (i.restore) reasons.push(...i.restore.reasons);
  const timings: Verdict['timings'] = { ...i.dump.timings };
  if (i.transfer) timings.transferMs = Math.round(i.transfer.ms);
  if (i.restore?.timings.restoreMs !== undefined) timings.restoreMs = i.restore.timings.restoreMs;
  timings.totalMs = Math.round(i.totalMs);
  const sizes: Verdict['sizes'] = { ...i.dump.sizes };
  if (i.transfer?.shippedBytes !== undefined) sizes.shippedBytes = i.transfer.shippedBytes;
  const criu: Verdict['criu'] = {};
  if (i.dump.criuVersion !== '') criu.source = i.dump.criuVersion;
  if (i.restore !== undefined && i.restore.criuVersion !== '') criu.target = i.restore.criuVersion;
  const excerpt = [i.dump.criuLogExcerpt, i.restore?.criuLogExcerpt].filter((x): x is string => typeof x === 'string' && x.length > 0).join('\n');
  return makeVerdict({ reasons: dedupe(reasons), timings, sizes, criu, ...(excerpt === '' ? {} : { criuLogExcerpt: excerpt }) });
}

/** Where a probe is: each half's steps in order, then done. The agent reports it; the controller shows it. */
export type ProbeStage = 'preflight' | 'dump' | 'transfer' | 'restore' | 'done';

/** The phase of a blocker found while a probe was at `stage` (an agent's InternalError, for one). */
export function stagePhase(stage: ProbeStage): ProbePhase {
  return stage === 'done' ? 'setup' : stage;
}
