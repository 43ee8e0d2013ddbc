/**
 * The cosign signature layout of a registry image, as pure decisions: where the signatures of a manifest digest
 * are (the `sha256-<hex>.sig` tag beside it), which layers of that manifest are signatures, and whether a signed
 * payload is about the image we are about to download. The cryptography itself is image/cosign-verify.ts's,
 * through a maintained library: nothing here decides that a signature is good, only what it must be about.
 */
import type { Descriptor, ManifestDocument } from "./oci-manifest.js";
import type { RejectReason } from "./reject-reasons.js";

/** A cosign decision: a value, or a refusal with its reason. */
export type CosignDecision<T> = { ok: true; value: T } | { ok: false; reason: Extract<RejectReason, "image-unsigned" | "signature-invalid" | "signature-wrong-image">; message: string };

/** The media type of a cosign "simple signing" payload layer. */
export const SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json";
/** The annotation that holds a layer's base64 signature over the payload. */
export const SignatureAnnotation = "dev.cosignproject.cosign/signature";
/** The `critical.type` every cosign image signature payload carries. */
export const SimpleSigningType = "cosign container image signature";
/** At most this many signature layers are tried: a signature manifest is not a place to hide work. */
export const MaxSignatureLayers = 16;
/** Bytes a simple signing payload may have: cosign's are a few hundred. */
export const MaxPayloadBytes = 64 * 1024;
/** Public key text (PEM blocks) the CRDs allow. */
export const MaxPublicKeysLength = 16384;

const digestPattern = /^sha256:[0-9a-f]{64}$/;

/** The tag cosign stores the signatures of `digest` under, in the image's own repository. */
export function signatureTagOf(digest: string): string {
  if (!digestPattern.test(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
  return digest.replace(":", "-") + ".sig";
}

/** One signature to check: the payload layer and its base64 signature. */
export interface SignatureLayer {
  payload: Descriptor;
  /** The signature bytes, decoded from base64. */
  signature: Buffer;
}

/** The signature layers of a signature manifest; a manifest with none is a refusal (nothing signs the image). */
export function signatureLayersOf(doc: ManifestDocument): CosignDecision<SignatureLayer[]> {
  if (doc.kind !== "image") return { ok: false, reason: "image-unsigned", message: "its signature tag names an index, not a cosign signature manifest" };
  const out: SignatureLayer[] = [];
  for (const layer of doc.layers) {
    if (layer.mediaType !== SimpleSigningMediaType) continue;
    const b64 = layer.annotations[SignatureAnnotation];
    if (b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length > 4096) continue;
    if (layer.size > MaxPayloadBytes || !digestPattern.test(layer.digest)) continue;
    out.push({ payload: layer, signature: Buffer.from(b64, "base64") });
    if (out.length === MaxSignatureLayers) break;
  }
  return out.length > 0 ? { ok: true, value: out } : { ok: false, reason: "image-unsigned", message: "its signature manifest holds no cosign signature layer" };
}

/** What a verified payload says it signs. */
export interface SignedClaim {
  /** `critical.identity.docker-reference`: the repository the signer named. */
  dockerReference?: string;
}

/**
 * Checks a payload (whose signature verified) against the manifest digest we resolved: a good signature over
 * another image's digest is a refusal, or a signature could be copied from one image to the next.
 */
export function checkPayload(payload: Buffer, digest: string): CosignDecision<SignedClaim> {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString("utf8"));
  } catch {
    return { ok: false, reason: "signature-invalid", message: "a signed payload is not valid JSON" };
  }
  const critical = isRecord(doc) ? doc.critical : undefined;
  if (!isRecord(critical)) return { ok: false, reason: "signature-invalid", message: 'a signed payload has no "critical" section' };
  if (typeof critical.type !== "string" || critical.type.toLowerCase() !== SimpleSigningType) {
    return { ok: false, reason: "signature-invalid", message: `a signed payload's type is ${JSON.stringify(critical.type)}, not "${SimpleSigningType}"` };
  }
  const image = critical.image;
  const signed = isRecord(image) ? image["docker-manifest-digest"] : undefined;
  if (signed !== digest) return { ok: false, reason: "signature-wrong-image", message: `the signature is for manifest ${typeof signed === "string" ? signed.slice(0, 80) : "(none)"}, not ${digest}` };
  const identity = critical.identity;
  const ref = isRecord(identity) ? identity["docker-reference"] : undefined;
  return { ok: true, value: typeof ref === "string" && ref.length <= 512 ? { dockerReference: ref } : {} };
}

/** The PEM `PUBLIC KEY` blocks of `text`, each whole (BEGIN to END); other blocks (a private key) are left out. */
export function pemPublicKeyBlocks(text: string): string[] {
  const out: string[] = [];
  const re = /-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END PUBLIC KEY-----/g;
  for (const m of text.matchAll(re)) {
    const body = (m[1] ?? "").replace(/[\r\n]/g, "");
    if (body.length === 0) continue;
    out.push(["-----BEGIN PUBLIC KEY-----", ...(body.match(/.{1,64}/g) ?? []), "-----END PUBLIC KEY-----", ""].join("\n"));
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
