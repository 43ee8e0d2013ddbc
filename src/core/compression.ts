/**
 * Compressed sources: which compression a stream uses (from its magic bytes only, never from a URL suffix, a
 * Content-Type or a media type), which decompressor opens it with which arguments and resource limits, and what
 * a decompressor's exit means. gzip is decoded in process by node's zlib (a fixed 32 KiB window, no memory to
 * bound); xz and zstd by Debian's `xz` and `zstd` under prlimit, as qemu-img runs. The decompressed bytes are
 * bounded by the caller against the image's size limit: past it, the stream is a compression bomb.
 */

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

/** A compression the pipeline decodes as a stream. */
export type Compression = "gzip" | "xz" | "zstd";

/** Bytes of the stream's start that `detectCompression` needs to decide (fewer only when the stream is shorter). */
export const CompressionMagicBytes = 6;

/**
 * The compression of a stream from its first bytes, or undefined for none. gzip: 1f 8b and method 8 (deflate, the
 * only one defined); xz: the stream header magic; zstd: a frame magic, or a skippable frame (0x184d2a5?, which
 * pzstd and the seekable format put first).
 */
export function detectCompression(head: Uint8Array): Compression | undefined {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return "gzip";
  if (head.length >= 6 && head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a && head[5] === 0x00) return "xz";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head.length >= 4 && ((head[0] ?? 0) & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) return "zstd";
  return undefined;
}

/** Resource limits of one decompressor process. */
export interface DecompressLimits {
  /** What the decoder may allocate: xz --memlimit-decompress, zstd --memory (the largest window accepted). */
  memoryBytes: number;
  /** prlimit --as: the decoder's memory plus room for the program itself. */
  addressSpaceBytes: number;
  /** prlimit --cpu. */
  cpuSeconds: number;
  /** Wall-clock bound; the process is killed after it. It waits for the network too, so it is twice the CPU bound. */
  timeoutMs: number;
}

/**
 * The sizing. xz -9 (the largest preset) needs 65 MiB to decode, zstd --ultra -22 and --long=27 a 128 MiB window
 * (zstd's own default ceiling); 256 MiB accepts both with room and refuses the 1.5 GiB dictionaries and 2 GiB
 * windows that exist only to exhaust a decoder. The address space adds 64 MiB for the programs and their buffers.
 * The CPU bound assumes 8 MiB/s of output (xz decodes at 50 MiB/s and more, zstd ten times that) plus a minute,
 * for the largest output the size limit allows (1 TiB without one).
 */
export const DecompressSizing = {
  memoryBytes: 256 * MiB,
  programBytes: 64 * MiB,
  baseSeconds: 60,
  outputBytesPerSecond: 8 * MiB,
  unlimitedOutputBytes: TiB,
} as const;

/** Operator overrides (env BASECACHE_DECOMPRESS_MEMORY, BASECACHE_DECOMPRESS_SECONDS). */
export interface DecompressOverrides {
  memoryBytes?: number;
  /** The CPU bound in seconds (the wall-clock bound is twice it). */
  seconds?: number;
}

/** Environment variables that override the sizing; for operators with unusual images, and for tests. */
export const DecompressEnv = { memory: "BASECACHE_DECOMPRESS_MEMORY", seconds: "BASECACHE_DECOMPRESS_SECONDS" } as const;

/** The limits for decompressing at most `maxOutputBytes` (undefined: no size limit). */
export function planDecompressLimits(maxOutputBytes: number | undefined, overrides: DecompressOverrides = {}): DecompressLimits {
  const out = Math.max(0, maxOutputBytes ?? DecompressSizing.unlimitedOutputBytes);
  const seconds = Math.ceil(overrides.seconds ?? DecompressSizing.baseSeconds + out / DecompressSizing.outputBytesPerSecond);
  const memoryBytes = overrides.memoryBytes ?? DecompressSizing.memoryBytes;
  return { memoryBytes, addressSpaceBytes: memoryBytes + DecompressSizing.programBytes, cpuSeconds: seconds, timeoutMs: 2 * seconds * 1000 };
}

/**
 * Reads the overrides from environment variables (whole bytes of at least 1 MiB, whole seconds of at least 1).
 * @returns the overrides, or the text of what is wrong
 */
export function parseDecompressOverrides(env: Readonly<Record<string, string | undefined>>): DecompressOverrides | { error: string } {
  const out: DecompressOverrides = {};
  const memory = env[DecompressEnv.memory];
  const seconds = env[DecompressEnv.seconds];
  if (memory !== undefined && memory !== "") {
    if (!/^\d+$/.test(memory) || Number(memory) < MiB) return { error: `${DecompressEnv.memory}="${memory}" is not a whole number of bytes of at least ${MiB}` };
    out.memoryBytes = Number(memory);
  }
  if (seconds !== undefined && seconds !== "") {
    if (!/^\d+$/.test(seconds) || Number(seconds) < 1) return { error: `${DecompressEnv.seconds}="${seconds}" is not a whole number of seconds of at least 1` };
    out.seconds = Number(seconds);
  }
  return out;
}

