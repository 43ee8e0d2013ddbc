/**
 * The node agent's reconciler: gathers its NodeImageCache, the bases on disk and what it remembers of its
 * fetches; plans with core/agent-plan.ts; applies by starting, verifying or cancelling fetches and offering
 * the status to the writer. Fetches run in the background and queue the node again when they end.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { DefaultRetryPolicy, imageFingerprint, planAgent, recordFailure, type AgentWantedImage, type ImageMemory } from "../core/agent-plan.js";
import type { BackoffPolicy } from "../core/backoff.js";
import { classifyGcEntry } from "../core/gc.js";
import { baseNameFor } from "../core/names.js";
import { parseByteQuantity } from "../core/quantity.js";
import { isRejectReason } from "../core/reject-reasons.js";
import { listBaseDir, readSidecar } from "../image/base-dir.js";
import type { RetryPolicy } from "../image/http-fetch.js";
import { describeOutcome, fetchImage, type FetchProgress } from "../image/pipeline.js";
import { ApiVersion, NodeImageCacheKind, type NodeImageCache } from "../kube/api-types.js";
import type { EventRecorder, EventType } from "../kube/events.js";
import type { ReconcileResult } from "../kube/work-queue.js";
import type { Clock } from "../lib/clock.js";
import { DiskFullError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { readFilesystemUsage } from "./inventory.js";
import type { AgentMetrics } from "./metrics.js";
import type { StatusWriter } from "./progress.js";

export interface NodeAgentOptions {
  node: string;
  baseDir: string;
  concurrency: number;
  clock: Clock;
  log: Logger;
  metrics: AgentMetrics;
  status: StatusWriter;
  events?: EventRecorder;
  /** The node's NodeImageCache as the informer holds it now. */
  nodeImageCache: () => NodeImageCache | undefined;
  /** Queue the node for another pass, now or after `ms`. */
  requeue: (ms?: number) => void;
  /** Under a cache budget: make room for `bytes` more (a GC pass with a reserve); false when it cannot fit. */
  makeRoom?: (bytes: number) => Promise<boolean>;
  retry?: BackoffPolicy;
  fetchRetry?: RetryPolicy;
  random?: () => number;
}

const ProgressRequeueMs = 1_000;
const CacheUsageRefreshMs = 15_000;

export class NodeAgent {
  readonly memory: Record<string, ImageMemory> = {};
  private readonly tasks = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private readonly sizes = new Map<string, { mtimeMs: number; virtualSize?: number }>();
  private seeded = false;
  private usage: { at: number; cacheBytes: number; bases: number } | undefined;
  private budget: { overBudget: boolean; cacheBytes: number; highBytes: number } | undefined;

  constructor(private readonly opts: NodeAgentOptions) {}

  /** One pass: gather, plan, apply. */
  async reconcile(signal: AbortSignal): Promise<ReconcileResult> {
    const nic = this.opts.nodeImageCache();
    const { onDisk, disk } = await this.gatherDisk(nic?.spec.images ?? []);
    if (!nic) {
      for (const id of this.tasks.keys()) this.cancel(id, "its NodeImageCache is gone");
      return;
    }
    if (!this.seeded) this.seedFromStatus(nic);
    this.opts.status.observe(nic.status);
    const plan = planAgent({
      now: this.opts.clock.now(),
      generation: nic.metadata.generation ?? 0,
      wanted: nic.spec.images as AgentWantedImage[],
      onDisk,
      memory: this.memory,
      ...(nic.status ? { prior: nic.status } : {}),
      disk,
      concurrency: this.opts.concurrency,
      ...(this.budget ? { budget: this.budget } : {}),
      baseNameFor,
    });
    for (const id of plan.cancel) this.cancel(id, "its definition changed or it is no longer wanted");
    this.forgetUnwanted(nic);
    if (!signal.aborted) {
      for (const image of plan.verify) this.launch(image, "verify", nic);
      for (const image of plan.start) this.launch(image, "fetch", nic);
    }
    this.opts.status.offer(plan.status);
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
  }

  // What the agent remembers of an image it no longer wants (and does not fetch) goes, so memory stays bounded.
  private forgetUnwanted(nic: NodeImageCache): void {
    const wanted = new Set(nic.spec.images.map((i) => i.id));
    for (const id of Object.keys(this.memory)) if (!wanted.has(id) && !this.tasks.has(id)) delete this.memory[id];
  }

  /** Aborts every fetch and waits until each has rolled back its work files. */
  async stop(): Promise<void> {
    for (const t of this.tasks.values()) t.controller.abort(new Error("Agent is stopping"));
    await Promise.all([...this.tasks.values()].map((t) => t.done));
  }

