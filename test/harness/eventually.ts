import { setTimeout as delay } from "node:timers/promises";

export interface EventuallyOptions {
  /** Give up after this long; default 30 s. */
  timeoutMs?: number;
  /** Pause between attempts; default 100 ms. */
  intervalMs?: number;
  /** Named in the timeout error. */
  description?: string;
}

/**
 * Calls `fn` until it returns without throwing, and returns what it returned. Put assertions inside `fn`;
 * when time runs out the last assertion error is rethrown as the cause, so a failing test says what it saw.
 */
const MinAttempts = 3;

export async function eventually<T>(fn: () => T | Promise<T>, opts: EventuallyOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 100;
  // Monotonic: the wall clock of a shared VM can be stepped, which would end (or stretch) the wait at random.
  const deadline = performance.now() + timeoutMs;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      return await fn();
    } catch (err) {
      // NOTE: at least a few attempts, whatever the clock says: when the shared VM stalls this process for the
      // whole timeout (seen in CI: one attempt in 30 s), the condition never had a fair chance to be seen.
      if (performance.now() >= deadline && attempts >= MinAttempts) {
        const what = opts.description ? ` (${opts.description})` : "";
        const last = err instanceof Error ? err.message : String(err);
        throw new Error(`Condition not met within ${timeoutMs} ms after ${attempts} attempts${what}: ${last}`, { cause: err });
      }
    }
    await delay(intervalMs);
  }
}
