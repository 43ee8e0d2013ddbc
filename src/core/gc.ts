/**
 * The garbage-collection decision for one node's base dir: every entry gets exactly one decision (keep,
 * delete or report) with a CamelCase reason. Pure: the agent's gc-pass gathers the inputs and applies the plan.
 * Rules and their reasons: docs/design/gc-rules.md.
 */
import { formatAge } from "./duration.js";
import { planBudget, settleFollowers } from "./gc-budget.js";
import { baseNameFor, classifyBaseFileName, PartSuffix, ResumeSuffix } from "./names.js";
import { GcStateFileName, GcStateTempFileName, type GcBaseRecord, type GcDecision, type GcEntry, type GcFileKind, type GcInput, type GcPlan, type GcState, type GcWant } from "./gc-records.js";

export * from "./gc-records.js";
export type { GcUsage } from "./gc-budget.js";
export type { GcBudget } from "./watermarks.js";

interface Facts {
  input: GcInput;
  bases: Set<string>;
  wanted: Map<string, GcWant>;
  /** sha1 of each wanted image id: the stems of the pointers that still mean something. */
  wantedIds: Set<string>;
  users: Map<string, string[]>;
  busy: Set<string>;
  /** Bases with a resume record of ours beside their `.part`. */
  resumable: Set<string>;
  corrupt: Set<string>;
  mtimes: Map<string, number>;
  kinds: Map<string, { kind: GcFileKind; base?: string }>;
}

/** Classifies an entry by name and type: only a regular file with one name can be ours. */
export function classifyGcEntry(entry: Pick<GcEntry, "name" | "type" | "links">): { kind: GcFileKind; base?: string } {
  if (entry.name === GcStateFileName || entry.name === GcStateTempFileName) return { kind: "gc-state" };
  const byName = classifyBaseFileName(entry.name);
  if (byName.kind === "unknown" || entry.type !== "file" || (entry.links ?? 1) > 1) return { kind: "unknown" };
  return { kind: byName.kind, base: byName.base };
}

/** Decides what happens to every entry of the base dir; see docs/design/gc-rules.md for the rules. */
export function planGc(input: GcInput): GcPlan {
  const facts = indexEntries(input);
  const own = [...input.entries].sort((a, b) => cmp(a.name, b.name)).map((e) => decideEntry(e, facts));
  const budgeted = planBudget(own, { now: input.now, budget: input.budget, reserveBytes: input.reserveBytes, mtimes: facts.mtimes });
  const decisions = settleFollowers(budgeted.decisions);
  return { dryRun: input.dryRun ?? false, decisions, state: nextState(decisions, facts), usage: budgeted.usage };
}

// What the rules ask of the whole dir at once: which bases exist, who wants or uses each, which have a fetch under way.
function indexEntries(input: GcInput): Facts {
  const bases = new Set<string>();
  const busy = new Set<string>();
  const resumable = new Set<string>();
  const mtimes = new Map<string, number>();
  const kinds = new Map<string, { kind: GcFileKind; base?: string }>();
  for (const e of input.entries) {
    const c = classifyGcEntry(e);
    kinds.set(e.name, c);
    if (c.kind === "base" && c.base) {
      bases.add(c.base);
      mtimes.set(c.base, e.mtimeMs);
    }
    if ((c.kind === "temp" || c.kind === "lock") && c.base && e.held) busy.add(c.base);
    if (c.kind === "temp" && c.base && e.name.endsWith(ResumeSuffix)) resumable.add(c.base);
  }
  const wanted = new Map<string, GcWant>();
  for (const w of input.wanted) {
    const prior = wanted.get(w.base);
    if (!prior || w.retentionMs < prior.retentionMs) wanted.set(w.base, w);
  }
  const users = new Map<string, string[]>();
  for (const u of input.uses) {
    const list = users.get(u.base);
    if (list) list.push(u.by);
    else users.set(u.base, [u.by]);
  }
  const wantedIds = new Set(input.wanted.map((w) => baseNameFor(w.imageId)));
  return { input, bases, wanted, wantedIds, users, busy, resumable, corrupt: new Set(input.corrupt ?? []), mtimes, kinds };
}

