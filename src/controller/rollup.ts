/**
 * The roll-up pass for one ImageCache: gather it, the nodes it selects and their NodeImageCache statuses;
 * plan its status (pure, src/core/rollup.ts); write the status only when it differs, and at most once per
 * `statusIntervalMs` so that a thousand nodes turning Ready cost a handful of writes, not a thousand.
 */
import { capImages, findConflicts, lostDefinitions, MaxImagesPerNode, planNodeImages, selectingImageCaches } from "../core/desired.js";
import { selectorMatches } from "../core/label-selector.js";
import { findCondition } from "../core/conditions.js";
import { definitionHash } from "../core/image-definition.js";
import { planImageCacheStatus, type NodeImageReport, type RollupStatus } from "../core/rollup.js";
import { ApiVersion, ImageCacheKind, type ImageCache } from "../kube/api-types.js";
import { isNotFound } from "../kube/client.js";
import { parseNodeImageCache } from "../kube/parse.js";
import { normalizeJson } from "../core/json.js";
import { statusDiffers } from "../kube/status.js";
import type { ReconcileResult } from "../kube/work-queue.js";
import type { Logger } from "../lib/log.js";
import type { ControllerContext } from "./context.js";
import { imageCacheView, nodeDefinitionsView } from "./fanout.js";
import { keptVersionRecords } from "../core/versions.js";

/** RFC 3339 at second precision, as the API server stores metav1.Time. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function gatherRollup(ctx: ControllerContext, ic: ImageCache, all: ImageCache[]) {
  const views = all.filter((x) => !x.metadata.deletionTimestamp).map(imageCacheView);
  const conflicts = findConflicts(views);
  ctx.metrics.conflicts.set(conflicts.length);
  const nodes: string[] = [];
  const reports = new Map<string, NodeImageReport[]>();
  const overflow = new Set<string>();
  const mayOverflow = views.reduce((n, v) => n + v.images.length, 0) > MaxImagesPerNode;
  const lost = mayOverflow ? lostDefinitions(conflicts) : new Set<string>();
  for (const raw of ctx.informers.nodes.list()) {
    const node = ctx.parse.node(raw);
    if (!selectorMatches(ic.spec.nodeSelector, node.labels)) continue;
    nodes.push(node.name);
    const nicRaw = ctx.informers.nodeImageCaches.get(node.name);
    const images = nicRaw ? parseNodeImageCache(nicRaw).status?.images : undefined;
    if (images) reports.set(node.name, images);
    if (mayOverflow) {
      const { dropped } = capImages(planNodeImages(selectingImageCaches(views, node.labels), lost));
      for (const id of dropped) if (ic.spec.images.some((i) => i.id === id)) overflow.add(id);
    }
  }
  return { nodes: nodes.sort(), reports, conflicts, overflowIds: [...overflow].sort() };
}

/** Runs the roll-up pass for the ImageCache `name`. */
export async function reconcileImageCache(ctx: ControllerContext, name: string, statusIntervalMs: number, log: Logger): Promise<ReconcileResult> {
  const raw = ctx.informers.imageCaches.get(name);
  if (!raw) {
    ctx.forgetStatus(name);
    return;
  }
  const ic = ctx.imageCache(name)!;
  if (ic.metadata.deletionTimestamp) return;
  const current = ctx.currentStatus(name, raw);
  const now = ctx.clocks.monotonic.now();
  // Within the interval after a write, look again when it ends instead of computing a status we may not write.
  // A new generation is not held back: observedGeneration should follow a spec change at once.
  const last = ctx.lastStatusWriteAt(name);
  const generationChanged = current?.observedGeneration !== (ic.metadata.generation ?? 0);
  if (last !== undefined && now - last < statusIntervalMs && !generationChanged) return { requeueAfterMs: statusIntervalMs - (now - last) };
  const g = gatherRollup(ctx, ic, ctx.allImageCaches());
  const wanted = planImageCacheStatus({
    name,
    generation: ic.metadata.generation ?? 0,
    imageIds: ic.spec.images.map((i) => i.id),
    nodes: g.nodes,
    reports: g.reports,
    // A tracked image counts on a node once it holds the current version, and a signed one with the current keys:
    // the definitions are exactly the ones the fan-out wrote.
    definitions: new Map(nodeDefinitionsView(ctx, ic).images.map((i) => [i.id, definitionHash(i)])),
    versions: keptVersionRecords(ic.spec.images, ctx.versionRecords(ic)),
    conflicts: g.conflicts,
    overflowIds: g.overflowIds,
    existingConditions: current?.conditions ?? [],
    now: rfc3339(ctx.clocks.wall.now()),
  });
  if (!statusDiffers(current, wanted)) {
    ctx.metrics.unchanged.inc({ resource: "imagecaches/status" });
    return;
  }
  return writeStatus(ctx, ic, current, wanted, now, log.child({ imageCache: name }));
}

async function writeStatus(ctx: ControllerContext, ic: ImageCache, current: ImageCache["status"] | undefined, wanted: RollupStatus, now: number, log: Logger): Promise<ReconcileResult> {
  const name = ic.metadata.name;
  let written;
  try {
    written = await ctx.clients.imageCaches.replaceStatus(name, wanted, ctx.fieldManager);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  ctx.rememberStatus(name, written.metadata?.resourceVersion ?? "", normalizeJson(wanted), now);
  ctx.metrics.writes.inc({ resource: "imagecaches/status", verb: "patch" });
  log.debug({ ready: wanted.ready }, "Updated ImageCache status");
  recordFlips(ctx, ic, current, wanted, log);
}

function recordFlips(ctx: ControllerContext, ic: ImageCache, current: ImageCache["status"] | undefined, wanted: RollupStatus, log: Logger): void {
  const subject = { apiVersion: ApiVersion, kind: ImageCacheKind, name: ic.metadata.name, ...(ic.metadata.uid ? { uid: ic.metadata.uid } : {}) };
  const flipped = (type: string, status: string) => findCondition(wanted.conditions, type)?.status === status && findCondition(current?.conditions, type)?.status !== status;
  if (flipped("Conflict", "True")) {
    const c = findCondition(wanted.conditions, "Conflict")!;
    ctx.events.record(subject, "Warning", c.reason, "Reconcile", c.message);
    log.warn({ reason: c.reason, detail: c.message }, "ImageCache conflicts with another");
  }
  if (flipped("Degraded", "True")) {
    const c = findCondition(wanted.conditions, "Degraded")!;
    ctx.events.record(subject, "Warning", c.reason, "Reconcile", c.message);
  }
  if (flipped("Ready", "True")) {
    const c = findCondition(wanted.conditions, "Ready")!;
    ctx.events.record(subject, "Normal", c.reason, "Reconcile", c.message);
    log.info({ ready: wanted.ready }, "ImageCache is ready");
  }
}
