/**
 * Reads the node's disk for the agent and GC: which base-dir files live processes hold open, GC's durable
 * state file, and the filesystem's usage. Listing and classifying the base dir itself is image/base-dir.ts.
 */
import { readdir, readlink, realpath, rename, stat, statfs, unlink } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { GcStateFileName, GcStateTempFileName, emptyGcState, type GcBaseRecord, type GcState, type GcUse } from "../core/gc.js";
import type { Logger } from "../lib/log.js";
import { createOwnFile, readOwnFile, statOwnFile } from "../image/safe-fs.js";

/** GC's state is a few KiB per thousand bases; a file far bigger at its name is not ours. */
const maxGcStateBytes = 64 * 1024 * 1024;

/**
 * Names of the entries of `dir` that some live process has open, found as `fuser` does by reading
 * /proc/<pid>/fd links (compared by real path, so a symlinked dir still matches). Processes we may not
 * inspect (other users without CAP_SYS_PTRACE) are skipped; see docs/design/gc-rules.md.
 */
export async function gatherOpenFiles(dir: string): Promise<Set<string>> {
  const root = await realpath(dir);
  const prefix = root.endsWith(sep) ? root : root + sep;
  const open = new Set<string>();
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((p) => /^\d+$/.test(p));
  await Promise.all(
    pids.map(async (pid) => {
      const fdDir = `/proc/${pid}/fd`;
      const fds = await readdir(fdDir).catch(() => [] as string[]);
      for (const fd of fds) {
        const target = await readlink(join(fdDir, fd)).catch(() => undefined);
        if (!target?.startsWith(prefix)) continue;
        const name = target.slice(prefix.length);
        if (!name.includes(sep)) open.add(name.replace(/ \(deleted\)$/, ""));
      }
    }),
  );
  return open;
}

/**
 * Reads GC's state file; a missing, unreadable or foreign one (never followed) is an empty state, which only
 * delays removals.
 */
export async function readGcState(baseDir: string, log?: Logger): Promise<GcState> {
  let text: string | undefined;
  try {
    text = await readOwnFile(join(baseDir, GcStateFileName), maxGcStateBytes);
  } catch (e) {
    log?.warn({ err: e }, "Ignored unreadable GC state file");
    return emptyGcState();
  }
  if (text === undefined) return emptyGcState();
  try {
    return parseGcState(JSON.parse(text));
  } catch (e) {
    log?.warn({ err: e }, "Ignored corrupt GC state file; retention clocks restart");
    return emptyGcState();
  }
}

function parseGcState(json: unknown): GcState {
  const bases: Record<string, GcBaseRecord> = {};
  const raw = (json as { bases?: unknown } | null)?.bases;
  if (!raw || typeof raw !== "object") throw new TypeError("Cannot parse GC state: no bases object");
  for (const [name, rec] of Object.entries(raw as Record<string, unknown>)) {
    if (!/^[0-9a-f]{40}$/.test(name) || !rec || typeof rec !== "object") continue;
    const r = rec as Record<string, unknown>;
    const out: GcBaseRecord = {};
    if (typeof r.unusedSince === "number" && Number.isFinite(r.unusedSince)) out.unusedSince = r.unusedSince;
    if (typeof r.retentionMs === "number" && Number.isFinite(r.retentionMs) && r.retentionMs >= 0) out.retentionMs = r.retentionMs;
    if (typeof r.imageId === "string") out.imageId = r.imageId;
    bases[name] = out;
  }
  return { version: 1, bases };
}

/**
 * Writes GC's state file atomically: an exclusively created temp file, fsync, rename.
 * @throws ForeignFileError when something not ours is at the state file's name or its temp name
 */