function decideEntry(entry: GcEntry, facts: Facts): GcDecision {
  const { kind, base } = facts.kinds.get(entry.name) ?? classifyGcEntry(entry);
  switch (kind) {
    case "base":
      return decision(entry, kind, base, decideBase(entry, base ?? entry.name, facts));
    case "sidecar":
      return decision(entry, kind, base, decideFollower(entry, base ?? "", facts));
    case "lock":
      return decision(entry, kind, base, decideLock(entry, base ?? "", facts));
    case "pointer":
      return decision(entry, kind, base, decidePointer(entry, base ?? "", facts));
    case "temp":
      return decision(entry, kind, base, decideTemp(entry, base ?? "", facts));
    case "gc-state":
      return decision(entry, kind, base, { action: "keep", reason: "GcState", message: "GC's own state file" });
    case "unknown": {
      const reason = classifyBaseFileName(entry.name).kind === "unknown" ? "UnknownName" : "NotARegularFile";
      const what = reason === "UnknownName" ? "name is not one basecache writes" : foreignWhat(entry);
      return decision(entry, kind, base, { action: "report", reason, message: `Left alone: ${what}` });
    }
  }
}

function foreignWhat(entry: GcEntry): string {
  if (entry.type === "file") return `is a file with ${entry.links ?? 1} names (a hard link), not one basecache wrote`;
  return `is a ${entry.type}, not a regular file`;
}

// One shape for every decision (optional fields only when set), built without spreads: planGc runs over
// tens of thousands of entries.
function decision(entry: GcEntry, kind: GcFileKind, base: string | undefined, v: Verdict): GcDecision {
  const d: GcDecision = { name: entry.name, kind, action: v.action, reason: v.reason, message: v.message, bytes: entry.allocatedBytes };
  if (base !== undefined) d.base = base;
  if (v.users !== undefined) d.users = v.users;
  if (v.unusedSince !== undefined) d.unusedSince = v.unusedSince;
  if (v.imageId !== undefined) d.imageId = v.imageId;
  return d;
}

type Verdict = Pick<GcDecision, "action" | "reason" | "message" | "users" | "unusedSince" | "imageId">;

function decideBase(entry: GcEntry, base: string, facts: Facts): Verdict {
  const { input } = facts;
  const record = input.state.bases[base];
  const want = facts.wanted.get(base);
  const imageId = want?.imageId ?? record?.imageId;
  const withId = imageId ? { imageId } : {};
  const users = facts.users.get(base);
  const corrupt = facts.corrupt.has(base);
  const changed = corrupt ? "; it no longer matches its recorded digest and goes once unused" : "";
  if (users) return { action: "keep", reason: "InUse", message: `Used by ${users.join(", ")}${changed}`, users, ...withId };
  if (entry.held) return { action: "keep", reason: "Open", message: `A live process has the base open${changed}`, ...withId };
  // A corrupt base is removed even while wanted (the agent then fetches it again), but only when every use is known.
  if (corrupt && !facts.busy.has(base) && input.uncertainties.length === 0) {
    return { action: "delete", reason: "Corrupt", message: "No longer matches the digest recorded when it was stored, and nothing uses it", ...withId };
  }
  if (want) return { action: "keep", reason: "Wanted", message: `Wanted on this node as image "${want.imageId}"`, ...withId };
  if (facts.busy.has(base)) return { action: "keep", reason: "Busy", message: "A fetch of this base is under way", ...withId };
  if (input.uncertainties.length > 0) {
    return { action: "keep", reason: "ReferencesIncomplete", message: `Uses unknown: ${input.uncertainties.join("; ")}`, ...withId };
  }
  const unusedSince = record?.unusedSince ?? input.now;
  const retentionMs = record?.retentionMs ?? input.defaultRetentionMs;
  const age = input.now - unusedSince;
  if (age >= retentionMs) {
    const message = `Unused for ${formatAge(age)}, retention ${formatAge(retentionMs)}`;
    return { action: "delete", reason: "RetentionExpired", message, unusedSince, ...withId };
  }
  const message = `Unused for ${formatAge(Math.max(0, age))} of ${formatAge(retentionMs)} retention`;
  return { action: "keep", reason: "WithinRetention", message, unusedSince, ...withId };
}

