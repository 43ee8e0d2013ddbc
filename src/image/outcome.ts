/**
 * The one mapping from the end of a fetch (a result or a thrown error) to status, reason and message, shared by
 * `basecache fetch --json`, the agent's status and the lock outcome that coalesced waiters read.
 */
import { isFetchFailReason } from "../core/fetch-fail-reasons.js";
import { isRejectReason } from "../core/reject-reasons.js";
import { AbortedError, DeadlineError, DiskFullError, FetchError, ForeignFileError, ImageRejectedError, ToolError } from "../lib/errors.js";
import type { LockOutcome } from "./lock.js";

/** Status of a fetch: the base is ready, the image was refused, or the fetch failed. */
export type FetchStatus = "ready" | "rejected" | "failed";

/** A stable, machine-readable description of how a fetch ended. */
export interface FetchOutcome {
  status: FetchStatus;
  /** "cached", "fetched", a RejectReason, a FetchFailReason, "disk-full", "foreign-file", "tool-failed", "aborted", "deadline" or "internal". */
  reason: string;
  message: string;
}

/** Describes a thrown error (pure: no I/O). */
export function describeOutcome(err: unknown): FetchOutcome {
  if (err instanceof ImageRejectedError) return { status: "rejected", reason: err.reason, message: err.message };
  if (err instanceof FetchError) return { status: "failed", reason: err.reason, message: err.message };
  if (err instanceof DiskFullError) return { status: "failed", reason: err.reason, message: err.message };
  if (err instanceof ForeignFileError) return { status: "failed", reason: err.reason, message: err.message };
  if (err instanceof ToolError) return { status: "failed", reason: "tool-failed", message: err.message };
  if (err instanceof DeadlineError) return { status: "failed", reason: "deadline", message: err.message };
  if (err instanceof AbortedError || (err instanceof Error && err.name === "AbortError")) return { status: "failed", reason: "aborted", message: err.message };
  return { status: "failed", reason: "internal", message: err instanceof Error ? err.message : String(err) };
}

/** The lock outcome a holder of the request with key `request` leaves for coalesced waiters. */
export function lockOutcomeFor(err: unknown, request: string): LockOutcome {
  const o = describeOutcome(err);
  return { ...o, errorName: err instanceof Error ? err.name : "Error", request };
}

/**
 * Rebuilds the error a holder ended with, for a waiter of the request with key `request` to report the same
 * result; undefined when the waiter should try the fetch itself: the holder worked on another request (another
 * source, checksum or limit: its verdict is not ours), was stopped, failed in a way that is not about the image, or
 * left a reason this version does not know.
 */
export function errorFromLockOutcome(o: LockOutcome, request: string): Error | undefined {
  if (o.request !== request) return undefined;
  switch (o.errorName) {
    case "ImageRejectedError":
      return isRejectReason(o.reason) ? new ImageRejectedError(o.reason, o.message) : undefined;
    case "FetchError":
      return isFetchFailReason(o.reason) ? new FetchError(o.reason, o.message, { retryable: false }) : undefined;
    case "DiskFullError":
      return new DiskFullError(o.message);
    default:
      return undefined;
  }
}
