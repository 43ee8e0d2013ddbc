/**
 * The version pass for one ImageCache (`versions:<name>`): check the sources of its tracked images that are due
 * (core/versions.ts), one at a time, record what the checks found, and wake the fan-out (nodes fetch a new
 * version) and the roll-up (which writes the records into status). It comes back when the next check is due.
 */
import { isDeepStrictEqual } from "node:util";
import { keptVersionRecords, nextVersionRecord, planVersionChecks } from "../core/versions.js";
import { namesPublicKeys, planPublicKeys } from "../core/public-keys.js";
import { checkSourceVersion } from "../image/version-check.js";
import { ApiVersion, ImageCacheKind, type ImageCache, type ImageSpec, type VersionRecord } from "../kube/api-types.js";
import type { ReconcileResult } from "../kube/work-queue.js";
import type { Logger } from "../lib/log.js";
import type { ControllerContext } from "./context.js";
import { rfc3339 } from "./rollup.js";

/** Each request of a check gives up after this long without a byte. */
const CheckIdleTimeoutMs = 30_000;

export interface VersionPassOptions {
  /** Called when the records changed: the fan-out and roll-up of this ImageCache run again. */
  changed: (ic: ImageCache) => void;
  insecureRegistries?: string[];
}

/** Runs the version pass for the ImageCache `name`. */
export async function reconcileVersions(ctx: ControllerContext, name: string, opts: VersionPassOptions, signal: AbortSignal, log: Logger): Promise<ReconcileResult> {
  const ic = ctx.imageCache(name);
  if (!ic || ic.metadata.deletionTimestamp) return;
  // Records are about the spec as written (the fan-out and roll-up pin ic.spec.images with them); only the check
  // itself needs the keys its signature is verified with.
  const images = ic.spec.images;
  const keyed = withKeys(ctx, images);
  const prior = ctx.versionRecords(ic);
  const plan = planVersionChecks(images, prior, ctx.clocks.wall.now());
  const byId = new Map(prior.map((r) => [r.id, r]));
  const passLog = log.child({ imageCache: name });
  for (const id of plan.due) {
    const image = images.find((i) => i.id === id)!;
    const result = await checkSourceVersion(keyed.find((i) => i.id === id) ?? image, { log: passLog, idleTimeoutMs: CheckIdleTimeoutMs, signal, ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}) });
    const before = byId.get(id);
    const after = nextVersionRecord(before, image, result, rfc3339(ctx.clocks.wall.now()));
    byId.set(id, after);
    report(ctx, ic, before, after, passLog);
  }
  const records = keptVersionRecords(images, [...byId.values()]);
  if (!isDeepStrictEqual(records, prior)) {
    ctx.setVersionRecords(name, records);
    opts.changed(ic);
  }
  const next = plan.due.length > 0 ? planVersionChecks(images, records, ctx.clocks.wall.now()).nextInMs : plan.nextInMs;
  return next === undefined ? undefined : { requeueAfterMs: next };
}

// The keys a checksumFrom or a registry verify names, read as the fan-out reads them, so the check verifies as a node would.
function withKeys(ctx: ControllerContext, images: readonly ImageSpec[]): ImageSpec[] {
  return images.some(namesPublicKeys) ? planPublicKeys(images, (ref) => ctx.configMapValue(ref)) : [...images];
}

function report(ctx: ControllerContext, ic: ImageCache, before: VersionRecord | undefined, after: VersionRecord, log: Logger): void {
  const subject = { apiVersion: ApiVersion, kind: ImageCacheKind, name: ic.metadata.name, ...(ic.metadata.uid ? { uid: ic.metadata.uid } : {}) };
  if (after.message !== undefined) {
    ctx.metrics.versionChecks.inc({ result: "failed" });
    // One Event and one line per failure that is news; a check failing the same way again is quiet.
    if (before?.message !== after.message) {
      ctx.events.record(subject, "Warning", "VersionCheckFailed", "CheckVersion", `Image "${after.id}": ${after.message}`);
      log.warn({ imageId: after.id, detail: after.message, version: after.current?.name }, "Version check failed; nodes keep the current version");
    }
    return;
  }
  if (before?.current?.name === after.current?.name && before?.definition === after.definition) {
    ctx.metrics.versionChecks.inc({ result: "same" });
    return;
  }
  ctx.metrics.versionChecks.inc({ result: "new" });
  const v = after.current!;
  const what = v.digest ?? v.checksum ?? (v.etag !== undefined ? `ETag ${v.etag}` : `Last-Modified ${v.lastModified}`);
  const was = before?.current ? ` (was ${before.current.name})` : "";
  ctx.events.record(subject, "Normal", "NewVersion", "CheckVersion", `Image "${after.id}" has version ${v.name}${was}: ${what}`);
  log.info({ imageId: after.id, version: v.name, previous: before?.current?.name, pin: what }, "Found a new version of a tracked image");
}