  get running(): number {
    return this.tasks.size;
  }

  // Stats only the wanted bases on each pass; the whole-dir listing behind cacheBytes (costly with thousands
  // of bases) is redone at most every CacheUsageRefreshMs, or sooner when asked (after a GC pass).
  private async gatherDisk(wanted: readonly { id: string }[]) {
    const onDisk = new Map<string, { virtualSize?: number }>();
    for (const { id } of wanted) {
      const base = baseNameFor(id);
      const st = await stat(join(this.opts.baseDir, base)).catch(() => undefined);
      if (!st?.isFile()) continue;
      const known = this.sizes.get(base);
      if (!known || known.mtimeMs !== st.mtimeMs) {
        const sc = await readSidecar(this.opts.baseDir, base);
        this.sizes.set(base, { mtimeMs: st.mtimeMs, virtualSize: sc?.virtualSize ?? st.size });
      }
      const virtualSize = this.sizes.get(base)?.virtualSize;
      onDisk.set(base, virtualSize !== undefined ? { virtualSize } : {});
    }
    const now = this.opts.clock.now();
    if (this.usage === undefined || now - this.usage.at >= CacheUsageRefreshMs || now < this.usage.at) {
      this.usage = { at: now, ...(await this.measureCache()) };
    }
    this.opts.metrics.bases.set(this.usage.bases);
    this.opts.metrics.cacheBytes.set(this.usage.cacheBytes);
    const fs = await readFilesystemUsage(this.opts.baseDir);
    return { onDisk, disk: { cacheBytes: this.usage.cacheBytes, ...fs } };
  }

  private async measureCache(): Promise<{ cacheBytes: number; bases: number }> {
    let cacheBytes = 0;
    let bases = 0;
    for (const e of await listBaseDir(this.opts.baseDir)) {
      const kind = classifyGcEntry({ name: e.name, type: "file" }).kind;
      if (kind !== "unknown") cacheBytes += e.allocatedBytes;
      if (kind === "base") bases++;
    }
    return { cacheBytes, bases };
  }

  /** Records what the last GC pass found under the cache budget, for the CacheWithinBudget condition. */
  setBudgetState(b: { overBudget: boolean; cacheBytes: number; highBytes: number }): void {
    this.budget = b;
  }

  /** Makes the next pass measure the cache's usage afresh (after GC removed files). */
  refreshUsage(): void {
    this.usage = undefined;
  }

  // A rejection written before a restart stays a rejection until the generation changes.
  private seedFromStatus(nic: NodeImageCache): void {
    this.seeded = true;
    for (const s of nic.status?.images ?? []) {
      if (s.phase !== "Failed" || !s.reason || !isRejectReason(s.reason) || this.memory[s.id]) continue;
      const generation = s.observedGeneration ?? nic.status?.observedGeneration ?? 0;
      // Still the generation it was rejected at: the definition in the spec now is the one that was rejected.
      const spec = generation === nic.metadata.generation ? (nic.spec.images as AgentWantedImage[]).find((i) => i.id === s.id) : undefined;
      const fingerprint = spec ? { fingerprint: imageFingerprint(spec) } : {};
      this.memory[s.id] = { failure: { kind: "rejected", reason: s.reason, message: s.message ?? "", attempts: 1, generation, ...fingerprint } };
    }
  }

  private cancel(id: string, why: string): void {
    const t = this.tasks.get(id);
    if (!t || t.controller.signal.aborted) return;
    this.opts.log.info({ imageId: id, why }, "Cancelled fetch of image");
    t.controller.abort(new Error(`Cancelled: ${why}`));
  }

  private launch(image: AgentWantedImage, kind: "fetch" | "verify", nic: NodeImageCache): void {
    if (this.tasks.has(image.id)) return;
    const fingerprint = imageFingerprint(image);
    const controller = new AbortController();
    const m = (this.memory[image.id] ??= {});
    if (kind === "fetch") m.running = { fingerprint, phase: "Downloading", bytesDone: 0 };
    const done = this.runFetch(image, fingerprint, kind, controller, nic)
      .catch((err: unknown) => this.opts.log.error({ err, imageId: image.id }, "Fetch task failed unexpectedly"))
      .finally(() => {
        this.tasks.delete(image.id);
        const mem = this.memory[image.id];
        if (mem) delete mem.running;
        this.opts.metrics.imageBytesDone.remove({ image_id: image.id });
        this.opts.metrics.imageBytesTotal.remove({ image_id: image.id });
        this.refreshUsage();
        this.opts.requeue();
      });
    this.tasks.set(image.id, { controller, done });
  }

