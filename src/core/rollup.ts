/**
 * Rolls the NodeImageCache statuses of the nodes an ImageCache selects up into that ImageCache's status:
 * counts per image, readyNodes/desiredNodes, at most 20 failures, and the Ready, Progressing, Degraded and
 * Conflict conditions. The size is bounded by the number of images, never by the number of nodes.
 */
import type { ImageCacheStatus, ImageCounts, NodeFailure, NodeImageStatus, VersionRecord } from "./api-records.js";
import { setConditions, type Condition, type ConditionInput } from "./conditions.js";
import type { Conflict } from "./desired.js";
import { placementLabel } from "./placement-keys.js";

/** One image entry of a NodeImageCache status, as far as the roll-up reads it. */
export type NodeImageReport = Pick<NodeImageStatus, "id" | "phase" | "reason" | "message" | "definition" | "previousVersions">;

/** The ImageCache status the roll-up plans: every field set. */
export type RollupStatus = Required<ImageCacheStatus>;

export interface RollupInput {
  name: string;
  generation: number;
  /** Image ids in spec order. */
  imageIds: readonly string[];
  /** Names of the nodes the ImageCache selects. */
  nodes: readonly string[];
  /** Node name -> its NodeImageCache status images (absent: no status yet). */
  reports: ReadonlyMap<string, readonly NodeImageReport[]>;
  /**
   * Image id -> hash of this ImageCache's definition of it (definitionHash). A report on another definition
   * is stale (the node has not caught up with a change) and counts as pending, neither ready nor failed.
   */
  definitions?: ReadonlyMap<string, string>;
  /** Every conflict in the cluster; those naming this ImageCache become its Conflict condition. */
  conflicts: readonly Conflict[];
  /** Ids this ImageCache wants that some selected node could not take (NodeImageCache full). */
  overflowIds?: readonly string[];
  existingConditions?: readonly Condition[];
  /** What the version checks of its tracked images found (the controller's version pass); carried as they are. */
  versions?: readonly VersionRecord[];
  /** RFC 3339 time for conditions whose status flips. */
  now: string;
}

/** The bound on the failures list, so that the status stays small at any node count. */
export const MaxFailures = 20;
/** Bound on a failure message copied from a node, so that 20 of them stay small. */
export const MaxFailureMessage = 256;

/** Condition types the controller sets on an ImageCache. */
export const ConditionType = { Ready: "Ready", Progressing: "Progressing", Degraded: "Degraded", Conflict: "Conflict" } as const;

/**
 * Reasons: AllNodesReady, NoMatchingNodes and NodesNotReady (Ready); Caching and Idle (Progressing);
 * ImagesFailed, ConflictingDefinition, TooManyImages, VersionCheckFailed and AsExpected (Degraded); ConflictingDefinition and
 * NoConflict (Conflict).
 */
