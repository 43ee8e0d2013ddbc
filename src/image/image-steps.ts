/**
 * The steps of the fetch pipeline after the download: the early header check, both inspection layers, the
 * conversion to raw with its free-space check, and the small file-system helpers they share.
 */
import { open, statfs, unlink } from "node:fs/promises";
import { evaluateConversionSpace, type FetchVerdict } from "../core/fetch-rules.js";
import { evaluateEarlyHeader, evaluateHeader, evaluateQemuCheck, evaluateQemuInfo, CheckableFormats, type ImageLimits } from "../core/image-checks.js";
import type { HeaderFacts } from "../core/image-header.js";
import { parseConvertOverrides, planConvertLimits, type ConvertLimits } from "../core/convert-limits.js";
import { formatBytes } from "../core/quantity.js";
import { ConfigError, DiskFullError, ImageRejectedError, ToolError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { readHeaderFacts } from "./header-read.js";
import { qemuImgCheck, qemuImgConvertToRaw, qemuImgDataBytes, qemuImgInfo } from "./qemu-img.js";

/** What every step needs to know about the fetch it serves. */
export interface StepContext {
  id: string;
  baseDir: string;
  log: Logger;
  signal?: AbortSignal;
  onProgress?: (p: { phase: "Converting"; bytesDone: number; bytesTotal?: number }) => void;
  /** Told the detected format and the header's virtual size before any refusal, so a refusal can name them. */
  onFacts?: (f: { format: string; virtualSize?: number }) => void;
}

/** Free space kept in reserve when judging whether an image fits: 64 MiB, or 2% of a small filesystem. */
const reserveBytes = 64 * 1024 * 1024;
const reserveFraction = 0.02;

/** Refuses early, from the first 64 KiB, what no later step could accept: saves downloading a hostile image. */
export function earlyCheck(id: string, head: Buffer, total: number | undefined, limits: ImageLimits): void {
  refuseIf(evaluateEarlyHeader(head, total, limits), id);
}

/** Both inspection layers; returns our facts and the virtual size qemu-img reads (they agree, up to VHD geometry). */
export async function inspectImage(ctx: StepContext, part: string, limits: ImageLimits): Promise<{ facts: HeaderFacts; virtualSize: number }> {
  const facts = await readHeaderFacts(part);
  ctx.log.debug({ imageId: ctx.id, facts }, "Inspected image header");
  ctx.onFacts?.({ format: facts.format, ...(facts.virtualSize === undefined ? {} : { virtualSize: facts.virtualSize }) });
  refuseIf(evaluateHeader(facts, limits), ctx.id);
  const info = await qemuImgInfo(part, facts.format, signalOpt(ctx)).catch((e: unknown) => {
    throw e instanceof ToolError ? new ImageRejectedError("corrupt", `Refused image "${ctx.id}": qemu-img cannot open it as ${facts.format}: ${lastLine(e.details.stderrTail)}`, { cause: e }) : e;
  });
  refuseIf(evaluateQemuInfo(facts, info, limits), ctx.id);
  if (CheckableFormats.includes(facts.format)) {
    const check = await qemuImgCheck(part, facts.format, signalOpt(ctx)).catch((e: unknown) => {
      throw asInspectFailed(e, ctx, "check");
    });
    refuseIf(evaluateQemuCheck(check), ctx.id);
  }
  return { facts, virtualSize: info.virtualSize };
}

/**
 * qemu-img stopped by its resource limits (CPU, address space), by a timeout or by a crash while it reads an image
 * we already suspect: the image is refused (exit 3), not reported as an internal error. An abort stays an abort.
 */
function asInspectFailed(e: unknown, ctx: StepContext, step: string): unknown {
  if (!(e instanceof ToolError) || ctx.signal?.aborted) return e;
  // qemu-img that never ran (not installed) is our fault, not the image's.
  if (!e.details.timedOut && !e.details.signal && e.details.exitCode === undefined) return e;
  const how = e.details.timedOut ? "timed out" : e.details.signal ? `was killed by ${e.details.signal}` : `exited ${e.details.exitCode ?? "?"}`;
  return new ImageRejectedError("inspect-failed", `Refused image "${ctx.id}": qemu-img ${step} ${how} under its resource limits: ${lastLine(e.details.stderrTail)}`, { cause: e });
}

/**
 * Converts `src` to a raw `dst`, durable when it returns, after checking that its data fits the free space.
 * qemu-img runs under limits sized from the image (core/convert-limits.ts); one stopped by them is refused as
 * `resource-limit`, never retried.
 */
export async function convertToRaw(ctx: StepContext, facts: HeaderFacts, src: string, dst: string): Promise<void> {
  const total = facts.virtualSize ?? 0;
  const needed = await qemuImgDataBytes(src, facts.format, signalOpt(ctx)).catch((e: unknown) => {
    throw asInspectFailed(e, ctx, "map");
  });
  refuseIf(evaluateConversionSpace({ dataBytes: needed, fileSize: facts.fileSize, freeBytes: await freeBytes(ctx.baseDir) }), ctx.id, "convert");
  const limits = convertLimitsFor(total, needed);
  ctx.log.debug({ imageId: ctx.id, limits }, "Converting image under limits");
  const onProgress = (pct: number) => ctx.onProgress?.({ phase: "Converting", bytesDone: Math.round((total * pct) / 100), bytesTotal: total });
  const run = (targetCache: "none" | "writeback") =>
    qemuImgConvertToRaw(src, facts.format, dst, { ...signalOpt(ctx), targetCache, onProgress, limits, timeoutMs: limits.timeoutMs }).catch((e: unknown) => {
      throw asConvertRefusal(e, ctx, limits, total);
    });
  try {
    await run("none");
  } catch (e) {
    if (!(e instanceof ToolError) || !/O_DIRECT|Invalid argument/i.test(e.details.stderrTail)) throw asDiskFull(e, ctx.id);
    // NOTE: tmpfs and some overlay filesystems refuse O_DIRECT; write back through the page cache, then fsync.
    ctx.log.debug({ imageId: ctx.id }, "Target refused O_DIRECT, converting with writeback and fsync");
    await unlink(dst).catch(() => undefined);
    await run("writeback").catch((e2: unknown) => {
      throw asDiskFull(e2, ctx.id);
    });
    await fsyncFile(dst);
  }
}

function convertLimitsFor(virtualSize: number, dataBytes: number): ConvertLimits {
  const overrides = parseConvertOverrides(process.env);
  if ("error" in overrides) throw new ConfigError(`Cannot convert an image: ${overrides.error}`);
  return planConvertLimits({ virtualSize, dataBytes }, overrides);
}

/**
 * A conversion stopped by its limits (timeout, CPU, address space: qemu-img then aborts on a failed allocation
 * or thread creation) is the image's doing: `resource-limit`. A target the filesystem cannot hold at the virtual
 * size ("File too large", EFBIG) is `too-large`. An abort stays an abort; anything else stays a ToolError.
 */
function asConvertRefusal(e: unknown, ctx: StepContext, limits: ConvertLimits, virtualSize: number): unknown {
  if (!(e instanceof ToolError) || ctx.signal?.aborted) return e;
  const d = e.details;
  if (/File too large/i.test(d.stderrTail)) {
    return new ImageRejectedError("too-large", `Refused image "${ctx.id}": its virtual size of ${virtualSize} bytes (${formatBytes(virtualSize)}) is larger than a file the base dir's filesystem can hold`, { cause: e });
  }
  const memory = /Cannot allocate memory|Resource temporarily unavailable|Failed to allocate|out of memory/i.test(d.stderrTail);
  if (!d.timedOut && !memory && !(d.signal && LimitSignals.includes(d.signal))) return e;
  const how = d.timedOut ? `ran longer than its bound of ${limits.timeoutMs / 1000} s` : memory ? "ran out of its memory limit" : `was killed by ${d.signal ?? "a signal"}`;
  const bounds = `${formatBytes(limits.addressSpaceBytes)} of address space, ${limits.cpuSeconds} s of CPU, ${limits.timeoutMs / 1000} s of wall-clock time`;
  return new ImageRejectedError("resource-limit", `Refused image "${ctx.id}": qemu-img convert ${how} (limits: ${bounds})${d.stderrTail ? `: ${lastLine(d.stderrTail)}` : ""}`, { cause: e });
}

/** Signals that mean qemu-img met a limit: SIGXCPU/SIGKILL from the CPU limit, SIGABRT/SIGTRAP (glib)/SIGSEGV from a failed allocation. */
const LimitSignals: readonly string[] = ["SIGXCPU", "SIGKILL", "SIGABRT", "SIGTRAP", "SIGSEGV"];

/**
 * Throws for a refusing verdict: ImageRejectedError for the image's fault, DiskFullError ("Cannot <verb> image")
 * when the node has no room for it.
 */
export function refuseIf(v: FetchVerdict, id: string, verb = "fetch"): void {
  if (v.accept) return;
  if (v.reason === "disk-full") throw new DiskFullError(`Cannot ${verb} image "${id}": ${v.message}`);
  throw new ImageRejectedError(v.reason, `Refused image "${id}": ${v.message}`);
}

/** fsyncs one file. */
export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r+");
  await fh.sync().finally(() => fh.close());
}

