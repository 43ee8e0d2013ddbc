/**
 * One version check of a tracked image's source (core/versions.ts decides when, and what the answer means):
 * a registry tag is resolved to its manifest digest; an http source with checksumFrom gets its SUMS file read
 * and its signature verified, exactly as a fetch does; a plain http source is asked for its validators with a
 * one-byte range request (some origins answer HEAD differently from GET), so nothing of the image is downloaded.
 */
import type { ImageSpec, VersionPin } from "../core/api-records.js";
import { redactUrl } from "../core/redact.js";
import type { CheckResult } from "../core/versions.js";
import { asError, FetchError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { checksumFromRequestOf, deriveVendorChecksum } from "./checksum-from.js";
import { registryVerifyRequestOf } from "./cosign-verify.js";
import { openUrl } from "./http-request.js";
import { resolveManifestDigest } from "./oci-fetch.js";

export interface VersionCheckOptions {
  log: Logger;
  /** No byte for this long fails the check; every request of a check is bounded by it. */
  idleTimeoutMs: number;
  signal?: AbortSignal;
  insecureRegistries?: string[];
}

/** Checks `image`'s source once; never throws for what the origin does (the answer says why it failed). */
export async function checkSourceVersion(image: ImageSpec, opts: VersionCheckOptions): Promise<CheckResult> {
  try {
    return { ok: true, pin: await pinOf(image, opts) };
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    return { ok: false, message: asError(err).message };
  }
}

async function pinOf(image: ImageSpec, opts: VersionCheckOptions): Promise<VersionPin> {
  if ("registry" in image.source) {
    const { verify } = image.source.registry;
    const found = await resolveManifestDigest(image.source.registry.image, {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}),
      ...(verify ? { verify: registryVerifyRequestOf(verify) } : {}),
      requestTimeoutMs: opts.idleTimeoutMs,
    });
    return { digest: found.digest, ...(found.signature ? { signedBy: found.signature.signedBy } : {}) };
  }
  const url = image.source.http.url;
  if (image.checksumFrom) {
    const vendor = await deriveVendorChecksum(checksumFromRequestOf(image.checksumFrom), { id: image.id, imageUrl: url, idleTimeoutMs: opts.idleTimeoutMs, log: opts.log, ...(opts.signal ? { signal: opts.signal } : {}) });
    const { signedBy } = vendor.provenance;
    return { checksum: `${vendor.checksum.algorithm}:${vendor.checksum.hex}`, ...(signedBy ? { signedBy } : {}) };
  }
  return validatorsOf(url, opts);
}

// A strong ETag pins exactly the bytes (If-Match); a weak one or none falls back to Last-Modified (If-Unmodified-Since).
async function validatorsOf(url: string, opts: VersionCheckOptions): Promise<VersionPin> {
  const { res } = await openUrl(url, { range: "bytes=0-0" }, opts.idleTimeoutMs, opts.signal);
  res.destroy();
  const status = res.statusCode ?? 0;
  if (status !== 200 && status !== 206) throw new FetchError("http-status", `Cannot check "${redactUrl(url)}" for a new version: HTTP ${status}`, { status, retryable: status >= 500 });
  const etag = header(res.headers.etag);
  const lastModified = header(res.headers["last-modified"]);
  if (etag !== undefined && !etag.startsWith("W/")) return { etag };
  if (lastModified !== undefined && Number.isFinite(Date.parse(lastModified))) return { lastModified };
  throw new FetchError("http-status", `Cannot track "${redactUrl(url)}": the origin sends neither a strong ETag nor a Last-Modified, so a new version cannot be told from the old (give checksumFrom, or pin the image)`, { retryable: false });
}

function header(v: string | string[] | undefined): string | undefined {
  const text = Array.isArray(v) ? v[0] : v;
  return text === undefined || text === "" || text.length > 256 ? undefined : text;
}