export const Reason = {
  AllNodesReady: "AllNodesReady",
  NoMatchingNodes: "NoMatchingNodes",
  NodesNotReady: "NodesNotReady",
  Caching: "Caching",
  Idle: "Idle",
  ImagesFailed: "ImagesFailed",
  ConflictingDefinition: "ConflictingDefinition",
  VersionCheckFailed: "VersionCheckFailed",
  TooManyImages: "TooManyImages",
  AsExpected: "AsExpected",
  NoConflict: "NoConflict",
} as const;

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}\u2026`;
}

function compareFailures(a: NodeFailure, b: NodeFailure): number {
  return a.node < b.node ? -1 : a.node > b.node ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

interface Tally {
  counts: ImageCounts[];
  readyNodes: number;
  pendingNodes: number;
  failures: NodeFailure[];
}

function tally(imageIds: readonly string[], nodes: readonly string[], reports: RollupInput["reports"], definitions: RollupInput["definitions"]): Tally {
  const counts = imageIds.map((id) => ({ id, ready: 0, pending: 0, failed: 0 }));
  const failures: NodeFailure[] = [];
  let readyNodes = 0;
  let pendingNodes = 0;
  for (const node of nodes) {
    const byId = new Map((reports.get(node) ?? []).map((r) => [r.id, r]));
    let allReady = true;
    let anyPending = false;
    for (const c of counts) {
      const reported = byId.get(c.id);
      const want = definitions?.get(c.id);
      const r = reported?.definition !== undefined && want !== undefined && reported.definition !== want ? undefined : reported;
      if (r?.phase === "Ready") c.ready++;
      else if (r?.phase === "Failed") {
        c.failed++;
        allReady = false;
        failures.push({ node, id: c.id, reason: r.reason || "Failed", message: truncate(r.message ?? "", MaxFailureMessage) });
      } else {
        c.pending++;
        allReady = false;
        anyPending = true;
      }
    }
    if (allReady) readyNodes++;
    if (anyPending) pendingNodes++;
  }
  return { counts, readyNodes, pendingNodes, failures: failures.sort(compareFailures) };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function conflictCondition(name: string, conflicts: readonly Conflict[]): ConditionInput & { lostIds: string[] } {
  const mine = conflicts.filter((c) => c.winner === name || c.losers.includes(name));
  const lostIds = mine.filter((c) => c.losers.includes(name)).map((c) => c.id);
  if (mine.length === 0) return { type: ConditionType.Conflict, status: "False", reason: Reason.NoConflict, message: "No image id is defined differently elsewhere", lostIds };
  const parts = mine.slice(0, 5).map((c) =>
    c.winner === name
      ? `image "${c.id}" is defined differently by ${c.losers.map((l) => `"${l}"`).join(", ")}; this definition is used (older)`
      : `image "${c.id}" is defined differently by "${c.winner}"; that older definition is used and this one is not cached`,
  );
  const more = mine.length > 5 ? `; and ${mine.length - 5} more` : "";
  return { type: ConditionType.Conflict, status: "True", reason: Reason.ConflictingDefinition, message: truncate(`${parts.join("; ")}${more}`, 2048), lostIds };
}

function plannedConditions(input: RollupInput, t: Tally, lostIds: string[]): ConditionInput[] {
  const desired = input.nodes.length;
  const failedCount = t.failures.length;
  const overflow = input.overflowIds ?? [];
  const ready: ConditionInput =
    desired === 0
      ? { type: ConditionType.Ready, status: "True", reason: Reason.NoMatchingNodes, message: "The node selector matches no node" }
      : t.readyNodes === desired && lostIds.length === 0 && overflow.length === 0
        ? { type: ConditionType.Ready, status: "True", reason: Reason.AllNodesReady, message: `All ${plural(desired, "node")} hold every image` }
        : { type: ConditionType.Ready, status: "False", reason: Reason.NodesNotReady, message: `${t.readyNodes} of ${plural(desired, "node")} hold every image` };
  const progressing: ConditionInput =
    t.pendingNodes > 0
      ? { type: ConditionType.Progressing, status: "True", reason: Reason.Caching, message: `${plural(t.pendingNodes, "node")} still fetching` }
      : { type: ConditionType.Progressing, status: "False", reason: Reason.Idle, message: "No node is fetching" };
  let degraded: ConditionInput = { type: ConditionType.Degraded, status: "False", reason: Reason.AsExpected, message: "No image failed" };
  if (failedCount > 0) {
    const first = t.failures[0]!;
    degraded = { type: ConditionType.Degraded, status: "True", reason: Reason.ImagesFailed, message: `${plural(failedCount, "image")} failed; first: node "${first.node}" image "${first.id}": ${first.reason}` };
  } else if (lostIds.length > 0) {
    degraded = { type: ConditionType.Degraded, status: "True", reason: Reason.ConflictingDefinition, message: `Not cached because another ImageCache defines them differently: ${lostIds.slice(0, 10).join(", ")}` };
  } else if (overflow.length > 0) {
    degraded = { type: ConditionType.Degraded, status: "True", reason: Reason.TooManyImages, message: `Some nodes would hold more images than a NodeImageCache allows; left out: ${overflow.slice(0, 10).join(", ")}` };
  } else {
    // A check that failed keeps the current version on the nodes, so it degrades nothing they hold; it is still news.
    const failedCheck = (input.versions ?? []).find((r) => r.message !== undefined);
    if (failedCheck) degraded = { type: ConditionType.Degraded, status: "True", reason: Reason.VersionCheckFailed, message: `Checking image "${failedCheck.id}" for a new version failed: ${failedCheck.message}` };
  }
  return [ready, progressing, degraded].map((c) => ({ ...c, observedGeneration: input.generation }));
}

/** Computes an ImageCache's status from its nodes' reports; identical inputs give an identical status. */
export function planImageCacheStatus(input: RollupInput): RollupStatus {
  const { lostIds, ...conflict } = conflictCondition(input.name, input.conflicts);
  const lost = new Set(lostIds);
  const t = tally(
    input.imageIds.filter((id) => !lost.has(id)),
    input.nodes,
    input.reports,
    input.definitions,
  );
  const wanted = [...plannedConditions(input, t, lostIds), { ...conflict, observedGeneration: input.generation }];
  return {
    observedGeneration: input.generation,
    desiredNodes: input.nodes.length,
    readyNodes: t.readyNodes,
    ready: `${t.readyNodes}/${input.nodes.length}`,
    failedCount: t.failures.length,
    images: t.counts,
    failures: t.failures.slice(0, MaxFailures),
    failuresTruncated: t.failures.length > MaxFailures,
    conditions: setConditions(input.existingConditions ?? [], wanted, input.now),
    nodeLabel: placementLabel(input.name),
    versions: [...(input.versions ?? [])],
  };
}
