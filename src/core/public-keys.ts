/**
 * The controller's copy of public keys into NodeImageCaches: an image whose checksumFrom names a ConfigMap key
 * gets the armored public key blocks found there as `signature.publicKeys` (a registry source's `verify`, the PEM
 * blocks as `verify.publicKeys`), so the agent needs no read access to
 * ConfigMaps (docs/design/least-privilege.md). Only public key blocks are copied, re-armored from their decoded
 * body: whatever else a ConfigMap holds never reaches a NodeImageCache, whoever wrote the ImageCache.
 */
import type { ConfigMapKeyRef, ImageSpec } from "./api-records.js";
import { pemPublicKeyBlocks } from "./cosign.js";
import { dearmorPublicKeys } from "./openpgp-armor.js";

/** The NodeImageCache schema's bound on publicKeys. */
export const MaxPublicKeysLength = 16384;

/** Reads one key of a ConfigMap in basecache's namespace from the controller's cache; undefined when absent. */
export type ConfigMapLookup = (ref: ConfigMapKeyRef) => string | undefined;

/** The public key blocks of `text`, armored again without headers; undefined when there is none or they are too large. */
export function publicKeyBlocks(text: string): string | undefined {
  let bodies: string[];
  try {
    bodies = dearmorPublicKeys(text);
  } catch {
    return undefined;
  }
  const armored = bodies.map((b) => ["-----BEGIN PGP PUBLIC KEY BLOCK-----", "", ...(b.match(/.{1,64}/g) ?? []), "-----END PGP PUBLIC KEY BLOCK-----", ""].join("\n")).join("");
  return armored.length <= MaxPublicKeysLength ? armored : undefined;
}

/** The PEM public key blocks (cosign.pub) of `text`, re-wrapped; undefined when there is none or they are too large. */
export function pemKeyBlocks(text: string): string | undefined {
  const blocks = pemPublicKeyBlocks(text).join("");
  return blocks.length > 0 && blocks.length <= MaxPublicKeysLength ? blocks : undefined;
}

/** True when `img` names keys in a ConfigMap: a checksumFrom signature or a registry `verify`. */
export function namesPublicKeys(img: ImageSpec): boolean {
  return img.checksumFrom?.signature !== undefined || ("registry" in img.source && img.source.registry.verify !== undefined);
}

/**
 * The images with the public keys their checksumFrom signature or registry `verify` names filled in (left out
 * where none are found: the agent then refuses with signature-no-keys rather than trusting nothing).
 */
export function planPublicKeys(images: readonly ImageSpec[], lookup: ConfigMapLookup): ImageSpec[] {
  return images.map((img) => withRegistryKeys(withSumsKeys(img, lookup), lookup));
}

function withSumsKeys(img: ImageSpec, lookup: ConfigMapLookup): ImageSpec {
  const sig = img.checksumFrom?.signature;
  if (!img.checksumFrom || !sig) return img;
  const text = lookup(sig.keys.configMapRef);
  const publicKeys = text === undefined ? undefined : publicKeyBlocks(text);
  const { publicKeys: _stale, ...rest } = sig;
  return { ...img, checksumFrom: { ...img.checksumFrom, signature: publicKeys === undefined ? rest : { ...rest, publicKeys } } };
}

function withRegistryKeys(img: ImageSpec, lookup: ConfigMapLookup): ImageSpec {
  if (!("registry" in img.source) || !img.source.registry.verify) return img;
  const { verify } = img.source.registry;
  const text = lookup(verify.keys.configMapRef);
  const publicKeys = text === undefined ? undefined : pemKeyBlocks(text);
  const { publicKeys: _stale, ...rest } = verify;
  return { ...img, source: { registry: { ...img.source.registry, verify: publicKeys === undefined ? rest : { ...rest, publicKeys } } } };
}
