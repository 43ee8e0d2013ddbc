/**
 * One garbage-collection pass over a node's base dir: gather (list the dir, who holds what open, instance
 * disks, wanted images and pods), plan (core/gc.ts), apply. Each removal re-checks its premise under the
 * base's lock just before the unlink. Shared by the agent and `basecache gc`.
 */
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { classifyBaseFileName } from "../core/names.js";
import { podUsesMatter } from "../core/pod-uses.js";
import { planGc, type GcBudget, type GcDecision, type GcEntry, type GcPlan, type GcUse, type GcWant } from "../core/gc.js";
import { basePaths, fsyncDir, listBaseDir, readSidecar, removeWorkFiles, type BaseDirEntry } from "../image/base-dir.js";
import { tryAcquireLock, type HeldLock } from "../image/lock.js";
import type { Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";
import { gatherOpenFiles, readGcState, writeGcState, type InstanceDiskScanner } from "./inventory.js";
import type { AgentMetrics } from "./metrics.js";
import type { PodUsesResult } from "./pod-uses.js";

/**
 * Where wanted images and pod uses come from; `undefined` (or `{ unknown }`, saying why) means unknown, which
 * stops base removal. `podUses` is told whether the pass could remove a base at all; when it could not, the
 * uses cannot change the outcome and the agent does not ask the controller.
 */
export interface GcReferences {
  wanted(): GcWant[] | undefined | Promise<GcWant[] | undefined>;
  podUses(needed: boolean): PodUsesResult | undefined | Promise<PodUsesResult | undefined>;
}

export interface GcPassOptions {
  baseDir: string;
  instancesDir: string;
  clock: Clock;
  /** Measures the pass's phases (a monotonic clock, so a stepped wall clock does not skew them). */
  monotonic: Clock;
  defaultRetentionMs: number;
  budget?: GcBudget;
  /** Bytes of an image about to arrive, to make room for under the budget. */
  reserveBytes?: number;
  dryRun: boolean;
  references: GcReferences;
  scanner: InstanceDiskScanner;
  log: Logger;
  metrics?: AgentMetrics;
  /** Called after each removal (the agent records an Event). */
  onRemoved?: (d: GcDecision) => void;
  /** Called when a planned removal was refused at the last moment. */
  onRefused?: (d: GcDecision, why: string) => void;
}

/** What a pass did, with timings of its parts. */
export interface GcPassResult {
  plan: GcPlan;
  removed: GcDecision[];
  refused: { decision: GcDecision; why: string }[];
  disks: { count: number; inspected: number };
  timings: { listMs: number; disksMs: number; planMs: number; applyMs: number };
}

const BatchSize = 256;

interface Gathered {
  entries: GcEntry[];
  wanted: GcWant[];
  uses: GcUse[];
  uncertainties: string[];
  disks: { count: number; inspected: number };
}

/** Runs one pass; a dry run plans and reports but changes nothing, not even the state file. */
export async function runGcPass(opts: GcPassOptions, signal?: AbortSignal): Promise<GcPassResult> {
  const t0 = opts.monotonic.now();
  const listed = await listBaseDir(opts.baseDir);
  const open = await gatherOpenFiles(opts.baseDir).catch(() => undefined);
  const state = await readGcState(opts.baseDir, opts.log);
  const t1 = opts.monotonic.now();
  const baseNames = listed.filter((e) => classifyBaseFileName(e.name).kind === "base").map((e) => e.name);
  const corrupt = await corruptBases(opts.baseDir, baseNames);
  const refs = await gatherReferences(opts, baseNames, corrupt);
  if (!open) refs.uncertainties.push("open files could not be listed");
  const t2 = opts.monotonic.now();
  const gathered: Gathered = { entries: toGcEntries(listed, open ?? new Set()), ...refs };
  const plan = planGc({
    now: opts.clock.now(),
    entries: gathered.entries,
    wanted: gathered.wanted,
    uses: gathered.uses,
    uncertainties: gathered.uncertainties,
    state,
    defaultRetentionMs: opts.defaultRetentionMs,
    ...(opts.budget ? { budget: opts.budget } : {}),
    ...(opts.reserveBytes ? { reserveBytes: opts.reserveBytes } : {}),
    dryRun: opts.dryRun,
    ...(corrupt.length > 0 ? { corrupt } : {}),
  });
  const t3 = opts.monotonic.now();
  const result: GcPassResult = { plan, removed: [], refused: [], disks: gathered.disks, timings: { listMs: t1 - t0, disksMs: t2 - t1, planMs: t3 - t2, applyMs: 0 } };
  if (gathered.uncertainties.length > 0) {
    opts.log.warn({ uncertainties: gathered.uncertainties.slice(0, 10) }, "Kept every base: some uses could not be determined");
    opts.metrics?.gcRefusals.inc({ reason: "ReferencesIncomplete" });
  }
  if (!opts.dryRun) {
    await applyGcPlan(plan, opts, result, signal);
    await writeGcState(opts.baseDir, plan.state);
  }
  result.timings.applyMs = opts.monotonic.now() - t3;
  return result;
}

// `bases` are the complete bases the pass might remove; undefined in the re-check, where some will go. A corrupt
// base may go though wanted, so pods' uses matter for it as for an unwanted one.
async function gatherReferences(opts: GcPassOptions, bases?: readonly string[], corrupt: readonly string[] = []): Promise<Omit<Gathered, "entries">> {
  const scan = await opts.scanner.scan(opts.instancesDir, opts.baseDir);
  const wanted = await opts.references.wanted();
  const needed = bases === undefined || podUsesMatter(bases, wanted?.map((w) => w.base).filter((b) => !corrupt.includes(b)));
  const result = await opts.references.podUses(needed);
  const pods = Array.isArray(result) ? result : undefined;
  const uncertainties = [...scan.uncertainties];
  if (result === undefined) uncertainties.push("pods on this node are not known");
  else if (!Array.isArray(result)) uncertainties.push(result.unknown);
  // Unknown wanted images do not endanger a use, but removing a wanted base would only make it download again.
  if (wanted === undefined) uncertainties.push("the images this node should hold are not known");
  return {
    wanted: wanted ?? [],
    uses: [...scan.uses, ...(pods ?? [])],
    uncertainties,
    disks: { count: scan.disks, inspected: scan.inspected },
  };
}

/** The bases whose sidecar says a re-verification found them changed (src/agent/verifier.ts). */
async function corruptBases(baseDir: string, bases: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const base of bases) if ((await readSidecar(baseDir, base))?.corrupt) out.push(base);
  return out;
}

