// When a MigrationReadiness runs: its first run; again when its spec changes (metadata.generation differs
// from the generation the current run answers) or the rerun annotation's value differs from the one the
// current run answered; and on its cron schedule (5 fields, UTC), a tick that falls while a run is still going
// being skipped (like a CronJob with concurrencyPolicy Forbid). spec.suspend holds every new run back; a run
// in progress finishes. Cron expressions are parsed by cron-parser. Pure: times are numbers.

import { CronExpressionParser } from 'cron-parser';
import { RERUN_ANNOTATION, type MigrationReadiness } from '../../api/readiness.ts';

/** Why a schedule is unusable, or undefined. Exactly 5 fields (minute hour day-of-month month day-of-week). */
export function scheduleProblem(expr: string): string | undefined {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5) return `spec.schedule "${expr}" has ${fields.length} fields; it needs 5 (minute hour day-of-month month day-of-week, UTC), e.g. "0 3 * * *"`;
  try {
    CronExpressionParser.parse(expr, { tz: 'UTC' }).next();
  } catch (e) {
    return `spec.schedule "${expr}" is not a cron expression: ${(e as Error).message}`;
  }
  return undefined;
}

/** The first tick of `expr` strictly after `afterMs` (UTC). Throws on a bad expression (check scheduleProblem first). */
export function nextTick(expr: string, afterMs: number): number {
  return CronExpressionParser.parse(expr, { tz: 'UTC', currentDate: new Date(afterMs) }).next().getTime();
}

export type RunTrigger = 'FirstRun' | 'SpecChanged' | 'RerunRequested' | 'Scheduled';

/** Whether a new run starts now, and why. */
export function runTrigger(r: Pick<MigrationReadiness, 'metadata' | 'spec' | 'status'>, nowMs: number): RunTrigger | undefined {
  if (r.spec.suspend === true) return undefined;
  const s = r.status;
  if (s?.runId === undefined) return 'FirstRun';
  if (r.metadata.generation !== undefined && s.observedGeneration !== r.metadata.generation) return 'SpecChanged';
  const rerun = r.metadata.annotations?.[RERUN_ANNOTATION];
  if (rerun !== undefined && rerun !== (s.observedRerun ?? '')) return 'RerunRequested';
  if (r.spec.schedule !== undefined && s.phase !== 'Running' && s.nextRunTime !== undefined) {
    const due = Date.parse(s.nextRunTime);
    if (!Number.isNaN(due) && due <= nowMs) return 'Scheduled';
  }
  return undefined;
}

/** The next run time to show and wait for: the next tick after now (a tick missed while a run went is skipped). */
export function nextRunMs(r: Pick<MigrationReadiness, 'spec'>, nowMs: number): number | undefined {
  const expr = r.spec.schedule;
  if (expr === undefined || r.spec.suspend === true || scheduleProblem(expr) !== undefined) return undefined;
  return nextTick(expr, nowMs);
}
