/**
 * The records of garbage collection: what the agent gathers for one decision pass (the base dir's entries,
 * wants, uses, the durable state) and the plan that comes back, one decision per entry. The rules that turn
 * one into the other are in gc.ts; the reasons are documented on GcReason and in docs/design/gc-rules.md.
 */
import type { GcUsage } from "./gc-budget.js";
import type { GcBudget } from "./watermarks.js";

/** The durable record of GC observations, kept in the base dir (see docs/design/gc-rules.md). */
export const GcStateFileName = ".basecache-gc.json";
/** The state file while it is being written, before its atomic rename. */
export const GcStateTempFileName = ".basecache-gc.json.tmp";
/** Default retention of an unused base when no ImageCache said otherwise: 24 hours. */
export const DefaultRetentionMs = 24 * 60 * 60 * 1000;

/** What GC remembers about one base between passes. */
export interface GcBaseRecord {
  /** When a pass first saw the base neither wanted nor in use (epoch ms); absent while referenced. */
  unusedSince?: number;
  /** The retention the ImageCaches last gave this base while they wanted it. */
  retentionMs?: number;
  /** The image id the base was last wanted as, for logs and Events after it is no longer wanted. */
  imageId?: string;
}

/** GC's durable memory, keyed by base name. */
export interface GcState {
  version: 1;
  bases: Record<string, GcBaseRecord>;
}

/** One directory entry of the base dir, as the edge stat'ed it. */
export interface GcEntry {
  name: string;
  type: "file" | "directory" | "symlink" | "other";
  /** Names of the file (st_nlink); a regular file with more than one is a hard link, not ours. Default 1. */
  links?: number;
  /** Bytes allocated on disk (st_blocks * 512); bases are sparse, so never the apparent size. */
  allocatedBytes: number;
  mtimeMs: number;
  /** A live process has the file open or holds its lock. */
  held: boolean;
}

/** A base that an ImageCache wants on this node. */
export interface GcWant {
  base: string;
  imageId: string;
  retentionMs: number;
}

/** One user of a base: an instance disk (`disk <path>`) or a pod (`pod <ns>/<name>`). */
export interface GcUse {
  base: string;
  by: string;
}

/** Everything one GC decision depends on. */
export interface GcInput {
  now: number;
  entries: readonly GcEntry[];
  wanted: readonly GcWant[];
  uses: readonly GcUse[];
  /** Why the set of uses may be incomplete (a disk that could not be inspected, pods not listed); any means no base goes. */
  uncertainties: readonly string[];
  state: GcState;
  defaultRetentionMs: number;
  budget?: GcBudget;
  /** Bytes of an image about to arrive, made room for under the budget (see planEvictions). */
  reserveBytes?: number;
  dryRun?: boolean;
  /** Bases a re-verification found changed since they were stored: removed once nothing uses them, wanted or not. */
  corrupt?: readonly string[];
}

export type GcFileKind = "base" | "sidecar" | "temp" | "lock" | "pointer" | "gc-state" | "unknown";
export type GcAction = "keep" | "delete" | "report";

/**
 * Why an entry is kept, deleted or reported.
 * - InUse: an instance disk or a pod on this node uses the base. Open: a live process has the base open.
 * - Wanted: an ImageCache wants it here. Busy: a fetch of the same base is under way (a held temp or lock).
 * - ReferencesIncomplete: some use could not be determined, so no base is removed this pass.
 * - Corrupt: re-verification found the base changed since it was stored and nothing uses it: removed, so that
 *   a wanted image is fetched again.
 * - WithinRetention / RetentionExpired: unused, for less / at least the retention age. Evicted: over the high watermark.
 * - BaseKept / BaseRemoved: a sidecar follows its base. Orphaned: a sidecar without a base.
 * - Tracked / Untracked: a tracked image's `.current` pointer, kept while the image is wanted here, removed after.
 * - Held / Abandoned: a temp file or lock that a live process holds / that nobody holds.
 * - Resumable: a `.part` with its resume record (or the record), of a wanted base not yet on disk: the next fetch
 *   continues it (core/resume-rules.ts) or removes it.
 * - UnknownName / NotARegularFile: not ours by name or type (a symlink, directory, FIFO, socket, device, or a
 *   file with more than one name); reported, never deleted, never followed. GcState: GC's own record.
 */
export type GcReason =
  | "InUse"
  | "Corrupt"
  | "Open"
  | "Wanted"
  | "Busy"
  | "ReferencesIncomplete"
  | "WithinRetention"
  | "RetentionExpired"
  | "Evicted"
  | "BaseKept"
  | "BaseRemoved"
  | "Orphaned"
  | "Tracked"
  | "Untracked"
  | "Held"
  | "Abandoned"
  | "Resumable"
  | "UnknownName"
  | "NotARegularFile"
  | "GcState";

/** The decision for one entry. */
export interface GcDecision {
  name: string;
  kind: GcFileKind;
  base?: string;
  action: GcAction;
  reason: GcReason;
  message: string;
  /** Allocated bytes of this entry alone. */
  bytes: number;
  /** Who uses the base, for InUse. */
  users?: string[];
  /** When the base was first seen unused, for WithinRetention, RetentionExpired and Evicted. */
  unusedSince?: number;
  imageId?: string;
}

/** The outcome of one GC decision pass. */
export interface GcPlan {
  dryRun: boolean;
  /** One per entry, sorted by name. */
  decisions: GcDecision[];
  /** The state to persist after the pass (a dry run persists nothing). */
  state: GcState;
  usage: GcUsage;
}

/** An empty GC state. */
export function emptyGcState(): GcState {
  return { version: 1, bases: {} };
}
