/**
 * The download step of the pipeline: the source's bytes into `<base>.part`, sparse and hashed as they arrive.
 * A `.part` left by a fetch that died is continued when core/resume-rules.ts says it can be (its prefix read back
 * into the hasher, then `Range` + `If-Range`), and removed otherwise; while downloading, durable checkpoints keep
 * the resume record beside the `.part` (image/resume-file.ts). The checksum is always over the whole file.
 */
import { performance } from "node:perf_hooks";
import { downloadCap, evaluateAnnouncement, type Expectation } from "../core/fetch-rules.js";
import { redactUrl } from "../core/redact.js";
import { DefaultWriteBackBytes, writeBackPolicy } from "../core/write-back.js";
import { decideResume, ResumeRecordVersion, ifRangeValidator, type ResumeDecision, type ResumeRecord } from "../core/resume-rules.js";
import type { Logger } from "../lib/log.js";
import { removeWorkFiles, WorkFileMode, type BasePaths } from "./base-dir.js";
import type { FetchRequest, WriteBackReport } from "./fetch-request.js";
import { createHasher, type Hasher } from "./hasher.js";
import { DefaultIdleTimeoutMs, DefaultRetry, downloadSource, type DownloadResult, type ResumeFrom, type Validators } from "./http-fetch.js";
import { earlyCheck, freeBytes, refuseIf } from "./image-steps.js";
import { gatherResumeFacts, rehashPrefix, removeResumeRecord, writeResumeRecord } from "./resume-file.js";
import { createOwnFile, openOwnFile } from "./safe-fs.js";
import type { ResolvedSource } from "./source.js";
import { SparseWriter } from "./sparse-writer.js";
import type { FileHandle } from "node:fs/promises";

const progressEveryMs = 250;
/** A checkpoint (fdatasync of the `.part`, then the record) every this many bytes: the most a crash re-downloads. */
export const CheckpointEveryBytes = 32 * 1024 * 1024;

/** What the download step needs of its fetch job. */
export interface PartJob {
  req: FetchRequest;
  id: string;
  base: string;
  paths: BasePaths;
  want: Expectation;
  /** The request key (core/request-key.ts): the definition a resume record must match. */
  key: string;
  log: Logger;
}

/** The opened `.part`, at the offset the download continues from. */
interface OpenedPart {
  fh: FileHandle;
  resume?: ResumeFrom;
  /** Bytes the kept prefix occupies on disk: they count as free space for the announced size. */
  keptAllocated: number;
}

/** Downloads `source` into the job's `.part`, resuming a kept one when the rules allow. */
export async function downloadToPart(job: PartJob, source: ResolvedSource): Promise<DownloadResult & { writeBack: WriteBackReport }> {
  const { req, want: limits } = job;
  const hasher = createHasher(job.want.checksum?.algorithm === "sha512" ? "sha512" : undefined);
  let opened: OpenedPart | undefined;
  let sink: SparseWriter | undefined;
  let lastProgress = 0;
  try {
    opened = await openPart(job, source, hasher);
    sink = new SparseWriter(opened.fh, hasher);
    if (opened.resume) sink.resumeAt(opened.resume.offset);
    // Every download, not only a raw one: whatever the format, a disk slower than the network must not leave
    // gigabytes of dirty pages behind (the checkpoints' syncs are the same syncs).
    const policy = writeBackPolicy(req.writeBackBytes ?? DefaultWriteBackBytes);
    if (policy) sink.writeBack = policy;
    const live: Validators = {};
    if ((source.unpack ?? "none") === "none") sink.checkpoints = checkpointPolicy(job, source, live);
    const keptAllocated = opened.keptAllocated;
    const s = sink;
    const dl = await downloadSource({
      source,
      sink: s,
      retry: req.retry ?? DefaultRetry,
      idleTimeoutMs: req.idleTimeoutMs ?? DefaultIdleTimeoutMs,
      ...(limits.maxVirtualSize === undefined ? {} : { maxBytes: downloadCap(limits.maxVirtualSize) }),
      ...(req.signal ? { signal: req.signal } : {}),
      ...(opened.resume ? { resume: opened.resume } : {}),
      log: job.log,
      onAnnounce: async (a) => {
        if (a.totalBytes === undefined) return;
        // The free space is gathered only for an announced size: a statfs per fetch, not per chunk.
        refuseIf(evaluateAnnouncement({ totalBytes: a.totalBytes, freeBytes: (await freeBytes(req.baseDir)) + (s.position > 0 ? keptAllocated : 0) }, job.want), job.id);
      },
      onHead: (head, total) => {
        earlyCheck(job.id, head, total, limits);
      },
      onValidators: (v) => Object.assign(live, { etag: v.etag, lastModified: v.lastModified, total: v.total }),
      onProgress: (done, total) => {
        const now = performance.now();
        if (now - lastProgress < progressEveryMs && done !== total) return;
        lastProgress = now;
        req.onProgress?.({ phase: "Downloading", bytesDone: done, ...(total === undefined ? {} : { bytesTotal: total }) });
      },
    });
    // Complete: from here on the .part is judged as a whole, and a crash starts over.
    await removeResumeRecord(req.baseDir, job.paths);
    return { ...dl, writeBack: { limitBytes: policy?.limitBytes ?? 0, ...sink.writeBackStats } };
    // Not fsynced here: only a raw source becomes the base as is, and that path fsyncs before the rename.
  } finally {
    // A checkpoint still being written must land (or fail) before the caller removes or keeps the files.
    await sink?.drain().catch(() => undefined);
    await hasher.close();
    await opened?.fh.close();
  }
}