function toGcEntries(listed: readonly BaseDirEntry[], open: ReadonlySet<string>): GcEntry[] {
  return listed.map((e) => ({
    name: e.name,
    type: e.type,
    links: e.links,
    allocatedBytes: e.allocatedBytes,
    mtimeMs: e.mtimeMs,
    held: open.has(e.name) || (e.heldBy?.alive ?? false),
  }));
}

async function applyGcPlan(plan: GcPlan, opts: GcPassOptions, result: GcPassResult, signal?: AbortSignal): Promise<void> {
  const deletions = plan.decisions.filter((d) => d.action === "delete");
  // Work files and orphans first: per base, under its lock, so a fetch that started since the plan keeps its files.
  const workBases = new Set(deletions.filter((d) => d.kind !== "base" && d.reason !== "BaseRemoved").map((d) => d.base ?? ""));
  for (const base of workBases) {
    signal?.throwIfAborted();
    const keepResumable = plan.decisions.some((d) => d.base === base && d.reason === "Resumable");
    await removeWork(base, deletions.filter((d) => d.base === base && d.kind !== "base" && d.reason !== "BaseRemoved"), opts, result, keepResumable);
  }
  const bases = deletions.filter((d) => d.kind === "base");
  for (let i = 0; i < bases.length; i += BatchSize) {
    signal?.throwIfAborted();
    await removeBases(bases.slice(i, i + BatchSize), opts, result);
  }
}

async function removeWork(base: string, decisions: GcDecision[], opts: GcPassOptions, result: GcPassResult, keepResumable: boolean): Promise<void> {
  const lock = await tryAcquireLock(basePaths(opts.baseDir, base).lock);
  if (!lock) {
    for (const d of decisions) refuse(d, "a fetch of this base holds its lock", opts, result);
    return;
  }
  try {
    const removed = new Set((await removeWorkFiles(opts.baseDir, base, { keepResumable })).map((p) => p.slice(opts.baseDir.length + 1)));
    for (const d of decisions) if (removed.has(d.name) || d.kind === "lock") recordRemoval(d, opts, result);
  } finally {
    // Releasing unlinks the lock file, which also removes an orphaned lock.
    await lock.release({ status: "failed", reason: "gc", message: "Removed stale work files", errorName: "Retry" });
  }
}

