/**
 * The node agent's plan: from its NodeImageCache spec, the bases on disk, what the agent remembers of its
 * fetches and the time, decide which images to fetch now, which running fetches to cancel, the status to
 * write and when to look again. Pure; src/agent/reconcile.ts gathers and applies.
 */
import { createHash } from "node:crypto";
import type { DiskUsage, ImagePhase, ImageSpec, NodeImageCacheStatus, NodeImageStatus } from "./api-records.js";
import { backoffDelay, type BackoffPolicy } from "./backoff.js";
import { setConditions, type ConditionInput } from "./conditions.js";
import { baseNameFor } from "./names.js";

/** A fetch under way, as the agent tracks it in memory. */
export interface RunningFetch {
  fingerprint: string;
  phase: Exclude<ImagePhase, "Ready" | "Failed">;
  bytesDone?: number;
  bytesTotal?: number;
}

/**
 * The last failed attempt of an image. A rejection waits for the image's definition to change (by fingerprint,
 * or by generation when the fingerprint was lost with a restart); a failed source retries at `retryAt`.
 */
export interface FetchFailure {
  kind: "rejected" | "failed";
  reason: string;
  message: string;
  attempts: number;
  /** Epoch ms of the next attempt, for kind "failed". */
  retryAt?: number;
  fingerprint?: string;
  generation: number;
}

/** What the agent remembers of one image id. */
export interface ImageMemory {
  running?: RunningFetch;
  failure?: FetchFailure;
  /** The fingerprint a base on disk was last checked against (checksum, size limit) by the pipeline. */
  verified?: string;
}

/** Everything one agent plan depends on. */
export interface AgentPlanInput {
  now: number;
  generation: number;
  wanted: readonly ImageSpec[];
  /** Complete bases on disk, by base name, with the virtual size their sidecar records. */
  onDisk: ReadonlyMap<string, { virtualSize?: number }>;
  memory: Readonly<Record<string, ImageMemory>>;
  /** The status as last written, for condition transition times. */
  prior?: NodeImageCacheStatus;
  disk?: DiskUsage;
  concurrency: number;
  /** Under a cache budget: what the last GC pass found (absent without a budget, or before the first pass). */
  budget?: { overBudget: boolean; cacheBytes: number; highBytes: number };
}

/** What the agent does next. */
export interface AgentPlan {
  /** Images to start fetching now, in spec order, at most `concurrency` running in all. */
  start: ImageSpec[];
  /**
   * Bases on disk to check against their definition (the pipeline's quick path for a present base: checksum
   * and size limit, no download). They do not count against the concurrency, and their status stays Ready.
   */
  verify: ImageSpec[];
  /** Ids of running fetches to abort: no longer wanted, or their definition changed. */
  cancel: string[];
  status: NodeImageCacheStatus;
  /** When to reconcile again to retry a failed source; absent when nothing waits on time. */
  requeueAfterMs?: number;
}

/** A stable text of the parts of an image's definition that decide its bytes; a change retries a rejection. */
export function imageFingerprint(image: ImageSpec): string {
  const source = "http" in image.source ? { http: image.source.http.url } : { registry: image.source.registry.image };
  return JSON.stringify([source, image.checksum ?? "", image.maxVirtualSize ?? ""]);
}

/**
 * A short hash of imageFingerprint, carried in each status entry. The controller computes the same from the
 * ImageCache, so a node still reporting on an older definition of an id is not counted as holding the new one.
 */
export function imageDefinitionHash(image: ImageSpec): string {
  return hashOfFingerprint(imageFingerprint(image));
}

function hashOfFingerprint(fingerprint: string): string {
  return createHash("sha1").update(fingerprint, "utf8").digest("hex").slice(0, 16);
}

/** Plans one agent pass; see the module comment. */
export function planAgent(input: AgentPlanInput): AgentPlan {
  const wantedIds = new Set(input.wanted.map((w) => w.id));
  const cancel = Object.entries(input.memory)
    .filter(([id, m]) => m.running && (!wantedIds.has(id) || m.running.fingerprint !== fingerprintOf(input, id)))
    .map(([id]) => id);
  let running = Object.values(input.memory).filter((m) => m.running).length;
  const start: ImageSpec[] = [];
  const verify: ImageSpec[] = [];
  const images: NodeImageStatus[] = [];
  let requeueAfterMs: number | undefined;
  for (const image of input.wanted) {
    const decision = decideImage(image, input);
    if (decision.kind === "fetch" && running < input.concurrency) {
      start.push(image);
      running++;
      images.push({ ...decision.status, phase: "Downloading", bytesDone: 0 });
      continue;
    }
    if (decision.kind === "verify") verify.push(image);
    if (decision.kind === "wait") requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, decision.afterMs);
    images.push(decision.status);
  }
  const status: NodeImageCacheStatus = {
    observedGeneration: input.generation,
    images,
    ...(input.disk ? { disk: input.disk } : {}),
    conditions: setConditions(input.prior?.conditions ?? [], wantedConditions(images, input), new Date(input.now).toISOString()),
  };
  return { start, verify, cancel, status, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
}

