/**
 * The cache budget: high and low watermarks over the cache's own allocated bytes (never other files on the
 * same filesystem), and least-recently-used eviction of bases that nothing wants or uses. Pure.
 */

/** A cache budget: eviction starts above `highWatermark * limitBytes` and stops at `lowWatermark * limitBytes`. */
export interface GcBudget {
  limitBytes: number;
  /** Fraction of the limit in (0, 1]. */
  highWatermark: number;
  /** Fraction of the limit in [0, highWatermark]. */
  lowWatermark: number;
}

/** A base that may be evicted: not wanted, not in use, only kept by its retention age. */
export interface EvictionCandidate {
  base: string;
  /** Allocated bytes freed by removing it (with its sidecar and lock). */
  bytes: number;
  /** When it was first seen unused; the least recently used goes first. */
  unusedSince: number;
  mtimeMs: number;
}

/** Which candidates to evict, and the usage that results. */
export interface EvictionPlan {
  evict: string[];
  afterBytes: number;
  highBytes: number;
  lowBytes: number;
  /** Still above the high watermark after every allowed eviction. */
  overBudget: boolean;
  /** Room remains within the limit for the reserved bytes (always true without a reserve). */
  fits: boolean;
}

/**
 * Checks a budget's numbers.
 * @throws RangeError when the limit is not a positive integer or the watermarks are not 0 <= low <= high <= 1
 */
export function validateBudget(budget: GcBudget): GcBudget {
  const { limitBytes, highWatermark: high, lowWatermark: low } = budget;
  if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) throw new RangeError(`Cannot use cache budget ${limitBytes}: not a positive number of bytes`);
  if (!(high > 0 && high <= 1)) throw new RangeError(`Cannot use high watermark ${high}: expected a fraction in (0, 1]`);
  if (!(low >= 0 && low <= high)) throw new RangeError(`Cannot use low watermark ${low}: expected a fraction in [0, high watermark ${high}]`);
  return budget;
}

/** Orders candidates least recently used first: unused longest, then oldest file, then name. */
export function orderLeastRecentlyUsed(candidates: readonly EvictionCandidate[]): EvictionCandidate[] {
  return [...candidates].sort((a, b) => a.unusedSince - b.unusedSince || a.mtimeMs - b.mtimeMs || (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
}

/**
 * Above the high mark, evicts least recently used candidates until usage is at or below the low mark.
 * `reserveBytes` counts an image about to arrive: when even evicting every candidate leaves no room for it
 * within the limit, nothing is evicted (that would destroy for nothing) and `fits` is false.
 */
export function planEvictions(budget: GcBudget, usedBytes: number, candidates: readonly EvictionCandidate[], reserveBytes = 0): EvictionPlan {
  const highBytes = Math.floor(budget.limitBytes * budget.highWatermark);
  const lowBytes = Math.floor(budget.limitBytes * budget.lowWatermark);
  const evict: string[] = [];
  let after = usedBytes;
  if (after + reserveBytes > highBytes) {
    for (const c of orderLeastRecentlyUsed(candidates)) {
      if (after + reserveBytes <= lowBytes) break;
      evict.push(c.base);
      after -= c.bytes;
    }
  }
  if (reserveBytes > 0 && after + reserveBytes > budget.limitBytes) {
    return { evict: [], afterBytes: usedBytes, highBytes, lowBytes, overBudget: usedBytes > highBytes, fits: false };
  }
  return { evict, afterBytes: after, highBytes, lowBytes, overBudget: after > highBytes, fits: true };
}
