/**
 * Typed wrappers around qemu-img. Every call names the format explicitly (`-f`, `-F`): qemu-img never probes
 * a format here, because a probed guest-writable disk can turn into a host-file read (the class of
 * CVE-2026-24708). Inspection runs under prlimit, as Nova's privsep does (30 s of CPU, 2 GiB of address space);
 * conversion under limits sized from the image (core/convert-limits.ts) and a wall-clock bound.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { AbortedError, ToolError } from "../lib/errors.js";
import { parseQemuInfo, type QemuCheckResult, type QemuImageInfo } from "../core/image-checks.js";

/** Resource limits of one qemu-img run. NOTE: util-linux prlimit parses "2GiB" as 2 bytes, so bytes it is. */
export interface ToolLimits {
  addressSpaceBytes: number;
  cpuSeconds: number;
}

/** Resource limits applied to qemu-img inspection. */
export const InspectLimits: ToolLimits = { addressSpaceBytes: 2 * 1024 ** 3, cpuSeconds: 30 };

/** Options common to every qemu-img call. */
export interface QemuImgOptions {
  signal?: AbortSignal;
  /** Wall-clock limit; the process is killed after it. */
  timeoutMs?: number;
}

const stderrTailBytes = 2048;
const hasSetpriv = existsSync("/usr/bin/setpriv");

/** Runs qemu-img with `args`, optionally under prlimit; throws ToolError on failure. Returns stdout. */
async function run(
  args: string[],
  opts: QemuImgOptions & { limits?: ToolLimits; okExitCodes?: number[]; onStdout?: (chunk: string) => void },
): Promise<{ stdout: string; exitCode: number }> {
  const l = opts.limits;
  const limited = l ? ["prlimit", `--as=${l.addressSpaceBytes}`, `--cpu=${l.cpuSeconds}`, "--"] : [];
  // NOTE: with setpriv --pdeathsig, a qemu-img whose parent was killed (-9) dies too instead of writing on.
  const [file = "qemu-img", ...argv] = [...(hasSetpriv ? ["setpriv", "--pdeathsig", "KILL", "--"] : []), ...limited, "qemu-img", ...args];
  const sub = execa(file, argv, {
    reject: false,
    stripFinalNewline: false,
    encoding: "utf8",
    cancelSignal: opts.signal,
    forceKillAfterDelay: 2000,
    ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    // NOTE: glibc gives each thread its own 64 MiB malloc arena; two keep qemu-img's address space near 250 MiB.
    env: { LC_ALL: "C", MALLOC_ARENA_MAX: "2" },
    stdin: "ignore",
  });
  if (opts.onStdout) sub.stdout?.on("data", (c: Buffer) => opts.onStdout?.(c.toString("utf8")));
  const r = await sub;
  const ok = opts.okExitCodes ?? [0];
  if (r.exitCode !== undefined && ok.includes(r.exitCode) && !r.isTerminated) return { stdout: r.stdout, exitCode: r.exitCode };
  if (r.isCanceled) throw asAbort(opts.signal);
  const tail = r.stderr.slice(-stderrTailBytes).trim();
  const what = r.timedOut ? `timed out after ${opts.timeoutMs} ms` : r.signal ? `was killed by ${r.signal}` : `exited ${r.exitCode}`;
  throw new ToolError(`Cannot run qemu-img ${args[0]}: qemu-img ${what}${tail ? `: ${lastLine(tail)}` : ""}`, {
    tool: "qemu-img",
    exitCode: r.exitCode,
    signal: r.signal,
    timedOut: r.timedOut,
    stderrTail: tail,
  });
}

function asAbort(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new AbortedError("Cannot run qemu-img: aborted");
}

function lastLine(s: string): string {
  const lines = s.split("\n").filter((l) => l.trim() !== "");
  return lines[lines.length - 1] ?? s;
}

/** `qemu-img info --output=json -f FORMAT --force-share` under resource limits. */
export async function qemuImgInfo(path: string, format: string, opts: QemuImgOptions = {}): Promise<QemuImageInfo> {
  const { stdout } = await run(["info", "--output=json", "-f", format, "--force-share", path], { timeoutMs: 60_000, ...opts, limits: InspectLimits });
  try {
    return parseQemuInfo(JSON.parse(stdout));
  } catch (e) {
    throw new ToolError(`Cannot parse qemu-img info of "${path}": ${(e as Error).message}`, { tool: "qemu-img", exitCode: 0, timedOut: false, stderrTail: "" }, { cause: e });
  }
}

