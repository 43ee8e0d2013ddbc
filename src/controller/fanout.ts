/**
 * The fan-out pass for one node: gather the node, every ImageCache and the node's NodeImageCache from the
 * informer caches; plan the NodeImageCache it should have (pure); apply with one create, merge patch or
 * delete, or nothing when nothing changed.
 */
import { isDeepStrictEqual } from "node:util";
import { capImages, findConflicts, lostDefinitions, planNodeImages, selectingImageCaches, type ImageCacheView, type NodeWantedImage } from "../core/desired.js";
import { ApiVersion, NodeImageCacheKind, NodeLabel, type ImageCache, type NodeImageCache, type NodeInfo } from "../kube/api-types.js";
import { isNotFound, type RawObject } from "../kube/client.js";
import { normalizeJson } from "../kube/status.js";
import type { ReconcileResult } from "../kube/work-queue.js";
import type { ControllerContext } from "./context.js";

/** Label on every NodeImageCache the controller manages. */
export const ManagedByLabel = "app.kubernetes.io/managed-by";
export const ManagedByValue = "basecache-controller";

export interface FanoutInput {
  nodeName: string;
  node: NodeInfo | undefined;
  imageCaches: readonly ImageCache[];
  /** The NodeImageCache as last seen (cache, or our own newer write). */
  current: NodeImageCache | undefined;
  currentOwners: readonly OwnerRef[];
}

export interface OwnerRef {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

export type FanoutPlan =
  | { action: "none"; reason: string }
  | { action: "create"; body: RawObject; images: NodeWantedImage[] }
  | { action: "patch"; patch: object; images: NodeWantedImage[] }
  | { action: "delete"; uid: string | undefined }
  | { action: "wait"; reason: string };

/** An ImageCache as the pure planner sees it. */
export function imageCacheView(ic: ImageCache): ImageCacheView {
  const view: ImageCacheView = { name: ic.metadata.name, images: ic.spec.images };
  if (ic.metadata.creationTimestamp) view.creationTimestamp = ic.metadata.creationTimestamp;
  if (ic.spec.nodeSelector) view.nodeSelector = ic.spec.nodeSelector;
  if (ic.spec.retention) view.retention = ic.spec.retention;
  return view;
}

function ownerRefFor(node: NodeInfo): OwnerRef {
  return { apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid };
}

function labelsFor(nodeName: string): Record<string, string> {
  // A label value holds at most 63 characters; longer node names go without the node label.
  return nodeName.length <= 63 ? { [ManagedByLabel]: ManagedByValue, [NodeLabel]: nodeName } : { [ManagedByLabel]: ManagedByValue };
}

/** Decides what to write for one node; pure. */
export function planFanout(input: FanoutInput): FanoutPlan {
  const { node, current } = input;
  if (!node) {
    return current ? { action: "delete", uid: current.metadata.uid } : { action: "none", reason: "node and NodeImageCache are both gone" };
  }
  if (current?.metadata.deletionTimestamp) return { action: "wait", reason: "NodeImageCache is being deleted" };
  const views = input.imageCaches.filter((ic) => !ic.metadata.deletionTimestamp).map(imageCacheView);
  const lost = lostDefinitions(findConflicts(views));
  const { kept } = capImages(planNodeImages(selectingImageCaches(views, node.labels), lost));
  const images = normalizeJson(kept);
  const owner = ownerRefFor(node);
  const labels = labelsFor(node.name);
  if (!current) {
    if (images.length === 0) return { action: "none", reason: "no ImageCache selects the node" };
    return {
      action: "create",
      images,
      body: { apiVersion: ApiVersion, kind: NodeImageCacheKind, metadata: { name: node.name, labels, ownerReferences: [owner] }, spec: { nodeName: node.name, images } },
    };
  }
  const sameImages = isDeepStrictEqual(normalizeJson(current.spec.images), images);
  const sameOwner = input.currentOwners.length === 1 && isDeepStrictEqual(normalizeJson(input.currentOwners[0]), owner);
  const missingLabels = Object.entries(labels).some(([k, v]) => current.metadata.labels?.[k] !== v);
  if (sameImages && sameOwner && !missingLabels) return { action: "none", reason: "up to date" };
  const patch: { metadata: object; spec?: object } = { metadata: { labels, ownerReferences: [owner] } };
  if (!sameImages) patch.spec = { images };
  return { action: "patch", patch, images };
}

/** Runs the fan-out pass for `nodeName`. */
export async function reconcileNode(ctx: ControllerContext, nodeName: string): Promise<ReconcileResult> {
  const input = gatherFanout(ctx, nodeName);
  const plan = planFanout(input);
  return applyFanout(ctx, nodeName, plan);
}

function gatherFanout(ctx: ControllerContext, nodeName: string): FanoutInput {
  const nodeRaw = ctx.informers.nodes.get(nodeName);
  const nicRaw = ctx.nicView(nodeName);
  return {
    nodeName,
    node: nodeRaw ? ctx.parse.node(nodeRaw) : undefined,
    imageCaches: ctx.allImageCaches(),
    current: nicRaw?.nic,
    currentOwners: nicRaw?.owners ?? [],
  };
}

async function applyFanout(ctx: ControllerContext, nodeName: string, plan: FanoutPlan): Promise<ReconcileResult> {
  const { nodeImageCaches } = ctx.clients;
  const log = ctx.log.child({ node: nodeName });
  switch (plan.action) {
    case "none":
      ctx.metrics.unchanged.inc({ resource: "nodeimagecaches" });
      return;
    case "wait":
      return { requeueAfterMs: 1_000 };
    case "create": {
      const created = await nodeImageCaches.create(plan.body, ctx.fieldManager);
      ctx.remember(created);
      ctx.metrics.writes.inc({ resource: "nodeimagecaches", verb: "create" });
      log.info({ images: plan.images.length }, "Created NodeImageCache");
      return;
    }
    case "patch": {
      const patched = await nodeImageCaches.mergePatch(nodeName, plan.patch, ctx.fieldManager);
      ctx.remember(patched);
      ctx.metrics.writes.inc({ resource: "nodeimagecaches", verb: "patch" });
      log.info({ images: plan.images.length }, "Updated NodeImageCache");
      return;
    }
    case "delete":
      try {
        await nodeImageCaches.delete(nodeName, plan.uid);
        ctx.metrics.writes.inc({ resource: "nodeimagecaches", verb: "delete" });
        log.info("Deleted NodeImageCache of a deleted node");
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      ctx.forget(nodeName);
      return;
  }
}

