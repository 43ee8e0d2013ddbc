/**
 * The fetch pipeline: makes an origin image a safe raw base at `<baseDir>/<sha1(id)>`, or refuses it and leaves
 * nothing behind. Steps (Nova's fetch_to_raw, and stricter): take the per-base lock (or wait for the process
 * that holds it and report its result); download to `.part`, sparse, hashing as it arrives, resuming and
 * retrying; inspect with our header parser, then `qemu-img info` (which must agree) and `qemu-img check`;
 * convert to raw into `.converted` (or keep a raw `.part` as it is); re-inspect; write the sidecar; rename
 * atomically; fsync the directory. A file at one of our names that we did not write (a symlink, a directory, a
 * FIFO, a hard link) stops the fetch with ForeignFileError before anything is downloaded; it is never followed,
 * used or removed. A coalesced waiter takes the holder's verdict only for the same request (core/request-key.ts).
 */
import { mkdir, rename, unlink } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { performance } from "node:perf_hooks";
import { parseChecksum, type Checksum } from "../core/checksum.js";
import { evaluateConverted, type ImageLimits } from "../core/image-checks.js";
import { ByteReader } from "../core/byte-window.js";
import { detectFormat } from "../core/image-header.js";
import { baseNameFor } from "../core/names.js";
import { formatBytes } from "../core/quantity.js";
import { redactUrl } from "../core/redact.js";
import { requestKey } from "../core/request-key.js";
import { DiskFullError, ForeignFileError, ImageRejectedError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { basePaths, fsyncDir, readSidecar, removeStaleTempFiles, removeWorkFiles, sealBase, WorkFileMode, writeSidecar, type BaseSidecar } from "./base-dir.js";
import { createHasher } from "./hasher.js";
import { DefaultIdleTimeoutMs, DefaultRetry, downloadSource, type Announcement, type DownloadResult, type RetryPolicy } from "./http-fetch.js";
import { asDiskFull, convertToRaw, downloadCap, earlyCheck, freeBytes, fsyncFile, inspectImage, refuseIf, type StepContext } from "./image-steps.js";
import { acquireLock } from "./lock.js";
import { describeOutcome, errorFromLockOutcome, lockOutcomeFor } from "./outcome.js";
import { qemuImgInfo } from "./qemu-img.js";
import { createOwnFile, statOwnFile } from "./safe-fs.js";
import { resolvedFromHttp, type ResolvedSource, type SourceSpec } from "./source.js";
import { SparseWriter } from "./sparse-writer.js";

export { describeOutcome, type FetchOutcome, type FetchStatus } from "./outcome.js";

/** Progress of a fetch, reported at most every few hundred milliseconds. */
export interface FetchProgress {
  phase: "Downloading" | "Converting";
  bytesDone: number;
  bytesTotal?: number;
}

/** What a fetch has learned so far, reported as it goes so that a failure can still say it (`fetch --json`). */
export interface FetchFacts {
  format?: string;
  virtualSize?: number;
  bytesDownloaded?: number;
  sha256?: string;
}

/** What to fetch and where. */
export interface FetchRequest {
  /** The `_base` directory; created when missing. */
  baseDir: string;
  /** The image id; the base is named by its sha1. */
  id: string;
  source: SourceSpec;
  /** `"sha256:<hex>"` or `"sha512:<hex>"` of the image file as served (for tar sources: of the disk inside). */
  checksum?: string;
  /** Largest virtual size accepted, in bytes. */
  maxVirtualSize?: number;
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: (p: FetchProgress) => void;
  /** Called with each fact as it is learned: after the download, and once the header is read. */
  onFacts?: (f: FetchFacts) => void;
  retry?: RetryPolicy;
  /** No byte for this long counts as a stall (then resume or retry). */
  idleTimeoutMs?: number;
}

/** A ready base. */
export interface FetchResult {
  id: string;
  /** File name of the base: sha1 hex of the id. */
  base: string;
  /** Absolute path of the base. */
  path: string;
  /** True when the base was already there (or another process fetched it while we waited): nothing downloaded. */
  cached: boolean;
  /** Format of the source image (the base itself is always raw). */
  format: string;
  virtualSize: number;
  bytesDownloaded: number;
  /** SHA-256 of the source image bytes. */
  sha256: string;
  seconds: number;
  /** Bytes the base occupies on disk (sparse). */
  allocatedBytes: number;
}

const progressEveryMs = 250;

/**
 * Makes the image a ready raw base, or throws and leaves no file for this id.
 * @throws ImageRejectedError when the image is unsafe, corrupt, too large or fails its checksum
 * @throws FetchError when the source fails; DiskFullError when it cannot fit; ToolError when qemu-img fails;
 *   ForeignFileError when a file we did not write is at one of the base's names
 */
export async function fetchImage(req: FetchRequest): Promise<FetchResult> {
  const started = performance.now();
  const log = req.log ?? silentLogger;
  if (!isAbsolute(req.baseDir)) throw new TypeError(`Cannot fetch image "${req.id}": base dir "${req.baseDir}" is not absolute`);
  if (req.id === "") throw new TypeError("Cannot fetch image: the id is empty");
  const checksum = req.checksum === undefined ? undefined : parseChecksum(req.checksum);
  const base = baseNameFor(req.id);
  await mkdir(req.baseDir, { recursive: true });
  try {
    return await fetchCoalesced(req, base, checksum, started, log);
  } catch (e) {
    // One line, no stack: a planted file is a finding about the node, not a bug.
    if (e instanceof ForeignFileError) log.warn({ imageId: req.id, base, path: e.path, what: e.what, reason: e.reason }, "Refused to use a file basecache did not write");
    throw e;
  }
}

async function fetchCoalesced(req: FetchRequest, base: string, checksum: Checksum | undefined, started: number, log: Logger): Promise<FetchResult> {
  const paths = basePaths(req.baseDir, base);
  const key = requestKey(req);
  const hit = await cachedResult(req, base, checksum, started);
  if (hit) return hit;
  await removeStaleTempFiles(req.baseDir).catch((err: unknown) => log.warn({ err }, "Cannot remove stale work files"));
  for (;;) {
    const attempt = await acquireLock(paths.lock, req.signal);
    if (!attempt.held) {
      const err = errorFromLockOutcome(attempt.outcome, key);
      if (err) throw err;
      const coalesced = await cachedResult(req, base, checksum, started);
      if (coalesced) return coalesced;
      continue; // the holder stopped without a result: try ourselves
    }
    const lock = attempt.lock;
    try {
      const again = await cachedResult(req, base, checksum, started);
      const result = again ?? (await fetchLocked(req, base, checksum, started, log));
      await lock.release({ status: "ready", reason: again ? "cached" : "fetched", message: "Base is ready", request: key });
      return result;
    } catch (thrown) {
      // ENOSPC can strike at any write, the sidecar and the rename included: it is always disk-full (exit 5).
      const err = asDiskFull(thrown, req.id);
      await removeWorkFiles(req.baseDir, base).catch((e: unknown) => {
        if (!(e instanceof ForeignFileError)) log.error({ err: e }, "Cannot remove work files");
      });
      await lock.release(lockOutcomeFor(err, key));
      if (!(err instanceof ForeignFileError)) log.warn({ err, imageId: req.id, base, ...describeOutcome(err) }, "Fetch of image failed");
      throw err;
    }
  }
}

async function cachedResult(req: FetchRequest, base: string, checksum: Checksum | undefined, started: number): Promise<FetchResult | undefined> {
  const p = basePaths(req.baseDir, base);
  // A base that is a symlink (to anything), a directory, a FIFO or a hard link is not one we stored.
  const st = await statOwnFile(p.base);
  if (!st) return undefined;
  await statOwnFile(p.sidecar);
  const sc = await readSidecar(req.baseDir, base);
  if (checksum && sc) {
    const known = checksum.algorithm === "sha256" ? sc.sha256 : sc.sha512;
    if (known !== undefined && known !== checksum.hex) {
      // NOTE: the base stays: instances may use it. Only the caller's expectation is refused.
      throw new ImageRejectedError("checksum-mismatch", `Refused image "${req.id}": the cached base has ${checksum.algorithm} ${known}, expected ${checksum.hex}`);
    }
  }
  if (req.maxVirtualSize !== undefined && st.size > req.maxVirtualSize) {
    throw new ImageRejectedError("too-large", `Refused image "${req.id}": the cached base has a virtual size of ${st.size} bytes, above the limit of ${req.maxVirtualSize}`);
  }
  return {
    id: req.id,
    base,
    path: p.base,
    cached: true,
    format: sc?.sourceFormat ?? "raw",
    virtualSize: st.size,
    bytesDownloaded: 0,
    sha256: sc?.sha256 ?? "",
    seconds: (performance.now() - started) / 1000,
    allocatedBytes: st.blocks * 512,
  };
}

async function resolveSource(spec: SourceSpec, signal?: AbortSignal): Promise<ResolvedSource> {
  if ("http" in spec) return resolvedFromHttp(spec);
  if ("registry" in spec) {
    const { resolveRegistryImage } = await import("./oci-fetch.js");
    return resolveRegistryImage(spec.registry.image, signal ? { signal } : {});
  }
  return spec;
}

async function fetchLocked(req: FetchRequest, base: string, checksum: Checksum | undefined, started: number, log: Logger): Promise<FetchResult> {
  const p = basePaths(req.baseDir, base);
  await removeWorkFiles(req.baseDir, base);
  const source = await resolveSource(req.source, req.signal);
  const limits: ImageLimits = req.maxVirtualSize === undefined ? {} : { maxVirtualSize: req.maxVirtualSize };
  log.info({ imageId: req.id, base, source: source.description }, "Fetching image");
  const dl = await download(req, source, p.part, limits, checksum);
  log.info({ imageId: req.id, bytes: dl.bytes, attempts: dl.attempts }, "Downloaded image");
  req.onFacts?.({ bytesDownloaded: dl.networkBytes, sha256: dl.sha256 });
  if (checksum) verifyChecksum(req.id, checksum, dl);
  const ctx = stepContext(req, log);
  const { facts, virtualSize } = await inspectImage(ctx, p.part, limits);
  if (facts.format === "raw" && /^text\/html\b/i.test(dl.contentType ?? "")) {
    throw new ImageRejectedError("not-a-disk", `Refused image "${req.id}": the origin served it as ${dl.contentType ?? ""}, a web page, not a raw disk`);
  }
  if (facts.format === "raw") {
    await fsyncFile(p.part);
    await rename(p.part, p.converted);
  } else {
    await convertToRaw(ctx, facts, p.part, p.converted);
    await unlink(p.part);
  }
  refuseIf(evaluateConverted(await qemuImgInfo(p.converted, "raw", req.signal ? { signal: req.signal } : {}), virtualSize), req.id);
  const st = await sealBase(p.converted);
  // Planted while we worked: refuse before the sidecar is written, so nothing of ours is left next to it.
  if (await statOwnFile(p.base)) throw new ForeignFileError(p.base, "a file another process put there while this fetch held the lock");
  await writeSidecar(req.baseDir, base, sidecarFor(req, base, source, facts.format, virtualSize, dl));
  await rename(p.converted, p.base);
  await fsyncDir(req.baseDir);
  log.info({ imageId: req.id, base, format: facts.format, bytes: st.size }, "Stored image as raw base");
  return {
    id: req.id,
    base,
    path: p.base,
    cached: false,
    format: facts.format,
    virtualSize: st.size,
    bytesDownloaded: dl.networkBytes,
    sha256: dl.sha256,
    seconds: (performance.now() - started) / 1000,
    allocatedBytes: st.blocks * 512,
  };
}

async function download(req: FetchRequest, source: ResolvedSource, part: string, limits: ImageLimits, checksum: Checksum | undefined): Promise<DownloadResult> {
  const fh = await createOwnFile(part, WorkFileMode);
  const hasher = createHasher(checksum?.algorithm === "sha512" ? "sha512" : undefined);
  let lastProgress = 0;
  try {
    const sink = new SparseWriter(fh, hasher);
    return await downloadSource({
      source,
      sink,
      retry: req.retry ?? DefaultRetry,
      idleTimeoutMs: req.idleTimeoutMs ?? DefaultIdleTimeoutMs,
      ...(limits.maxVirtualSize === undefined ? {} : { maxBytes: downloadCap(limits.maxVirtualSize) }),
      ...(req.signal ? { signal: req.signal } : {}),
      log: req.log ?? silentLogger,
      onAnnounce: (a) => checkAnnouncement(req, a),
      onHead: (head, total) => {
        earlyCheck(req.id, head, total, limits);
        // A source with no known magic is raw: its .part becomes the base, so start writing it back now.
        sink.syncWhileWriting = detectFormat(new ByteReader({ size: head.length, chunks: [{ offset: 0, data: head }] })) === "raw";
      },
      onProgress: (done, total) => {
        const now = performance.now();
        if (now - lastProgress < progressEveryMs && done !== total) return;
        lastProgress = now;
        req.onProgress?.({ phase: "Downloading", bytesDone: done, ...(total === undefined ? {} : { bytesTotal: total }) });
      },
    });
    // Not fsynced here: only a raw source becomes the base as is, and that path fsyncs before the rename.
    // ENOSPC while writing becomes disk-full in fetchImage, which maps it for every step.
  } finally {
    await hasher.close();
    await fh.close();
  }
}

async function checkAnnouncement(req: FetchRequest, a: Announcement): Promise<void> {
  if (a.totalBytes === undefined) return;
  if (req.maxVirtualSize !== undefined && a.totalBytes > downloadCap(req.maxVirtualSize)) {
    throw new ImageRejectedError("too-large", `Refused image "${req.id}": the origin announces ${a.totalBytes} bytes, more than an image within the limit of ${req.maxVirtualSize} bytes can hold`);
  }
  const free = await freeBytes(req.baseDir);
  if (a.totalBytes > free) {
    throw new DiskFullError(`Cannot fetch image "${req.id}": it is ${a.totalBytes} bytes (${formatBytes(a.totalBytes)}) and the base dir's filesystem has ${free} bytes (${formatBytes(free)}) free`);
  }
}

function verifyChecksum(id: string, c: Checksum, dl: DownloadResult): void {
  const got = c.algorithm === "sha256" ? dl.sha256 : dl.extraDigest;
  if (got !== c.hex) throw new ImageRejectedError("checksum-mismatch", `Refused image "${id}": ${c.algorithm} is ${got ?? "unknown"}, expected ${c.hex}`);
}

function sidecarFor(req: FetchRequest, base: string, source: ResolvedSource, sourceFormat: string, virtualSize: number, dl: DownloadResult): BaseSidecar {
  return {
    id: req.id,
    base,
    sourceFormat,
    virtualSize,
    sha256: dl.sha256,
    ...(dl.extraDigest ? { sha512: dl.extraDigest } : {}),
    source: source.description,
    finalUrl: redactUrl(dl.finalUrl),
    ...(dl.etag ? { etag: dl.etag } : {}),
    ...(dl.lastModified ? { lastModified: dl.lastModified } : {}),
    bytesDownloaded: dl.networkBytes,
    fetchedAt: new Date().toISOString(),
  };
}

function stepContext(req: FetchRequest, log: Logger): StepContext {
  return {
    id: req.id,
    baseDir: req.baseDir,
    log,
    ...(req.signal ? { signal: req.signal } : {}),
    ...(req.onProgress ? { onProgress: req.onProgress } : {}),
    ...(req.onFacts ? { onFacts: req.onFacts } : {}),
  };
}
