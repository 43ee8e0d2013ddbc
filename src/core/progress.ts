/**
 * Coalescing of the agent's status writes: nothing when nothing changed; progress (bytes, the phases before
 * Ready, disk usage growing) at most once per `progressIntervalMs`; anything else (an image Ready or Failed,
 * images added or removed, a new generation, a condition, space freed in the cache) within `urgentDelayMs`. A
 * change confined to filesystem free bytes is no change at all until it passes the drift threshold. Pure.
 */
import type { DiskUsage, NodeImageCacheStatus } from "./api-records.js";

export interface WritePolicy {
  /** The least time between two writes that carry only progress. */
  progressIntervalMs: number;
  /** The least time between two writes when something that matters changed; bursts within it coalesce. */
  urgentDelayMs: number;
  /**
   * How far filesystem free bytes must move since the last written status, as a fraction of the filesystem size,
   * before that move alone is worth a write. Other files on a shared filesystem move it all the time.
   */
  freeBytesDriftFraction: number;
  /** The cap on that drift threshold in bytes, so a huge filesystem is not reported only every few terabytes. */
  freeBytesDriftMaxBytes: number;
}

/**
 * Progress at most once per 10 s per node; outcomes within about a second; a move of free bytes alone only past
 * 1 % of the filesystem or 1 GiB, whichever is smaller.
 */
export const DefaultWritePolicy: WritePolicy = { progressIntervalMs: 10_000, urgentDelayMs: 1_000, freeBytesDriftFraction: 0.01, freeBytesDriftMaxBytes: 2 ** 30 };

export type WriteDecision = { action: "none" } | { action: "write" } | { action: "wait"; afterMs: number };

/** What the writer knows: the status last stored (undefined before the first write) and when it wrote it. */
export interface WriteState {
  written?: NodeImageCacheStatus;
  writtenAt?: number;
}

/** Decides whether to write `wanted` now, later, or not at all. */
export function decideStatusWrite(wanted: NodeImageCacheStatus, state: WriteState, now: number, policy: WritePolicy = DefaultWritePolicy): WriteDecision {
  if (state.written && canonical(withSettledDisk(wanted, state.written, policy)) === canonical(state.written)) return { action: "none" };
  const urgent = !state.written || canonical(withoutProgress(wanted)) !== canonical(withoutProgress(state.written)) || spaceFreed(wanted.disk, state.written.disk);
  const gap = urgent ? policy.urgentDelayMs : policy.progressIntervalMs;
  const since = state.writtenAt === undefined ? Infinity : now - state.writtenAt;
  // A clock that went backwards counts as "just written": wait one gap rather than write in a burst.
  if (since >= gap) return { action: "write" };
  return { action: "wait", afterMs: since < 0 ? gap : gap - since };
}

/**
 * True when disk usage moved enough to be worth a write: the cache's own bytes or the filesystem size changed,
 * or free bytes moved by at least the policy's drift threshold.
 */
export function diskUsageMoved(wanted: DiskUsage, written: DiskUsage, policy: WritePolicy = DefaultWritePolicy): boolean {
  if (wanted.cacheBytes !== written.cacheBytes || wanted.filesystemBytes !== written.filesystemBytes) return true;
  const threshold = Math.min(wanted.filesystemBytes * policy.freeBytesDriftFraction, policy.freeBytesDriftMaxBytes);
  return Math.abs(wanted.filesystemFreeBytes - written.filesystemFreeBytes) >= threshold;
}

/**
 * True when the cache holds fewer bytes than the written status says: GC (or a failed fetch's cleanup) freed
 * space, which someone waiting for room wants to see at once rather than at the next progress write.
 */
export function spaceFreed(wanted: DiskUsage | undefined, written: DiskUsage | undefined): boolean {
  return wanted !== undefined && written !== undefined && wanted.cacheBytes < written.cacheBytes;
}

// Compared against what was written, not the previous offer, so slow drift adds up until it passes the threshold.
function withSettledDisk(wanted: NodeImageCacheStatus, written: NodeImageCacheStatus, policy: WritePolicy): NodeImageCacheStatus {
  if (!wanted.disk || !written.disk || diskUsageMoved(wanted.disk, written.disk, policy)) return wanted;
  return { ...wanted, disk: written.disk };
}

/** True when the two statuses differ in more than progress. */
export function differsBeyondProgress(a: NodeImageCacheStatus, b: NodeImageCacheStatus): boolean {
  return canonical(withoutProgress(a)) !== canonical(withoutProgress(b));
}

// Progress is what moves while a fetch runs: bytes, the phases before an outcome, and disk usage.
function withoutProgress(status: NodeImageCacheStatus): unknown {
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
