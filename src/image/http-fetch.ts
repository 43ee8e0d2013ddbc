/**
 * Downloads a ResolvedSource into a SparseWriter, hashing in the same pass. Resumes with Range + If-Range after
 * a dropped connection or a stall when the origin gave a strong validator; retries 5xx and network errors with
 * capped backoff; the retry bound counts attempts that made no new progress, so it always holds.
 */
import { createHash, type Hash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { backoffDelay } from "../core/backoff.js";
import type { Compression } from "../core/compression.js";
import { evaluatePartialAnswer } from "../core/resume-rules.js";
import { sleep } from "../lib/clock.js";
import { FetchError, ImageRejectedError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { openBody, type Body } from "./decompress.js";
import { classifyNetworkError, openUrl } from "./http-request.js";
import type { ResolvedSource } from "./source.js";
import type { SparseWriter } from "./sparse-writer.js";

/** Retry policy of a download. */
export interface RetryPolicy {
  /** Attempts without new progress before giving up (at least 1). */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

/** Defaults: 5 attempts, 0.5 s doubling to 10 s. */
export const DefaultRetry: RetryPolicy = { attempts: 5, baseMs: 500, maxMs: 10_000 };
/** An attempt that adds less than this to the download counts as a failed one. */
export const MinProgressBytes = 64 * 1024;
/** However much each attempt progresses, a download makes at most this many times `attempts` requests. */
export const MaxAttemptsPerRetry = 10;
/** Default idle timeout: no byte for this long counts as a stall. */
export const DefaultIdleTimeoutMs = 30_000;

/** What the first response announces, for checks before the body is read. */
export interface Announcement {
  totalBytes?: number;
  contentType?: string;
}

/** Inputs of a download. */
export interface DownloadOptions {
  source: ResolvedSource;
  sink: SparseWriter;
  retry: RetryPolicy;
  idleTimeoutMs: number;
  /** Refuse (too-large, or compression-bomb for a compressed body) once the disk bytes pass this. */
  maxBytes?: number;
  signal?: AbortSignal;
  log: Logger;
  /** Called once per (re)started body with what the response announces; may throw to refuse. */
  onAnnounce?: (a: Announcement) => Promise<void>;
  /** Called with the first bytes of the disk (up to 64 KiB, or all of it), once per restart; may throw to refuse. */
  onHead?: (head: Buffer, totalBytes: number | undefined) => void;
  onProgress?: (bytesDone: number, bytesTotal: number | undefined) => void;
  /** Called with the validators of the bytes being written, whenever they are learned (a 200, or a resume). */
  onValidators?: (v: Validators) => void;
  /** Continue a download a previous process left: the sink is at `offset` already (image/resume-file.ts). */
  resume?: ResumeFrom;
  random?: () => number;
}

/** What identifies the version of the body being downloaded. */
export interface Validators {
  etag?: string;
  lastModified?: string;
  /** The full body's length. */
  total?: number;
}

/** Where a resumed download starts, and what the origin must still be for it (If-Range). */
export interface ResumeFrom extends Validators {
  offset: number;
  validator: string;
}

/** What a finished download learned. */
export interface DownloadResult {
  /** Length of the disk bytes written. */
  bytes: number;
  /** Bytes received from the network over all attempts. */
  networkBytes: number;
  sha256: string;
  extraDigest?: string;
  etag?: string;
  lastModified?: string;
  contentType?: string;
  finalUrl: string;
  attempts: number;
  /** The compression the body was decoded from (by its magic), if any. */
  compression?: Compression;
  /** Bytes kept from a previous process's `.part` (0 when it started from zero, or had to restart). */
  resumedBytes: number;
}

const headBytes = 64 * 1024;

interface State {
  network?: Hash;
  validator?: string;
  etag?: string;
  lastModified?: string;
  contentType?: string;
  total?: number;
  finalUrl: string;
  networkBytes: number;
  head: Buffer[];
  headDone: boolean;
  /** The body's compression, once seen: a compressed download restarts rather than resumes. */
  compression?: Compression;
  /** Whether onAnnounce has run for the bytes being written. */
  announced: boolean;
  resumedBytes: number;
}

/** Downloads `opts.source` into `opts.sink`. Throws FetchError, ImageRejectedError, or the abort reason. */
export async function downloadSource(opts: DownloadOptions): Promise<DownloadResult> {
  const st = freshState(opts);
  const r = opts.resume;
  if (r) {
    // The header checks ran on the bytes read back from disk (image/pipeline.ts), so the head is done.
    Object.assign(st, { validator: r.validator, etag: r.etag, lastModified: r.lastModified, total: r.total, headDone: true, resumedBytes: r.offset });
    opts.onValidators?.({ ...(r.etag ? { etag: r.etag } : {}), ...(r.lastModified ? { lastModified: r.lastModified } : {}), ...(r.total === undefined ? {} : { total: r.total }) });
  }
  let failures = 0;
  let best = 0;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      await attempt(opts, st);
      return await finish(opts, st, attempts);
    } catch (e) {
      const err = classifyNetworkError(e, opts.source.description, opts.signal);
      if (!(err instanceof FetchError) || !err.retryable) throw err;
      // NOTE: an attempt counts as progress only if it moved the download on by a real amount, and attempts in
      // all are capped too, so an origin that sends a few bytes and then drops, every time, still runs out.
      if (opts.sink.position - best >= MinProgressBytes) best = opts.sink.position;
      else failures++;
      if (failures >= opts.retry.attempts || attempts >= opts.retry.attempts * MaxAttemptsPerRetry) {
        throw new FetchError("retries-exhausted", `Cannot download "${opts.source.description}": gave up after ${attempts} attempts, the last ${detail(err.message)}`, {
          ...(err.status === undefined ? {} : { status: err.status }),
          retryable: false,
        }, { cause: err });
      }
      const delay = backoffDelay(opts.retry, Math.max(0, failures - 1), (opts.random ?? Math.random)() * 0.999);
      opts.log.warn({ err, attempt: attempts, delayMs: delay, bytes: opts.sink.position }, "Download attempt failed, retrying");
      await sleep(delay, opts.signal);
    }
  }
}

function freshState(opts: DownloadOptions, prev?: State): State {
  const unpacked = (opts.source.unpack ?? "none") !== "none";
  return {
    ...(unpacked && opts.source.expectedDigest ? { network: createHash("sha256") } : {}),
    finalUrl: opts.source.url,
    networkBytes: prev?.networkBytes ?? 0,
    head: [],
    headDone: false,
    announced: false,
    resumedBytes: 0,
  };
}

async function restart(opts: DownloadOptions, st: State): Promise<void> {
  Object.assign(st, freshState(opts, st), { validator: undefined, etag: undefined, lastModified: undefined });
  await opts.sink.reset();
}

async function attempt(opts: DownloadOptions, st: State): Promise<void> {
  const unpack = opts.source.unpack ?? "none";
  const offset = opts.sink.position;
  if (offset > 0 && (unpack !== "none" || st.compression !== undefined || !st.validator)) await restart(opts, st);
  const headers: Record<string, string> = { ...opts.source.headers };
  const resuming = opts.sink.position > 0;
  if (resuming && st.validator) {
    headers.range = `bytes=${opts.sink.position}-`;
    headers["if-range"] = st.validator;
  }
  const { res, url } = await openUrl(opts.source.url, headers, opts.idleTimeoutMs, opts.signal);
  st.finalUrl = url;
  await acceptStatus(opts, st, res, resuming);
  const body = await openBody(res, {
    description: opts.source.description,
    ...(opts.maxBytes === undefined ? {} : { maxOutputBytes: opts.maxBytes }),
    ...(opts.signal ? { signal: opts.signal } : {}),
    onCompression: (c) => {
      st.compression = c;
      // The .part holds decoded bytes, which no Range of the compressed body can continue: forget the
      // validators, so that no resume record is written for it (image/part-download.ts writes none without one).
      if (c !== undefined) opts.onValidators?.({});
      // The registry's digest names the network bytes: hash them apart from the disk bytes when they differ.
      // A fresh hash per attempt: an attempt that failed before writing a byte does not restart the sink.
      if (opts.source.expectedDigest && (c !== undefined || unpack !== "none")) st.network = createHash("sha256");
    },
    onInput: (chunk) => {
      st.networkBytes += chunk.length;
      st.network?.update(chunk);
    },
  });
  try {
    if (unpack === "none") await consumePlain(opts, st, body);
    else await consumeUnpacked(opts, st, body);
  } finally {
    // However the attempt ends (a bomb past the limit, a refusal, a dropped connection), no decoder outlives it.
    await body.close();
  }
}

async function acceptStatus(opts: DownloadOptions, st: State, res: IncomingMessage, resuming: boolean): Promise<void> {
  const status = res.statusCode ?? 0;
  const desc = opts.source.description;
  if (status === 206 && resuming) {
    const v = evaluatePartialAnswer(res.headers["content-range"], opts.sink.position, st.total);
    if (!v.accept) {
      res.resume();
      await restart(opts, st);
      throw new FetchError("truncated", `Cannot resume "${desc}": ${v.message}`, { status, retryable: true });
    }
    opts.log.debug({ bytes: opts.sink.position }, "Resumed download");
    st.contentType ??= res.headers["content-type"];
    await announce(opts, st);
    return;
  }
  if (status === 200) {
    if (resuming) {
      opts.log.info({ bytes: opts.sink.position }, "Origin sent the whole image again, restarting download");
      await restart(opts, st);
    }
    recordValidators(st, res);
    opts.onValidators?.({ ...(st.etag ? { etag: st.etag } : {}), ...(st.lastModified ? { lastModified: st.lastModified } : {}), ...(st.total === undefined ? {} : { total: st.total }) });
    await announce(opts, st);
    return;
  }
  res.resume();
  // Only a version's precondition (If-Match, If-Unmodified-Since) makes an origin answer 412: retrying is useless.
  if (status === 412) throw new FetchError("http-status", `Cannot download "${desc}": the origin's file is no longer the version this node was told to fetch (HTTP 412); the controller's next check finds the new one`, { status, retryable: false });
  const retryable = status >= 500 || status === 408 || status === 429 || (status === 416 && resuming);
  if (status === 416) await restart(opts, st);
  throw new FetchError("http-status", `Cannot download "${desc}": HTTP ${status}`, { status, retryable });
}

// Once per version of the bytes: a resume after a crash announces the size it continues, as a 200 does.
async function announce(opts: DownloadOptions, st: State): Promise<void> {
  if (st.announced) return;
  st.announced = true;
  await opts.onAnnounce?.({ ...(st.total === undefined ? {} : { totalBytes: st.total }), ...(st.contentType ? { contentType: st.contentType } : {}) });
}

function recordValidators(st: State, res: IncomingMessage): void {
  const etag = res.headers.etag;
  const lm = res.headers["last-modified"];
  st.etag = etag;
  st.lastModified = lm;
  // If-Range needs a strong validator: a weak ETag may name different bytes.
  st.validator = etag && !etag.startsWith("W/") ? etag : lm;
  st.contentType = res.headers["content-type"];
  const len = res.headers["content-length"];
  st.total = len !== undefined && /^\d+$/.test(len) ? Number(len) : undefined;
}

async function consumePlain(opts: DownloadOptions, st: State, body: Body): Promise<void> {
  for await (const chunk of body.chunks) await takeDiskBytes(opts, st, chunk);
  if (st.total !== undefined && body.compression === undefined && opts.sink.position !== st.total) {
    throw new FetchError("truncated", `Cannot download "${opts.source.description}": got ${opts.sink.position} of ${st.total} bytes`, { retryable: true });
  }
}

async function consumeUnpacked(opts: DownloadOptions, st: State, body: Body): Promise<void> {
  const { extractDiskFromTar } = await import("./tar-layer.js");
  const sink = new Writable({
    write: (chunk: Buffer, _enc, cb) => void takeDiskBytes(opts, st, chunk).then(() => cb(), cb),
  });
  await pipeline(extractDiskFromTar(Readable.from(body.chunks)), sink);
}

async function takeDiskBytes(opts: DownloadOptions, st: State, chunk: Buffer): Promise<void> {
  await opts.sink.write(chunk);
  const done = opts.sink.position;
  if (opts.maxBytes !== undefined && done > opts.maxBytes) {
    const bomb = st.compression !== undefined;
    throw new ImageRejectedError(bomb ? "compression-bomb" : "too-large", bomb
      ? `Refused image "${opts.source.description}": it unpacks to more than ${opts.maxBytes} bytes`
      : `Refused image "${opts.source.description}": the download exceeds ${opts.maxBytes} bytes`);
  }
  if (!st.headDone) {
    st.head.push(chunk);
    const have = st.head.reduce((n, b) => n + b.length, 0);
    if (have >= headBytes) {
      st.headDone = true;
      opts.onHead?.(Buffer.concat(st.head), diskTotal(opts, st));
      st.head = [];
    }
  }
  opts.onProgress?.(done, diskTotal(opts, st));
}

/** The announced length is the disk's only when the body is neither unpacked nor compressed. */
function diskTotal(opts: DownloadOptions, st: State): number | undefined {
  return (opts.source.unpack ?? "none") === "none" && st.compression === undefined ? st.total : undefined;
}

async function finish(opts: DownloadOptions, st: State, attempts: number): Promise<DownloadResult> {
  if (!st.headDone) opts.onHead?.(Buffer.concat(st.head), opts.sink.position);
  await opts.sink.finish(false);
  const digests = await opts.sink.digest();
  if (st.network && opts.source.expectedDigest) {
    const got = `sha256:${st.network.digest("hex")}`;
    if (got !== opts.source.expectedDigest.toLowerCase()) {
      throw new ImageRejectedError("checksum-mismatch", `Refused image "${opts.source.description}": the download has digest ${got}, expected ${opts.source.expectedDigest}`);
    }
  }
  const sha256 = digests.sha256;
  if (!st.network && opts.source.expectedDigest && `sha256:${sha256}` !== opts.source.expectedDigest.toLowerCase()) {
    throw new ImageRejectedError("checksum-mismatch", `Refused image "${opts.source.description}": the download has digest sha256:${sha256}, expected ${opts.source.expectedDigest}`);
  }
  return {
    bytes: opts.sink.position,
    networkBytes: st.networkBytes,
    sha256,
    ...(digests.extra ? { extraDigest: digests.extra } : {}),
    ...(st.etag ? { etag: st.etag } : {}),
    ...(st.lastModified ? { lastModified: st.lastModified } : {}),
    ...(st.contentType ? { contentType: st.contentType } : {}),
    finalUrl: st.finalUrl,
    attempts,
    ...(st.compression ? { compression: st.compression } : {}),
    resumedBytes: st.resumedBytes,
  };
}

function detail(message: string): string {
  const i = message.indexOf(": ");
  return i >= 0 ? `failed with ${message.slice(i + 2)}` : `failed with ${message}`;
}
