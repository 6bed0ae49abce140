// Pure assembly of the verdict on the source agent, from the dump check, the transfer and the target's
// restore check.

import type { DumpCheckResult, RestoreCheckResult } from '../engine/api.ts';
import { makeVerdict, type Reason, type Verdict } from '../verdict.ts';

export interface TransferOutcome {
  ms: number;
  shippedBytes: number;
  /** Why the image set did not reach the target, when it did not. */
  failure?: Reason;
}

export interface ComposeInput {
  dump: DumpCheckResult;
  transfer?: TransferOutcome;
  restore?: RestoreCheckResult;
  totalMs: number;
}

export function composeVerdict(i: ComposeInput): Verdict {
  const reasons: Reason[] = [...i.dump.reasons];
  if (i.transfer?.failure) reasons.push(i.transfer.failure);
  if (i.restore) reasons.push(...i.restore.reasons);
  const timings: Verdict['timings'] = { ...i.dump.timings, totalMs: i.totalMs };
  if (i.transfer) timings.transferMs = i.transfer.ms;
  if (i.restore?.timings.restoreMs !== undefined) timings.restoreMs = i.restore.timings.restoreMs;
  const sizes: Verdict['sizes'] = { ...i.dump.sizes };
  if (i.transfer) sizes.shippedBytes = i.transfer.shippedBytes;
  const criu: Verdict['criu'] = { source: i.dump.criuVersion };
  if (i.restore) criu.target = i.restore.criuVersion;
  const excerpt = [i.dump.criuLogExcerpt, i.restore?.criuLogExcerpt].filter((x): x is string => typeof x === 'string' && x.length > 0).join('\n');
  const v = makeVerdict({ reasons, timings, sizes, criu });
  if (excerpt) v.criuLogExcerpt = excerpt;
  return v;
}

/** Whether the source side produced an image set worth shipping. */
export function shouldShip(dump: DumpCheckResult): dump is DumpCheckResult & { bundleDir: string } {
  return dump.reasons.length === 0 && typeof dump.bundleDir === 'string';
}

export function reason(code: Reason['code'], phase: Reason['phase'], message: string, hint: string): Reason {
  return { code, phase, message, hint };
}
