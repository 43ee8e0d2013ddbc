/**
 * The Node label keys and the taint that place VMs where their base is (docs/operations.md, "Placing VMs").
 *
 * A label key is `prefix/name` with the name at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
 * alphanumeric. An ImageCache name is a DNS subdomain of up to 253 characters, so longer names map to a
 * 42-character prefix, `_` and 20 hex digits of its SHA-256. `_` never occurs in a DNS subdomain, so a mapped
 * name can never equal a name used as it is; and 80 bits of hash keep two long names apart.
 */
import { createHash } from "node:crypto";

/** Prefix of the label that says the node holds every image of an ImageCache: `imagecache.basecache.io/<name>=ready`. */
export const PlacementLabelPrefix = "imagecache.basecache.io";
export const PlacementLabelValue = "ready";
/**
 * Prefix of the label that remembers a node's first sync of an ImageCache with `placement.taintUntilReady`,
 * so that a node re-fetching later (a new image, a changed definition) is not tainted again.
 */
export const SyncedLabelPrefix = "synced.imagecache.basecache.io";
export const SyncedLabelValue = "true";
/** The one taint the controller manages, NoSchedule, held while a node has not yet synced some ImageCache. */
export const WarmingTaintKey = "basecache.io/warming";
export const WarmingTaintEffect = "NoSchedule";

/** The bound on the name part of a label key. */
export const MaxLabelName = 63;
const HashedPrefixLength = 42;
const HashLength = 20;
const LabelName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const PlainName = /^[A-Za-z0-9.-]+$/;

/** The name part of both label keys for ImageCache `name`: the name itself when it fits, else prefix, `_` and hash. */
export function placementKeyName(name: string): string {
  if (name.length <= MaxLabelName && PlainName.test(name) && LabelName.test(name)) return name;
  const hash = createHash("sha256").update(name, "utf8").digest("hex").slice(0, HashLength);
  // Only a name that is not a DNS subdomain can bring other characters; they become "-" (the hash keeps it apart).
  let head = name.slice(0, HashedPrefixLength).replace(/[^A-Za-z0-9.-]/g, "-");
  if (!/^[A-Za-z0-9]/.test(head)) head = `x${head.slice(1)}`;
  return `${head}_${hash}`;
}

/** `imagecache.basecache.io/<key>`, the label users select. */
export function placementLabel(imageCache: string): string {
  return `${PlacementLabelPrefix}/${placementKeyName(imageCache)}`;
}

/** `synced.imagecache.basecache.io/<key>`, the first-sync memory of a taintUntilReady ImageCache. */
export function syncedLabel(imageCache: string): string {
  return `${SyncedLabelPrefix}/${placementKeyName(imageCache)}`;
}

/** Whether a Node label key is one the controller owns (and removes when no ImageCache wants it). */
export function isPlacementLabel(key: string): boolean {
  return key.startsWith(`${PlacementLabelPrefix}/`) || key.startsWith(`${SyncedLabelPrefix}/`);
}

/** Whether `name` is a valid label name part (at most 63 characters, alphanumeric at both ends). */
export function isLabelName(name: string): boolean {
  return name.length <= MaxLabelName && LabelName.test(name);
}