// Locks a batch, gathers every use again, and removes only the bases whose premise still holds.
async function removeBases(batch: GcDecision[], opts: GcPassOptions, result: GcPassResult): Promise<void> {
  const held: { d: GcDecision; lock: HeldLock }[] = [];
  for (const d of batch) {
    const lock = await tryAcquireLock(basePaths(opts.baseDir, d.name).lock);
    if (lock) held.push({ d, lock });
    else refuse(d, "a fetch of this base holds its lock", opts, result);
  }
  try {
    if (held.length === 0) return;
    const refs = await gatherReferences(opts);
    const open = await gatherOpenFiles(opts.baseDir).catch(() => undefined);
    const wanted = new Set(refs.wanted.map((w) => w.base));
    const used = new Set(refs.uses.map((u) => u.base));
    for (const { d } of held) {
      const why = recheck(d.name, { wanted: d.reason === "Corrupt" ? new Set<string>() : wanted, used, open, uncertainties: refs.uncertainties });
      if (why) refuse(d, why, opts, result);
      else await removeBase(d, opts, result);
    }
    await fsyncDir(opts.baseDir).catch(() => undefined);
  } finally {
    for (const { lock } of held) await lock.release({ status: "failed", reason: "gc", message: "Base removed by garbage collection", errorName: "Retry" });
  }
}

function recheck(
  base: string,
  now: { wanted: Set<string>; used: Set<string>; open: Set<string> | undefined; uncertainties: string[] },
): string | undefined {
  if (now.used.has(base)) return "it is in use now";
  if (now.wanted.has(base)) return "it is wanted now";
  if (now.uncertainties.length > 0) return `uses unknown now: ${now.uncertainties[0]}`;
  if (!now.open) return "open files could not be listed";
  if (now.open.has(base)) return "a process has it open now";
  return undefined;
}

/** The image a decision is about: as GC saw it wanted, else, for a base, as its sidecar says. */
export async function imageIdOf(d: GcDecision, baseDir: string): Promise<string | undefined> {
  // Name the image in logs and Events even when GC never saw it wanted (the sidecar says what it is).
  return d.imageId ?? (d.kind === "base" ? (await readSidecar(baseDir, d.name))?.id : undefined);
}

async function removeBase(d: GcDecision, opts: GcPassOptions, result: GcPassResult): Promise<void> {
  const p = basePaths(opts.baseDir, d.name);
  const id = await imageIdOf(d, opts.baseDir);
  if (id) d.imageId = id;
  try {
    await unlink(p.base);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  recordRemoval(d, opts, result);
  // The sidecar goes after its base: a crash between the two leaves an orphan sidecar, which the next pass removes.
  const followers = result.plan.decisions.filter((x) => x.base === d.name && x.reason === "BaseRemoved");
  for (const f of followers) {
    if (f.kind === "lock") continue; // released (and so unlinked) by removeBases
    await unlink(join(opts.baseDir, f.name)).catch(() => undefined);
    recordRemoval(f, opts, result);
  }
}

function recordRemoval(d: GcDecision, opts: GcPassOptions, result: GcPassResult): void {
  result.removed.push(d);
  opts.metrics?.gcRemovals.inc({ reason: d.reason, kind: d.kind });
  opts.metrics?.gcRemovedBytes.inc({ reason: d.reason }, d.bytes);
  const fields = { file: d.name, kind: d.kind, reason: d.reason, bytes: d.bytes, ...(d.imageId ? { imageId: d.imageId } : {}) };
  if (d.kind === "base") opts.log.info({ ...fields, base: d.name, detail: d.message }, "Deleted unused base");
  else opts.log.info({ ...fields, detail: d.message }, "Deleted stale cache file");
  opts.onRemoved?.(d);
}

function refuse(d: GcDecision, why: string, opts: GcPassOptions, result: GcPassResult): void {
  result.refused.push({ decision: d, why });
  opts.metrics?.gcRefusals.inc({ reason: d.kind === "base" ? "PremiseChanged" : "Busy" });
  opts.log.info({ file: d.name, kind: d.kind, reason: d.reason, why }, "Kept file planned for removal: premise changed");
  opts.onRefused?.(d, why);
}
