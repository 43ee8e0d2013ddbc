/** Parameters of capped exponential backoff. */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  factor?: number;
}

/**
 * Delay before retry `attempt` (0-based): base * factor^attempt, capped, with "full jitter" scaled by
 * `jitter` in [0, 1) so callers pass their own randomness.
 * @throws RangeError when attempt is negative or jitter is outside [0, 1)
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, jitter: number): number {
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`Cannot compute backoff: attempt ${attempt} is not a non-negative integer`);
  if (!(jitter >= 0 && jitter < 1)) throw new RangeError(`Cannot compute backoff: jitter ${jitter} is outside [0, 1)`);
  const factor = policy.factor ?? 2;
  const ceiling = Math.min(policy.maxMs, policy.baseMs * factor ** Math.min(attempt, 64));
  // Half fixed, half jittered: never zero, yet spreads a thundering herd.
  return Math.round(ceiling / 2 + (ceiling / 2) * jitter);
}
