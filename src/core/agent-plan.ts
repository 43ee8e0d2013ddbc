/**
 * The node agent's plan: from its NodeImageCache, the bases on disk, what the agent remembers of its fetches,
 * the budget state GC last found and the time, decide which images to fetch or check now, which running fetches
 * to cancel, what to remember and forget, the status to write and when to look again. Pure; src/agent/reconcile.ts
 * gathers and applies.
 */
import type { DiskUsage, ImageSpec, NodeImageCache, NodeImageCacheStatus, NodeImageStatus } from "./api-records.js";
import type { FetchFailure, ImageMemory } from "./agent-memory.js";
import { definitionKey, hashOfDefinitionKey } from "./image-definition.js";
import { isRejectReason } from "./reject-reasons.js";
import { setConditions, type ConditionInput } from "./conditions.js";
import { baseNameOfImage } from "./names.js";
import { podUsesCondition, type PodUsesState } from "./pod-uses.js";
import { formatBytes } from "./quantity.js";

/** What the last GC pass found under a cache budget, for the CacheWithinBudget condition. */
export interface BudgetState {
  overBudget: boolean;
  cacheBytes: number;
  highBytes: number;
}

/** Everything one agent plan depends on. */
export interface AgentPlanInput {
  now: number;
  /** The node's NodeImageCache; absent when it does not exist (yet, or any more). */
  nodeImageCache?: NodeImageCache;
  /** Complete bases on disk, by base name, with the virtual size their sidecar records. */
  /** Complete bases on disk; `corrupt` says why a re-verification found one changed since it was stored. */
  onDisk: ReadonlyMap<string, { virtualSize?: number; corrupt?: string }>;
  /** Tracked images' versions stored on the node, by image id, newest first (from their sidecars). */
  versionsOnDisk?: ReadonlyMap<string, readonly { version: string; base: string }[]>;
  memory: Readonly<Record<string, ImageMemory>>;
  /** Ids with a fetch or a check under way. */
  tasks: readonly string[];
  /** False until a pass has taken the rejections of a status written before this agent started. */
  seeded: boolean;
  disk?: DiskUsage;
  concurrency: number;
  /** Under a cache budget: what the last GC pass found (absent without a budget, or before the first pass). */
  budget?: BudgetState;
  /** What the last GC pass that asked the controller for pod uses got (absent before the first). */
  podUses?: PodUsesState;
}

/** What the agent does next. */
export interface AgentPlan {
  /** The generation of the NodeImageCache the plan is for (0 without one). */
  generation: number;
  /** Images to start fetching now, in spec order, at most `concurrency` running in all. */
  start: ImageSpec[];
  /**
   * Bases on disk to check against their definition (the pipeline's quick path for a present base: checksum
   * and size limit, no download). They do not count against the concurrency, and their status stays Ready.
   */
  verify: ImageSpec[];
  /** Tasks to abort, and why: no longer wanted, their definition changed, or the NodeImageCache is gone. */
  cancel: { id: string; why: string }[];
  /** Memory to take before anything starts: the rejections a status written before a restart records. */
  seed?: Record<string, ImageMemory>;
  /** Ids whose memory goes: no longer wanted and no task under way, so memory stays bounded. */
  forget: string[];
  /** The status to offer the writer; absent without a NodeImageCache. */
  status?: NodeImageCacheStatus;
  /** When to reconcile again to retry a failed source; absent when nothing waits on time. */
  requeueAfterMs?: number;
}

/** The input as the per-image rules read it: the NodeImageCache unpacked, the seeded memory merged in. */
interface PassFacts {
  now: number;
  generation: number;
  onDisk: AgentPlanInput["onDisk"];
  versionsOnDisk?: AgentPlanInput["versionsOnDisk"];
  memory: Readonly<Record<string, ImageMemory>>;
  budget?: BudgetState;
  podUses?: PodUsesState;
}

