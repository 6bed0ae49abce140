// metav1.Condition helpers (pure). A condition list is a `listType: map` keyed by `type`.
//
// - `setCondition` replaces or appends the condition of the same type. `lastTransitionTime` changes only when
//   `status` changes (a new reason or message alone is not a transition); `observedGeneration` is always set,
//   so `kubectl wait --for=condition=X` never trusts a condition written for an older spec.
// - Functions never mutate their input; they return a new list, and `changed` says whether a status write is
//   needed at all (so an unchanged reconcile writes nothing).

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** metav1.Condition as it appears in JSON. Times are RFC 3339 strings with second precision. */
export interface Condition {
  type: string;
  status: ConditionStatus;
  /** CamelCase, machine readable. */
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** What the caller provides; the helper fills in times and the generation. */
export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message?: string;
  /** metadata.generation of the object the condition was computed from. Always pass it. */
  observedGeneration?: number;
}

/** metav1.Time: RFC 3339, UTC, whole seconds. */
export function metav1Time(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export function findCondition(list: readonly Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}

export function isConditionTrue(list: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(list, type)?.status === 'True';
}

/**
 * Sets `input` in `list` at time `nowMs`. Returns the new list and whether anything (status, reason, message,
 * observedGeneration) differs from before.
 */
export function setCondition(
  list: readonly Condition[] | undefined,
  input: ConditionInput,
  nowMs: number,
): { conditions: Condition[]; changed: boolean } {
  const current = list ?? [];
  const old = findCondition(current, input.type);
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message ?? '',
    lastTransitionTime: old !== undefined && old.status === input.status ? old.lastTransitionTime : metav1Time(nowMs),
  };
  if (input.observedGeneration !== undefined) next.observedGeneration = input.observedGeneration;
  const changed =
    old === undefined ||
    old.status !== next.status ||
    old.reason !== next.reason ||
    old.message !== next.message ||
    old.observedGeneration !== next.observedGeneration;
  if (!changed) return { conditions: [...current], changed: false };
  const conditions = old === undefined ? [...current, next] : current.map((c) => (c.type === input.type ? next : c));
  return { conditions, changed: true };
}

/** Removes the condition of `type`. */
export function removeCondition(
  list: readonly Condition[] | undefined,
  type: string,
): { conditions: Condition[]; changed: boolean } {
  const current = list ?? [];
  const conditions = current.filter((c) => c.type !== type);
  return { conditions, changed: conditions.length !== current.length };
}
