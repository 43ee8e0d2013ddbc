/**
 * Verifies a registry image's cosign signature before any layer is downloaded: the signature manifest at
 * `sha256-<hex>.sig` beside the image's manifest digest, each simple signing payload (bounded, checked against its
 * digest), its signature verified by @sigstore/verify against the public keys the user supplied, and the payload
 * checked to name exactly that digest (core/cosign.ts). Offline by design: no transparency log or Fulcio is asked,
 * so a key-signed image verifies on a node that reaches nothing but its registry.
 */
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { toSignedEntity, Verifier, VerificationError, type TrustMaterial } from "@sigstore/verify";
import type { RegistryVerify } from "../core/api-records.js";
import { checkPayload, pemPublicKeyBlocks, signatureLayersOf, signatureTagOf, type CosignDecision, type SignatureLayer } from "../core/cosign.js";
import type { ManifestDocument } from "../core/oci-manifest.js";
import { ImageRejectedError } from "../lib/errors.js";

/** The keys a fetch trusts for a registry image, already read (from a NodeImageCache, or a file for the CLI). */
export interface RegistryVerifyRequest {
  /** PEM public keys (cosign.pub); empty when none could be read. */
  publicKeys: string;
  /** Where the keys came from, for a refusal's message. */
  keysFrom: string;
}

/** What signed the image, for the sidecar and the log. */
export interface CosignProvenance {
  /** The manifest digest the signature covers. */
  digest: string;
  /** `sha256:<hex>` of the DER (SPKI) public key that verified it. */
  signedBy: string;
  /** The repository the signer named in the payload, when it named one. */
  dockerReference?: string;
}

/** The two reads verification needs from the image's repository (image/oci-fetch.ts's client). */
export interface SignatureStore {
  /** The manifest at `tag`, or undefined when the registry has none (404). */
  manifestAt(tag: string): Promise<ManifestDocument | undefined>;
  /** A blob's bytes, at most `limit`, checked against `digest`. */
  blob(digest: string, limit: number): Promise<Buffer>;
}

/** A NodeImageCache's `verify` as a request: the keys are the ones the controller copied (none when it found none). */
export function registryVerifyRequestOf(spec: RegistryVerify): RegistryVerifyRequest {
  const ref = spec.keys.configMapRef;
  return { publicKeys: spec.publicKeys ?? "", keysFrom: `ConfigMap "${ref.name}" key "${ref.key}" in basecache's namespace` };
}

/** `sha256:<hex>` of a key's DER SubjectPublicKeyInfo: what status and sidecars name a key by. */
export function keyFingerprint(key: KeyObject): string {
  return `sha256:${createHash("sha256").update(key.export({ type: "spki", format: "der" })).digest("hex")}`;
}

/**
 * Verifies that one of the image's cosign signatures for `digest` was made by one of the keys supplied.
 * @throws ImageRejectedError image-unsigned, signature-invalid, signature-wrong-image or signature-no-keys
 * @throws FetchError when the registry fails (from the store)
 */
export async function verifyCosign(name: string, digest: string, req: RegistryVerifyRequest, store: SignatureStore): Promise<CosignProvenance> {
  const keys = parseKeys(name, req);
  const doc = await store.manifestAt(signatureTagOf(digest));
  if (doc === undefined) refuse(name, "image-unsigned", `no cosign signature for manifest ${digest} (no tag ${signatureTagOf(digest)} in its repository)`);
  const layers = decided(name, signatureLayersOf(doc));
  let refusedClaim: Extract<CosignDecision<unknown>, { ok: false }> | undefined;
  for (const layer of layers) {
    const payload = await store.blob(layer.payload.digest, layer.payload.size);
    const key = verifiedBy(layer, payload, keys);
    if (key === undefined) continue;
    const claim = checkPayload(payload, digest);
    if (!claim.ok) {
      // A good signature over something else is kept as the reason, but another layer may still sign this digest.
      refusedClaim = claim;
      continue;
    }
    return { digest, signedBy: keyFingerprint(key), ...(claim.value.dockerReference ? { dockerReference: claim.value.dockerReference } : {}) };
  }
  if (refusedClaim) refuse(name, refusedClaim.reason, refusedClaim.message);
  return refuse(name, "signature-invalid", `none of the ${layers.length} cosign signature(s) of manifest ${digest} verifies with the ${keys.length} key(s) in ${req.keysFrom}`);
}

/** The key among `keys` whose signature over `payload` verifies, through @sigstore/verify's message signature check. */
function verifiedBy(layer: SignatureLayer, payload: Buffer, keys: readonly KeyObject[]): KeyObject | undefined {
  const bundle = {
    mediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1",
    verificationMaterial: { content: { $case: "publicKey", publicKey: { hint: "" } }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    content: { $case: "messageSignature", messageSignature: { messageDigest: { algorithm: 1 /* SHA2_256 */, digest: createHash("sha256").update(payload).digest() }, signature: layer.signature } },
  } as unknown as Parameters<typeof toSignedEntity>[0];
  for (const key of keys) {
    // Offline, key-based: no log entries, SCTs or timestamps to require, so each threshold is 0.
    const trust: TrustMaterial = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [], publicKey: () => ({ publicKey: key, validFor: () => true }) };
    try {
      new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundle, payload));
      return key;
    } catch (e) {
      if (!(e instanceof VerificationError)) throw e;
    }
  }
  return undefined;
}

function parseKeys(name: string, req: RegistryVerifyRequest): KeyObject[] {
  const blocks = pemPublicKeyBlocks(req.publicKeys);
  if (blocks.length === 0) refuse(name, "signature-no-keys", `no public key to check the cosign signature with: ${req.keysFrom} is missing or holds no PEM PUBLIC KEY block`);
  return blocks.map((pem, i) => {
    try {
      return createPublicKey({ key: pem, format: "pem" });
    } catch (e) {
      return refuse(name, "signature-no-keys", `public key ${i + 1} in ${req.keysFrom} cannot be read: ${(e as Error).message}`);
    }
  });
}

function decided<T>(name: string, d: CosignDecision<T>): T {
  if (d.ok) return d.value;
  return refuse(name, d.reason, d.message);
}

function refuse(name: string, reason: ConstructorParameters<typeof ImageRejectedError>[0], message: string): never {
  throw new ImageRejectedError(reason, `Refused image "${name}": ${message}`);
}