/** Plans one agent pass; see the module comment. */
export function planAgent(input: AgentPlanInput): AgentPlan {
  const nic = input.nodeImageCache;
  if (!nic) return { generation: 0, start: [], verify: [], cancel: input.tasks.map((id) => ({ id, why: "its NodeImageCache is gone" })), forget: [] };
  const generation = nic.metadata.generation ?? 0;
  const seed = input.seeded ? undefined : planSeedMemory(nic, input.memory);
  const facts: PassFacts = { now: input.now, generation, onDisk: input.onDisk, ...(input.versionsOnDisk ? { versionsOnDisk: input.versionsOnDisk } : {}), memory: { ...seed, ...input.memory }, ...(input.budget ? { budget: input.budget } : {}), ...(input.podUses ? { podUses: input.podUses } : {}) };
  const keys = new Map(nic.spec.images.map((w) => [w.id, definitionKey(w)]));
  const cancel = Object.entries(input.memory)
    .filter(([id, m]) => m.running && m.running.definitionKey !== keys.get(id))
    .map(([id]) => ({ id, why: "its definition changed or it is no longer wanted" }));
  const forget = Object.keys(input.memory).filter((id) => !keys.has(id) && !input.tasks.includes(id));
  let running = Object.values(input.memory).filter((m) => m.running).length;
  const start: ImageSpec[] = [];
  const verify: ImageSpec[] = [];
  const images: NodeImageStatus[] = [];
  let requeueAfterMs: number | undefined;
  for (const image of nic.spec.images) {
    const decision = decideImage(image, facts);
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
    observedGeneration: generation,
    images,
    ...(input.disk ? { disk: { ...input.disk, cache: formatBytes(input.disk.cacheBytes) } } : {}),
    conditions: setConditions(nic.status?.conditions ?? [], wantedConditions(images, facts), new Date(input.now).toISOString()),
  };
  return { generation, start, verify, cancel, forget, status, ...(seed ? { seed } : {}), ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
}

/**
 * The rejections a status written before a restart records, for ids the agent remembers nothing of: a rejection
 * stays one until the definition changes. When the entry is of the current generation, the definition in the
 * spec is the one that was rejected, so its definition key is remembered too; otherwise only the generation.
 */
export function planSeedMemory(nic: NodeImageCache, memory: Readonly<Record<string, ImageMemory>>): Record<string, ImageMemory> {
  const seed: Record<string, ImageMemory> = {};
  for (const s of nic.status?.images ?? []) {
    // base-corrupt is about the file on disk, not the definition: it ends when GC removes the base.
    if (s.phase !== "Failed" || !s.reason || !isRejectReason(s.reason) || s.reason === "base-corrupt" || memory[s.id] || seed[s.id]) continue;
    const generation = s.observedGeneration ?? nic.status?.observedGeneration ?? 0;
    const spec = generation === nic.metadata.generation ? nic.spec.images.find((i) => i.id === s.id) : undefined;
    const key = spec ? { definitionKey: definitionKey(spec) } : {};
    seed[s.id] = { failure: { kind: "rejected", reason: s.reason, message: s.message ?? "", attempts: 1, generation, ...key } };
  }
  return seed;
}

type ImageDecision =
  | { kind: "fetch"; status: NodeImageStatus }
  | { kind: "wait"; afterMs: number; status: NodeImageStatus }
  | { kind: "verify"; status: NodeImageStatus }
  | { kind: "hold"; status: NodeImageStatus };

// The first rule that holds decides: rejected, on disk, running, waiting to retry, else fetch.
function decideImage(image: ImageSpec, input: PassFacts): ImageDecision {
  const base = baseNameOfImage(image);
  const key = definitionKey(image);
  const entry: NodeImageStatus = { id: image.id, base, observedGeneration: input.generation, definition: hashOfDefinitionKey(key), phase: "Pending", ...versionFields(image, base, input) };
  const memory = input.memory[image.id];
  const failure = memory?.failure;
  const sameFailure = failure !== undefined && sameDefinition(failure, key, input.generation);
  if (failure && sameFailure && failure.kind === "rejected") {
    return { kind: "hold", status: { ...entry, phase: "Failed", reason: failure.reason, message: failure.message } };
  }
  const present = input.onDisk.get(base);
  // A corrupt base is not fetched over (instances may use it): GC removes it once unused, and then it is fetched.
  if (present?.corrupt) return { kind: "hold", status: { ...entry, phase: "Failed", reason: "base-corrupt", message: present.corrupt } };
  if (present) {
    const size = present.virtualSize !== undefined ? { virtualSize: present.virtualSize } : {};
    const ready: NodeImageStatus = { ...entry, phase: "Ready", ...size };
    const backingOff = sameFailure && failure.retryAt !== undefined && failure.retryAt > input.now;
    return { kind: memory?.verified === key || memory?.running || backingOff ? "hold" : "verify", status: ready };
  }
  if (memory?.running && memory.running.definitionKey === key) {
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

// A tracked image's entry names its version and the older versions' bases still on the node (which instance
// disks may use; GC removes them as it removes any base).
function versionFields(image: ImageSpec, base: string, input: PassFacts): Pick<NodeImageStatus, "version" | "previousVersions"> {
  if (!image.version) return {};
  const previous = (input.versionsOnDisk?.get(image.id) ?? []).filter((v) => v.base !== base).map((v) => ({ version: v.version, base: v.base }));
  return { version: image.version.name, ...(previous.length > 0 ? { previousVersions: previous } : {}) };
}

function sameDefinition(failure: FetchFailure, key: string, generation: number): boolean {
  return failure.definitionKey !== undefined ? failure.definitionKey === key : failure.generation === generation;
}

function optional(fields: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(fields).filter((e): e is [string, number] => e[1] !== undefined));
}

function wantedConditions(images: readonly NodeImageStatus[], input: PassFacts): ConditionInput[] {
  const out = [readyCondition(images, input.generation)];
  if (input.budget) out.push(budgetCondition(input.budget, input.generation));
  if (input.podUses) out.push(podUsesCondition(input.podUses, input.generation));
  return out;
}

/**
 * CacheWithinBudget: True while the cache's own bytes stay at or below the high watermark (reason
 * WithinBudget); False (OverBudget) when GC found nothing more it may evict.
 */
export function budgetCondition(b: BudgetState, generation: number): ConditionInput {
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