/** Bytes free for us in the filesystem of `dir`, less a reserve. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  const reserve = Math.min(reserveBytes, s.blocks * s.bsize * reserveFraction);
  return Math.floor(Math.max(0, s.bavail * s.bsize - reserve));
}

/**
 * Turns ENOSPC (from node or from qemu-img) into DiskFullError, and EFBIG ("File too large": the filesystem
 * cannot hold a file of the image's size, even sparse) into a `too-large` refusal; anything else passes through.
 */
export function asDiskFull(e: unknown, id: string): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const stderr = e instanceof ToolError ? e.details.stderrTail : "";
  if (code === "ENOSPC" || /No space left on device/i.test(stderr)) {
    return new DiskFullError(`Cannot store image "${id}": no space left in the base dir's filesystem`, { cause: e });
  }
  if (code === "EFBIG" || /File too large/i.test(stderr)) {
    return new ImageRejectedError("too-large", `Refused image "${id}": it is larger than a file the base dir's filesystem can hold (File too large)`, { cause: e });
  }
  return e;
}

function signalOpt(ctx: StepContext): { signal?: AbortSignal } {
  return ctx.signal ? { signal: ctx.signal } : {};
}

function lastLine(s: string): string {
  return s.trim().split("\n").pop() ?? "";
}

