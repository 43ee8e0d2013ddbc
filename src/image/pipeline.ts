/**
 * The fetch pipeline: makes an origin image a safe raw base at `<baseDir>/<sha1(id)>`, or refuses it and leaves
 * nothing behind. Steps (Nova's fetch_to_raw, and stricter): take the per-base lock (or wait for the process
 * that holds it and report its result); download to `.part`, sparse, hashing as it arrives, resuming and
 * retrying; inspect with our header parser, then `qemu-img info` (which must agree) and `qemu-img check`;
 * convert to raw into `.converted` (or keep a raw `.part` as it is); re-inspect; write the sidecar; rename
 * atomically; fsync the directory. A `.part` left by a fetch that died is resumed when core/resume-rules.ts allows
 * (image/part-download.ts). A file at one of our names that we did not write (a symlink, a directory, a
 * FIFO, a hard link) stops the fetch with ForeignFileError before anything is downloaded; it is never followed,
 * used or removed. A coalesced waiter takes the holder's verdict only for the same request (core/request-key.ts).
 * Each fetch is one job record computed once; the steps gather facts and the named rule chains of
 * core/image-checks.ts and core/fetch-rules.ts decide; `refuseIf` turns a refusal into its error.
 */
import { mkdir, rename, unlink } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { performance } from "node:perf_hooks";
import { parseChecksum } from "../core/checksum.js";
import { evaluateCachedBase, evaluateChecksum, evaluateServedAs, type Expectation } from "../core/fetch-rules.js";
import { evaluateConverted } from "../core/image-checks.js";
import { baseNameFor, versionedBaseName } from "../core/names.js";
import { redactUrl } from "../core/redact.js";
import { requestKey } from "../core/request-key.js";
import { FetchError, ForeignFileError, ImageRejectedError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { basePaths, fsyncDir, type BasePaths, readSidecar, removeStaleTempFiles, removeWorkFiles, sealBase, writeSidecar, type BaseSidecar } from "./base-dir.js";
import { deriveVendorChecksum, type ChecksumProvenance } from "./checksum-from.js";
import { DefaultIdleTimeoutMs, type DownloadResult } from "./http-fetch.js";
import { asDiskFull, convertToRaw, fsyncFile, inspectImage, refuseIf, type StepContext } from "./image-steps.js";
import { acquireLock } from "./lock.js";
import { describeOutcome, errorFromLockOutcome, lockOutcomeFor } from "./outcome.js";
import { qemuImgInfo } from "./qemu-img.js";
import { sha256OfFile } from "./file-hash.js";
import { downloadToPart } from "./part-download.js";
import { statOwnFile } from "./safe-fs.js";
import { resolvedFromHttp, type ResolvedSource, type SourceSpec } from "./source.js";
import type { FetchRequest, FetchResult } from "./fetch-request.js";

export { describeOutcome, type FetchOutcome, type FetchStatus } from "./outcome.js";

export type { FetchFacts, FetchProgress, FetchRequest, FetchResult, WriteBackReport } from "./fetch-request.js";

/** One fetch, as computed once from its request: everything the steps below share. */
interface FetchJob {
  req: FetchRequest;
  id: string;
  /** File name of the base: sha1 hex of the id, or of `id@version` for a tracked image's version. */
  base: string;
  paths: BasePaths;
  /** What the image must be: checksum and limits, parsed once (the limits are the image checks' ImageLimits). */
  want: Expectation;
  /** Where the checksum came from, once a SUMS file gave it (checksum-from.ts). */
  checksumFrom?: ChecksumProvenance;
  /** The request key a coalesced waiter compares before it takes our verdict. */
  key: string;
  started: number;
  log: Logger;
}

/**
 * Makes the image a ready raw base, or throws and leaves no file for this id.
 * @throws ImageRejectedError when the image is unsafe, corrupt, too large or fails its checksum
 * @throws FetchError when the source fails; DiskFullError when it cannot fit; ToolError when qemu-img fails;
 *   ForeignFileError when a file we did not write is at one of the base's names
 */
export async function fetchImage(req: FetchRequest): Promise<FetchResult> {
  const job = jobFor(req);
  await mkdir(req.baseDir, { recursive: true });
  try {
    return await fetchCoalesced(job);
  } catch (e) {
    // One line, no stack: a planted file is a finding about the node, not a bug.
    if (e instanceof ForeignFileError) job.log.warn({ imageId: job.id, base: job.base, path: e.path, what: e.what, reason: e.reason }, "Refused to use a file basecache did not write");
    throw e;
  }
}

function jobFor(req: FetchRequest): FetchJob {
  const started = performance.now();
  if (!isAbsolute(req.baseDir)) throw new TypeError(`Cannot fetch image "${req.id}": base dir "${req.baseDir}" is not absolute`);
  if (req.id === "") throw new TypeError("Cannot fetch image: the id is empty");
  if (req.checksum !== undefined && req.checksumFrom !== undefined) throw new TypeError(`Cannot fetch image "${req.id}": give checksum or checksumFrom, not both`);
  if (req.checksumFrom !== undefined && !("http" in req.source)) throw new TypeError(`Cannot fetch image "${req.id}": checksumFrom needs an http source`);
  if (req.registryVerify !== undefined && !("registry" in req.source)) throw new TypeError(`Cannot fetch image "${req.id}": a cosign verification needs a registry source`);
  const want: Expectation = {
    ...(req.maxVirtualSize === undefined ? {} : { maxVirtualSize: req.maxVirtualSize }),
    ...(req.checksum === undefined ? {} : { checksum: parseChecksum(req.checksum) }),
  };
  if (req.writeBackBytes !== undefined && (!Number.isSafeInteger(req.writeBackBytes) || req.writeBackBytes < 0)) throw new TypeError(`Cannot fetch image "${req.id}": writeBackBytes ${req.writeBackBytes} is not a whole number of at least 0`);
  if (req.version !== undefined && !/^[0-9a-f]{12}$/.test(req.version.name)) throw new TypeError(`Cannot fetch image "${req.id}": version "${req.version.name}" is not 12 hex`);
  const base = req.version ? versionedBaseName(req.id, req.version.name) : baseNameFor(req.id);
  return { req, id: req.id, base, paths: basePaths(req.baseDir, base), want, key: requestKey(req), started, log: req.log ?? silentLogger };
}

async function fetchCoalesced(job: FetchJob): Promise<FetchResult> {
  const hit = await cachedResult(job);
  if (hit) return hit;
  await removeStaleTempFiles(job.req.baseDir).catch((err: unknown) => job.log.warn({ err }, "Cannot remove stale work files"));
  for (;;) {
    const attempt = await acquireLock(job.paths.lock, job.req.signal);
    if (!attempt.held) {
      const err = errorFromLockOutcome(attempt.outcome, job.key);
      if (err) throw err;
      const coalesced = await cachedResult(job);
      if (coalesced) return coalesced;
      continue; // the holder stopped without a result: try ourselves
    }
    const lock = attempt.lock;
    try {
      const again = await cachedResult(job);
      const result = again ?? (await fetchLocked(job));
      await lock.release({ status: "ready", reason: again ? "cached" : "fetched", message: "Base is ready", request: job.key });
      return result;
    } catch (thrown) {
      // ENOSPC can strike at any write, the sidecar and the rename included: it is always disk-full (exit 5).
      const err = asDiskFull(thrown, job.id);
      // A stop (SIGTERM, a deadline) or a failing source keeps a resumable .part for the next fetch to judge;
      // a refused image, a full disk or a planted file leaves nothing.
      const keepResumable = job.req.signal?.aborted === true || err instanceof FetchError;
      await removeWorkFiles(job.req.baseDir, job.base, { keepResumable }).catch((e: unknown) => {
        if (!(e instanceof ForeignFileError)) job.log.error({ err: e }, "Cannot remove work files");
      });
      await lock.release(lockOutcomeFor(err, job.key));
      if (!(err instanceof ForeignFileError)) job.log.warn({ err, imageId: job.id, base: job.base, ...describeOutcome(err) }, "Fetch of image failed");
      throw err;
    }
  }
}

/** The base already on disk as this request's result, or undefined when there is none of ours. */
async function cachedResult(job: FetchJob): Promise<FetchResult | undefined> {
  // A base that is a symlink (to anything), a directory, a FIFO or a hard link is not one we stored.
  const st = await statOwnFile(job.paths.base);
  if (!st) return undefined;
  await statOwnFile(job.paths.sidecar);
  const sc = await readSidecar(job.req.baseDir, job.base);
  if (sc?.corrupt) throw new ImageRejectedError("base-corrupt", `Refused base of image "${job.id}": ${job.paths.base} no longer matches the digest recorded when it was stored (found ${sc.corrupt.detectedAt}); it is removed once nothing uses it`);
  // NOTE: a refusal leaves the base: instances may use it. Only the caller's expectation is refused.
  refuseIf(evaluateCachedBase({ sizeBytes: st.size, ...(sc?.sha256 ? { sha256: sc.sha256 } : {}), ...(sc?.sha512 ? { sha512: sc.sha512 } : {}) }, job.want), job.id);
  return resultOf(job, { cached: true, format: sc?.sourceFormat ?? "raw", bytesDownloaded: 0, resumedBytes: 0, sha256: sc?.sha256 ?? "" }, st);
}

async function resolveSource(req: FetchRequest): Promise<ResolvedSource> {
  const spec: SourceSpec = req.source;
  if ("http" in spec) {
    const plain = resolvedFromHttp(spec);
    return req.preconditions ? { ...plain, headers: { ...req.preconditions } } : plain;
  }
  if ("registry" in spec) {
    const { resolveRegistryImage } = await import("./oci-fetch.js");
    return resolveRegistryImage(spec.registry.image, { ...(req.signal ? { signal: req.signal } : {}), ...(req.registryVerify ? { verify: req.registryVerify } : {}) });
  }
  return spec;
}

async function fetchLocked(first: FetchJob): Promise<FetchResult> {
  const job = await withVendorChecksum(first);
  const { req, paths: p, log } = job;
  const source = await resolveSource(req);
  if (source.signature) log.info({ imageId: job.id, digest: source.signature.digest, signedBy: source.signature.signedBy }, "Verified cosign signature of image");
  log.info({ imageId: job.id, base: job.base, source: source.description }, "Fetching image");
  const dl = await downloadToPart(job, source);
  log.info({ imageId: job.id, bytes: dl.bytes, attempts: dl.attempts, resumedBytes: dl.resumedBytes }, dl.resumedBytes > 0 ? `Downloaded image, resumed from ${dl.resumedBytes} bytes` : "Downloaded image");
  req.onFacts?.({ bytesDownloaded: dl.networkBytes, sha256: dl.sha256 });
  refuseIf(evaluateChecksum({ sha256: dl.sha256, ...(dl.extraDigest ? { sha512: dl.extraDigest } : {}) }, job.want), job.id);
  const ctx = stepContext(job);
  const { facts, virtualSize } = await inspectImage(ctx, p.part, job.want);
  refuseIf(evaluateServedAs({ format: facts.format, ...(dl.contentType ? { contentType: dl.contentType } : {}) }), job.id);
  if (facts.format === "raw") {
    await fsyncFile(p.part);
    await rename(p.part, p.converted);
  } else {
    await convertToRaw(ctx, facts, p.part, p.converted);
    await unlink(p.part);
  }
  refuseIf(evaluateConverted(await qemuImgInfo(p.converted, "raw", req.signal ? { signal: req.signal } : {}), virtualSize), job.id);
  // A raw download is the base byte for byte, so its digest is the base's; a converted one is read once more.
  const rawSha256 = facts.format === "raw" ? dl.sha256 : (await sha256OfFile(p.converted, req.signal)).sha256;
  const st = await sealBase(p.converted);
  // Planted while we worked: refuse before the sidecar is written, so nothing of ours is left next to it.
  if (await statOwnFile(p.base)) throw new ForeignFileError(p.base, "a file another process put there while this fetch held the lock");
  await writeSidecar(req.baseDir, job.base, { ...sidecarFor(job, source, facts.format, virtualSize, dl), raw: { sha256: rawSha256, sizeBytes: st.size, mtimeMs: st.mtimeMs } });
  await rename(p.converted, p.base);
  await fsyncDir(req.baseDir);
  log.info({ imageId: job.id, base: job.base, format: facts.format, bytes: st.size }, "Stored image as raw base");
  return resultOf(job, { cached: false, format: facts.format, bytesDownloaded: dl.networkBytes, resumedBytes: dl.resumedBytes, sha256: dl.sha256, writeBack: dl.writeBack }, st);
}

/** With checksumFrom, the SUMS file's checksum becomes the job's expected checksum before the first image byte. */
async function withVendorChecksum(job: FetchJob): Promise<FetchJob> {
  const { req } = job;
  if (!req.checksumFrom || !("http" in req.source)) return job;
  const ctx = { id: job.id, imageUrl: req.source.http.url, idleTimeoutMs: req.idleTimeoutMs ?? DefaultIdleTimeoutMs, log: job.log, ...(req.signal ? { signal: req.signal } : {}) };
  const vendor = await deriveVendorChecksum(req.checksumFrom, ctx);
  return { ...job, want: { ...job.want, checksum: vendor.checksum }, checksumFrom: vendor.provenance };
}

function resultOf(job: FetchJob, r: Pick<FetchResult, "cached" | "format" | "bytesDownloaded" | "resumedBytes" | "sha256" | "writeBack">, st: { size: number; blocks: number }): FetchResult {
  return {
    id: job.id,
    base: job.base,
    path: job.paths.base,
    ...r,
    virtualSize: st.size,
    seconds: (performance.now() - job.started) / 1000,
    allocatedBytes: st.blocks * 512,
  };
}

function sidecarFor(job: FetchJob, source: ResolvedSource, sourceFormat: string, virtualSize: number, dl: DownloadResult): BaseSidecar {
  return {
    id: job.id,
    base: job.base,
    sourceFormat,
    ...(dl.compression ? { compression: dl.compression } : {}),
    virtualSize,
    sha256: dl.sha256,
    ...(dl.extraDigest ? { sha512: dl.extraDigest } : {}),
    source: source.description,
    finalUrl: redactUrl(dl.finalUrl),
    ...(dl.etag ? { etag: dl.etag } : {}),
    ...(dl.lastModified ? { lastModified: dl.lastModified } : {}),
    bytesDownloaded: dl.networkBytes,
    ...(job.checksumFrom ? { checksumFrom: job.checksumFrom } : {}),
    ...(source.signature ? { signature: source.signature } : {}),
    ...(job.req.version ? { version: job.req.version } : {}),
    fetchedAt: new Date().toISOString(),
  };
}

function stepContext(job: FetchJob): StepContext {
  const { req } = job;
  return {
    id: job.id,
    baseDir: req.baseDir,
    log: job.log,
    ...(req.signal ? { signal: req.signal } : {}),
    ...(req.onProgress ? { onProgress: req.onProgress } : {}),
    ...(req.onFacts ? { onFacts: req.onFacts } : {}),
  };
}
