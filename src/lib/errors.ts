/**
 * The project's error classes. Each has a stable `code` that logs, metrics and `--json` output use, and
 * `lib/exit.ts` maps each to one process exit code.
 */

import type { FetchFailReason } from "../core/fetch-fail-reasons.js";
import type { RejectReason } from "../core/reject-reasons.js";

export type { FetchFailReason } from "../core/fetch-fail-reasons.js";
export type { RejectReason } from "../core/reject-reasons.js";

/**
 * The base of every error the project throws on purpose. Such an error is an expected outcome (a refused
 * image, a failed source, a full disk, a bad flag, an API refusal): logs show its code, reason and message on
 * one line, never its stack, which lib/log.ts keeps for the unexpected.
 */
export abstract class BasecacheError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The image is unsafe, corrupt, too large or does not match its checksum. Never retried as is. */
export class ImageRejectedError extends BasecacheError {
  readonly code = "IMAGE_REJECTED";
  constructor(
    readonly reason: RejectReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The origin failed: HTTP error, network error, bad redirect. `retryable` says whether trying again may help. */
export class FetchError extends BasecacheError {
  readonly code = "FETCH_FAILED";
  constructor(
    readonly reason: FetchFailReason,
    message: string,
    readonly details: { status?: number; retryable: boolean },
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  get status(): number | undefined {
    return this.details.status;
  }
  get retryable(): boolean {
    return this.details.retryable;
  }
}

/** No room for the image in the base dir's filesystem or the cache budget. */
export class DiskFullError extends BasecacheError {
  readonly code = "DISK_FULL";
  readonly reason = "disk-full";
}

/**
 * A file at one of our names (a base, its sidecar, lock or work files, an instance disk's temporary name) that
 * basecache did not write: a symlink, a directory, a FIFO, a socket, a device or a file with more than one
 * name. It is reported, never used, never followed and never removed; an operator has to look at it.
 */
export class ForeignFileError extends BasecacheError {
  readonly code = "FOREIGN_FILE";
  readonly reason = "foreign-file";
  constructor(
    readonly path: string,
    readonly what: string,
    message?: string,
    options?: ErrorOptions,
  ) {
    super(message ?? `Cannot use "${path}": it is ${what}, not a file basecache wrote; it was left alone (remove it if nothing needs it)`, options);
  }
}

/** An external tool (qemu-img) failed, timed out or was killed. */
export class ToolError extends BasecacheError {
  readonly code = "TOOL_FAILED";
  constructor(
    message: string,
    readonly details: {
      tool: string;
      exitCode?: number | undefined;
      signal?: string | undefined;
      timedOut: boolean;
      stderrTail: string;
    },
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Bad flags, bad kubeconfig, invalid input given by the operator. */
export class ConfigError extends BasecacheError {
  readonly code = "CONFIG_INVALID";
}

/**
 * A reconcile error that retrying cannot fix (the API server refuses the object we computed as invalid): the
 * work queue does not retry it; the key comes back when an object it depends on changes.
 */
export class TerminalError extends BasecacheError {
  readonly code = "TERMINAL";
}

/** A CLI deadline ran out (`basecache fetch --timeout`); exit 124, as timeout(1) does. */
export class DeadlineError extends BasecacheError {
  readonly code = "DEADLINE";
}

/**
 * Work stopped on purpose: a signal, a shutdown, a cancelled fetch, a lost lease. The reason an
 * AbortController is aborted with, so that whoever catches the error can tell a stop from a failure.
 */
export class AbortedError extends BasecacheError {
  readonly code = "ABORTED";
}

/** Narrows an unknown thrown value to an Error, wrapping anything else. */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