/** Opens the `.part`: the kept one, truncated to its durable prefix and hashed again, or a new empty one. */
async function openPart(job: PartJob, source: ResolvedSource, hasher: Hasher): Promise<OpenedPart> {
  const { req, paths: p, log } = job;
  const decision = await judgeKeptPart(job, source);
  if (!decision.resume) {
    await removeWorkFiles(req.baseDir, job.base);
    return { fh: await createOwnFile(p.part, WorkFileMode), keptAllocated: 0 };
  }
  await removeWorkFiles(req.baseDir, job.base, { keepResumable: true });
  const fh = await openOwnFile(p.part, "write");
  if (!fh) throw new Error(`Cannot resume download of image "${job.id}": "${p.part}" vanished under the lock`);
  try {
    const { offset, record } = decision;
    // The record goes first: if this process dies while rehashing, the next one starts over rather than trusting
    // a record for a file it may be changing. The next checkpoint writes a fresh one.
    await removeResumeRecord(req.baseDir, p);
    await fh.truncate(offset);
    const started = performance.now();
    const head = await rehashPrefix(fh, offset, hasher, req.signal);
    const st = await fh.stat();
    earlyCheck(job.id, head, record.contentLength, job.want);
    log.info({ imageId: job.id, base: job.base, bytes: offset, bytesTotal: record.contentLength, rehashMs: Math.round(performance.now() - started) }, "Resuming download of image from a kept .part");
    req.onFacts?.({ resumedBytes: offset });
    return {
      fh,
      keptAllocated: st.blocks * 512,
      resume: { offset, validator: decision.validator, total: record.contentLength, ...(record.etag ? { etag: record.etag } : {}), ...(record.lastModified ? { lastModified: record.lastModified } : {}) },
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Gathers the facts about a kept `.part` and its record and asks core whether to resume. */
async function judgeKeptPart(job: PartJob, source: ResolvedSource): Promise<ResumeDecision> {
  const facts = await gatherResumeFacts(job.paths);
  const decision = decideResume(facts, {
    base: job.base,
    request: job.key,
    url: redactUrl(source.url),
    ...(source.expectedDigest ? { expectedDigest: source.expectedDigest.toLowerCase() } : {}),
    unpack: source.unpack ?? "none",
  });
  if (!decision.resume && decision.reason !== "no-record") {
    job.log.info({ imageId: job.id, base: job.base, reason: decision.reason, why: decision.message }, "Cannot resume kept .part, downloading from zero");
  }
  return decision;
}

function checkpointPolicy(job: PartJob, source: ResolvedSource, live: Validators) {
  const { req, paths: p } = job;
  return {
    everyBytes: CheckpointEveryBytes,
    // A compressed body has no total here (http-fetch reports none), so it takes no checkpoint: it restarts.
    wanted: () => live.total !== undefined && ifRangeValidator(live) !== undefined,
    save: async (bytes: number) => {
      const record = recordFor(job, source, live, bytes);
      // Without a validator or a length a resume could not tell a changed upstream: record nothing.
      if (record) await writeResumeRecord(req.baseDir, p, record);
    },
    drop: () => removeResumeRecord(req.baseDir, p),
  };
}

function recordFor(job: PartJob, source: ResolvedSource, live: Validators, bytes: number): ResumeRecord | undefined {
  if (live.total === undefined || !ifRangeValidator(live) || bytes >= live.total) return undefined;
  return {
    version: ResumeRecordVersion,
    base: job.base,
    request: job.key,
    url: redactUrl(source.url),
    ...(source.expectedDigest ? { expectedDigest: source.expectedDigest.toLowerCase() } : {}),
    ...(live.etag ? { etag: live.etag } : {}),
    ...(live.lastModified ? { lastModified: live.lastModified } : {}),
    contentLength: live.total,
    bytes,
  };
}