  private async runFetch(image: AgentWantedImage, fingerprint: string, kind: "fetch" | "verify", controller: AbortController, nic: NodeImageCache): Promise<void> {
    const { log, metrics } = this.opts;
    const labels = { image_id: image.id };
    let lastDone = 0;
    let admission: Error | undefined;
    let admitted = false;
    const onProgress = (p: FetchProgress) => {
      if (p.phase === "Downloading") {
        metrics.bytesFetched.inc(labels, Math.max(0, p.bytesDone - lastDone));
        lastDone = p.bytesDone;
      }
      metrics.imageBytesDone.set(labels, p.bytesDone);
      if (p.bytesTotal !== undefined) metrics.imageBytesTotal.set(labels, p.bytesTotal);
      const m = this.memory[image.id];
      if (m?.running) m.running = { fingerprint, phase: p.phase, bytesDone: p.bytesDone, ...(p.bytesTotal !== undefined ? { bytesTotal: p.bytesTotal } : {}) };
      if (!admitted && p.bytesTotal !== undefined && this.opts.makeRoom) {
        admitted = true;
        void this.admit(image.id, p.bytesTotal, controller).then((e) => (admission = e));
      }
      this.opts.requeue(ProgressRequeueMs);
    };
    const started = performance.now();
    try {
      const result = await fetchImage({
        baseDir: this.opts.baseDir,
        id: image.id,
        source: image.source,
        ...(image.checksum ? { checksum: image.checksum } : {}),
        ...(image.maxVirtualSize ? { maxVirtualSize: parseByteQuantity(image.maxVirtualSize) } : {}),
        signal: controller.signal,
        log: log.child({ imageId: image.id }),
        onProgress,
        ...(this.opts.fetchRetry ? { retry: this.opts.fetchRetry } : {}),
      });
      this.memory[image.id] = { verified: fingerprint };
      if (result.cached) return;
      metrics.fetches.inc({ outcome: "ready", reason: "fetched" });
      metrics.fetchSeconds.observe({ outcome: "ready" }, result.seconds);
      log.info({ imageId: image.id, base: result.base, bytes: result.bytesDownloaded, durationMs: Math.round(result.seconds * 1000) }, "Fetched image");
      this.event(nic, "Normal", "ImageReady", "Fetch", `Image "${image.id}" is ready as base ${result.base} (${result.virtualSize} bytes virtual)`);
    } catch (err) {
      admission ??= controller.signal.reason instanceof DiskFullError ? controller.signal.reason : undefined;
      if (controller.signal.aborted && !admission) {
        metrics.fetches.inc({ outcome: "aborted", reason: "aborted" });
        return;
      }
      this.recordFailed(image, fingerprint, admission ?? err, nic, (performance.now() - started) / 1000);
    }
  }

  private recordFailed(image: AgentWantedImage, fingerprint: string, err: unknown, nic: NodeImageCache, seconds: number): void {
    const { metrics } = this.opts;
    const o = describeOutcome(err);
    const kind = o.status === "rejected" ? "rejected" : "failed";
    const m = (this.memory[image.id] ??= {});
    m.failure = recordFailure(m.failure, { kind, reason: o.reason, message: o.message }, {
      now: this.opts.clock.now(),
      generation: nic.metadata.generation ?? 0,
      fingerprint,
      jitter: (this.opts.random ?? Math.random)(),
      policy: this.opts.retry ?? DefaultRetryPolicy,
    });
    metrics.fetches.inc({ outcome: kind, reason: o.reason });
    metrics.fetchSeconds.observe({ outcome: kind }, seconds);
    if (kind === "rejected") {
      metrics.rejections.inc({ reason: o.reason });
      this.event(nic, "Warning", "ImageRejected", "Fetch", o.message);
    } else {
      this.event(nic, "Warning", o.reason === "disk-full" ? "DiskFull" : "FetchFailed", "Fetch", m.failure.message);
    }
  }

  private async admit(id: string, bytes: number, controller: AbortController): Promise<Error | undefined> {
    try {
      if (await this.opts.makeRoom?.(bytes)) return undefined;
    } catch (err) {
      this.opts.log.warn({ err, imageId: id }, "Cannot make room for image, fetching anyway");
      return undefined;
    }
    const err = new DiskFullError(`Cannot fit image "${id}" (${bytes} bytes) in the cache budget: not enough unused bases to evict`);
    controller.abort(err);
    return err;
  }

  /** Records an Event about this node's NodeImageCache. */
  event(nic: NodeImageCache, type: EventType, reason: string, action: string, note: string): void {
    const subject = { apiVersion: ApiVersion, kind: NodeImageCacheKind, name: nic.metadata.name, ...(nic.metadata.uid ? { uid: nic.metadata.uid } : {}) };
    this.opts.events?.record(subject, type, reason, action, note);
  }
}