/** `qemu-img check --output=json -f FORMAT --force-share` under resource limits; exit codes 0-3 and 63 are results. */
export async function qemuImgCheck(path: string, format: string, opts: QemuImgOptions = {}): Promise<QemuCheckResult> {
  const { stdout, exitCode } = await run(["check", "--output=json", "-f", format, "--force-share", path], {
    timeoutMs: 120_000,
    ...opts,
    limits: InspectLimits,
    okExitCodes: [0, 1, 2, 3, 63],
  });
  if (exitCode === 63) return { exitCode, corruptions: 0, leaks: 0, checkErrors: 0 };
  let o: Record<string, unknown> = {};
  try {
    o = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    // qemu-img check prints no JSON when it cannot open the image at all (exit 1).
  }
  const n = (k: string) => (typeof o[k] === "number" ? (o[k] as number) : 0);
  return { exitCode, corruptions: n("corruptions"), leaks: n("leaks"), checkErrors: n("check-errors") };
}

/** Options of a conversion to raw. */
export interface ConvertOptions extends QemuImgOptions {
  /** Address space and CPU time (core/convert-limits.ts); the wall-clock bound is `timeoutMs`. */
  limits: ToolLimits;
  /** "none" opens the target with O_DIRECT so the data is on disk when qemu-img exits; "writeback" needs an fsync after. */
  targetCache: "none" | "writeback";
  onProgress?: (percent: number) => void;
}

/** `qemu-img convert -f FORMAT -O raw -t CACHE -W -p SRC DST` (sparse output, out-of-order writes) under `opts.limits`. */
export async function qemuImgConvertToRaw(src: string, srcFormat: string, dst: string, opts: ConvertOptions): Promise<void> {
  let buf = "";
  const onStdout = (chunk: string) => {
    buf += chunk;
    const matches = [...buf.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
    const last = matches[matches.length - 1];
    if (last?.[1]) opts.onProgress?.(Number(last[1]));
    buf = buf.slice(-64);
  };
  await run(["convert", "-f", srcFormat, "-O", "raw", "-t", opts.targetCache, "-W", "-p", src, dst], { ...opts, onStdout });
}

/**
 * `qemu-img create -u -f qcow2 -b BACKING -F BACKING_FORMAT PATH SIZE`. With -u qemu-img records the backing
 * path without opening it: the caller has checked the file behind that path, and a name is not to be trusted twice.
 */
export async function qemuImgCreateOverlay(path: string, backing: string, backingFormat: string, size: number, opts: QemuImgOptions = {}): Promise<void> {
  await run(["create", "-q", "-u", "-f", "qcow2", "-b", backing, "-F", backingFormat, path, String(size)], { timeoutMs: 60_000, ...opts });
}

/** `qemu-img resize -f FORMAT PATH SIZE` (growing only). */
export async function qemuImgResize(path: string, format: string, size: number, opts: QemuImgOptions = {}): Promise<void> {
  await run(["resize", "-q", "-f", format, path, String(size)], { timeoutMs: 60_000, ...opts });
}

/** One extent of `qemu-img map`: `zero` when it reads as zeros without holding data (a hole, a zero cluster). */
export interface MapExtent {
  start: number;
  length: number;
  zero: boolean;
}

/** `qemu-img map --output=json -f FORMAT`: the image's extents, in order. */
export async function qemuImgExtents(path: string, format: string, opts: QemuImgOptions = {}): Promise<MapExtent[]> {
  const { stdout } = await run(["map", "--output=json", "-f", format, "--force-share", path], { timeoutMs: 120_000, ...opts, limits: InspectLimits });
  const extents = JSON.parse(stdout) as { start: number; length: number; data: boolean; zero: boolean }[];
  return extents.map((e) => ({ start: e.start, length: e.length, zero: !e.data || e.zero }));
}

/** `qemu-img map --output=json -f FORMAT`: bytes that hold data (allocated and not zero). */
export async function qemuImgDataBytes(path: string, format: string, opts: QemuImgOptions = {}): Promise<number> {
  return (await qemuImgExtents(path, format, opts)).filter((e) => !e.zero).reduce((sum, e) => sum + e.length, 0);
}
