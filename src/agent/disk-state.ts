/**
 * What the agent knows of its base dir between passes, in one owner: the virtual sizes of wanted bases (read
 * from their sidecars, again only when a base's mtime changes), the cache's usage (a whole-dir listing, redone
 * at most every CacheUsageRefreshMs or when a fetch or GC changed the dir), and the budget state the last GC pass
 * found. GC writes here; the agent's gather reads here.
 */
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import type { DiskUsage } from "../core/api-records.js";
import type { BudgetState } from "../core/agent-plan.js";
import { classifyGcEntry } from "../core/gc.js";
import type { PodUsesState } from "../core/pod-uses.js";
import { versionedBaseName } from "../core/names.js";
import { listBaseDir, readSidecar } from "../image/base-dir.js";
import type { Clock } from "../lib/clock.js";
import { readFilesystemUsage } from "./inventory.js";
import type { AgentMetrics } from "./metrics.js";

const CacheUsageRefreshMs = 15_000;

/** One version of a tracked image stored on the node. */
export interface StoredVersionOnDisk {
  version: string;
  base: string;
  /** When the controller found the version (RFC 3339): newest first sorts by it. */
  resolvedAt: string;
}

interface StoredEntry {
  mtimeMs: number;
  id?: string;
  version?: string;
  resolvedAt?: string;
}

/** Versions of tracked images on the node, by image id, newest first. */
export type VersionsOnDisk = ReadonlyMap<string, readonly StoredVersionOnDisk[]>;

export class DiskState {
  private readonly sizes = new Map<string, { mtimeMs: number; virtualSize?: number }>();
  private usage: { at: number; cacheBytes: number; bases: number } | undefined;
  /** What each base's sidecar says of the version it holds, again only when the base's mtime changes. */
  private readonly stored = new Map<string, StoredEntry>();
  /** Kept across invalidations: GC protects pods' versions with it, and an invalidated measure is no empty one. */
  private lastVersions: VersionsOnDisk = new Map();
  private budgetState: BudgetState | undefined;
  /** Bases re-verification found corrupt (src/agent/verifier.ts), with their status message. */
  private readonly corruptBases = new Map<string, string>();
  private podUsesState: PodUsesState | undefined;
  /** Moves on each invalidation, so a measurement that a removal overtook is not kept as fresh. */
  private epoch = 0;
  private readonly listeners: (() => void)[] = [];

  constructor(private readonly opts: { baseDir: string; clock: Clock; metrics: AgentMetrics }) {}

  /** Calls `listener` after GC changed what the agent should report (files removed, a new budget state). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** What the last GC pass under a cache budget found; absent without a budget or before the first pass. */
  get budget(): BudgetState | undefined {
    return this.budgetState;
  }

  /** What GC's last question to the controller about pod uses came to; absent before the first. */
  get podUses(): PodUsesState | undefined {
    return this.podUsesState;
  }

  /** Records what GC's question about pod uses came to; a change asks for a pass, which writes the condition. */
  recordPodUses(state: PodUsesState): void {
    const prior = this.podUsesState;
    this.podUsesState = state;
    if (prior?.known !== state.known || prior.reason !== state.reason || prior.message !== state.message) for (const l of this.listeners) l();
  }

  /** Records what a GC pass found and did; a pass that removed files makes the next read measure afresh. */
  recordGcPass(pass: { budget?: BudgetState; removed: boolean }): void {
    if (pass.budget) this.budgetState = pass.budget;
    if (pass.removed) this.invalidate();
    if (pass.budget || pass.removed) for (const l of this.listeners) l();
  }

  /** Makes the next read measure the cache afresh (a fetch ended: a base arrived or work files went). */
  invalidate(): void {
    this.usage = undefined;
    this.epoch++;
  }

  /** Records that re-verification found `base` changed since it was stored, with what the status should say. */
  markCorrupt(base: string, message: string): void {
    const known = this.corruptBases.get(base);
    this.corruptBases.set(base, message);
    if (known !== message) for (const l of this.listeners) l();
  }

  /** Forgets a flag: the base's sidecar no longer says it is corrupt (a new fetch stored it again). */
  clearCorrupt(base: string): void {
    if (this.corruptBases.delete(base)) for (const l of this.listeners) l();
  }

