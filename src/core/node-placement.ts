/**
 * Which placement labels and which warming taint one Node should carry, and the patch that gets it there.
 *
 * "Ready on a node" for an ImageCache means what the roll-up counts as a ready node: the ImageCache selects
 * the node, is not being deleted, defines none of its ids differently from an older ImageCache (a lost
 * conflict means its definition is not what the node caches), and the node's NodeImageCache status reports
 * every one of its images Ready for the ImageCache's current definition (a report on another definition is
 * stale), or, for a tracked image, an older version still on the node while the current one is fetched. Only labels under our prefixes and only the warming taint are ever touched; a label under our
 * prefixes that no ImageCache wants is removed, which is how a deleted ImageCache's labels go without a
 * finalizer.
 *
 * Records come from core/api-records.ts.
 */
import type { LabelSelector } from "./api-records.js";
import { selectorMatches } from "./label-selector.js";
import type { NodeImageReport } from "./rollup.js";
import {
  isPlacementLabel,
  placementLabel,
  PlacementLabelValue,
  syncedLabel,
  SyncedLabelValue,
  WarmingTaintEffect,
  WarmingTaintKey,
} from "./placement-keys.js";

export interface Taint {
  key: string;
  value?: string;
  effect: string;
  timeAdded?: string;
}

/** What placement needs of an ImageCache. */
export interface PlacementCache {
  name: string;
  deleting: boolean;
  nodeSelector?: LabelSelector;
  /**
   * Each image id with the hash of this ImageCache's definition of it (definitionHash; a tracked image's pinned to
   * its current version), and whether it is tracked (has an updatePolicy).
   */
  images: readonly { id: string; definition: string; tracked?: boolean }[];
  /** Ids this ImageCache lost to an older, different definition. */
  lostIds: readonly string[];
  taintUntilReady: boolean;
}

export interface PlacementNode {
  name: string;
  /** The node's labels exactly as stored: selectors read them, the patch leaves all but ours alone. */
  labels: Readonly<Record<string, string>>;
  taints: readonly Taint[];
  resourceVersion: string;
}

export interface PlacementInput {
  node: PlacementNode;
  imageCaches: readonly PlacementCache[];
  /** The node's NodeImageCache status images; absent when it has none (yet). */
  reports: readonly NodeImageReport[] | undefined;
}

export interface PlacementPlan {
  /** ImageCaches Ready on the node, sorted. */
  ready: string[];
  /** taintUntilReady ImageCaches the node has not synced yet, sorted: the taint is held while any is left. */
  warming: string[];
  /** Label key -> new value, or null to remove; empty when the labels are as they should be. */
  labelChanges: Record<string, string | null>;
  /** The node's whole new taint list, when it changes. */
  taints: Taint[] | undefined;
}

/** Whether the node's reports show every image of `ic` Ready for its current definition; see the module comment. */
export function holdsEveryImage(ic: PlacementCache, reports: readonly NodeImageReport[] | undefined): boolean {
  if (ic.images.length === 0 || ic.lostIds.length > 0 || !reports) return false;
  const byId = new Map(reports.map((r) => [r.id, r]));
  return ic.images.every((img) => {
    const r = byId.get(img.id);
    // Agents that predate definition hashes report none; their Ready counts, as in the roll-up.
    if (r?.phase === "Ready" && (r.definition === undefined || r.definition === img.definition)) return true;
    // While a tracked image's new version downloads (or fails), an older version stays on the node and new
    // instance disks get it (its pointer): the node can still take VMs.
    return img.tracked === true && r?.definition === img.definition && (r.previousVersions?.length ?? 0) > 0;
  });
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function wantedLabels(input: PlacementInput): { labels: Record<string, string>; ready: string[]; warming: string[] } {
  const { node } = input;
  const labels: Record<string, string> = {};
  const ready: string[] = [];
  const warming: string[] = [];
  for (const ic of input.imageCaches) {
    if (ic.deleting || !selectorMatches(ic.nodeSelector, node.labels)) continue;
    const isReady = holdsEveryImage(ic, input.reports);
    if (isReady) {
      labels[placementLabel(ic.name)] = PlacementLabelValue;
      ready.push(ic.name);
    }
    if (!ic.taintUntilReady) continue;
    const synced = syncedLabel(ic.name);
    // Once synced, a node stays synced while it stays selected: a re-fetch never taints it again.
    if (isReady || node.labels[synced] !== undefined) labels[synced] = SyncedLabelValue;
    else warming.push(ic.name);
  }
  return { labels, ready: ready.sort(compareStrings), warming: warming.sort(compareStrings) };
}

function plannedTaints(current: readonly Taint[], warm: boolean): Taint[] | undefined {
  const ours = current.filter((t) => t.key === WarmingTaintKey);
  const exact = ours.length === 1 && ours[0]!.effect === WarmingTaintEffect && (ours[0]!.value ?? "") === "";
  if (warm ? exact : ours.length === 0) return undefined;
  const others = current.filter((t) => t.key !== WarmingTaintKey);
  return warm ? [...others, { key: WarmingTaintKey, effect: WarmingTaintEffect }] : others;
}

/** Plans one node's placement labels and warming taint; pure and idempotent. */
export function planNodePlacement(input: PlacementInput): PlacementPlan {
  const { labels, ready, warming } = wantedLabels(input);
  const current = input.node.labels;
  const labelChanges: Record<string, string | null> = {};
  for (const key of Object.keys(current).sort(compareStrings)) if (isPlacementLabel(key) && !Object.hasOwn(labels, key)) labelChanges[key] = null;
  for (const key of Object.keys(labels).sort(compareStrings)) if (current[key] !== labels[key]) labelChanges[key] = labels[key]!;
  return { ready, warming, labelChanges, taints: plannedTaints(input.node.taints, warming.length > 0) };
}

/**
 * The JSON merge patch for a plan, or undefined when nothing changes. It carries the resourceVersion the plan
 * was made from, so the API server refuses it (409) if another writer changed the node meanwhile: the taint
 * list is replaced whole and must not drop a taint we have not seen.
 */
export function placementPatch(plan: PlacementPlan, resourceVersion: string): object | undefined {
  const labels = Object.keys(plan.labelChanges).length > 0;
  if (!labels && !plan.taints) return undefined;
  const metadata: Record<string, unknown> = { resourceVersion };
  if (labels) metadata.labels = plan.labelChanges;
  return { metadata, ...(plan.taints ? { spec: { taints: plan.taints.length > 0 ? plan.taints : null } } : {}) };
}
