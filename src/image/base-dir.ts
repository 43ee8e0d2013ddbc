/**
 * The base dir on disk: listing with what each file is, the sidecar next to each base, directory fsync, and
 * removal of work files left by processes that died (kill -9), under the per-base lock so a live fetch keeps its
 * files.
 */
import { lstatSync, type Stats } from "node:fs";
import { open, readFile, readdir, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { classifyBaseFileName, ConvertedSuffix, LockSuffix, PartSuffix, SidecarSuffix, SidecarTempSuffix, type BaseFileKind } from "../core/names.js";
import { isLockOwnerAlive, readLockOwner, tryAcquireLock } from "./lock.js";

/** One file of the base dir, as `listBaseDir` sees it. */
export interface BaseDirEntry {
  name: string;
  kind: BaseFileKind;
  /** Apparent size in bytes. */
  size: number;
  /** Bytes the filesystem allocated (st_blocks * 512); less than size for a sparse base. */
  allocatedBytes: number;
  mtimeMs: number;
  atimeMs: number;
  /**
   * Temp files and locks only: whether a live process holds the base's lock (pid in the lock file; for a holder in
   * another pid namespace, a recent heartbeat).
   */
  heldBy?: { pid: number; alive: boolean };
}

/** Lists the regular files of `baseDir` (none when it does not exist). */
export async function listBaseDir(baseDir: string): Promise<BaseDirEntry[]> {
  let names: string[];
  try {
    names = await readdir(baseDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const out: BaseDirEntry[] = [];
  for (const name of names.sort()) {
    // NOTE: synchronous lstat: one promise per entry through libuv's pool cost ~25 µs each (docs/benchmarks.md, GC).
    const st = lstatOrUndefined(join(baseDir, name));
    if (!st?.isFile()) continue;
    const kind = classifyBaseFileName(name);
    const entry: BaseDirEntry = { name, kind, size: st.size, allocatedBytes: st.blocks * 512, mtimeMs: st.mtimeMs, atimeMs: st.atimeMs };
    if (kind.kind === "temp" || kind.kind === "lock") {
      const lock = await readLockOwner(join(baseDir, kind.base + LockSuffix));
      entry.heldBy = lock ? { pid: lock.owner.pid, alive: await isLockOwnerAlive(lock.owner, lock.mtimeMs) } : { pid: 0, alive: false };
    }
    out.push(entry);
  }
  return out;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** Paths of one base and its work files. */
export function basePaths(baseDir: string, base: string) {
  const p = join(baseDir, base);
  return { base: p, part: p + PartSuffix, converted: p + ConvertedSuffix, sidecar: p + SidecarSuffix, sidecarTemp: p + SidecarTempSuffix, lock: p + LockSuffix };
}

/** Removes the work files of `base` (and its sidecar when the base itself is absent). The caller holds the lock. */
export async function removeWorkFiles(baseDir: string, base: string): Promise<string[]> {
  const p = basePaths(baseDir, base);
  const targets = [p.part, p.converted, p.sidecarTemp];
  if (!(await exists(p.base))) targets.push(p.sidecar);
  const removed: string[] = [];
  for (const t of targets) {
    try {
      await unlink(t);
      removed.push(t);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }
  return removed;
}

/**
 * Removes work files (`.part`, `.converted`, `.info.json.tmp`, orphan sidecars) whose fetch is not running:
 * for each such base it takes the lock without waiting, so a live fetch is never disturbed.
 * Returns the paths removed. Used at agent start, by GC, and by every `basecache fetch`.
 */
export async function removeStaleTempFiles(baseDir: string): Promise<string[]> {
  const entries = await listBaseDir(baseDir);
  const present = new Set(entries.filter((e) => e.kind.kind === "base").map((e) => e.name));
  const candidates = new Set<string>();
  for (const e of entries) {
    if (e.kind.kind === "temp") candidates.add(e.kind.base);
    if (e.kind.kind === "sidecar" && !present.has(e.kind.base)) candidates.add(e.kind.base);
  }
  const removed: string[] = [];
  for (const base of candidates) {
    const lock = await tryAcquireLock(basePaths(baseDir, base).lock);
    if (!lock) continue;
    try {
      removed.push(...(await removeWorkFiles(baseDir, base)));
    } finally {
      await lock.release({ status: "failed", reason: "cleanup", message: "Removed stale work files", errorName: "Retry" });
    }
  }
  return removed;
}

/** What the sidecar `<base>.info.json` records about a base. */
export interface BaseSidecar {
  id: string;
  base: string;
  sourceFormat: string;
  virtualSize: number;
  /** SHA-256 of the downloaded disk bytes (the source image, before conversion). */
  sha256: string;
  sha512?: string;
  source: string;
  finalUrl?: string;
  etag?: string;
  lastModified?: string;
  bytesDownloaded: number;
  fetchedAt: string;
}

/** Writes the sidecar atomically: temp file, fsync, rename. The caller fsyncs the directory. */
export async function writeSidecar(baseDir: string, base: string, sidecar: BaseSidecar): Promise<void> {
  const p = basePaths(baseDir, base);
  await writeFile(p.sidecarTemp, JSON.stringify(sidecar, null, 2) + "\n", { flush: true });
  await rename(p.sidecarTemp, p.sidecar);
}

/** Reads a base's sidecar, or undefined when it is missing or unreadable. */
export async function readSidecar(baseDir: string, base: string): Promise<BaseSidecar | undefined> {
  try {
    return JSON.parse(await readFile(basePaths(baseDir, base).sidecar, "utf8")) as BaseSidecar;
  } catch {
    return undefined;
  }
}

/** fsyncs a directory so that renames and unlinks in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** True when `path` exists. */
export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