/** How to run the decompressor of a child-process compression: the program, its arguments, its limits. */
export interface DecompressorCommand {
  tool: "xz" | "zstd";
  /** The full argv after setpriv: prlimit, its limits, then the tool reading stdin and writing stdout. */
  argv: string[];
  limits: DecompressLimits;
}

/**
 * The command for xz or zstd. xz: one thread, the xz container only (no lzma-alone or raw guessing), the
 * decoder's memory capped (xz refuses, never adjusts, a stream that needs more). zstd: --memory caps the window
 * a frame may declare; only the zstd format (Debian's zstd would also decode gzip, xz and lz4).
 */
export function planDecompressor(kind: "xz" | "zstd", limits: DecompressLimits): DecompressorCommand {
  const prlimit = ["prlimit", `--as=${limits.addressSpaceBytes}`, `--cpu=${limits.cpuSeconds}`, "--"];
  const tool =
    kind === "xz"
      ? ["xz", "--decompress", "--stdout", "--format=xz", "--threads=1", `--memlimit-decompress=${limits.memoryBytes}`, "--no-adjust", "--quiet"]
      : ["zstd", "--decompress", "--stdout", "--format=zstd", `--memory=${limits.memoryBytes}`, "--no-progress", "--quiet"];
  return { tool: kind, argv: [...prlimit, ...tool], limits };
}

/** How a decompressor process ended. */
export interface DecompressorExit {
  tool: "xz" | "zstd";
  exitCode: number | null;
  signal: string | null;
  /** Killed by our wall-clock bound. */
  timedOut: boolean;
  /** The last 2 KiB of its stderr. */
  stderrTail: string;
}

/** The verdict on a decompressor's exit: done, the stream's fault (a refusal), or the tool's (not the image's). */
export type DecompressorVerdict =
  | { ok: true }
  | { ok: false; fault: "image"; reason: "corrupt" | "resource-limit"; message: string }
  | { ok: false; fault: "tool"; message: string };

/** prlimit or setpriv could not run the tool at all (126: cannot execute, 127: not found). */
const ToolMissingCodes: readonly number[] = [126, 127];

const MemoryPatterns = /Memory usage limit reached|memory usage limit|Frame requires too much memory|Window size larger than maximum|Cannot allocate memory|out of memory/i;

/** Judges how a decompressor ended; `limits` are named in a resource-limit message. */
export function evaluateDecompressorExit(e: DecompressorExit, limits: DecompressLimits): DecompressorVerdict {
  if (e.exitCode === 0 && e.signal === null && !e.timedOut) return { ok: true };
  const detail = lastLine(e.stderrTail);
  const said = detail ? `: ${detail}` : "";
  const bounds = `${limits.memoryBytes} bytes of decoder memory, ${limits.cpuSeconds} s of CPU, ${limits.timeoutMs / 1000} s of wall-clock time`;
  if (e.timedOut) return limited(`${e.tool} ran longer than its bound (limits: ${bounds})`);
  if (e.signal === "SIGXCPU" || e.signal === "SIGKILL") return limited(`${e.tool} was stopped by ${e.signal} (limits: ${bounds})${said}`);
  if (MemoryPatterns.test(e.stderrTail)) {
    return limited(`the ${e.tool} stream needs more memory to decode than the limit of ${limits.memoryBytes} bytes: ${memoryLines(e.stderrTail)}`);
  }
  if (e.exitCode !== null && ToolMissingCodes.includes(e.exitCode)) return { ok: false, fault: "tool", message: `cannot run ${e.tool} (exit ${e.exitCode})${said}` };
  if (e.signal !== null) return { ok: false, fault: "tool", message: `${e.tool} was killed by ${e.signal}${said}` };
  return { ok: false, fault: "image", reason: "corrupt", message: `the ${e.tool} stream is truncated or corrupt (${e.tool} exited ${e.exitCode ?? "?"}${said})` };
}

function limited(message: string): DecompressorVerdict {
  return { ok: false, fault: "image", reason: "resource-limit", message };
}

function linesOf(s: string): string[] {
  return s.split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

function lastLine(s: string): string {
  const lines = linesOf(s);
  return lines[lines.length - 1] ?? "";
}

/** The line that names the memory problem and the one after it (xz and zstd say what was needed there). */
function memoryLines(s: string): string {
  const lines = linesOf(s);
  const i = Math.max(0, lines.findIndex((l) => MemoryPatterns.test(l)));
  return lines.slice(i, i + 2).join("; ");
}
