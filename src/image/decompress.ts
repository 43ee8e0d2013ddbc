/**
 * Opens a download body as the bytes of the disk: peeks at its magic (core/compression.ts decides), then passes
 * it through as is, through node's zlib (gzip), or through `xz`/`zstd` as a child process under setpriv
 * --pdeathsig and prlimit (memory, CPU) with a wall-clock bound, no shell, stdin fed with backpressure and stdout
 * read as a stream. The caller bounds the decompressed bytes; when it stops reading (a bomb past the size limit,
 * an abort, a failed write), the child is killed and reaped before the error goes on.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { existsSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { createGunzip } from "node:zlib";
import { CompressionMagicBytes, detectCompression, evaluateDecompressorExit, parseDecompressOverrides, planDecompressLimits, planDecompressor, type Compression, type DecompressLimits } from "../core/compression.js";
import { ConfigError, ImageRejectedError, ToolError, asError } from "../lib/errors.js";

/** Options of `openBody`. */
export interface OpenBodyOptions {
  /** Names the source in refusals: a redacted URL or a registry description. */
  description: string;
  /** The most decompressed bytes the caller accepts: sizes the decompressor's CPU bound. */
  maxOutputBytes?: number;
  signal?: AbortSignal;
  /** Told the compression before the first `onInput`, so a caller can decide what to hash. */
  onCompression?: (c: Compression | undefined) => void;
  /** Each chunk of the input (the network bytes), in order. */
  onInput?: (chunk: Buffer) => void;
}

/** A body opened as disk bytes. */
export interface Body {
  compression: Compression | undefined;
  chunks: AsyncIterable<Buffer>;
  /** Stops the decoder, if one runs, and waits until its process is gone; the caller calls it however it ends. */
  close(): Promise<void>;
}

const stderrTailBytes = 2048;
const hasSetpriv = existsSync("/usr/bin/setpriv");

/**
 * Reads the first bytes of `input` and returns its disk bytes. An error of `input` (a dropped connection, a
 * stall) comes out of `chunks` as it is, before anything the decompressor says about the cut stream.
 * @throws (from `chunks`) ImageRejectedError `corrupt` for a truncated or corrupt stream, `resource-limit` for
 *   one that needs more memory or time than allowed; ToolError when xz or zstd cannot run; ConfigError for bad overrides
 */