  /** The complete bases on disk among `bases`, by base name, with the virtual size their sidecar records. */
  async readBases(bases: readonly string[]): Promise<Map<string, { virtualSize?: number; corrupt?: string }>> {
    const onDisk = new Map<string, { virtualSize?: number; corrupt?: string }>();
    for (const base of bases) {
      // Never followed: a planted symlink or hard link at a base's name is no base (the fetch then reports it).
      const st = await lstat(join(this.opts.baseDir, base)).catch(() => undefined);
      if (!st?.isFile() || st.nlink > 1) {
        this.corruptBases.delete(base); // gone (GC removed it): the next fetch stores a good one
        continue;
      }
      const known = this.sizes.get(base);
      if (!known || known.mtimeMs !== st.mtimeMs) {
        const sc = await readSidecar(this.opts.baseDir, base);
        this.sizes.set(base, { mtimeMs: st.mtimeMs, virtualSize: sc?.virtualSize ?? st.size });
      }
      const virtualSize = this.sizes.get(base)?.virtualSize;
      const corrupt = this.corruptBases.get(base);
      onDisk.set(base, { ...(virtualSize !== undefined ? { virtualSize } : {}), ...(corrupt !== undefined ? { corrupt } : {}) });
    }
    return onDisk;
  }

  /** The tracked images' versions on disk as of the last measure of the cache (readUsage), by image id. */
  get versions(): VersionsOnDisk {
    return this.lastVersions;
  }

  /** The cache's bytes (measured at most every CacheUsageRefreshMs unless invalidated) and the filesystem's. */
  async readUsage(): Promise<DiskUsage> {
    const now = this.opts.clock.now();
    let usage = this.usage;
    if (usage === undefined || now - usage.at >= CacheUsageRefreshMs || now < usage.at) {
      const epoch = this.epoch;
      usage = { at: now, ...(await this.measureCache()) };
      if (epoch === this.epoch) this.usage = usage;
    }
    this.opts.metrics.bases.set(usage.bases);
    this.opts.metrics.cacheBytes.set(usage.cacheBytes);
    return { cacheBytes: usage.cacheBytes, ...(await readFilesystemUsage(this.opts.baseDir)) };
  }

  private async measureCache(): Promise<{ cacheBytes: number; bases: number }> {
    let cacheBytes = 0;
    let bases = 0;
    const versions = new Map<string, StoredVersionOnDisk[]>();
    const seen = new Set<string>();
    for (const e of await listBaseDir(this.opts.baseDir)) {
      const kind = classifyGcEntry(e).kind;
      if (kind !== "unknown") cacheBytes += e.allocatedBytes;
      if (kind !== "base") continue;
      bases++;
      seen.add(e.name);
      const v = await this.storedVersion(e.name, e.mtimeMs);
      if (v.id === undefined || v.version === undefined) continue;
      const list = versions.get(v.id) ?? [];
      list.push({ version: v.version, base: e.name, resolvedAt: v.resolvedAt ?? "" });
      versions.set(v.id, list);
    }
    for (const base of this.stored.keys()) if (!seen.has(base)) this.stored.delete(base);
    for (const list of versions.values()) list.sort((a, b) => (a.resolvedAt < b.resolvedAt ? 1 : a.resolvedAt > b.resolvedAt ? -1 : 0));
    this.lastVersions = versions;
    return { cacheBytes, bases };
  }

  // The sidecar is trusted only as far as its base's name agrees with it (core/names.ts versionedBaseName).
  private async storedVersion(base: string, mtimeMs: number): Promise<StoredEntry> {
    const known = this.stored.get(base);
    if (known && known.mtimeMs === mtimeMs) return known;
    const sc = await readSidecar(this.opts.baseDir, base);
    const version = sc?.version?.name;
    const agrees = sc !== undefined && version !== undefined && typeof sc.id === "string" && versionedBaseName(sc.id, version) === base;
    const entry: StoredEntry = agrees ? { mtimeMs, id: sc.id, version, ...(sc.version?.resolvedAt ? { resolvedAt: sc.version.resolvedAt } : {}) } : { mtimeMs };
    this.stored.set(base, entry);
    return entry;
  }
}
