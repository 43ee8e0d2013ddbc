/**
 * `basecache fetch --base-dir DIR --id ID (--url URL | --registry-image REF) [--checksum ALGO:HEX]
 *  [--max-virtual-size SIZE] [--timeout DUR] [--json]`: makes the image a ready raw base at DIR/sha1(ID).
 * Exit 0 ready, 3 rejected, 4 source failed, 5 disk full, 124 deadline, 2 usage or a planted file (foreign-file), 1 anything else.
 */
import { resolve } from "node:path";
import { parseChecksum } from "../../core/checksum.js";
import { formatDuration } from "../../core/duration.js";
import { baseNameFor } from "../../core/names.js";
import { formatBytes } from "../../core/quantity.js";
import { ConfigError, DeadlineError } from "../../lib/errors.js";
import { ExitCode, exitCodeFor } from "../../lib/exit.js";
import { DefaultIdleTimeoutMs, DefaultRetry, type RetryPolicy } from "../../image/http-fetch.js";
import { describeOutcome, fetchImage, type FetchFacts, type FetchProgress, type FetchRequest, type FetchResult } from "../../image/pipeline.js";
import type { Command, CommandContext } from "../command.js";
import { checkDirFlags } from "../dir-flag.js";
import { bytesFlag, durationFlag, flagValue, parseFlags, renderHelp, requireFlag, usageError, type CommandSpec } from "../flags.js";

const flags = {
  "base-dir": { type: "string", value: "DIR", help: "the base dir (`_base`); required" },
  id: { type: "string", value: "ID", help: "the image id; the base is DIR/sha1(ID); required" },
  url: { type: "string", value: "URL", help: "an http or https source" },
  "registry-image": { type: "string", value: "REF", help: "an OCI registry source (a containerDisk image)" },
  checksum: { type: "string", value: "ALGO:HEX", help: "sha256:<hex> or sha512:<hex> of the image file as served" },
  "max-virtual-size": { type: "string", value: "SIZE", help: "largest virtual size accepted: bytes or a quantity (1Gi, 500M)" },
  timeout: { type: "string", value: "DUR", help: "give up after this long (90s, 10m, 1h): roll back, exit 124;\nno deadline when absent" },
  json: { type: "boolean", help: "print one JSON object with the result" },
} as const;

const spec: CommandSpec<typeof flags> = {
  name: "fetch",
  synopsis: "--base-dir DIR --id ID (--url URL | --registry-image REF) [flags]",
  description: "Makes the image a ready raw base at DIR/sha1(ID): downloads, verifies, inspects, converts.",
  flags,
  footer: [
    "Exit codes: 0 ready, 3 rejected, 4 source failed, 5 disk full, 124 --timeout ran out, 2 usage error or a file",
    "basecache did not write at one of the image's names (reason foreign-file), 1 other.",
    "Tuning (environment): BASECACHE_FETCH_ATTEMPTS, BASECACHE_FETCH_RETRY_BASE_MS, BASECACHE_FETCH_RETRY_MAX_MS,",
    "BASECACHE_FETCH_IDLE_TIMEOUT_MS.",
  ].join("\n"),
};

/** Parsed flags of `basecache fetch`. */
interface FetchFlags {
  request: FetchRequest;
  json: boolean;
  /** --timeout: the whole fetch's deadline. */
  timeoutMs?: number;
}

/** Parses argv into a fetch request. @throws ConfigError on a usage error */
export function parseFetchFlags(argv: string[], env: NodeJS.ProcessEnv): FetchFlags | "help" {
  const parsed = parseFlags(argv, spec);
  if (parsed === "help") return "help";
  const v = parsed.values;
  const baseDir = resolve(requireFlag(spec, "base-dir", v["base-dir"]));
  const id = requireFlag(spec, "id", v.id);
  if ((v.url === undefined) === (v["registry-image"] === undefined)) throw usageError(spec, "give exactly one of --url and --registry-image");
  const request: FetchRequest = { baseDir, id, source: v.url !== undefined ? { http: { url: httpUrl(v.url) } } : { registry: { image: v["registry-image"] ?? "" } } };
  if (v.checksum !== undefined) request.checksum = flagValue("--checksum", v.checksum, (t) => (parseChecksum(t), t));
  if (v["max-virtual-size"] !== undefined) request.maxVirtualSize = bytesFlag("max-virtual-size", v["max-virtual-size"]);
  request.retry = retryFromEnv(env);
  request.idleTimeoutMs = positiveInt(env, "BASECACHE_FETCH_IDLE_TIMEOUT_MS", DefaultIdleTimeoutMs);
  return { request, json: v.json, ...(v.timeout !== undefined ? { timeoutMs: durationFlag("timeout", v.timeout, 1000) } : {}) };
}

function httpUrl(text: string): string {
  const u = flagValue("--url", text, (t) => new URL(t));
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ConfigError(`Cannot use --url "${text}": expected an http or https URL`);
  return text;
}

