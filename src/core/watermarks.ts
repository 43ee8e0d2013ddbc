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

/** Above the high mark, evicts least recently used candidates until usage is at or below the low mark. */
export function planEvictions(budget: GcBudget, usedBytes: number, candidates: readonly EvictionCandidate[]): EvictionPlan {
  const highBytes = Math.floor(budget.limitBytes * budget.highWatermark);
  const lowBytes = Math.floor(budget.limitBytes * budget.lowWatermark);
  const evict: string[] = [];
  let after = usedBytes;
  if (after > highBytes) {
    for (const c of orderLeastRecentlyUsed(candidates)) {
      if (after <= lowBytes) break;
      evict.push(c.base);
      after -= c.bytes;
    }
  }
  return { evict, afterBytes: after, highBytes, lowBytes, overBudget: after > highBytes };
}

/** Whether an image of `neededBytes` fits in the budget, and which candidates must go to make room. */
export interface RoomPlan {
  fits: boolean;
  evict: string[];
  afterBytes: number;
}

/**
 * Makes room for `neededBytes` more: when usage plus the newcomer would pass the high mark, evicts least
 * recently used candidates down toward the low mark. It fits when the total stays within the limit; when even
 * evicting every candidate cannot make it fit, nothing is evicted, since that would destroy for nothing.
 */
export function planRoom(budget: GcBudget, usedBytes: number, candidates: readonly EvictionCandidate[], neededBytes: number): RoomPlan {
  const highBytes = Math.floor(budget.limitBytes * budget.highWatermark);
  const lowBytes = Math.floor(budget.limitBytes * budget.lowWatermark);
  if (usedBytes + neededBytes <= highBytes) return { fits: true, evict: [], afterBytes: usedBytes };
  const evict: string[] = [];
  let after = usedBytes;
  for (const c of orderLeastRecentlyUsed(candidates)) {
    if (after + neededBytes <= lowBytes) break;
    evict.push(c.base);
    after -= c.bytes;
  }
  if (after + neededBytes > budget.limitBytes) return { fits: false, evict: [], afterBytes: usedBytes };
  return { fits: true, evict, afterBytes: after };
}