// A sidecar lives and dies with its base; without one it goes unless a fetch is under way.
function decideFollower(entry: GcEntry, base: string, facts: Facts): Verdict {
  if (entry.held) return { action: "keep", reason: "Held", message: "A live process holds it" };
  if (facts.bases.has(base)) return { action: "keep", reason: "BaseKept", message: "Its base is kept" };
  if (facts.busy.has(base)) return { action: "keep", reason: "Busy", message: "A fetch of this base is under way" };
  return { action: "delete", reason: "Orphaned", message: "Its base does not exist" };
}

// The pointer's stem is sha1(id), the id's own name: it means something while that id is wanted here. The base
// it names is kept by the wanted rule (the agent counts it wanted), so removing it can never strand a disk.
function decidePointer(entry: GcEntry, stem: string, facts: Facts): Verdict {
  if (entry.held) return { action: "keep", reason: "Held", message: "A live process holds it" };
  if (facts.wantedIds.has(stem)) return { action: "keep", reason: "Tracked", message: "Names the version new instance disks of a wanted image use" };
  return { action: "delete", reason: "Untracked", message: "Pointer of an image no longer wanted here" };
}

// A lock whose owner is gone is stale whether or not its base exists (a crash between rename and release).
function decideLock(entry: GcEntry, base: string, facts: Facts): Verdict {
  if (entry.held) return { action: "keep", reason: "Held", message: "A live process holds it" };
  if (facts.busy.has(base)) return { action: "keep", reason: "Busy", message: "A fetch of this base is under way" };
  return { action: "delete", reason: "Abandoned", message: "Lock of a process that is gone" };
}

function decideTemp(entry: GcEntry, base: string, facts: Facts): Verdict {
  if (entry.held) return { action: "keep", reason: "Held", message: "A live process holds it" };
  if (facts.busy.has(base)) return { action: "keep", reason: "Busy", message: "A fetch of this base is under way" };
  const resumeFile = entry.name.endsWith(PartSuffix) || entry.name.endsWith(ResumeSuffix);
  if (resumeFile && facts.resumable.has(base) && facts.wanted.has(base) && !facts.bases.has(base)) {
    return { action: "keep", reason: "Resumable", message: "Download of a wanted image that its next fetch can resume" };
  }
  return { action: "delete", reason: "Abandoned", message: "Work file of an interrupted fetch; no live process holds it" };
}

function nextState(decisions: readonly GcDecision[], facts: Facts): GcState {
  const bases: Record<string, GcBaseRecord> = {};
  for (const d of decisions) {
    if (d.kind !== "base" || d.action === "delete") continue;
    const prior = facts.input.state.bases[d.name];
    const want = facts.wanted.get(d.name);
    const record: GcBaseRecord = {};
    const retentionMs = want?.retentionMs ?? prior?.retentionMs;
    if (retentionMs !== undefined) record.retentionMs = retentionMs;
    if (d.imageId !== undefined) record.imageId = d.imageId;
    if (d.reason === "ReferencesIncomplete" && prior?.unusedSince !== undefined) record.unusedSince = prior.unusedSince;
    if (d.reason === "WithinRetention" && d.unusedSince !== undefined) record.unusedSince = d.unusedSince;
    if (Object.keys(record).length > 0) bases[d.name] = record;
  }
  return { version: 1, bases };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The image ids a pod declares in its `basecache.io/images` annotation: comma separated, exact, blanks ignored. */
export function imagesFromAnnotation(value: string | undefined): string[] {
  if (!value) return [];
  return [...new Set(value.split(",").map((s) => s.trim()).filter((s) => s !== ""))];
}
