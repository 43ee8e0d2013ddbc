/**
 * The placement pass for one node (`placement:<node>`): gather the Node, every ImageCache and the node's
 * NodeImageCache status from the informer caches; plan the node's placement labels and warming taint (pure,
 * src/core/node-placement.ts); apply with one JSON merge patch that carries the resourceVersion it was planned
 * from, so a concurrent writer's change makes it fail with 409 and the pass runs again on fresh data.
 */
import { isDeepStrictEqual } from "node:util";
import { findConflicts, lostDefinitions } from "../core/desired.js";
import { definitionHash } from "../core/image-definition.js";
import { placementPatch, planNodePlacement, type PlacementCache, type PlacementInput, type Taint } from "../core/node-placement.js";
import type { ImageCache, ImageSpec } from "../kube/api-types.js";
import { call, isNotFound, mergePatchOptions, type RawObject } from "../kube/client.js";
import { parseMeta, parseNodeImageCache } from "../kube/parse.js";
import type { ReconcileResult, WorkQueue } from "../kube/work-queue.js";
import type { ControllerContext, ControllerInformers } from "./context.js";
import { imageCacheView, nodeDefinitionsView } from "./fanout.js";

export const placementKey = (name: string) => `placement:${name}`;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// The informer's initial list comes through the typed client, which turns timeAdded into a Date; a patch must
// give it back as the API server stores it, so that the other writers' taints go back unchanged.
function timeString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Date) return v.toISOString().replace(/\.\d{3}Z$/, "Z");
  return undefined;
}

/** The taints of a raw Node, every field kept. */
export function nodeTaints(raw: RawObject): Taint[] {
  const list = isRecord(raw.spec) && Array.isArray(raw.spec.taints) ? (raw.spec.taints as unknown[]) : [];
  return list.filter(isRecord).map((t) => {
    const taint: Taint = { key: String(t.key ?? ""), effect: String(t.effect ?? "") };
    if (typeof t.value === "string") taint.value = t.value;
    const added = timeString(t.timeAdded);
    if (added) taint.timeAdded = added;
    return taint;
  });
}

/** Every ImageCache as placement sees it, with the ids each lost to an older definition. */
export function placementCaches(all: readonly ImageCache[], pinned: (ic: ImageCache) => readonly ImageSpec[] = (ic) => ic.spec.images): PlacementCache[] {
  const live = all.filter((ic) => !ic.metadata.deletionTimestamp);
  const lost = lostDefinitions(findConflicts(live.map(imageCacheView)));
  return all.map((ic) => {
    // A tracked image is compared with the version the nodes were told to fetch; one not checked yet keeps its
    // unpinned definition, which no node reports, so the node is not Ready for it.
    const byId = new Map(pinned(ic).map((i) => [i.id, i]));
    const c: PlacementCache = {
      name: ic.metadata.name,
      deleting: !!ic.metadata.deletionTimestamp,
      images: ic.spec.images.map((i) => ({ id: i.id, definition: definitionHash(byId.get(i.id) ?? i), ...(i.updatePolicy ? { tracked: true } : {}) })),
      lostIds: ic.spec.images.filter((i) => lost.has(`${ic.metadata.name}\u0000${i.id}`)).map((i) => i.id),
      taintUntilReady: ic.spec.placement?.taintUntilReady === true,
    };
    if (ic.spec.nodeSelector) c.nodeSelector = ic.spec.nodeSelector;
    return c;
  });
}

function gatherPlacement(ctx: ControllerContext, raw: RawObject): PlacementInput {
  const meta = parseMeta(raw);
  const nicRaw = ctx.informers.nodeImageCaches.get(meta.name);
  return {
    node: { name: meta.name, labels: meta.labels ?? {}, taints: nodeTaints(raw), resourceVersion: meta.resourceVersion ?? "" },
    imageCaches: placementCaches(ctx.allImageCaches(), (ic) => nodeDefinitionsView(ctx, ic).images),
    reports: nicRaw ? parseNodeImageCache(nicRaw).status?.images : undefined,
  };
}

/** Runs the placement pass for `nodeName`. */
export async function reconcilePlacement(ctx: ControllerContext, nodeName: string): Promise<ReconcileResult> {
  const raw = ctx.informers.nodes.get(nodeName);
  if (!raw) return;
  const input = gatherPlacement(ctx, raw);
  const plan = planNodePlacement(input);
  const patch = placementPatch(plan, input.node.resourceVersion);
  if (!patch) {
    ctx.metrics.unchanged.inc({ resource: "nodes" });
    return;
  }
  try {
    await call(`Cannot patch Node "${nodeName}"`, () => ctx.clients.core.patchNode({ name: nodeName, body: patch, fieldManager: ctx.fieldManager }, mergePatchOptions));
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  ctx.metrics.writes.inc({ resource: "nodes", verb: "patch" });
  const taint = plan.taints ? (plan.warming.length > 0 ? "added" : "removed") : "unchanged";
  ctx.log.info({ node: nodeName, ready: plan.ready, warming: plan.warming, labels: plan.labelChanges, taint }, "Updated placement labels of Node");
}

function specChanged(ic: RawObject, old: RawObject | undefined): boolean {
  return ic.metadata?.generation !== old?.metadata?.generation || ic.metadata?.deletionTimestamp !== old?.metadata?.deletionTimestamp;
}

function placementOf(n: RawObject | undefined): unknown {
  return [n?.metadata?.labels ?? {}, isRecord(n?.spec) ? (n.spec.taints ?? []) : []];
}

/**
 * Maps events to placement keys: any ImageCache spec change (or deletion) can change every node's labels; a
 * node's own labels or taints, and its NodeImageCache's status, change that node's.
 */
export function wirePlacement(informers: ControllerInformers, queue: WorkQueue): void {
  const allNodes = () => {
    for (const n of informers.nodes.list()) queue.add(placementKey(n.metadata?.name ?? ""));
  };
  informers.imageCaches.on("add", allNodes);
  informers.imageCaches.on("update", (ic, old) => {
    if (specChanged(ic, old)) allNodes();
  });
  informers.imageCaches.on("delete", allNodes);
  informers.nodes.on("add", (n) => queue.add(placementKey(n.metadata?.name ?? "")));
  informers.nodes.on("update", (n, old) => {
    if (!isDeepStrictEqual(placementOf(n), placementOf(old))) queue.add(placementKey(n.metadata?.name ?? ""));
  });
  const onNic = (nic: RawObject, old: RawObject | undefined) => {
    if (!old || !isDeepStrictEqual(nic.status, old.status)) queue.add(placementKey(nic.metadata?.name ?? ""));
  };
  informers.nodeImageCaches.on("add", (nic) => onNic(nic, undefined));
  informers.nodeImageCaches.on("update", onNic);
  informers.nodeImageCaches.on("delete", (nic) => queue.add(placementKey(nic.metadata?.name ?? "")));
}
