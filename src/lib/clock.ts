import { ConfigError } from "./errors.js";

/**
 * Time as the edges see it, in milliseconds; the processes inject theirs so that nothing else reads the time.
 * A wall clock (epoch ms) stamps what others read (status times, leases, Events, ages); a monotonic one
 * measures durations and intervals, which a stepped wall clock must not stretch or shorten.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** The process's monotonic clock (performance.now): for durations only, never for timestamps. */
export const monotonicClock: Clock = { now: () => performance.now() };

/** A clock whose time is the system time plus a fixed offset (BASECACHE_CLOCK_OFFSET_MS in tests). */
export function offsetClock(offsetMs: number): Clock {
  return { now: () => Date.now() + offsetMs };
}

/**
 * The process's wall clock: system time shifted by BASECACHE_CLOCK_OFFSET_MS (tests pass retention ages with it).
 * @throws ConfigError when the offset is not a whole number of milliseconds
 */
export function clockFromEnv(env: NodeJS.ProcessEnv): Clock {
  const raw = env.BASECACHE_CLOCK_OFFSET_MS;
  if (raw === undefined || raw === "") return systemClock;
  const offset = Number(raw);
  if (!Number.isSafeInteger(offset)) throw new ConfigError(`Cannot use BASECACHE_CLOCK_OFFSET_MS "${raw}": expected a whole number of milliseconds`);
  return offsetClock(offset);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
