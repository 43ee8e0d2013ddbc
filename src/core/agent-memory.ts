/**
 * What the node agent remembers of each image between passes: the fetch under way, the last failure and the
 * definition a base on disk was last checked against. The agent's fetch runner owns the memory; these are its
 * records and the pure rules that change them.
 */
import type { ImagePhase } from "./api-records.js";
import { backoffDelay, type BackoffPolicy } from "./backoff.js";

/** A fetch under way, as the agent tracks it in memory. */
export interface RunningFetch {
  /** definitionKey of the definition being fetched. */
  definitionKey: string;
  phase: Exclude<ImagePhase, "Ready" | "Failed">;
  bytesDone?: number;
  bytesTotal?: number;
}

/**
 * The last failed attempt of an image. A rejection waits for the image's definition to change (by definitionKey,
 * or by generation when the key was lost with a restart); a failed source retries at `retryAt`.
 */
export interface FetchFailure {
  kind: "rejected" | "failed";
  reason: string;
  message: string;
  attempts: number;
  /** Epoch ms of the next attempt, for kind "failed". */
  retryAt?: number;
  definitionKey?: string;
  generation: number;
}

/** What the agent remembers of one image id. */
export interface ImageMemory {
  running?: RunningFetch;
  failure?: FetchFailure;
  /** The definitionKey a base on disk was last checked against (checksum, size limit) by the pipeline. */
  verified?: string;
}

/** Retry policy for failed sources: 5 s doubling to 2 min, so a node converges soon after its origin recovers. */
export const DefaultRetryPolicy: BackoffPolicy = { baseMs: 5_000, maxMs: 2 * 60_000 };

/**
 * Records a failed fetch: a rejection waits for a new definition; any other failure retries after capped
 * exponential backoff counted from the previous failures of the same definition.
 */
export function recordFailure(
  prior: FetchFailure | undefined,
  outcome: { kind: "rejected" | "failed"; reason: string; message: string },
  at: { now: number; generation: number; definitionKey: string; jitter: number; policy: BackoffPolicy },
): FetchFailure {
  const attempts = prior && prior.definitionKey === at.definitionKey ? prior.attempts + 1 : 1;
  const base = { kind: outcome.kind, reason: outcome.reason, attempts, definitionKey: at.definitionKey, generation: at.generation };
  if (outcome.kind === "rejected") return { ...base, message: outcome.message };
  const retryAt = at.now + backoffDelay(at.policy, attempts - 1, at.jitter);
  return { ...base, retryAt, message: `${outcome.message} (attempt ${attempts}; next at ${new Date(retryAt).toISOString()})` };
}
