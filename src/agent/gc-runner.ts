/**
 * The agent's GC passes, one at a time: on a timer, on SIGUSR1, on a new `basecache.io/gc-requested` value, at
 * start, and to make room for an arriving image under a cache budget. Wanted images come from the informer; pod
 * uses from the controller, asked for each pass that could remove a base (pod-uses.ts).
 * Each pass logs under its own `reconcileId`, as a queue pass does.
 */
import { randomUUID } from "node:crypto";
import { DefaultRetentionMs, type GcDecision, type GcWant } from "../core/gc.js";
import { parseDuration } from "../core/duration.js";
import { cacheBytesAfter } from "../core/gc-budget.js";
import { baseNameOfImage } from "../core/names.js";
import { readVersionPointer } from "../image/version-pointer.js";
import type { GcBudget } from "../core/watermarks.js";
import type { NodeImageCache } from "../kube/api-types.js";
import type { Clock } from "../lib/clock.js";
import { asError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { DiskState } from "./disk-state.js";
import { imageIdOf, runGcPass, type GcReferences } from "./gc-pass.js";
import { InstanceDiskScanner } from "./inventory.js";
import type { AgentMetrics } from "./metrics.js";
import type { NodeEvents } from "./node-events.js";
import { diskInspector } from "./options.js";

export interface GcRunnerOptions {
  baseDir: string;
  instancesDir: string;
  clock: Clock;
  /** Measures durations. */
  monotonic: Clock;
  defaultRetentionMs?: number;
  budget?: GcBudget;
  dryRunGc: boolean;
  log: Logger;
  metrics: AgentMetrics;
  references: GcReferences;
  /** Events about the node's NodeImageCache. */
  events: NodeEvents;
  /** Where each pass records what it removed and, under a cache budget, what it found. */
  disk: DiskState;
  signal: AbortSignal;
  /** A new pass id; default a random UUID. */
  newId?: () => string;
}

/** Wanted bases from the node's NodeImageCache: unknown until its informer synced; none when it does not exist. */
export function wantedFrom(nic: NodeImageCache | undefined, synced: boolean, defaultRetentionMs: number): GcWant[] | undefined {
  if (!synced) return undefined;
  return (nic?.spec.images ?? []).map((i) => {
    let retentionMs = defaultRetentionMs;
    try {
      if (i.unusedFor) retentionMs = parseDuration(i.unusedFor);
    } catch {
      // The CRD validates the pattern; an unparsable value keeps the default.
    }
    return { base: baseNameOfImage(i), imageId: i.id, retentionMs };
  });
}

/**
 * Adds, for each tracked image, the base its `.current` pointer names when that is not the version the node is
 * told to hold: until the new version is Ready here, new instance disks still get the old one, so it stays wanted.
 * A pointer that cannot be read adds nothing (the old base is then kept only by its uses and its retention).
 */
export async function withCurrentVersions(wanted: GcWant[] | undefined, nic: NodeImageCache | undefined, baseDir: string, log: Logger): Promise<GcWant[] | undefined> {
  if (!wanted) return wanted;
  const out = [...wanted];
  for (const image of nic?.spec.images ?? []) {
    if (!image.version) continue;
    const pointer = await readVersionPointer(baseDir, image.id).catch((err: unknown) => {
      log.warn({ imageId: image.id, err: asError(err) }, "Cannot read the version pointer of image");
      return undefined;
    });
    const want = wanted.find((w) => w.imageId === image.id);
    if (pointer && want && pointer.base !== want.base) out.push({ ...want, base: pointer.base });
  }
  return out;
}

/** Serializes GC passes: timer, signal, annotation and room-making requests never overlap. */
export class GcRunner {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly scanner = new InstanceDiskScanner(diskInspector);

  constructor(private readonly opts: GcRunnerOptions) {}

  /**
   * Runs a pass after any pass under way; resolves with whether a reserve (room for an image) fits. Never
   * rejects: a failed pass is logged and counted, and does not stop a fetch.
   */
  run(trigger: string, reserveBytes = 0): Promise<boolean> {
    const next = this.chain.then(() => this.pass(trigger, reserveBytes)).catch(() => true);
    this.chain = next;
    return next;
  }

  /**
   * Runs `fn` between passes, never during one: the verifier reads a base under its lock, which would make a
   * pass refuse to remove that base, and its open descriptor would count as a use.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  async idle(): Promise<void> {
    await this.chain;
  }

  private async pass(trigger: string, reserveBytes: number): Promise<boolean> {
    const { metrics } = this.opts;
    const log = this.opts.log.child({ gcTrigger: trigger, reconcileId: (this.opts.newId ?? randomUUID)() });
    const end = metrics.gcSeconds.startTimer();
    if (this.opts.signal.aborted) return true;
    try {
      const r = await runGcPass(
        {
          baseDir: this.opts.baseDir,
          instancesDir: this.opts.instancesDir,
          clock: this.opts.clock,
          monotonic: this.opts.monotonic,
          defaultRetentionMs: this.opts.defaultRetentionMs ?? DefaultRetentionMs,
          ...(this.opts.budget ? { budget: this.opts.budget } : {}),
          ...(reserveBytes > 0 ? { reserveBytes } : {}),
          dryRun: this.opts.dryRunGc,
          references: this.opts.references,
          scanner: this.scanner,
          log,
          metrics,
          onRemoved: (d) => {
            if (d.kind === "base") this.opts.events.record("Normal", "BaseRemoved", "GarbageCollect", `Removed base ${d.name}${d.imageId ? ` of image "${d.imageId}"` : ""}: ${d.reason}: ${d.message}`);
          },
        },
        this.opts.signal,
      );
      metrics.gcPasses.inc({ outcome: "done" });
      const planned = r.plan.decisions.filter((d) => d.action === "delete");
      const uncertain = r.plan.decisions.find((d) => d.reason === "ReferencesIncomplete");
      if (uncertain) this.opts.events.record("Warning", "GcRefused", "GarbageCollect", `Kept every unused base: ${uncertain.message}`);
      if (r.plan.usage.overBudget) this.opts.events.record("Warning", "CacheOverBudget", "GarbageCollect", `Cache holds ${r.plan.usage.afterBytes} bytes, above its high watermark of ${r.plan.usage.highBytes ?? 0}, and nothing more may be evicted`);
      log.info(
        {
          removed: r.removed.length,
          refused: r.refused.length,
          planned: planned.length,
          dryRun: r.plan.dryRun,
          // What the pass left; what it found is cacheBytesBefore.
          cacheBytes: cacheBytesAfter(r.plan.usage.cacheBytes, r.removed),
          cacheBytesBefore: r.plan.usage.cacheBytes,
          disks: r.disks.count,
          durationMs: Math.round(end() * 1000),
        },
        r.plan.dryRun ? "Planned garbage collection (dry run)" : "Collected garbage",
      );
      reportUnknown(r.plan.decisions, log, metrics);
      if (r.plan.dryRun) await reportDryRun(planned, this.opts.baseDir, log);
      const u = r.plan.usage;
      const budget = u.highBytes !== undefined && !r.plan.dryRun ? { overBudget: u.overBudget, cacheBytes: u.afterBytes, highBytes: u.highBytes } : undefined;
      this.opts.disk.recordGcPass({ ...(budget ? { budget } : {}), removed: r.removed.length > 0 });
      return r.plan.usage.fits;
    } catch (e) {
      end();
      if (this.opts.signal.aborted) return true;
      metrics.gcPasses.inc({ outcome: "failed" });
      log.error({ err: asError(e) }, "Garbage collection pass failed");
      return true;
    }
  }
}

/** Names of unknown files in one warning; the rest only counted, so a dir full of strangers cannot flood the log. */
const MaxUnknownNamesLogged = 20;
/** Would-be removals logged one per line in a dry run; the rest only counted. */
const MaxDryRunLines = 50;

// NOTE: GC never deletes a file it does not recognise; without this only `basecache gc` would ever show them.
function reportUnknown(decisions: readonly GcDecision[], log: Logger, metrics: AgentMetrics): void {
  const unknown = decisions.filter((d) => d.kind === "unknown");
  metrics.unknownFiles.set(unknown.length);
  if (unknown.length === 0) return;
  log.warn(
    { unknownFiles: unknown.slice(0, MaxUnknownNamesLogged).map((d) => d.name), unknownCount: unknown.length, bytes: unknown.reduce((n, d) => n + d.bytes, 0) },
    "Left unknown files in the base dir alone",
  );
}

async function reportDryRun(planned: readonly GcDecision[], baseDir: string, log: Logger): Promise<void> {
  for (const d of planned.slice(0, MaxDryRunLines)) {
    const imageId = await imageIdOf(d, baseDir);
    const fields = { file: d.name, kind: d.kind, reason: d.reason, bytes: d.bytes, ...(imageId ? { imageId } : {}), detail: d.message };
    if (d.kind === "base") log.info({ ...fields, base: d.name }, "Would delete unused base (dry run)");
    else log.info(fields, "Would delete stale cache file (dry run)");
  }
  if (planned.length > MaxDryRunLines) log.info({ omitted: planned.length - MaxDryRunLines, planned: planned.length }, "Omitted further files a real pass would delete (dry run)");
}
