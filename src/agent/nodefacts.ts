// What the agent writes into its node's MigrationNode, and when it tries again. Pure: no I/O, no clock (times
// come in as numbers); nodefacts-publisher.ts does the calls.
//
// - `newMigrationNode`: the object created when the node has none: named after the Node, owned by it (so the
//   garbage collector deletes it with the Node), and without spec (spec is the administrator's).
// - `publishedStatus`: the status the agent applies (server-side apply, field manager `migprobe-agent`): the
//   facts measured now, the agent's version, the time, and the Published condition. When the measurement
//   failed, the last good facts and their time are kept and Published turns False.
// - `retryDelay`: the next attempt after a success (the interval) or a failure (the API server's
//   Retry-After, else exponential backoff from 1 s, never beyond the interval).

import { API_VERSION } from '../api/v1alpha1.ts';
import { MIGRATION_NODE_KIND, PUBLISHED_CONDITION, type MigrationNode, type MigrationNodeStatus, type NodeFactsView } from '../api/migrationnode.ts';
import { metav1Time, setCondition } from '../kube/conditions.ts';
import { errorPolicy } from '../kube/errors.ts';
import { goDurationMs } from '../kube/duration.ts';

/** Field manager of every write the agent makes to a MigrationNode. */
export const FIELD_MANAGER = 'migprobe-agent';
export const DEFAULT_FACTS_INTERVAL = '10m';
export const RETRY_BASE_MS = 1000;
export const RETRY_MAX_MS = 5 * 60_000;

/** The MigrationNode for `node` (its Node's name and UID), as the agent creates it: metadata only. */
export function newMigrationNode(node: { name: string; uid: string }): MigrationNode {
  return {
    apiVersion: API_VERSION,
    kind: MIGRATION_NODE_KIND,
    metadata: {
      name: node.name,
      labels: { 'app.kubernetes.io/managed-by': 'migprobe-agent' },
      // Not a controller reference and no blockOwnerDeletion: the Node only owns it for garbage collection.
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid }],
    },
  };
}

export interface PublishInput {
  /** The object as last read (its generation and conditions count). */
  current: MigrationNode;
  /** What was measured now, or why nothing could be. */
  measured: { facts: NodeFactsView } | { error: string };
  agentVersion: string;
  nowMs: number;
}

/**
 * The status fields the agent owns, complete (server-side apply removes owned fields left out). Only the
 * Published condition is sent: other writers' conditions stay theirs.
 */
export function publishedStatus(p: PublishInput): MigrationNodeStatus {
  const prev = p.current.status;
  const ok = 'facts' in p.measured;
  const { conditions } = setCondition(
    prev?.conditions,
    {
      type: PUBLISHED_CONDITION,
      status: ok ? 'True' : 'False',
      reason: ok ? 'FactsPublished' : 'FactsUnavailable',
      message: 'facts' in p.measured
        ? `agent ${p.agentVersion} measured this node's facts`
        : `agent ${p.agentVersion} could not measure this node's facts (${p.measured.error}); observedFacts are from the last good measurement`,
      observedGeneration: p.current.metadata.generation ?? 0,
    },
    p.nowMs,
  );
  const published = conditions.filter((c) => c.type === PUBLISHED_CONDITION);
  const out: MigrationNodeStatus = { agentVersion: p.agentVersion, conditions: published };
  if ('facts' in p.measured) {
    out.observedFacts = p.measured.facts;
    out.lastUpdateTime = metav1Time(p.nowMs);
  } else {
    if (prev?.observedFacts !== undefined) out.observedFacts = prev.observedFacts;
    if (prev?.lastUpdateTime !== undefined) out.lastUpdateTime = prev.lastUpdateTime;
  }
  return out;
}

/**
 * Milliseconds until the next attempt. `failures` counts the failed attempts in a row, this one included (0
 * after a success). 429 waits the server's Retry-After; 404 (the object went away between the read and the
 * write) and 409 (created by a concurrent attempt) retry after RETRY_BASE_MS; anything else backs off
 * exponentially. A failure never waits longer than the interval.
 */
export function retryDelay(intervalMs: number, failures: number, err?: unknown): number {
  if (failures <= 0) return intervalMs;
  const cap = Math.min(intervalMs, RETRY_MAX_MS);
  const policy = errorPolicy(err);
  if (policy.action === 'retryAfter') return Math.min(Math.max(policy.delayMs, RETRY_BASE_MS), intervalMs);
  if (policy.action === 'done' || policy.action === 'requeue') return Math.min(RETRY_BASE_MS, cap);
  return Math.min(RETRY_BASE_MS * 2 ** Math.min(failures - 1, 30), cap);
}

/** --facts-interval: a duration of at least one second, or an error naming the flag. */
export function factsIntervalMs(text: string): number {
  const ms = goDurationMs(text.trim());
  if (ms === undefined || ms < 1000) throw new Error(`--facts-interval must be a duration of at least 1s such as 10m or 90s, not '${text}'`);
  return ms;
}
