/** The statuses of a condition, as the CRDs' enum lists them. */
export const ConditionStatuses = ["True", "False", "Unknown"] as const;

/** A Kubernetes-style status condition. */
export interface Condition {
  type: string;
  status: (typeof ConditionStatuses)[number];
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** A condition as a planner wants it, before transition times are settled. */
export type ConditionInput = Omit<Condition, "lastTransitionTime">;

/**
 * Sets `wanted` into `existing`: the transition time moves only when the status flips, so a status
 * recomputed with the same outcome is byte-identical and causes no write. Order follows `existing`, new types last.
 */
export function setCondition(existing: readonly Condition[], wanted: ConditionInput, nowIso: string): Condition[] {
  const prior = existing.find((c) => c.type === wanted.type);
  const next: Condition = {
    ...wanted,
    lastTransitionTime: prior && prior.status === wanted.status ? prior.lastTransitionTime : nowIso,
  };
  if (!prior) return [...existing, next];
  return existing.map((c) => (c.type === wanted.type ? next : c));
}

/** Sets every condition in `wanted`, in order. */
export function setConditions(existing: readonly Condition[], wanted: readonly ConditionInput[], nowIso: string): Condition[] {
  return wanted.reduce<Condition[]>((acc, w) => setCondition(acc, w, nowIso), [...existing]);
}

/** Finds a condition by type. */
export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
