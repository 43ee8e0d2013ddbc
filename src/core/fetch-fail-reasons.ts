/**
 * The one list of reasons a source failed: the `reason` of a `FetchError`, of `--json` output and of a `Failed`
 * status entry. These are retried with backoff (a rejection is not). Adding a reason is one row.
 */

/** One source-failure reason and what it means. */
export interface FetchFailReasonRow {
  readonly reason: string;
  /** What went wrong, in one line. */
  readonly doc: string;
}

/** Every source-failure reason. */
export const FetchFailReasonRows = [
  { reason: "http-status", doc: "The origin answered with an error status" },
  { reason: "unreachable", doc: "The origin could not be reached: connection refused, DNS failure, timeout" },
  { reason: "bad-redirect", doc: "A redirect to a scheme other than HTTP(S), or without a usable location" },
  { reason: "too-many-redirects", doc: "More redirects than we follow, e.g. a loop" },
  { reason: "retries-exhausted", doc: "Every retry of one attempt failed" },
  { reason: "bad-response", doc: "The origin's answer is not valid HTTP: a bad Content-Length, a status line that is not HTTP" },
  { reason: "truncated", doc: "The body ended before its declared length" },
  { reason: "stalled", doc: "The body stopped arriving for longer than the stall timeout" },
  { reason: "registry", doc: "An OCI registry refused or failed: auth, manifest, missing layer" },
] as const satisfies readonly FetchFailReasonRow[];

/** Every source-failure reason, in the order of `FetchFailReasonRows`. */
export const FetchFailReasons = FetchFailReasonRows.map((r) => r.reason);

/** A stable, machine-readable reason for a source that failed. */
export type FetchFailReason = (typeof FetchFailReasons)[number];

const known: ReadonlySet<string> = new Set(FetchFailReasons);

/** True when `x` is one of the source-failure reasons. */
export function isFetchFailReason(x: unknown): x is FetchFailReason {
  return typeof x === "string" && known.has(x);
}
