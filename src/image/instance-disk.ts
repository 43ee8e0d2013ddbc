/**
 * Instance disks on top of bases: a qcow2 overlay backed by the raw base (`-F raw`, never probed), or a full raw
 * copy (reflink where the filesystem allows). `inspectInstanceDisk` tells which base a disk uses by reading the
 * qcow2 header in TypeScript: cheap enough for GC to call on every file, and it never lets qemu-img guess the
 * format of a disk a guest may have written.
 */
import { execa } from "execa";
import { link, lstat, mkdir, realpath, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { evaluateHeader, type ImageLimits } from "../core/image-checks.js";
import { baseNameFor, classifyBaseFileName } from "../core/names.js";
import { ConfigError, ImageRejectedError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { basePaths, fsyncDir } from "./base-dir.js";
import { readHeaderFacts, readRawFacts } from "./header-read.js";
import { qemuImgCreateOverlay, qemuImgInfo } from "./qemu-img.js";
import { createOwnFile, descriptorPath, foreignKind, openOwnFile, openRegularFile, readOwnFile, unlinkIfSame } from "./safe-fs.js";
import { readVersionPointer } from "./version-pointer.js";

/** What to create. */
export interface InstanceDiskRequest {
  baseDir: string;
  id: string;
  /** Path of the new disk; it must not exist. */
  out: string;
  /** Virtual size in bytes; at least the base's. Default: the base's. */
  size?: number;
  /** A full raw copy instead of a qcow2 overlay. */
  copy?: boolean;
  /** Refuse a base above this virtual size (re-checked at creation). */
  maxVirtualSize?: number;
  signal?: AbortSignal;
  log?: Logger;
}

/** A created instance disk. */
export interface InstanceDisk {
  path: string;
  format: "qcow2" | "raw";
  virtualSize: number;
  /** Absolute path of the base (overlays only). */
  backingFile?: string;
  baseName: string;
  /** A tracked image: the version of the base the disk was made on. */
  version?: string;
}

/**
 * Creates an instance disk from the base of `id` (of a tracked image, the version its `.current` pointer names:
 * the newest one Ready on this node), after re-inspecting the base. The base is opened once without
 * following a symlink, and qemu-img and cp are given that descriptor, never the name, so what they read is the
 * file that was checked. The disk is made under an exclusively created temporary name and linked into place
 * without replacing anything.
 * @throws ConfigError when the base is missing, `out` exists or the size is smaller than the base
 * @throws ForeignFileError when the base, its sidecar or the temporary name is a file basecache did not write
 * @throws ImageRejectedError when the base fails today's checks; ToolError when qemu-img fails
 */
export async function createInstanceDisk(req: InstanceDiskRequest): Promise<InstanceDisk> {
  const log = req.log ?? silentLogger;
  const pointer = await readVersionPointer(req.baseDir, req.id);
  const base = pointer?.base ?? baseNameFor(req.id);
  const basePath = resolve(basePaths(req.baseDir, base).base);
  const out = resolve(req.out);
  const baseFh = await openOwnFile(basePath);
  if (!baseFh) throw new ConfigError(`Cannot create a disk for image "${req.id}": no base "${base}" in "${req.baseDir}"; run basecache fetch first`);
  let size: number;
  try {
    await refuseExisting(out);
    const virtualSize = await reinspectBase(req, base, baseFh);
    if (req.size !== undefined && req.size < virtualSize) {
      throw new ConfigError(`Cannot create a disk of ${req.size} bytes for image "${req.id}": the base's virtual size is ${virtualSize} bytes, and a disk cannot be smaller`);
    }
    size = req.size ?? virtualSize;
    await makeOutDir(out);
    await writeDisk(req, baseFh, basePath, out, size);
  } finally {
    await baseFh.close();
  }
  const version = pointer ? { version: pointer.version } : {};
  log.info({ imageId: req.id, base, ...version, path: out, copy: req.copy === true, bytes: size }, "Created instance disk");
  return { path: out, format: req.copy ? "raw" : "qcow2", virtualSize: size, ...(req.copy ? {} : { backingFile: basePath }), baseName: base, ...version };
}

async function refuseExisting(out: string): Promise<void> {
  const st = await lstat(out).catch(() => undefined);
  if (!st) return;
  const what = st.isSymbolicLink() ? "a symbolic link is there" : st.isFile() ? "the file exists" : `${foreignKind(st) ?? "something"} is there`;
  throw new ConfigError(`Cannot create a disk at "${out}": ${what}`);
}

/**
 * Creates the disk's directory. The part that exists must hold no symlink: a link planted in the instances dir
 * would put the disk (and a later guest's writes) anywhere on the node.
 */
async function makeOutDir(out: string): Promise<void> {
  const dir = dirname(out);
  let existing = dir;
  while (!(await lstat(existing).then(() => true, () => false)) && dirname(existing) !== existing) existing = dirname(existing);
  const real = await realpath(existing);
  if (real !== existing) throw new ConfigError(`Cannot create a disk at "${out}": "${existing}" resolves through a symbolic link to "${real}"; give the real path`);
  if (!(await stat(existing)).isDirectory()) throw new ConfigError(`Cannot create a disk at "${out}": "${existing}" is not a directory`);
  await mkdir(dir, { recursive: true });
}

async function writeDisk(req: InstanceDiskRequest, baseFh: FileHandle, basePath: string, out: string, size: number): Promise<void> {
  const tmp = `${out}.creating`;
  const opts = req.signal ? { signal: req.signal } : {};
  const fh = await createOwnFile(tmp, 0o644);
  try {
    if (req.copy) await copyRaw(baseFh, fh, size, req.signal);
    // The backing file is recorded by its path, as the VM will open it; qemu-img does not open it (-u).
    else await qemuImgCreateOverlay(descriptorPath(fh), basePath, "raw", size, opts);
    await fh.sync();
    await linkIntoPlace(tmp, out);
    await fsyncDir(dirname(out));
  } catch (e) {
    await unlinkIfSame(tmp, fh);
    throw e;
  } finally {
    await fh.close();
  }
}

/** Gives the finished disk its name without replacing anything there (link fails on any existing name). */
async function linkIntoPlace(tmp: string, out: string): Promise<void> {
  try {
    await link(tmp, out);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new ConfigError(`Cannot create a disk at "${out}": something was put at that name while the disk was made`);
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw e;
    // A filesystem without hard links: the name was checked free, and rename does not follow what is there.
    await refuseExisting(out);
    await rename(tmp, out);
    return;
  }
  await unlink(tmp);
}

/** Re-runs today's checks on a base (raw by construction, open as `fh`); returns its virtual size. */
async function reinspectBase(req: InstanceDiskRequest, base: string, fh: FileHandle): Promise<number> {
  const facts = await readRawFacts(fh);
  // Only a raw source was judged by its bytes; a converted image may start with any guest data. A sidecar this
  // user may not read (0640, the VM's user is not the agent's) leaves that to the check made at fetch time.
  const recorded = await sidecarFacts(req.baseDir, base);
  // A base that failed its re-verification has changed since it was stored: no new disk is made on it.
  if (recorded?.corrupt) throw new ImageRejectedError("base-corrupt", `Refused base of image "${req.id}": ${basePaths(req.baseDir, base).base} no longer matches the digest recorded when it was stored (found ${recorded.corrupt}); it is fetched again once nothing uses it`);
  const sourceFormat = recorded?.sourceFormat;
  if (sourceFormat !== "raw") delete facts.notADisk;
  const limits: ImageLimits = req.maxVirtualSize === undefined ? {} : { maxVirtualSize: req.maxVirtualSize };
  const v = evaluateHeader(facts, limits);
  if (!v.accept) throw new ImageRejectedError(v.reason, `Refused base of image "${req.id}": ${v.message}`);
  const info = await qemuImgInfo(descriptorPath(fh), "raw", req.signal ? { signal: req.signal } : {});
  if (info.format !== "raw" || info.virtualSize !== facts.fileSize) {
    throw new ImageRejectedError("format-mismatch", `Refused base of image "${req.id}": qemu-img reads ${info.format} of ${info.virtualSize} bytes, the file has ${facts.fileSize}`);
  }
  return info.virtualSize;
}

/**
 * What the base's sidecar records: the source format ("raw" also when there is none) and, when re-verification
 * found the base changed, when; undefined when it cannot be read.
 */
async function sidecarFacts(baseDir: string, base: string): Promise<{ sourceFormat: string; corrupt?: string } | undefined> {
  const path = basePaths(baseDir, base).sidecar;
  try {
    const text = await readOwnFile(path, 64 * 1024);
    if (text === undefined) return { sourceFormat: "raw" };
    const sc = JSON.parse(text) as { sourceFormat?: unknown; corrupt?: { detectedAt?: unknown } };
    const corrupt = sc.corrupt ? (typeof sc.corrupt.detectedAt === "string" ? sc.corrupt.detectedAt : "at an unknown time") : undefined;
    return { sourceFormat: typeof sc.sourceFormat === "string" ? sc.sourceFormat : "raw", ...(corrupt !== undefined ? { corrupt } : {}) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EACCES") return undefined;
    if (e instanceof SyntaxError) return { sourceFormat: "raw" };
    throw e;
  }
}

async function copyRaw(src: FileHandle, dst: FileHandle, size: number, signal?: AbortSignal): Promise<void> {
  // cp --reflink=auto shares extents on btrfs/xfs and keeps holes elsewhere (--sparse=always); given the
  // descriptors' paths, it reads the checked base and writes our exclusively created file, whatever the names hold.
  await execa("cp", ["--reflink=auto", "--sparse=always", descriptorPath(src), descriptorPath(dst)], { ...(signal ? { cancelSignal: signal } : {}) });
  // Growing a raw disk is only a longer file.
  if ((await dst.stat()).size < size) await dst.truncate(size);
}

/** Which base an instance disk uses, as read from its header. */
export interface InstanceDiskInfo {
  format: "qcow2" | "raw" | string;
  /** Absolute path of the backing file, resolved against the disk's directory as qemu does. */
  backingFile?: string;
  backingFormat?: string;
  /** The base name (sha1 hex) when the backing file is one of our bases. */
  baseName?: string;
  virtualSize?: number;
}

/**
 * Reads which base a disk uses without running qemu-img. `format` says how to read the disk (GC passes what
 * it knows); without it, the header decides between qcow2 and raw.
 */
export async function inspectInstanceDisk(path: string, format?: "qcow2" | "raw"): Promise<InstanceDiskInfo> {
  // A symlink, FIFO or device is refused, not followed or waited on.
  if (format === "raw") {
    const fh = await openRegularFile(path, false);
    const size = await fh.stat().then((st) => st.size).finally(() => fh.close());
    return { format: "raw", virtualSize: size };
  }
  const facts = await readHeaderFacts(path, { follow: false });
  if (format === "qcow2" && facts.format !== "qcow2") throw new TypeError(`Cannot inspect disk "${path}": it is not qcow2 (its header reads as ${facts.format})`);
  const info: InstanceDiskInfo = { format: facts.format };
  if (facts.virtualSize !== undefined) info.virtualSize = facts.virtualSize;
  if (facts.backingFile !== undefined && facts.format === "qcow2" && !facts.backingFile.startsWith("(")) {
    const backing = isAbsolute(facts.backingFile) ? facts.backingFile : resolve(dirname(path), facts.backingFile);
    info.backingFile = backing;
    const kind = classifyBaseFileName(basename(backing));
    if (kind.kind === "base") info.baseName = kind.base;
  }
  if (facts.backingFormat !== undefined) info.backingFormat = facts.backingFormat;
  return info;
}