export async function writeGcState(baseDir: string, state: GcState): Promise<void> {
  const tmp = join(baseDir, GcStateTempFileName);
  // The rename would replace a planted entry at the state's name: report it instead.
  await statOwnFile(join(baseDir, GcStateFileName));
  const fh = await createOwnFile(tmp, 0o644);
  try {
    await fh.writeFile(JSON.stringify(state) + "\n");
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, join(baseDir, GcStateFileName));
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** Size and free space of the filesystem that holds `dir`. */
export async function readFilesystemUsage(dir: string): Promise<{ filesystemBytes: number; filesystemFreeBytes: number }> {
  const s = await statfs(dir);
  return { filesystemBytes: s.blocks * s.bsize, filesystemFreeBytes: s.bavail * s.bsize };
}

/** What one inspection of an image file says it refers to. */
export interface DiskReferences {
  backingFile?: string;
  dataFile?: string;
}

/** Reads an image file's header for its backing and data file names (no qemu-img process). */
export type DiskInspector = (path: string) => Promise<DiskReferences>;

/** The uses of bases that instance disks make, and the disks whose references could not be read. */
export interface DiskScan {
  uses: GcUse[];
  uncertainties: string[];
  disks: number;
  inspected: number;
}

interface CachedDisk {
  key: string;
  refs: DiskReferences;
}

const MaxChainDepth = 8;
const MaxWalkDepth = 6;

/**
 * Finds which bases the instance disks under a directory use, as Nova's `_list_backing_images` does: each
 * file's backing file (and external data file), resolved against the disk's directory and symlinks, and
 * followed through images outside both directories. Inspections are cached by inode, size and times, so a
 * pass over unchanged disks re-reads no headers.
 */
export class InstanceDiskScanner {
  private cache = new Map<string, CachedDisk>();
  constructor(private readonly inspect: DiskInspector) {}

  async scan(instancesDir: string, baseDir: string): Promise<DiskScan> {
    const bases = await baseDirNames(baseDir);
    const instRoot = await realpath(instancesDir).catch(() => resolve(instancesDir));
    const walkErrors: string[] = [];
    // A missing instances dir is more likely a wrong path than a node without VMs: count it as unknown uses.
    const root = await stat(instancesDir).catch(() => undefined);
    if (!root?.isDirectory()) walkErrors.push(`instances dir "${instancesDir}" does not exist or is not a directory`);
    const files = root?.isDirectory() ? await walkFiles(instancesDir, MaxWalkDepth, walkErrors) : [];
    const out: DiskScan = { uses: [], uncertainties: walkErrors, disks: files.length, inspected: 0 };
    const seen = new Set<string>();
    for (const file of files) {
      try {
        const found = await this.basesOf(file, bases, instRoot, { out, seen }, 0);
        for (const base of found) out.uses.push({ base, by: `disk ${file}` });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // deleted while we looked: uses nothing
        out.uncertainties.push(`disk "${file}": ${(e as Error).message}`);
      }
    }
    for (const path of this.cache.keys()) if (!seen.has(path)) this.cache.delete(path);
    return out;
  }

  private async basesOf(file: string, bases: BaseDirNames, instRoot: string, pass: { out: DiskScan; seen: Set<string> }, depth: number): Promise<string[]> {
    pass.seen.add(file);
    const refs = await this.inspectCached(file, pass.out);
    const found: string[] = [];
    for (const ref of [refs.backingFile, refs.dataFile]) {
      if (!ref) continue;
      for (const target of referencedPaths(ref, dirname(file))) {
        const direct = bases.match(target);
        if (direct) {
          found.push(direct);
          continue;
        }
        const real = await realpath(target).catch(() => target);
        const base = bases.match(real);
        if (base) {
          found.push(base);
          continue;
        }
        // An image outside both dirs may itself sit on a base (a chain); one inside the instances dir is scanned on its own.
        if (real.startsWith(instRoot + sep) || depth >= MaxChainDepth) continue;
        const chained = await this.basesOf(real, bases, instRoot, pass, depth + 1).catch((e: NodeJS.ErrnoException) => {
          if (e.code === "ENOENT") return [] as string[];
          throw e;
        });
        found.push(...chained);
      }
    }
    return found;
  }

  private async inspectCached(file: string, out: DiskScan): Promise<DiskReferences> {
    const st = await stat(file);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const hit = this.cache.get(file);
    if (hit && hit.key === key) return hit.refs;
    out.inspected++;
    const refs = st.size === 0 ? {} : await this.inspect(file);
    this.cache.set(file, { key, refs });
    return refs;
  }
}

interface BaseDirNames {
  match(path: string): string | undefined;
}

async function baseDirNames(baseDir: string): Promise<BaseDirNames> {
  const dirs = new Set([resolve(baseDir), await realpath(baseDir).catch(() => resolve(baseDir))]);
  return {
    match(path: string) {
      const name = basename(path);
      return dirs.has(dirname(resolve(path))) && /^[0-9a-f]{40}$/.test(name) ? name : undefined;
    },
  };
}

/** The file paths a backing or data file name denotes: a path, or the `filename`s inside a `json:{...}` name. */
export function referencedPaths(ref: string, diskDir: string): string[] {
  if (ref.startsWith("json:")) {
    const names: string[] = [];
    const visit = (v: unknown) => {
      if (!v || typeof v !== "object") return;
      for (const [k, x] of Object.entries(v)) {
        if (k === "filename" && typeof x === "string") names.push(x);
        else visit(x);
      }
    };
    try {
      visit(JSON.parse(ref.slice(5)));
    } catch {
      throw new Error(`Cannot read backing file name "${ref.slice(0, 80)}": not JSON`);
    }
    return names.map((n) => resolve(diskDir, n));
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(ref) && !ref.startsWith("/")) throw new Error(`Cannot resolve backing file "${ref.slice(0, 80)}": a protocol, not a file`);
  return [isAbsolute(ref) ? ref : resolve(diskDir, ref)];
}

// A directory that cannot be read may hold disks we cannot see: that is an uncertainty, not an empty dir.
async function walkFiles(dir: string, depth: number, errors: string[]): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") errors.push(`directory "${dir}": ${(e as Error).message}`);
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (depth > 0) out.push(...(await walkFiles(p, depth - 1, errors)));
    } else if (e.isFile()) {
      out.push(p);
    } else if (e.isSymbolicLink()) {
      const st = await stat(p).catch(() => undefined);
      if (st?.isFile()) out.push(p);
    }
  }
  return out;
}
