/**
 * The second half of a GC plan, after each entry has its own decision: under a cache budget, which unused bases
 * to evict (least recently used first, see watermarks.ts), and the sidecars and locks that go with a removed
 * base. Pure: each step returns new decisions and never changes the ones it was given.
 */
import type { GcDecision } from "./gc-records.js";
import { planEvictions, type EvictionCandidate, type GcBudget } from "./watermarks.js";

/** The cache's own bytes (bases, sidecars, locks, temps; never unknown files) before and after the plan. */
export interface GcUsage {
  cacheBytes: number;
  afterBytes: number;
  highBytes?: number;
  lowBytes?: number;
  /** Still above the high watermark after every allowed eviction. */
  overBudget: boolean;
  /** The reserved bytes fit within the budget (true without a budget or a reserve). */
  fits: boolean;
}

/** What the budget step needs besides the decisions. */
export interface BudgetFacts {
  now: number;
  budget?: GcBudget;
  /** Bytes of an image about to arrive (see planEvictions). */
  reserveBytes?: number;
  /** Base name -> mtime of the base file, the tie-break between bases unused equally long. */
  mtimes: ReadonlyMap<string, number>;
}

/**
 * Turns the bases a budget evicts into Evicted deletions, and reports the usage before and after. Without a
 * budget only the usage is computed.
 */
export function planBudget(decisions: readonly GcDecision[], facts: BudgetFacts): { decisions: GcDecision[]; usage: GcUsage } {
  const cacheBytes = sumBytes(decisions.filter((d) => d.kind !== "unknown"));
  const followers = followerBytes(decisions);
  const deleted = sumBytes(decisions.filter((d) => d.action === "delete")) + sumFollowersOfDeleted(decisions, followers);
  if (!facts.budget) return { decisions: [...decisions], usage: { cacheBytes, afterBytes: cacheBytes - deleted, overBudget: false, fits: true } };
  const candidates: EvictionCandidate[] = decisions
    .filter((d) => d.kind === "base" && d.reason === "WithinRetention")
    .map((d) => ({
      base: d.name,
      bytes: d.bytes + (followers.get(d.name) ?? 0),
      unusedSince: d.unusedSince ?? facts.now,
      mtimeMs: facts.mtimes.get(d.name) ?? 0,
    }));
  const result = planEvictions(facts.budget, cacheBytes - deleted, candidates, facts.reserveBytes ?? 0);
  const evicted = new Set(result.evict);
  const next = decisions.map((d): GcDecision => {
    if (d.kind !== "base" || !evicted.has(d.name)) return d;
    return { ...d, action: "delete", reason: "Evicted", message: `Cache above its high watermark; least recently used unused base (${d.message})` };
  });
  const { afterBytes, highBytes, lowBytes, overBudget, fits } = result;
  return { decisions: next, usage: { cacheBytes, afterBytes, highBytes, lowBytes, overBudget, fits } };
}

/** Sidecars and locks kept only for their base go with it when it is removed. */
export function settleFollowers(decisions: readonly GcDecision[]): GcDecision[] {
  const removed = new Set(decisions.filter((d) => d.kind === "base" && d.action === "delete").map((d) => d.name));
  return decisions.map((d): GcDecision => {
    if (d.reason !== "BaseKept" || !d.base || !removed.has(d.base)) return d;
    return { ...d, action: "delete", reason: "BaseRemoved", message: "Its base is removed" };
  });
}

// Bytes of kept-because-of-base sidecars and locks, per base: they go when their base goes.
function followerBytes(decisions: readonly GcDecision[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of decisions) if (d.reason === "BaseKept" && d.base) out.set(d.base, (out.get(d.base) ?? 0) + d.bytes);
  return out;
}

function sumFollowersOfDeleted(decisions: readonly GcDecision[], followers: ReadonlyMap<string, number>): number {
  return decisions.filter((d) => d.kind === "base" && d.action === "delete").reduce((n, d) => n + (followers.get(d.name) ?? 0), 0);
}

function sumBytes(decisions: readonly GcDecision[]): number {
  return decisions.reduce((n, d) => n + d.bytes, 0);
}

/** The cache's own bytes once `removed` are gone: what a pass leaves, as opposed to what it found. */
export function cacheBytesAfter(cacheBytes: number, removed: readonly GcDecision[]): number {
  return cacheBytes - sumBytes(removed.filter((d) => d.kind !== "unknown"));
}
