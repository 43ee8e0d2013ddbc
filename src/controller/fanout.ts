/**
 * The fan-out pass for one node: gather the node, every ImageCache and the node's NodeImageCache from the
 * informer caches; plan the NodeImageCache it should have (core/fanout.ts); apply with one create, merge
 * patch or delete, or nothing when nothing changed.
 */
import type { ImageCacheView } from "../core/desired.js";
import { planFanout, type FanoutInput, type FanoutPlan } from "../core/fanout.js";
import { namesPublicKeys, planPublicKeys } from "../core/public-keys.js";
import { pinVersions } from "../core/versions.js";
import { ApiVersion, NodeImageCacheKind, NodeLabel, type ImageCache } from "../kube/api-types.js";
import { isNotFound, KubeApiError, type RawObject } from "../kube/client.js";
import type { ReconcileResult } from "../kube/work-queue.js";
import { TerminalError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { ControllerContext } from "./context.js";

/** An ImageCache as the pure planners see it. */
export function imageCacheView(ic: ImageCache): ImageCacheView {
  const view: ImageCacheView = { name: ic.metadata.name, images: ic.spec.images };
  if (ic.metadata.creationTimestamp) view.creationTimestamp = ic.metadata.creationTimestamp;
  if (ic.spec.nodeSelector) view.nodeSelector = ic.spec.nodeSelector;
  if (ic.spec.retention) view.retention = ic.spec.retention;
  return view;
}

/**
 * The view the nodes' definitions come from: each tracked image pinned to the version its checks found, one not
 * checked yet left out until it is (core/versions.ts pinVersions).
 */
export function pinnedImageCacheView(ctx: ControllerContext, ic: ImageCache): ImageCacheView {
  const view = imageCacheView(ic);
  if (!ic.spec.images.some((i) => i.updatePolicy)) return view;
  return { ...view, images: pinVersions(ic.spec.images, ctx.versionRecords(ic)).images };
}

/** The view with the public keys its checksumFrom and registry verify entries name, read from the ConfigMap cache (core/public-keys.ts). */
function withPublicKeys(ctx: ControllerContext, view: ImageCacheView): ImageCacheView {
  if (!view.images.some(namesPublicKeys)) return view;
  return { ...view, images: planPublicKeys(view.images, (ref) => ctx.configMapValue(ref)) };
}

/**
 * Exactly the definitions the fan-out writes into NodeImageCaches (pinned, with their keys): what a node's report
 * is compared with, since the agent stamps each report with the hash of the definition it was given.
 */
export function nodeDefinitionsView(ctx: ControllerContext, ic: ImageCache): ImageCacheView {
  return withPublicKeys(ctx, pinnedImageCacheView(ctx, ic));
}

/** Runs the fan-out pass for `nodeName`. */
export async function reconcileNode(ctx: ControllerContext, nodeName: string, log: Logger): Promise<ReconcileResult> {
  const input = gatherFanout(ctx, nodeName);
  const plan = planFanout(input);
  return applyFanout(ctx, nodeName, plan, log.child({ node: nodeName }));
}

function gatherFanout(ctx: ControllerContext, nodeName: string): FanoutInput {
  const nodeRaw = ctx.informers.nodes.get(nodeName);
  const seen = ctx.nicView(nodeName);
  const meta = seen?.nic.metadata;
  return {
    node: nodeRaw ? ctx.parse.node(nodeRaw) : undefined,
    imageCaches: ctx.allImageCaches().filter((ic) => !ic.metadata.deletionTimestamp).map((ic) => nodeDefinitionsView(ctx, ic)),
    current: seen && meta
      ? {
          ...(meta.uid ? { uid: meta.uid } : {}),
          ...(meta.deletionTimestamp ? { deletionTimestamp: meta.deletionTimestamp } : {}),
          labels: meta.labels ?? {},
          images: seen.nic.spec.images,
          owners: seen.owners,
        }
      : undefined,
    nodeLabel: NodeLabel,
  };
}

async function applyFanout(ctx: ControllerContext, nodeName: string, plan: FanoutPlan, log: Logger): Promise<ReconcileResult> {
  const { nodeImageCaches } = ctx.clients;
  switch (plan.action) {
    case "none":
      ctx.metrics.unchanged.inc({ resource: "nodeimagecaches" });
      return;
    case "wait":
      return { requeueAfterMs: 1_000 };
    case "create": {
      const body: RawObject = { apiVersion: ApiVersion, kind: NodeImageCacheKind, metadata: { name: nodeName, labels: plan.labels, ownerReferences: [plan.owner] }, spec: { nodeName, images: plan.images } };
      const created = await refuseInvalid(ctx, nodeName, () => nodeImageCaches.create(body, ctx.fieldManager));
      ctx.remember(created);
      ctx.metrics.writes.inc({ resource: "nodeimagecaches", verb: "create" });
      log.info({ images: plan.images.length }, "Created NodeImageCache");
      return;
    }
    case "patch": {
      const patched = await refuseInvalid(ctx, nodeName, () => nodeImageCaches.mergePatch(nodeName, plan.patch, ctx.fieldManager));
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

/**
 * Runs a write of the node's NodeImageCache. The API server refusing the object as invalid (422) is terminal:
 * the same inputs give the same object, so retrying cannot help; a Warning Event on the Node says why, and
 * the key comes back when an ImageCache or the node changes.
 */
async function refuseInvalid(ctx: ControllerContext, nodeName: string, write: () => Promise<RawObject>): Promise<RawObject> {
  try {
    return await write();
  } catch (err) {
    if (!(err instanceof KubeApiError) || err.status !== 422) throw err;
    const node = ctx.informers.nodes.get(nodeName);
    const uid = node?.metadata?.uid;
    ctx.events.record({ apiVersion: "v1", kind: "Node", name: nodeName, ...(uid ? { uid } : {}) }, "Warning", "InvalidNodeImageCache", "Reconcile", err.message);
    throw new TerminalError(`Cannot write NodeImageCache "${nodeName}": the API server refused it as invalid`, { cause: err });
  }
}
