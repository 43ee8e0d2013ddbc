/**
 * Page-cache discipline for a large file written as it downloads: when to start a background fdatasync and
 * when the writer must hold new writes. Without it a disk slower than the network lets dirty pages pile up
 * until the kernel's own thresholds (a share of the node's memory, or the agent cgroup's limit) throttle every
 * writer on the node. With it, the bytes we wrote that are not yet durable stay under `limitBytes`.
 *
 * The writer keeps three counters, all in bytes it hands to the file (zeros skipped as holes count nothing):
 * `writing` (issued, not landed), `landed` (landed, not covered by a sync) and `syncing` (landed before the
 * sync in flight started, so that sync makes them durable). An fdatasync covers only what landed before it.
 */

/** The default interval: a background sync per 32 MiB written, new writes held while 64 MiB are not durable. */
export const DefaultWriteBackBytes = 32 * 1024 * 1024;

/** When to sync and when to hold writes. */
export interface WriteBackPolicy {
  /** Start a background sync once this many landed bytes are not covered by one. */
  startBytes: number;
  /** Hold a new write while it would make more than this many bytes not durable. */
  limitBytes: number;
}

/** What the writer has in flight, in bytes written to the file. */
export interface WriteBackState {
  /** Issued to the file, not landed yet. */
  writing: number;
  /** Landed, not covered by any sync. */
  landed: number;
  /** Covered by the sync in flight (landed before it started). */
  syncing: number;
  /** A sync is in flight (one at a time: a second fdatasync would only wait for the first). */
  syncInFlight: boolean;
}

/** What the writer does next. */
export interface WriteBackStep {
  /** Start a sync now: it covers `landed`, which moves to `syncing`. */
  startSync: boolean;
  /**
   * Hold the write until the next event (a write landing or the sync landing), then ask again. Only ever true
   * while something is in flight that will produce that event, so a writer that follows it cannot hang.
   */
  wait: boolean;
}

/**
 * The policy for an interval of `bytes` (0 turns write-back off): start a sync at the interval, hold writes
 * at twice it, so that one sync can run while the next interval's bytes are written.
 */
export function writeBackPolicy(bytes: number): WriteBackPolicy | undefined {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`Cannot use a write-back interval of ${bytes} bytes: expected a whole number of at least 0`);
  if (bytes === 0) return undefined;
  return { startBytes: bytes, limitBytes: 2 * bytes };
}

/** Bytes written that are not known durable. */
export function unsyncedBytes(s: WriteBackState): number {
  return s.writing + s.landed + s.syncing;
}

/**
 * Decides, before a write of `nextBytes` (0 when the writer only reports that something landed), whether to
 * start a sync and whether the write must wait. A write larger than the limit on its own is let through once
 * nothing else is in flight: holding it could never help.
 */
export function planWriteBack(s: WriteBackState, p: WriteBackPolicy, nextBytes: number): WriteBackStep {
  const over = nextBytes > 0 && unsyncedBytes(s) + nextBytes > p.limitBytes;
  const startSync = !s.syncInFlight && s.landed > 0 && (s.landed >= p.startBytes || over);
  const wait = over && (s.syncInFlight || startSync || s.writing > 0);
  return { startSync, wait };
}

/** The state once a sync starts: it covers what has landed. */
export function syncStarted(s: WriteBackState): WriteBackState {
  return { ...s, landed: 0, syncing: s.syncing + s.landed, syncInFlight: true };
}

/** The state once the sync in flight lands: what it covered is durable. */
export function syncLanded(s: WriteBackState): WriteBackState {
  return { ...s, syncing: 0, syncInFlight: false };
}

/** The state once a write of `issued` bytes is issued. */
export function writeIssued(s: WriteBackState, issued: number): WriteBackState {
  return { ...s, writing: s.writing + issued };
}

/**
 * The state once a write issued as `issued` bytes lands, of which `written` reached the file (the rest were
 * zero blocks left as holes, or the write failed and nothing is counted).
 */
export function writeLanded(s: WriteBackState, issued: number, written: number): WriteBackState {
  return { ...s, writing: s.writing - issued, landed: s.landed + written };
}

/** Nothing written yet. */
export const IdleWriteBack: WriteBackState = { writing: 0, landed: 0, syncing: 0, syncInFlight: false };
