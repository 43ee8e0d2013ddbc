/**
 * The desired NodeImageCache set, one pure function of ImageCaches and Nodes: which images each node should
 * hold, which ImageCaches want each one there, and which ImageCaches define the same id differently.
 */
import type { ImageCacheSpec, ImageSpec, NodeInfo, WantedImage } from "./api-records.js";
import { DefaultUnusedFor, formatDuration, isDuration, parseDuration } from "./duration.js";
import { definitionKey } from "./image-definition.js";
import { selectorMatches } from "./label-selector.js";

/** What the planner needs of an ImageCache. */
export interface ImageCacheView extends Pick<ImageCacheSpec, "nodeSelector" | "retention"> {
  name: string;
  /** RFC 3339; the older definition wins a conflict. */
  creationTimestamp?: string;
  images: readonly ImageSpec[];
}

/** What the planner needs of a Node. */
export type NodeView = Pick<NodeInfo, "name" | "labels">;

/** One image a node should hold, with every ImageCache that wants it there and the shortest of their retentions. */
export type NodeWantedImage = WantedImage & Required<Pick<WantedImage, "unusedFor">>;

/** Two or more ImageCaches define one id differently; `winner`'s definition is used, the others' is not. */
export interface Conflict {
  id: string;
  winner: string;
  losers: string[];
}

export interface DesiredState {
  /** Node name -> images sorted by id. Only nodes that some ImageCache selects. */
  nodes: Map<string, NodeWantedImage[]>;
  /** ImageCache name -> names of the nodes it selects, sorted. */
  selected: Map<string, string[]>;
  /** Sorted by id. */
  conflicts: Conflict[];
  /** Node name -> ids left out because the node would hold more than `maxImagesPerNode`. */
  overflow: Map<string, string[]>;
}

/** The NodeImageCache schema's bound on spec.images. */
export const MaxImagesPerNode = 256;

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Older first, then by name, so that the winner of a conflict is stable. */
function compareAge(a: ImageCacheView, b: ImageCacheView): number {
  const ta = a.creationTimestamp ?? "";
  const tb = b.creationTimestamp ?? "";
  return compareStrings(ta, tb) || compareStrings(a.name, b.name);
}

/** Finds ids defined differently by two or more ImageCaches; the oldest ImageCache's definition wins. */
export function findConflicts(imageCaches: readonly ImageCacheView[]): Conflict[] {
  const byId = new Map<string, { ic: ImageCacheView; key: string }[]>();
  for (const ic of imageCaches) {
    for (const img of ic.images) {
      const list = byId.get(img.id) ?? [];
      // Two ImageCaches tracking one source agree even while their checks have found different versions.
      const { version: _version, ...unpinned } = img;
      list.push({ ic, key: definitionKey(unpinned) });
      byId.set(img.id, list);
    }
  }
  const conflicts: Conflict[] = [];
  for (const [id, defs] of byId) {
    if (new Set(defs.map((d) => d.key)).size < 2) continue;
    const sorted = [...defs].sort((a, b) => compareAge(a.ic, b.ic));
    const winnerKey = sorted[0]!.key;
    const winner = sorted[0]!.ic.name;
    const losers = sorted.filter((d) => d.key !== winnerKey).map((d) => d.ic.name).sort(compareStrings);
    conflicts.push({ id, winner, losers });
  }
  return conflicts.sort((a, b) => compareStrings(a.id, b.id));
}

function retentionOf(ic: ImageCacheView): string {
  const text = ic.retention?.unusedFor;
  return text !== undefined && isDuration(text) ? text : DefaultUnusedFor;
}

function cleanDefinition(d: ImageSpec): ImageSpec {
  const out: ImageSpec = { id: d.id, source: d.source };
  if (d.checksum !== undefined) out.checksum = d.checksum;
  if (d.checksumFrom !== undefined) out.checksumFrom = d.checksumFrom;
  if (d.maxVirtualSize !== undefined) out.maxVirtualSize = d.maxVirtualSize;
  if (d.updatePolicy !== undefined) out.updatePolicy = d.updatePolicy;
  if (d.version !== undefined) out.version = d.version;
  return out;
}

/**
 * The NodeImageCache schema's bound on an image's wantedBy. Past it the list names the first ones by name; what
 * matters for GC is that the image is wanted at all, and the controller's wiring then wakes every ImageCache.
 */
export const MaxWantedBy = 64;

/** The images `node` should hold, given the ImageCaches that select it; ids a conflict took away are skipped. */
export function planNodeImages(selecting: readonly ImageCacheView[], lost: ReadonlySet<string>): NodeWantedImage[] {
  const byId = new Map<string, { def: ImageSpec; wantedBy: string[]; unusedForMs: number }>();
  // Older ImageCaches first, so that the kept definition is the winner's when definitions agree only after normalising.
  for (const ic of [...selecting].sort(compareAge)) {
    const retentionMs = parseDuration(retentionOf(ic));
    for (const img of ic.images) {
      if (lost.has(`${ic.name}\u0000${img.id}`)) continue;
      const entry = byId.get(img.id);
      if (entry) {
        entry.wantedBy.push(ic.name);
        entry.unusedForMs = Math.min(entry.unusedForMs, retentionMs);
      } else {
        byId.set(img.id, { def: cleanDefinition(img), wantedBy: [ic.name], unusedForMs: retentionMs });
      }
    }
  }
  return [...byId.values()]
    .map((e) => ({ ...e.def, wantedBy: [...e.wantedBy].sort(compareStrings).slice(0, MaxWantedBy), unusedFor: formatDuration(e.unusedForMs) }))
    .sort((a, b) => compareStrings(a.id, b.id));
}

/** Keys `imageCache\0id` of definitions that lost a conflict. */
export function lostDefinitions(conflicts: readonly Conflict[]): Set<string> {
  const lost = new Set<string>();
  for (const c of conflicts) for (const l of c.losers) lost.add(`${l}\u0000${c.id}`);
  return lost;
}

/** The ImageCaches that select a node with these labels. */
export function selectingImageCaches(imageCaches: readonly ImageCacheView[], labels: Readonly<Record<string, string>>): ImageCacheView[] {
  return imageCaches.filter((ic) => selectorMatches(ic.nodeSelector, labels));
}

/** Plans the whole desired state: every node's wanted images, every ImageCache's nodes, and the conflicts. */
export function planDesiredState(imageCaches: readonly ImageCacheView[], nodes: readonly NodeView[], maxImagesPerNode = MaxImagesPerNode): DesiredState {
  const conflicts = findConflicts(imageCaches);
  const lost = lostDefinitions(conflicts);
  const state: DesiredState = { nodes: new Map(), selected: new Map(imageCaches.map((ic) => [ic.name, []])), conflicts, overflow: new Map() };
  for (const node of [...nodes].sort((a, b) => compareStrings(a.name, b.name))) {
    const selecting = selectingImageCaches(imageCaches, node.labels);
    if (selecting.length === 0) continue;
    for (const ic of selecting) state.selected.get(ic.name)?.push(node.name);
    const { kept, dropped } = capImages(planNodeImages(selecting, lost), maxImagesPerNode);
    state.nodes.set(node.name, kept);
    if (dropped.length > 0) state.overflow.set(node.name, dropped);
  }
  return state;
}

/** Keeps the first `max` images by id; the rest are reported, never silently dropped. */
export function capImages(images: NodeWantedImage[], max = MaxImagesPerNode): { kept: NodeWantedImage[]; dropped: string[] } {
  if (images.length <= max) return { kept: images, dropped: [] };
  return { kept: images.slice(0, max), dropped: images.slice(max).map((i) => i.id) };
}
