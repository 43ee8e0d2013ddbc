/**
 * Instance disks on top of bases: a qcow2 overlay backed by the raw base (`-F raw`, never probed), or a full raw
 * copy (reflink where the filesystem allows). `inspectInstanceDisk` tells which base a disk uses by reading the
 * qcow2 header in TypeScript: cheap enough for GC to call on every file, and it never lets qemu-img guess the
 * format of a disk a guest may have written.
 */
import { execa } from "execa";
import { open, rename, stat, unlink, mkdir } from "node:fs/promises";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { evaluateHeader, type ImageLimits } from "../core/image-checks.js";
import { baseNameFor, classifyBaseFileName } from "../core/names.js";
import { ConfigError, ImageRejectedError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { basePaths, fsyncDir, readSidecar } from "./base-dir.js";
import { readHeaderFacts, readRawFacts } from "./header-read.js";
import { qemuImgCreateOverlay, qemuImgInfo, qemuImgResize } from "./qemu-img.js";

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
}

/**
 * Creates an instance disk from the base of `id`, after re-inspecting the base.
 * @throws ConfigError when the base is missing, `out` exists or the size is smaller than the base
 * @throws ImageRejectedError when the base fails today's checks; ToolError when qemu-img fails
 */
export async function createInstanceDisk(req: InstanceDiskRequest): Promise<InstanceDisk> {
  const log = req.log ?? silentLogger;
  const base = baseNameFor(req.id);
  const basePath = resolve(basePaths(req.baseDir, base).base);
  const out = resolve(req.out);
  const baseStat = await stat(basePath).catch(() => undefined);
  if (!baseStat?.isFile()) throw new ConfigError(`Cannot create a disk for image "${req.id}": no base "${base}" in "${req.baseDir}"; run basecache fetch first`);
  if (await stat(out).then(() => true, () => false)) throw new ConfigError(`Cannot create a disk at "${out}": the file exists`);
  const virtualSize = await reinspectBase(req, basePath);
  if (req.size !== undefined && req.size < virtualSize) {
    throw new ConfigError(`Cannot create a disk of ${req.size} bytes for image "${req.id}": the base's virtual size is ${virtualSize} bytes, and a disk cannot be smaller`);
  }
  const size = req.size ?? virtualSize;
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.creating`;
  try {
    if (req.copy) await copyRaw(basePath, tmp, size, req.signal);
    else await qemuImgCreateOverlay(tmp, basePath, "raw", size, req.signal ? { signal: req.signal } : {});
    const fh = await open(tmp, "r+");
    await fh.sync().finally(() => fh.close());
    await rename(tmp, out);
    await fsyncDir(dirname(out));
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  log.info({ imageId: req.id, base, path: out, copy: req.copy === true, bytes: size }, "Created instance disk");
  return { path: out, format: req.copy ? "raw" : "qcow2", virtualSize: size, ...(req.copy ? {} : { backingFile: basePath }), baseName: base };
}

/** Re-runs today's checks on a base (raw by construction); returns its virtual size. */
async function reinspectBase(req: InstanceDiskRequest, basePath: string): Promise<number> {
  const facts = await readRawFacts(basePath);
  // Only a raw source was judged by its bytes; a converted image may start with any guest data.
  const sidecar = await readSidecar(req.baseDir, baseNameFor(req.id));
  if (sidecar && sidecar.sourceFormat !== "raw") delete facts.notADisk;
  const limits: ImageLimits = req.maxVirtualSize === undefined ? {} : { maxVirtualSize: req.maxVirtualSize };
  const v = evaluateHeader(facts, limits);
  if (!v.accept) throw new ImageRejectedError(v.reason, `Refused base of image "${req.id}": ${v.message}`);
  const info = await qemuImgInfo(basePath, "raw", req.signal ? { signal: req.signal } : {});
  if (info.format !== "raw" || info.virtualSize !== facts.fileSize) {
    throw new ImageRejectedError("format-mismatch", `Refused base of image "${req.id}": qemu-img reads ${info.format} of ${info.virtualSize} bytes, the file has ${facts.fileSize}`);
  }
  return info.virtualSize;
}

async function copyRaw(src: string, dst: string, size: number, signal?: AbortSignal): Promise<void> {
  // cp --reflink=auto shares extents on btrfs/xfs and keeps holes elsewhere (--sparse=always).
  await execa("cp", ["--reflink=auto", "--sparse=always", src, dst], { ...(signal ? { cancelSignal: signal } : {}) });
  if ((await stat(dst)).size < size) await qemuImgResize(dst, "raw", size, signal ? { signal } : {});
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
  if (format === "raw") return { format: "raw", virtualSize: (await stat(path)).size };
  const facts = await readHeaderFacts(path);
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