export async function openBody(input: Readable, opts: OpenBodyOptions): Promise<Body> {
  const it: AsyncIterator<Buffer> = input[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let have = 0;
  while (have < CompressionMagicBytes) {
    const next = await it.next();
    if (next.done) break;
    head.push(next.value);
    have += next.value.length;
  }
  const compression = detectCompression(Buffer.concat(head).subarray(0, CompressionMagicBytes));
  opts.onCompression?.(compression);
  const raw = counted(head, it, opts.onInput);
  // An input read to its end is left alone (its socket may go back to the agent's pool).
  const close = async () => void (input.readableEnded ? undefined : input.destroy());
  if (compression === undefined) return { compression, chunks: raw, close };
  if (compression === "gzip") return { compression, chunks: gunzipped(raw, input, opts.description), close };
  const overrides = parseDecompressOverrides(process.env);
  if ("error" in overrides) throw new ConfigError(`Cannot decompress image "${opts.description}": ${overrides.error}`);
  const limits = planDecompressLimits(opts.maxOutputBytes, overrides);
  const ctl: ChildControl = {};
  return {
    compression,
    chunks: throughChild(compression, limits, raw, input, opts, ctl),
    close: async () => {
      input.destroy();
      ctl.kill?.();
      await ctl.exited;
    },
  };
}

async function* counted(head: Buffer[], it: AsyncIterator<Buffer>, onInput?: (c: Buffer) => void): AsyncGenerator<Buffer> {
  for (const c of head) {
    onInput?.(c);
    yield c;
  }
  for (;;) {
    const next = await it.next();
    if (next.done) return;
    onInput?.(next.value);
    yield next.value;
  }
}

/** gzip in process: zlib's window is 32 KiB, so there is no memory to bound, and the caller bounds the output. */
async function* gunzipped(raw: AsyncGenerator<Buffer>, input: Readable, description: string): AsyncGenerator<Buffer> {
  const gunzip = createGunzip();
  const fed = feeding(raw, gunzip, input, () => gunzip.destroy());
  try {
    for await (const out of gunzip as AsyncIterable<Buffer>) yield out;
    await fed.done;
  } catch (e) {
    await fed.stop();
    if (fed.error !== undefined) throw fed.error;
    const code = (e as { code?: string } | null)?.code ?? "";
    if (code.startsWith("Z_")) throw new ImageRejectedError("corrupt", `Refused image "${description}": the gzip stream is truncated or corrupt (${(e as Error).message})`, { cause: e });
    throw e;
  } finally {
    gunzip.destroy();
    await fed.stop();
  }
  if (fed.error !== undefined) throw fed.error;
}

type Child = ChildProcessByStdio<Writable, Readable, Readable>;

/** How `Body.close` reaches the child once the stream has started it. */
interface ChildControl {
  kill?: () => void;
  exited?: Promise<unknown>;
}

/** xz or zstd as a child process: input to its stdin, its stdout out; killed and reaped however the caller stops. */
async function* throughChild(kind: "xz" | "zstd", limits: DecompressLimits, raw: AsyncGenerator<Buffer>, input: Readable, opts: OpenBodyOptions, ctl: ChildControl): AsyncGenerator<Buffer> {
  const cmd = planDecompressor(kind, limits);
  const [file = "prlimit", ...argv] = [...(hasSetpriv ? ["setpriv", "--pdeathsig", "KILL", "--"] : []), ...cmd.argv];
  // NOTE: no shell, no inherited environment: the tool's messages are parsed, so they stay in English.
  const child: Child = spawn(file, argv, { stdio: ["pipe", "pipe", "pipe"], env: { LC_ALL: "C", PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => void (stderr = (stderr + c.toString("utf8")).slice(-stderrTailBytes)));
  // NOTE: a decoder that refuses a stream exits without reading the rest: writes then fail with EPIPE, and its
  // exit status, not the broken pipe, says why.
  child.stdin.on("error", () => {});
  let spawnError: Error | undefined;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.on("error", (e) => {
      spawnError = e;
      resolve({ code: null, signal: null });
    });
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  ctl.exited = exited;
  ctl.kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limits.timeoutMs);
  const onAbort = () => child.kill("SIGKILL");
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const fed = feeding(raw, child.stdin, input, () => child.kill("SIGKILL"), exited);
  try {
    for await (const out of child.stdout as AsyncIterable<Buffer>) yield out;
    const { code, signal } = await exited;
    // A decoder that stopped early leaves input unread: stop reading it rather than wait for the network.
    if (code !== 0 || signal !== null) await fed.stop();
    await fed.done;
    if (fed.error !== undefined) throw fed.error;
    if (opts.signal?.aborted) throw asError(opts.signal.reason);
    if (spawnError) throw new ToolError(`Cannot decompress image "${opts.description}": cannot run ${kind}: ${spawnError.message}`, { tool: kind, timedOut: false, stderrTail: "" }, { cause: spawnError });
    const verdict = evaluateDecompressorExit({ tool: kind, exitCode: code, signal, timedOut, stderrTail: stderr }, limits);
    if (verdict.ok) return;
    if (verdict.fault === "image") throw new ImageRejectedError(verdict.reason, `Refused image "${opts.description}": ${verdict.message}`);
    throw new ToolError(`Cannot decompress image "${opts.description}": ${verdict.message}`, { tool: kind, exitCode: code ?? undefined, signal: signal ?? undefined, timedOut, stderrTail: stderr.trim() });
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    child.stdout.destroy();
    await exited;
    await fed.stop();
  }
}

/** A running copy of the input into a decoder: `error` is the input's own error, if it failed. */
interface Feeding {
  done: Promise<void>;
  error: unknown;
  /** Stops reading the input (its errors from now on are ours, not the input's) and waits for the copy to end. */
  stop(): Promise<void>;
}

/**
 * Copies `raw` into `sink` with backpressure, then ends it. An error of the input (not one we caused by stopping
 * it) is kept in `error`, and `onInputError` stops the decoder so that its complaint about the cut stream does
 * not hide the real cause.
 */
function feeding(raw: AsyncGenerator<Buffer>, sink: Writable, input: Readable, onInputError: () => void, exited?: Promise<unknown>): Feeding {
  let stopping = false;
  const f: Feeding = {
    error: undefined,
    done: Promise.resolve(),
    stop: async () => {
      stopping = true;
      input.destroy();
      await f.done;
    },
  };
  f.done = feed(raw, sink, exited).catch((e: unknown) => {
    if (stopping) return;
    f.error = e;
    onInputError();
  });
  return f;
}

/** Writes `raw` into `sink` with backpressure, then ends it; stops early when the sink closes or `done` settles. */
async function feed(raw: AsyncGenerator<Buffer>, sink: Writable, done?: Promise<unknown>): Promise<void> {
  let finished = false;
  void done?.then(() => (finished = true));
  for await (const chunk of raw) {
    if (finished || sink.destroyed || sink.writableEnded) break;
    if (!sink.write(chunk)) await drained(sink, done);
  }
  if (!sink.destroyed && !sink.writableEnded) sink.end();
}

function drained(sink: Writable, done?: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve) => {
    const fin = () => {
      sink.off("drain", fin);
      sink.off("close", fin);
      resolve();
    };
    sink.once("drain", fin);
    sink.once("close", fin);
    void done?.then(fin);
  });
}
