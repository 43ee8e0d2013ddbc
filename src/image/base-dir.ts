/**
 * The base dir on disk: listing with what each file is, the sidecar next to each base, directory fsync, and
 * removal of work files left by processes that died (kill -9), under the per-base lock so a live fetch keeps its
 * files. Nothing here follows a symlink or opens a FIFO: what is not a regular file of ours at one of our names is
 * listed as what it is and left alone (safe-fs.ts).
 */
import { lstatSync, type Stats } from "node:fs";
import { lstat, open, readdir, rename } from "node:fs/promises";
import { join } from "node:path";
import { classifyBaseFileName, ConvertedSuffix, LockSuffix, PartSuffix, ResumeSuffix, ResumeTempSuffix, SidecarSuffix, SidecarTempSuffix, type BaseFileKind } from "../core/names.js";
import { ForeignFileError } from "../lib/errors.js";
import { isLockOwnerAlive, readLockOwner, tryAcquireLock } from "./lock.js";
import { createOwnFile, openOwnFile, readOwnFile, removeOwnFile, statOwnFile } from "./safe-fs.js";
import type { StoredVersion } from "./fetch-request.js";

/** Sidecars hold where an image came from: readable by the agent's user and group only (docs/operations.md). */
export const SidecarMode = 0o640;
/** Bases are read by the VMs' qemu, another user, through a read-only mount: readable by all, written by none. */
export const BaseMode = 0o644;
/** Work files are private until they become a base. */
export const WorkFileMode = 0o600;
/** A sidecar is a few hundred bytes; a bigger file at its name is not one we wrote. */
const maxSidecarBytes = 64 * 1024;

/** One file of the base dir, as `listBaseDir` sees it. */
export interface BaseDirEntry {
  name: string;
  kind: BaseFileKind;
  /** What lstat says it is; only a "file" with one name can be ours. */
  type: "file" | "directory" | "symlink" | "other";
  /** Names of the file (st_nlink): more than one means a hard link, perhaps to a file outside the dir. */
  links: number;
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

/** Lists the entries of `baseDir` (none when it does not exist), each as lstat sees it. */
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
    if (!st) continue;
    const kind = classifyBaseFileName(name);
    const type = st.isFile() ? "file" : st.isDirectory() ? "directory" : st.isSymbolicLink() ? "symlink" : "other";
    const entry: BaseDirEntry = { name, kind, type, links: st.nlink, size: st.size, allocatedBytes: st.blocks * 512, mtimeMs: st.mtimeMs, atimeMs: st.atimeMs };
    if (isOwnKind(entry) && (kind.kind === "temp" || kind.kind === "lock")) {
      const lock = await readLockOwner(join(baseDir, kind.base + LockSuffix));
      entry.heldBy = lock ? { pid: lock.owner.pid, alive: await isLockOwnerAlive(lock.owner, lock.mtimeMs) } : { pid: 0, alive: false };
    }
    out.push(entry);
  }
  return out;
}