function retryFromEnv(env: NodeJS.ProcessEnv): RetryPolicy {
  return {
    attempts: positiveInt(env, "BASECACHE_FETCH_ATTEMPTS", DefaultRetry.attempts),
    baseMs: positiveInt(env, "BASECACHE_FETCH_RETRY_BASE_MS", DefaultRetry.baseMs),
    maxMs: positiveInt(env, "BASECACHE_FETCH_RETRY_MAX_MS", DefaultRetry.maxMs),
  };
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new ConfigError(`Cannot use ${name} "${v}": expected a positive whole number`);
  return Number(v);
}

/** Runs `basecache fetch`. */
export const fetchCommand: Command = async (argv, ctx) => {
  const flags = parseFetchFlags(argv, ctx.env);
  if (flags === "help") {
    ctx.stdout.write(renderHelp(spec));
    return ExitCode.Ok;
  }
  const { request, json } = flags;
  await checkDirFlags({ "base-dir": request.baseDir });
  const bar = !json && ctx.stderr.isTTY ? progressBar(ctx) : undefined;
  const started = performance.now();
  const learned: FetchFacts = {};
  const deadline = deadlineSignal(flags, ctx.signal);
  try {
    const onFacts = (f: FetchFacts) => Object.assign(learned, f);
    const result = await fetchImage({ ...request, signal: deadline.signal, log: ctx.log, onFacts, ...(bar ? { onProgress: bar.update } : {}) });
    bar?.clear();
    ctx.stdout.write(json ? JSON.stringify(resultJson(result)) + "\n" : humanLine(result) + "\n");
    return ExitCode.Ok;
  } catch (thrown) {
    bar?.clear();
    // Whatever the pipeline was doing when the deadline struck (a read, qemu-img), the outcome is the deadline.
    const err = deadline.expired() ? deadline.signal.reason : thrown;
    const code = exitCodeFor(err);
    const outcome = describeOutcome(err);
    if (json) {
      const base = baseNameFor(request.id);
      ctx.stdout.write(JSON.stringify({ id: request.id, base, path: resolve(request.baseDir, base), ...outcome, ...factsJson(learned), seconds: Number(((performance.now() - started) / 1000).toFixed(3)) }) + "\n");
    } else {
      ctx.stderr.write(`basecache fetch: ${outcome.message} (${outcome.status}: ${outcome.reason})\n`);
    }
    return code;
  } finally {
    deadline.clear();
  }
};

/** The fetch's signal: the process's stop signal, and the --timeout deadline when one is given. */
function deadlineSignal(flags: FetchFlags, stop: AbortSignal): { signal: AbortSignal; expired: () => boolean; clear: () => void } {
  const { timeoutMs } = flags;
  if (timeoutMs === undefined) return { signal: stop, expired: () => false, clear: () => undefined };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DeadlineError(`Cannot fetch image "${flags.request.id}": --timeout ${formatDuration(timeoutMs)} ran out`)), timeoutMs);
  return { signal: AbortSignal.any([stop, controller.signal]), expired: () => controller.signal.aborted && !stop.aborted, clear: () => clearTimeout(timer) };
}

/** What a failed fetch had learned before it stopped; null for what it never got to. */
function factsJson(f: FetchFacts) {
  return { format: f.format ?? null, virtualSize: f.virtualSize ?? null, bytesDownloaded: f.bytesDownloaded ?? null, resumedBytes: f.resumedBytes ?? null, sha256: f.sha256 ?? null };
}

function resultJson(r: FetchResult) {
  return {
    id: r.id,
    base: r.base,
    path: r.path,
    status: "ready",
    reason: r.cached ? "cached" : "fetched",
    message: r.cached ? `Base for image "${r.id}" was already cached` : `Fetched image "${r.id}" as a raw base`,
    format: r.format,
    virtualSize: r.virtualSize,
    bytesDownloaded: r.bytesDownloaded,
    resumedBytes: r.resumedBytes,
    sha256: r.sha256,
    seconds: Number(r.seconds.toFixed(3)),
    cached: r.cached,
    allocatedBytes: r.allocatedBytes,
  };
}

function humanLine(r: FetchResult): string {
  const what = r.cached ? "Base already cached" : `Fetched ${r.format} image`;
  return `${what}: ${r.path} (${formatBytes(r.virtualSize)} virtual, ${formatBytes(r.allocatedBytes)} on disk, ${formatBytes(r.bytesDownloaded)} downloaded${r.resumedBytes > 0 ? `, resumed from ${formatBytes(r.resumedBytes)}` : ""}, ${r.seconds.toFixed(1)} s)`;
}

function progressBar(ctx: CommandContext) {
  const width = 30;
  return {
    update: (p: FetchProgress) => {
      const frac = p.bytesTotal ? Math.min(1, p.bytesDone / p.bytesTotal) : 0;
      const filled = Math.round(frac * width);
      const total = p.bytesTotal ? ` / ${formatBytes(p.bytesTotal)}` : "";
      ctx.stderr.write(`\r${p.phase.padEnd(11)} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${formatBytes(p.bytesDone)}${total}\x1b[K`);
    },
    clear: () => ctx.stderr.write("\r\x1b[K"),
  };
}
