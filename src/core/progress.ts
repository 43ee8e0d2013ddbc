/**
 * Coalescing of the agent's status writes: nothing when nothing changed; progress (bytes, the phases before
 * Ready, disk usage) at most once per `progressIntervalMs`; anything else (an image Ready or Failed, images
 * added or removed, a new generation, a condition) within `urgentDelayMs`. Pure.
 */
import type { AgentStatus } from "./agent-plan.js";

export interface WritePolicy {
  /** The least time between two writes that carry only progress. */
  progressIntervalMs: number;
  /** The least time between two writes when something that matters changed; bursts within it coalesce. */
  urgentDelayMs: number;
}

/** Progress at most once per 10 s per node; outcomes within about a second. */
export const DefaultWritePolicy: WritePolicy = { progressIntervalMs: 10_000, urgentDelayMs: 1_000 };

export type WriteDecision = { action: "none" } | { action: "write" } | { action: "wait"; afterMs: number };

/** What the writer knows: the status last stored (undefined before the first write) and when it wrote it. */
export interface WriteState {
  written?: AgentStatus;
  writtenAt?: number;
}

/** Decides whether to write `wanted` now, later, or not at all. */
export function decideStatusWrite(wanted: AgentStatus, state: WriteState, now: number, policy: WritePolicy = DefaultWritePolicy): WriteDecision {
  if (state.written && canonical(wanted) === canonical(state.written)) return { action: "none" };
  const urgent = !state.written || canonical(withoutProgress(wanted)) !== canonical(withoutProgress(state.written));
  const gap = urgent ? policy.urgentDelayMs : policy.progressIntervalMs;
  const since = state.writtenAt === undefined ? Infinity : now - state.writtenAt;
  // A clock that went backwards counts as "just written": wait one gap rather than write in a burst.
  if (since >= gap) return { action: "write" };
  return { action: "wait", afterMs: since < 0 ? gap : gap - since };
}

/** True when the two statuses differ in more than progress. */
export function differsBeyondProgress(a: AgentStatus, b: AgentStatus): boolean {
  return canonical(withoutProgress(a)) !== canonical(withoutProgress(b));
}

// Progress is what moves while a fetch runs: bytes, the phases before an outcome, and disk usage.
function withoutProgress(status: AgentStatus): unknown {
  return {
    observedGeneration: status.observedGeneration,
    conditions: status.conditions ?? [],
    images: (status.images ?? []).map((i) => {
      const inFlight = i.phase === "Pending" || i.phase === "Downloading" || i.phase === "Converting";
      return {
        id: i.id,
        base: i.base,
        phase: inFlight ? "InFlight" : i.phase,
        reason: i.reason,
        message: inFlight ? undefined : i.message,
        virtualSize: i.virtualSize,
        observedGeneration: i.observedGeneration,
      };
    }),
  };
}

/** JSON with sorted keys and undefined dropped, so equal statuses compare equal whatever their key order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}
