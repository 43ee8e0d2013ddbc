/**
 * `basecache fetch --base-dir DIR --id ID (--url URL | --registry-image REF) [--checksum ALGO:HEX |
 *  --checksum-from URL [--checksum-name NAME] [--signature URL] [--keyring FILE]] [--cosign-key FILE] [--max-virtual-size SIZE]
 *  [--timeout DUR] [--write-back SIZE] [--json]`: makes the image a ready raw base at DIR/sha1(ID).
 * Exit 0 ready, 3 rejected, 4 source failed, 5 disk full, 124 deadline, 2 usage or a planted file (foreign-file), 1 anything else.
 */
import { readFile, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { parseChecksum } from "../../core/checksum.js";
import { formatDuration } from "../../core/duration.js";
import { baseNameFor } from "../../core/names.js";
import { formatBytes } from "../../core/quantity.js";
import { redactUrl } from "../../core/redact.js";
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
  checksum: { type: "string", value: "ALGO:HEX", help: "sha256:<hex> or sha512:<hex> of the disk image (for a gzip, xz or\nzstd source: of the decompressed image)" },
  "checksum-from": { type: "string", value: "URL", help: "take the checksum from the vendor's SUMS file at URL (GNU, BSD or\nFedora CHECKSUM format; sha512 over sha256 when both are listed);\nnot with --checksum; --url only" },
  "checksum-name": { type: "string", value: "NAME", help: "the name the image is listed under in the SUMS file;\ndefault the last path segment of --url" },
  signature: { type: "string", value: "URL", help: "a detached OpenPGP signature of the SUMS file (SHA256SUMS.gpg),\nchecked with gpgv against --keyring" },
  keyring: { type: "string", value: "FILE", help: "the public keys to trust (armored or binary); without --signature,\nthe SUMS file itself must be clearsigned (Fedora's CHECKSUM)" },
  "cosign-key": { type: "string", value: "FILE", help: "verify the registry image's cosign signature (cosign sign --key) with\nthe PEM public key(s) in FILE before any layer is downloaded;\n--registry-image only; offline: no transparency log is asked" },
  "max-virtual-size": { type: "string", value: "SIZE", help: "largest virtual size accepted: bytes or a quantity (1Gi, 500M)" },
  timeout: { type: "string", value: "DUR", help: "give up after this long (90s, 10m, 1h): roll back, exit 124;\nno deadline when absent" },
  "write-back": { type: "string", value: "SIZE", default: "32Mi", help: "fdatasync the download every SIZE written and hold it while twice\nSIZE is not yet on disk, so dirty pages stay bounded; 0 turns it off" },
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
    "BASECACHE_FETCH_IDLE_TIMEOUT_MS; BASECACHE_CONVERT_MEMORY, BASECACHE_CONVERT_SECONDS (qemu-img convert);",
    "BASECACHE_DECOMPRESS_MEMORY (default 256 MiB), BASECACHE_DECOMPRESS_SECONDS (xz and zstd decoders).",
    "gzip, xz and zstd sources (known by their first bytes) are decompressed as they download, up to the size limit.",
  ].join("\n"),
};

/** Parsed flags of `basecache fetch`. */
interface FetchFlags {
  request: FetchRequest;
  json: boolean;
  /** --timeout: the whole fetch's deadline. */
  timeoutMs?: number;
  /** --keyring: read by the command, into request.checksumFrom.signature.keys. */
  keyringPath?: string;
  /** --cosign-key: read by the command, into request.registryVerify.publicKeys. */
  cosignKeyPath?: string;
}

/** The largest keyring file read: a vendor's keys are a few KiB. */
const MaxKeyringBytes = 1024 * 1024;

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
  const keyringPath = checksumFromFlags(v, request);
  if (v["cosign-key"] !== undefined && v["registry-image"] === undefined) throw usageError(spec, "--cosign-key needs --registry-image");
  const cosignKeyPath = v["cosign-key"] === undefined ? undefined : resolve(v["cosign-key"]);
  if (v["max-virtual-size"] !== undefined) request.maxVirtualSize = bytesFlag("max-virtual-size", v["max-virtual-size"]);
  request.writeBackBytes = bytesFlag("write-back", v["write-back"]);
  request.retry = retryFromEnv(env);
  request.idleTimeoutMs = positiveInt(env, "BASECACHE_FETCH_IDLE_TIMEOUT_MS", DefaultIdleTimeoutMs);
  return { request, json: v.json, ...(v.timeout !== undefined ? { timeoutMs: durationFlag("timeout", v.timeout, 1000) } : {}), ...(keyringPath ? { keyringPath } : {}), ...(cosignKeyPath ? { cosignKeyPath } : {}) };
}

/** Sets request.checksumFrom from --checksum-from and its companions; returns the --keyring path to read. */
function checksumFromFlags(v: { url?: string | undefined; checksum?: string | undefined; "checksum-from"?: string | undefined; "checksum-name"?: string | undefined; signature?: string | undefined; keyring?: string | undefined }, request: FetchRequest): string | undefined {
  const from = v["checksum-from"];
  if (from === undefined) {
    for (const f of ["checksum-name", "signature", "keyring"] as const) if (v[f] !== undefined) throw usageError(spec, `--${f} needs --checksum-from`);
    return undefined;
  }
  if (v.checksum !== undefined) throw usageError(spec, "give --checksum or --checksum-from, not both");
  if (v.url === undefined) throw usageError(spec, "--checksum-from needs --url");
  if (v.signature !== undefined && v.keyring === undefined) throw usageError(spec, "--signature needs --keyring, the keys to check it against");
  request.checksumFrom = { url: httpUrl(from, "--checksum-from"), ...(v["checksum-name"] !== undefined ? { name: v["checksum-name"] } : {}) };
  if (v.keyring === undefined) return undefined;
  request.checksumFrom.signature = { keys: new Uint8Array(), ...(v.signature !== undefined ? { url: httpUrl(v.signature, "--signature") } : {}) };
  return resolve(v.keyring);
}

/** Reads --keyring and --cosign-key into the request. @throws ConfigError when one cannot be read or is too large */
async function readKeyring(flags: FetchFlags): Promise<void> {
  const sig = flags.request.checksumFrom?.signature;
  if (flags.keyringPath && sig) {
    sig.keys = new Uint8Array(await readKeyFile("--keyring", flags.keyringPath));
    sig.keysFrom = `--keyring "${flags.keyringPath}"`;
  }
  if (flags.cosignKeyPath) {
    const pem = await readKeyFile("--cosign-key", flags.cosignKeyPath);
    flags.request.registryVerify = { publicKeys: pem.toString("utf8"), keysFrom: `--cosign-key "${flags.cosignKeyPath}"` };
  }
}

async function readKeyFile(flag: string, path: string): Promise<Buffer> {
  const st = await stat(path).catch((e: unknown) => {
    throw new ConfigError(`Cannot read ${flag} "${path}": ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  });
  if (!st.isFile() || st.size > MaxKeyringBytes) throw new ConfigError(`Cannot read ${flag} "${path}": not a file of at most ${MaxKeyringBytes} bytes`);
  return readFile(path);
}

function httpUrl(text: string, flag = "--url"): string {
  const u = flagValue(flag, text, (t) => new URL(t));
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ConfigError(`Cannot use ${flag} "${redactUrl(text)}": expected an http or https URL`);
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
  await readKeyring(flags);
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