type ImageDecision =
  | { kind: "fetch"; status: NodeImageStatus }
  | { kind: "wait"; afterMs: number; status: NodeImageStatus }
  | { kind: "verify"; status: NodeImageStatus }
  | { kind: "hold"; status: NodeImageStatus };

// The first rule that holds decides: rejected, on disk, running, waiting to retry, else fetch.
function decideImage(image: ImageSpec, input: AgentPlanInput): ImageDecision {
  const base = baseNameFor(image.id);
  const fingerprint = imageFingerprint(image);
  const entry = { id: image.id, base, observedGeneration: input.generation, definition: hashOfFingerprint(fingerprint) };
  const memory = input.memory[image.id];
  const failure = memory?.failure;
  const sameFailure = failure !== undefined && sameDefinition(failure, fingerprint, input.generation);
  if (failure && sameFailure && failure.kind === "rejected") {
    return { kind: "hold", status: { ...entry, phase: "Failed", reason: failure.reason, message: failure.message } };
  }
  const present = input.onDisk.get(base);
  if (present) {
    const size = present.virtualSize !== undefined ? { virtualSize: present.virtualSize } : {};
    const ready: NodeImageStatus = { ...entry, phase: "Ready", ...size };
    const backingOff = sameFailure && failure.retryAt !== undefined && failure.retryAt > input.now;
    return { kind: memory?.verified === fingerprint || memory?.running || backingOff ? "hold" : "verify", status: ready };
  }
  if (memory?.running && memory.running.fingerprint === fingerprint) {
    const { phase, bytesDone, bytesTotal } = memory.running;
    return { kind: "hold", status: { ...entry, phase, ...optional({ bytesDone, bytesTotal }) } };
  }
  if (memory?.running) return { kind: "hold", status: { ...entry, phase: "Pending", message: "Waiting for the fetch of the previous definition to stop" } };
  if (failure && sameFailure) {
    const failed: NodeImageStatus = { ...entry, phase: "Failed", reason: failure.reason, message: failure.message };
    if (failure.retryAt !== undefined && failure.retryAt > input.now) return { kind: "wait", afterMs: failure.retryAt - input.now, status: failed };
  }
  return { kind: "fetch", status: { ...entry, phase: "Pending" } };
}

function sameDefinition(failure: FetchFailure, fingerprint: string, generation: number): boolean {
  return failure.fingerprint !== undefined ? failure.fingerprint === fingerprint : failure.generation === generation;
}

function fingerprintOf(input: AgentPlanInput, id: string): string | undefined {
  const image = input.wanted.find((w) => w.id === id);
  return image ? imageFingerprint(image) : undefined;
}

function optional(fields: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(fields).filter((e): e is [string, number] => e[1] !== undefined));
}

function wantedConditions(images: readonly NodeImageStatus[], input: AgentPlanInput): ConditionInput[] {
  const out = [readyCondition(images, input.generation)];
  if (input.budget) out.push(budgetCondition(input.budget, input.generation));
  return out;
}

/**
 * CacheWithinBudget: True while the cache's own bytes stay at or below the high watermark (reason
 * WithinBudget); False (OverBudget) when GC found nothing more it may evict.
 */
export function budgetCondition(b: { overBudget: boolean; cacheBytes: number; highBytes: number }, generation: number): ConditionInput {
  const common = { type: "CacheWithinBudget", observedGeneration: generation };
  if (b.overBudget) {
    return { ...common, status: "False", reason: "OverBudget", message: `The cache holds more than its high watermark of ${b.highBytes} bytes, and every base left is wanted or in use` };
  }
  return { ...common, status: "True", reason: "WithinBudget", message: `The cache is at or below its high watermark of ${b.highBytes} bytes` };
}

/** The node's Ready condition: True when every wanted image is Ready. */
export function readyCondition(images: readonly NodeImageStatus[], generation: number): ConditionInput {
  const failed = images.filter((i) => i.phase === "Failed");
  const ready = images.filter((i) => i.phase === "Ready").length;
  const common = { type: "Ready", observedGeneration: generation };
  if (failed.length > 0) {
    const list = failed.slice(0, 5).map((i) => `"${i.id}" (${i.reason ?? "unknown"})`).join(", ");
    const more = failed.length > 5 ? ` and ${failed.length - 5} more` : "";
    return { ...common, status: "False", reason: "ImagesFailed", message: `${failed.length} of ${images.length} images failed: ${list}${more}` };
  }
  if (ready < images.length) return { ...common, status: "False", reason: "ImagesPending", message: `${ready} of ${images.length} images ready` };
  return { ...common, status: "True", reason: "AllImagesReady", message: `${ready} of ${images.length} images ready` };
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
  at: { now: number; generation: number; fingerprint: string; jitter: number; policy: BackoffPolicy },
): FetchFailure {
  const attempts = prior && prior.fingerprint === at.fingerprint ? prior.attempts + 1 : 1;
  const base = { kind: outcome.kind, reason: outcome.reason, attempts, fingerprint: at.fingerprint, generation: at.generation };
  if (outcome.kind === "rejected") return { ...base, message: outcome.message };
  const retryAt = at.now + backoffDelay(at.policy, attempts - 1, at.jitter);
  return { ...base, retryAt, message: `${outcome.message} (attempt ${attempts}; next at ${new Date(retryAt).toISOString()})` };
}