/** Whether an entry can be a file of ours: a regular file with one name (what its name says is another matter). */
export function isOwnKind(e: Pick<BaseDirEntry, "type" | "links">): boolean {
  return e.type === "file" && e.links === 1;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** Paths of one base and its work files. */
export function basePaths(baseDir: string, base: string): BasePaths {
  const p = join(baseDir, base);
  return {
    base: p,
    part: p + PartSuffix,
    converted: p + ConvertedSuffix,
    sidecar: p + SidecarSuffix,
    sidecarTemp: p + SidecarTempSuffix,
    resume: p + ResumeSuffix,
    resumeTemp: p + ResumeTempSuffix,
    lock: p + LockSuffix,
  };
}

/** The names a base and its work files go by. */
export interface BasePaths {
  base: string;
  part: string;
  converted: string;
  sidecar: string;
  sidecarTemp: string;
  /** The resume record beside `.part` (core/resume-rules.ts), and its temp name. */
  resume: string;
  resumeTemp: string;
  lock: string;
}

/**
 * Removes the work files of `base` (and its sidecar unless a base of ours is there). The caller holds the lock.
 * With `keepResumable`, a `.part` that has a resume record beside it stays, with its record, for the next fetch
 * of the image to judge (core/resume-rules.ts); without a record the `.part` goes.
 * @throws ForeignFileError when something other than a regular file of ours is at one of these names; it stays
 */
export async function removeWorkFiles(baseDir: string, base: string, opts: { keepResumable?: boolean } = {}): Promise<string[]> {
  const p = basePaths(baseDir, base);
  const keep = opts.keepResumable === true && (await isResumable(p));
  const targets = [...(keep ? [] : [p.resume, p.part]), p.resumeTemp, p.converted, p.sidecarTemp];
  // A sidecar describes our base; next to no base, or next to a foreign one, it describes nothing.
  const ours = await statOwnFile(p.base).catch((e: unknown) => (e instanceof ForeignFileError ? undefined : Promise.reject(e)));
  if (!ours) targets.push(p.sidecar);
  const removed: string[] = [];
  let foreign: ForeignFileError | undefined;
  for (const t of targets) {
    try {
      if (await removeOwnFile(t)) removed.push(t);
    } catch (e) {
      if (!(e instanceof ForeignFileError)) throw e;
      foreign ??= e;
    }
  }
  if (foreign) throw foreign;
  return removed;
}

/** Whether a `.part` and its resume record are both there as regular files of ours (their content is judged later). */
async function isResumable(p: BasePaths): Promise<boolean> {
  const [part, record, base] = await Promise.all([p.part, p.resume, p.base].map((f) => statOwnFile(f).catch(() => undefined)));
  return part !== undefined && record !== undefined && base === undefined;
}

/**
 * Removes work files (`.part`, `.converted`, `.info.json.tmp`, resume records, orphan sidecars) whose fetch is
 * not running: for each such base it takes the lock without waiting, so a live fetch is never disturbed. A
 * resumable `.part` (one with a resume record, and no base) stays for its next fetch; GC removes it once no
 * ImageCache wants the image (core/gc.ts). Returns the paths removed. Used at agent start and by every
 * `basecache fetch`.
 */
export async function removeStaleTempFiles(baseDir: string): Promise<string[]> {
  const entries = await listBaseDir(baseDir);
  const present = new Set(entries.filter((e) => e.kind.kind === "base" && isOwnKind(e)).map((e) => e.name));
  const candidates = new Set<string>();
  for (const e of entries) {
    // Foreign files at our names are not stale work: they are the operator's to look at.
    if (!isOwnKind(e)) continue;
    if (e.kind.kind === "temp") candidates.add(e.kind.base);
    if (e.kind.kind === "sidecar" && !present.has(e.kind.base)) candidates.add(e.kind.base);
  }
  const removed: string[] = [];
  for (const base of candidates) {
    const lock = await tryAcquireLock(basePaths(baseDir, base).lock);
    if (!lock) continue;
    try {
      removed.push(...(await removeWorkFiles(baseDir, base, { keepResumable: true }).catch((e: unknown) => (e instanceof ForeignFileError ? [] : Promise.reject(e)))));
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
  /** The compression the source was decoded from (gzip, xz, zstd), when it came compressed. */
  compression?: string;
  virtualSize: number;
  /** SHA-256 of the downloaded disk bytes (the source image, decompressed when it came compressed, before conversion). */
  sha256: string;
  sha512?: string;
  source: string;
  finalUrl?: string;
  etag?: string;
  lastModified?: string;
  bytesDownloaded: number;
  /** Where the expected checksum came from, when a SUMS file gave it: its URL, the name, the key that signed it. */
  checksumFrom?: { url: string; name: string; signatureUrl?: string; signedBy?: string };
  /** The cosign signature verified before the download: the manifest digest it covers and the key that made it. */
  signature?: { digest: string; signedBy: string; dockerReference?: string };
  /**
   * The raw base as stored: the SHA-256 of its bytes, its size and mtime when it was sealed. Re-verification
   * (src/agent/verifier.ts) hashes the base again against it. Absent on bases stored before it existed.
   */
  raw?: { sha256: string; sizeBytes: number; mtimeMs: number };
  /** The last re-verification that found the base as stored (RFC 3339). */
  verifiedAt?: string;
  /** A re-verification found the base changed: new disks refuse it, and GC removes it once nothing uses it. */
  corrupt?: { detectedAt: string; expected: string; actual: string };
  /** A tracked image's version this base holds (its name is in the base's name): its pin, when the controller found it, who signed its checksum. */
  version?: StoredVersion;
  fetchedAt: string;
}

/**
 * Writes the sidecar atomically (mode SidecarMode): an exclusively created temp file, fsync, rename. The caller
 * fsyncs the directory. The rename replaces only a file of ours: a foreign sidecar stays, and so does its error.
 * @throws ForeignFileError when something not ours is at the sidecar's name or its temp name
 */
export async function writeSidecar(baseDir: string, base: string, sidecar: BaseSidecar): Promise<void> {
  const p = basePaths(baseDir, base);
  await statOwnFile(p.sidecar);
  const fh = await createOwnFile(p.sidecarTemp, SidecarMode);
  try {
    await fh.writeFile(JSON.stringify(sidecar, null, 2) + "\n");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(p.sidecarTemp, p.sidecar);
}

/** Reads a base's sidecar, or undefined when it is missing, unreadable or not a file of ours. */
export async function readSidecar(baseDir: string, base: string): Promise<BaseSidecar | undefined> {
  try {
    const text = await readOwnFile(basePaths(baseDir, base).sidecar, maxSidecarBytes);
    return text === undefined ? undefined : (JSON.parse(text) as BaseSidecar);
  } catch {
    return undefined;
  }
}

/** Gives a finished raw file its base mode (BaseMode) and makes it durable, through a descriptor of our own file. */
export async function sealBase(path: string): Promise<Stats> {
  const fh = await openOwnFile(path, "write");
  if (!fh) throw new Error(`Cannot store base "${path}": the converted file is gone`);
  try {
    await fh.chmod(BaseMode);
    await fh.sync();
    return await fh.stat();
  } finally {
    await fh.close();
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

/** True when anything is at `path` (never followed: a dangling symlink exists). */
export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
