/**
 * The pipeline's step before the download when an image's checksum comes from the vendor: fetch the SUMS file
 * (and its detached signature), bounded in size, through the same HTTP rules as the image (src/image/http-request.ts:
 * only http/https, redirects bounded, credentials dropped across hosts, idle timeout); verify the signature
 * with gpgv when one is asked for; look the image up (core/sums-file.ts). The checksum found is then the request's
 * expected checksum, and the pipeline's checksum rule applies to the download unchanged.
 */
import type { ChecksumFrom } from "../core/api-records.js";
import type { Checksum, ChecksumAlgorithm } from "../core/checksum.js";
import { redactUrl } from "../core/redact.js";
import { decideSignature } from "../core/signature-status.js";
import { decideSumsChecksum, defaultSumsName, MaxSignatureBytes, MaxSumsBytes, stripClearsign } from "../core/sums-file.js";
import { FetchError, ImageRejectedError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { binaryKeyring, runGpgv } from "./gpgv.js";
import { classifyNetworkError, openUrl } from "./http-request.js";

/** Where an image's checksum comes from, as a fetch request carries it (keys already read). */
export interface ChecksumFromRequest {
  /** The SUMS file's URL. */
  url: string;
  /** The name the image is listed under; default the last path segment of the image URL. */
  name?: string;
  algorithm?: ChecksumAlgorithm;
  signature?: {
    /** A detached signature's URL; absent when the SUMS file is clearsigned (Fedora's CHECKSUM). */
    url?: string;
    /** The public keys to trust: armored text or a binary keyring; empty when none could be read. */
    keys: Uint8Array;
    /** Where the keys came from, for a refusal's message (`ConfigMap "ns/name" key "k"`, `--keyring "path"`). */
    keysFrom?: string;
  };
}

/** A NodeImageCache's checksumFrom as a request: the keys are the ones the controller copied (none when it found none). */
export function checksumFromRequestOf(spec: ChecksumFrom): ChecksumFromRequest {
  const sig = spec.signature;
  const ref = sig?.keys.configMapRef;
  return {
    url: spec.url,
    ...(spec.name !== undefined ? { name: spec.name } : {}),
    ...(spec.algorithm !== undefined ? { algorithm: spec.algorithm } : {}),
    ...(sig && ref
      ? { signature: { ...(sig.url !== undefined ? { url: sig.url } : {}), keys: new Uint8Array(Buffer.from(sig.publicKeys ?? "", "utf8")), keysFrom: `ConfigMap "${ref.name}" key "${ref.key}" in basecache's namespace` } }
      : {}),
  };
}

/** Where the checksum came from, for the sidecar and the log: the SUMS file and the key that signed it. */
export interface ChecksumProvenance {
  /** Redacted. */
  url: string;
  name: string;
  /** Redacted; absent for a clearsigned file. */
  signatureUrl?: string;
  /** Fingerprint of the primary key of the key that made the good signature; absent when none was asked. */
  signedBy?: string;
}

export interface VendorChecksum {
  checksum: Checksum;
  provenance: ChecksumProvenance;
}

/** How the step reaches the network, from the fetch request. */
export interface ChecksumFromContext {
  id: string;
  imageUrl: string;
  idleTimeoutMs: number;
  signal?: AbortSignal;
  log: Logger;
}

/**
 * The checksum the vendor's SUMS file gives the image.
 * @throws ImageRejectedError (a SUMS or signature reason) when the file or its signature is refused
 * @throws FetchError when the SUMS file or the signature cannot be downloaded; ToolError when gpgv cannot run
 */
export async function deriveVendorChecksum(from: ChecksumFromRequest, ctx: ChecksumFromContext): Promise<VendorChecksum> {
  const sums = await fetchSmall(from.url, MaxSumsBytes, ctx);
  const name = from.name ?? defaultSumsName(ctx.imageUrl);
  let text = sums.bytes.toString("utf8");
  let signedBy: string | undefined;
  if (from.signature && sums.bytes.length <= MaxSumsBytes) {
    const sigUrl = from.signature.url;
    const detached = sigUrl === undefined ? undefined : (await fetchSmall(sigUrl, MaxSignatureBytes, ctx)).bytes;
    if (detached && detached.length > MaxSignatureBytes) reject(ctx.id, "signature-invalid", `the signature "${redactUrl(sigUrl ?? "")}" is larger than ${MaxSignatureBytes} bytes`);
    const keyring = keyringOf(from.signature, ctx.id);
    const r = await runGpgv({ keyring, signed: sums.bytes, ...(detached ? { detached } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
    const verdict = decideSignature({ statusLines: r.statusLines, url: from.url });
    if (!verdict.accept) reject(ctx.id, verdict.reason, verdict.message);
    if (!("fingerprint" in verdict)) reject(ctx.id, "signature-invalid", `the signature of "${redactUrl(from.url)}" gave no key`);
    signedBy = verdict.primaryFingerprint;
    if (!detached) {
      // NOTE: a clearsigned file is read only through what gpgv verified; text around the signed block is ignored.
      if (!r.verified) reject(ctx.id, "signature-invalid", `gpgv verified "${redactUrl(from.url)}" but wrote no signed text`);
      text = r.verified.toString("utf8");
    } else {
      text = stripClearsign(text); // a detached signature covers the whole file, armor and all
    }
    ctx.log.info({ imageId: ctx.id, sums: redactUrl(from.url), signedBy }, "Verified signature of checksum file");
  } else {
    text = stripClearsign(text);
  }
  const v = decideSumsChecksum({ url: from.url, sizeBytes: sums.bytes.length, text, name, ...(from.algorithm ? { algorithm: from.algorithm } : {}) });
  if (!v.accept) reject(ctx.id, v.reason, v.message);
  const provenance: ChecksumProvenance = { url: redactUrl(from.url), name, ...(from.signature?.url ? { signatureUrl: redactUrl(from.signature.url) } : {}), ...(signedBy ? { signedBy } : {}) };
  ctx.log.info({ imageId: ctx.id, sums: provenance.url, name, checksum: `${v.checksum.algorithm}:${v.checksum.hex}` }, "Took checksum of image from checksum file");
  return { checksum: v.checksum, provenance };
}

/** The keys as gpgv's binary keyring, or the refusal signature-no-keys. */
function keyringOf(sig: NonNullable<ChecksumFromRequest["signature"]>, id: string): Buffer {
  const from = sig.keysFrom ?? "the keys given";
  if (sig.keys.length === 0) reject(id, "signature-no-keys", `no public key to check the signature with: ${from} is missing or holds no public key block`);
  try {
    return binaryKeyring(sig.keys);
  } catch (e) {
    return reject(id, "signature-no-keys", `no public key to check the signature with in ${from}: ${(e as Error).message}`);
  }
}

function reject(id: string, reason: ConstructorParameters<typeof ImageRejectedError>[0], message: string): never {
  throw new ImageRejectedError(reason, `Refused image "${id}": ${message}`);
}

/**
 * GETs a small file: at most `max + 1` bytes are read (one more than allowed, so the caller sees it is too
 * large), then the connection is dropped.
 */
async function fetchSmall(url: string, max: number, ctx: ChecksumFromContext): Promise<{ bytes: Buffer }> {
  const { res } = await openUrl(url, {}, ctx.idleTimeoutMs, ctx.signal);
  const status = res.statusCode ?? 0;
  if (status !== 200) {
    res.resume();
    throw new FetchError("http-status", `Cannot download "${redactUrl(url)}": HTTP ${status}`, { status, retryable: status >= 500 || status === 408 || status === 429 });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > max) break;
    }
  } catch (e) {
    throw classifyNetworkError(e, redactUrl(url), ctx.signal);
  } finally {
    res.destroy();
  }
  return { bytes: Buffer.concat(chunks).subarray(0, max + 1) };
}
