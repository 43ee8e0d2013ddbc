/**
 * The agent's fetches and their memory, in one owner: it starts, cancels and stops the pipeline's fetches (and
 * its checks of bases already on disk), and is the only writer of what the agent remembers of each image. The
 * plan reads a snapshot (`recall`); the fetches' callbacks write here and then ask for another pass. A task logs
 * under the logger of the pass that started it, so its lines carry that pass's `reconcileId`.
 */
import { DefaultRetryPolicy, recordFailure, type ImageMemory } from "../core/agent-memory.js";
import type { ImageSpec } from "../core/api-records.js";
import type { BackoffPolicy } from "../core/backoff.js";
import { definitionKey } from "../core/image-definition.js";
import { parseByteQuantity } from "../core/quantity.js";
import { versionedFetchOf } from "../core/versions.js";
import { registryVerifyRequestOf } from "../image/cosign-verify.js";
import { checksumFromRequestOf } from "../image/checksum-from.js";
import type { RetryPolicy } from "../image/http-fetch.js";
import { describeOutcome, fetchImage, type FetchFacts, type FetchProgress, type FetchRequest } from "../image/pipeline.js";
import { writeVersionPointer } from "../image/version-pointer.js";
import type { Clock } from "../lib/clock.js";
import { AbortedError, DiskFullError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { DiskState } from "./disk-state.js";
import type { AgentMetrics } from "./metrics.js";
import type { NodeEvents } from "./node-events.js";

export interface FetchRunnerOptions {
  baseDir: string;
  clock: Clock;
  /** Measures how long a fetch took (a monotonic clock). */
  monotonic: Clock;
  metrics: AgentMetrics;
  events: NodeEvents;
  /** Told when a fetch ended, so the next pass measures the cache afresh. */
  disk: DiskState;
  /** Under a cache budget: make room for `bytes` more (a GC pass with a reserve); false when it cannot fit. */
  makeRoom?: (bytes: number) => Promise<boolean>;
  retry?: BackoffPolicy;
  fetchRetry?: RetryPolicy;
  /** The downloads' write-back interval (FetchRequest.writeBackBytes). */
  writeBackBytes?: number;
  random?: () => number;
}

/** A download (`fetch`) or a check of a base already on disk against its definition (`verify`). */
export type FetchKind = "fetch" | "verify";

/** How a pass starts a task: its kind, the spec's generation (for the failure record) and the pass's logger. */
export interface TaskStart {
  kind: FetchKind;
  generation: number;
  log: Logger;
}

/** What the runner remembers, as the plan reads it. */
export interface Recollection {
  memory: Record<string, ImageMemory>;
  /** Ids with a task under way. */
  tasks: string[];
  /** Whether rejections of a status written before this agent started were taken (see planSeedMemory). */
  seeded: boolean;
}

const ProgressRequeueMs = 1_000;

/** One running task; `log` is the starting pass's, bound to the image. */
interface Task {
  image: ImageSpec;
  definitionKey: string;
  controller: AbortController;
  generation: number;
  log: Logger;
}

export class FetchRunner {
  private readonly memory: Record<string, ImageMemory> = {};
  private readonly tasks = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private seeded = false;
  private readonly listeners: ((afterMs?: number) => void)[] = [];

  constructor(private readonly opts: FetchRunnerOptions) {}

  /** Calls `listener` when a pass should run: soon after progress (`afterMs`), at once after a task ended. */
  onChange(listener: (afterMs?: number) => void): void {
    this.listeners.push(listener);
  }

  /** A snapshot of the memory: later progress replaces entries here, never the ones handed out. */
  recall(): Recollection {
    const memory = Object.fromEntries(Object.entries(this.memory).map(([id, m]) => [id, { ...m }]));
    return { memory, tasks: [...this.tasks.keys()], seeded: this.seeded };
  }

  /** Takes remembered rejections for ids the runner knows nothing of yet; from then on it counts as seeded. */
  seed(entries: Readonly<Record<string, ImageMemory>>): void {
    for (const [id, m] of Object.entries(entries)) this.memory[id] ??= m;
    this.seeded = true;
  }

  /** Forgets ids, except any with a task under way. */
  forget(ids: readonly string[]): void {
    for (const id of ids) if (!this.tasks.has(id)) delete this.memory[id];
  }

  /** Aborts the task for `id`, if one runs; `log` is the cancelling pass's. */
  cancel(id: string, why: string, log: Logger): void {
    const t = this.tasks.get(id);
    if (!t || t.controller.signal.aborted) return;
    log.info({ imageId: id, why }, "Cancelled fetch of image");
    t.controller.abort(new AbortedError(`Cancelled fetch: ${why}`));
  }

  /** Aborts every task and waits until each has rolled back its work files. */
  async stop(): Promise<void> {
    for (const t of this.tasks.values()) t.controller.abort(new AbortedError("Agent is stopping"));
    await Promise.all([...this.tasks.values()].map((t) => t.done));
  }

  /** Starts a task for `image` unless one is under way. */
  start(image: ImageSpec, how: TaskStart): void {
    if (this.tasks.has(image.id)) return;
    const key = definitionKey(image);
    const controller = new AbortController();
    const task: Task = { image, definitionKey: key, controller, generation: how.generation, log: how.log.child({ imageId: image.id }) };
    if (how.kind === "fetch") (this.memory[image.id] ??= {}).running = { definitionKey: key, phase: "Downloading", bytesDone: 0 };
    const done = this.run(task)
      .catch((err: unknown) => task.log.error({ err }, "Fetch task failed unexpectedly"))
      .finally(() => {
        this.tasks.delete(image.id);
        const mem = this.memory[image.id];
        if (mem) delete mem.running;
        this.opts.metrics.imageBytesDone.remove({ image_id: image.id });
        this.opts.metrics.imageBytesTotal.remove({ image_id: image.id });
        this.opts.disk.invalidate();
        this.notify();
      });
    this.tasks.set(image.id, { controller, done });
  }

  private notify(afterMs?: number): void {
    for (const l of this.listeners) l(afterMs);
  }

  private async run(task: Task): Promise<void> {
    const { image, controller, log } = task;
    const { metrics } = this.opts;
    const admission: { error?: Error } = {};
    const started = this.opts.monotonic.now();
    try {
      const result = await fetchImage({
        ...fetchRequestOf(image, this.opts.baseDir),
        signal: controller.signal,
        log,
        ...this.progressHandlers(task, admission),
        ...(this.opts.fetchRetry ? { retry: this.opts.fetchRetry } : {}),
        ...(this.opts.writeBackBytes === undefined ? {} : { writeBackBytes: this.opts.writeBackBytes }),
      });
      // Only a Ready version becomes the one new instance disks get; the old one stays theirs until then.
      if (image.version && (await writeVersionPointer(this.opts.baseDir, image.id, image.version.name, new Date(this.opts.clock.now())))) {
        log.info({ version: image.version.name, base: result.base }, "New instance disks of this image now use its new version");
        this.opts.events.record("Normal", "VersionCurrent", "Fetch", `Image "${image.id}": version ${image.version.name} (base ${result.base}) is the one new instance disks use`);
      }
      this.memory[image.id] = { verified: task.definitionKey };
      if (result.cached) return;
      metrics.fetches.inc({ outcome: "ready", reason: "fetched" });
      metrics.fetchSeconds.observe({ outcome: "ready" }, result.seconds);
      log.info({ base: result.base, bytes: result.bytesDownloaded, durationMs: Math.round(result.seconds * 1000) }, "Fetched image");
      this.opts.events.record("Normal", "ImageReady", "Fetch", `Image "${image.id}" is ready as base ${result.base} (${result.virtualSize} bytes virtual)`);
    } catch (err) {
      const refused = admission.error ?? (controller.signal.reason instanceof DiskFullError ? controller.signal.reason : undefined);
      if (controller.signal.aborted && !refused) {
        metrics.fetches.inc({ outcome: "aborted", reason: "aborted" });
        return;
      }
      this.recordFailed(task, refused ?? err, (this.opts.monotonic.now() - started) / 1000);
    }
  }

  // Progress updates metrics and memory, asks for a pass soon, and asks once for room under a cache budget.
  // A resumed download starts at the kept bytes: they count as resumed, not as fetched.
  private progressHandlers(task: Task, admission: { error?: Error }) {
    const { metrics } = this.opts;
    const { id } = task.image;
    const labels = { image_id: id };
    let lastDone = 0;
    let admitted = false;
    const onFacts = (f: FetchFacts) => {
      if (f.resumedBytes === undefined || f.resumedBytes <= 0) return;
      metrics.resumedBytes.inc(labels, f.resumedBytes);
      lastDone = f.resumedBytes;
    };
    const onProgress = (p: FetchProgress) => {
      if (p.phase === "Downloading") {
        metrics.bytesFetched.inc(labels, Math.max(0, p.bytesDone - lastDone));
        lastDone = p.bytesDone;
      }
      metrics.imageBytesDone.set(labels, p.bytesDone);
      if (p.bytesTotal !== undefined) metrics.imageBytesTotal.set(labels, p.bytesTotal);
      const m = this.memory[id];
      if (m?.running) m.running = { definitionKey: task.definitionKey, phase: p.phase, bytesDone: p.bytesDone, ...(p.bytesTotal !== undefined ? { bytesTotal: p.bytesTotal } : {}) };
      if (!admitted && p.bytesTotal !== undefined && this.opts.makeRoom) {
        admitted = true;
        void this.admit(task, p.bytesTotal).then((e) => (admission.error = e));
      }
      this.notify(ProgressRequeueMs);
    };
    return { onFacts, onProgress };
  }

  private recordFailed(task: Task, err: unknown, seconds: number): void {
    const { metrics } = this.opts;
    const { id } = task.image;
    const o = describeOutcome(err);
    const kind = o.status === "rejected" ? "rejected" : "failed";
    const m = (this.memory[id] ??= {});
    m.failure = recordFailure(m.failure, { kind, reason: o.reason, message: o.message }, {
      now: this.opts.clock.now(),
      generation: task.generation,
      definitionKey: task.definitionKey,
      jitter: (this.opts.random ?? Math.random)(),
      policy: this.opts.retry ?? DefaultRetryPolicy,
    });
    metrics.fetches.inc({ outcome: kind, reason: o.reason });
    metrics.fetchSeconds.observe({ outcome: kind }, seconds);
    if (kind === "rejected") {
      metrics.rejections.inc({ reason: o.reason });
      this.opts.events.record("Warning", "ImageRejected", "Fetch", o.message);
    } else {
      this.opts.events.record("Warning", o.reason === "disk-full" ? "DiskFull" : "FetchFailed", "Fetch", m.failure.message);
    }
  }

  private async admit(task: Task, bytes: number): Promise<Error | undefined> {
    try {
      if (await this.opts.makeRoom?.(bytes)) return undefined;
    } catch (err) {
      task.log.warn({ err }, "Cannot make room for image, fetching anyway");
      return undefined;
    }
    const err = new DiskFullError(`Cannot fit image "${task.image.id}" (${bytes} bytes) in the cache budget: not enough unused bases to evict`);
    task.controller.abort(err);
    return err;
  }
}

/** The pipeline's request for `image`: a tracked image's version pinned as core/versions.ts versionedFetchOf says. */
export function fetchRequestOf(image: ImageSpec, baseDir: string): FetchRequest {
  const f = versionedFetchOf(image);
  const v = image.version;
  // Every node verifies the signature itself, a pinned version included: the controller's check is not trusted for it.
  const verify = "registry" in image.source ? image.source.registry.verify : undefined;
  return {
    baseDir,
    id: image.id,
    source: f.source,
    ...(f.checksum ? { checksum: f.checksum } : {}),
    ...(f.checksumFrom ? { checksumFrom: checksumFromRequestOf(f.checksumFrom) } : {}),
    ...(verify ? { registryVerify: registryVerifyRequestOf(verify) } : {}),
    ...(f.preconditions ? { preconditions: f.preconditions } : {}),
    ...(v ? { version: { ...v, ...(image.checksumFrom ? { checksumFromUrl: image.checksumFrom.url } : {}) } } : {}),
    ...(image.maxVirtualSize ? { maxVirtualSize: parseByteQuantity(image.maxVirtualSize) } : {}),
  };
}
