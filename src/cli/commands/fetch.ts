/**
 * `basecache fetch --base-dir DIR --id ID (--url URL | --registry-image REF) [--checksum ALGO:HEX]
 *  [--max-virtual-size SIZE] [--json]`: makes the image a ready raw base at DIR/sha1(ID).
 * Exit 0 ready, 3 rejected, 4 source failed, 5 disk full, 2 usage or a planted file (foreign-file), 1 anything else.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseChecksum } from "../../core/checksum.js";
import { baseNameFor } from "../../core/names.js";
import { formatBytes, parseByteQuantity } from "../../core/quantity.js";
import { ConfigError } from "../../lib/errors.js";
import { ExitCode, exitCodeFor } from "../../lib/exit.js";
import { DefaultIdleTimeoutMs, DefaultRetry, type RetryPolicy } from "../../image/http-fetch.js";
import { describeOutcome, fetchImage, type FetchFacts, type FetchProgress, type FetchRequest, type FetchResult } from "../../image/pipeline.js";
import type { Command, CommandContext } from "../command.js";

const usage = `Usage: basecache fetch --base-dir DIR --id ID (--url URL | --registry-image REF)
                       [--checksum ALGO:HEX] [--max-virtual-size SIZE] [--json]

Makes the image a ready raw base at DIR/sha1(ID): downloads, verifies, inspects, converts.
  --checksum          sha256:<hex> or sha512:<hex> of the image file as served
  --max-virtual-size  largest virtual size accepted: bytes or a quantity (1Gi, 500M)
  --json              print one JSON object with the result

Exit codes: 0 ready, 3 rejected, 4 source failed, 5 disk full, 2 usage error or a file
basecache did not write at one of the image's names (reason foreign-file), 1 other.
Tuning (environment): BASECACHE_FETCH_ATTEMPTS, BASECACHE_FETCH_RETRY_BASE_MS, BASECACHE_FETCH_RETRY_MAX_MS,
BASECACHE_FETCH_IDLE_TIMEOUT_MS.`;

/** Parsed flags of `basecache fetch`. */
interface FetchFlags {
  request: FetchRequest;
  json: boolean;
}

/** Parses argv into a fetch request. @throws ConfigError on a usage error */
export function parseFetchFlags(argv: string[], env: NodeJS.ProcessEnv): FetchFlags | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        "base-dir": { type: "string" },
        id: { type: "string" },
        url: { type: "string" },
        "registry-image": { type: "string" },
        checksum: { type: "string" },
        "max-virtual-size": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n\n${usage}`);
  }
  if (values.help) return "help";
  const need = (name: string, v: string | undefined) => {
    if (v === undefined || v === "") throw new ConfigError(`missing --${name}\n\n${usage}`);
    return v;
  };
  const baseDir = resolve(need("base-dir", values["base-dir"]));
  const id = need("id", values.id);
  if ((values.url === undefined) === (values["registry-image"] === undefined)) throw new ConfigError(`give exactly one of --url and --registry-image\n\n${usage}`);
  const request: FetchRequest = { baseDir, id, source: values.url !== undefined ? { http: { url: values.url } } : { registry: { image: values["registry-image"] ?? "" } } };
  if (values.url !== undefined) {
    let u: URL;
    try {
      u = new URL(values.url);
    } catch {
      throw new ConfigError(`--url "${values.url}" is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new ConfigError(`--url "${values.url}" must be http or https`);
  }
  if (values.checksum !== undefined) {
    try {
      parseChecksum(values.checksum);
    } catch (e) {
      throw new ConfigError(`--checksum: ${(e as Error).message}`);
    }
    request.checksum = values.checksum;
  }
  if (values["max-virtual-size"] !== undefined) {
    try {
      request.maxVirtualSize = parseByteQuantity(values["max-virtual-size"]);
    } catch (e) {
      throw new ConfigError(`--max-virtual-size: ${(e as Error).message}`);
    }
  }
  request.retry = retryFromEnv(env);
  request.idleTimeoutMs = positiveInt(env, "BASECACHE_FETCH_IDLE_TIMEOUT_MS", DefaultIdleTimeoutMs);
  return { request, json: values.json };
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
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new ConfigError(`${name}="${v}" is not a positive integer`);
  return Number(v);
}

/** Runs `basecache fetch`. */
export const fetchCommand: Command = async (argv, ctx) => {
  const flags = parseFetchFlags(argv, ctx.env);
  if (flags === "help") {
    ctx.stdout.write(usage + "\n");
    return ExitCode.Ok;
  }
  const { request, json } = flags;
  const bar = !json && ctx.stderr.isTTY ? progressBar(ctx) : undefined;
  const started = performance.now();
  const learned: FetchFacts = {};
  try {
    const onFacts = (f: FetchFacts) => Object.assign(learned, f);
    const result = await fetchImage({ ...request, signal: ctx.signal, log: ctx.log, onFacts, ...(bar ? { onProgress: bar.update } : {}) });
    bar?.clear();
    ctx.stdout.write(json ? JSON.stringify(resultJson(result)) + "\n" : humanLine(result) + "\n");
    return ExitCode.Ok;
  } catch (err) {
    bar?.clear();
    const code = exitCodeFor(err);
    const outcome = describeOutcome(err);
    if (json) {
      const base = baseNameFor(request.id);
      ctx.stdout.write(JSON.stringify({ id: request.id, base, path: resolve(request.baseDir, base), ...outcome, ...factsJson(learned), seconds: Number(((performance.now() - started) / 1000).toFixed(3)) }) + "\n");
    } else {
      ctx.stderr.write(`basecache fetch: ${outcome.message} (${outcome.status}: ${outcome.reason})\n`);
    }
    return code;
  }
};

/** What a failed fetch had learned before it stopped; null for what it never got to. */
function factsJson(f: FetchFacts) {
  return { format: f.format ?? null, virtualSize: f.virtualSize ?? null, bytesDownloaded: f.bytesDownloaded ?? null, sha256: f.sha256 ?? null };
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
    sha256: r.sha256,
    seconds: Number(r.seconds.toFixed(3)),
    cached: r.cached,
    allocatedBytes: r.allocatedBytes,
  };
}

function humanLine(r: FetchResult): string {
  const what = r.cached ? "Base already cached" : `Fetched ${r.format} image`;
  return `${what}: ${r.path} (${formatBytes(r.virtualSize)} virtual, ${formatBytes(r.allocatedBytes)} on disk, ${formatBytes(r.bytesDownloaded)} downloaded, ${r.seconds.toFixed(1)} s)`;
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
