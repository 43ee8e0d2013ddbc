/**
 * Tracked images (an ImageSpec with `updatePolicy`): which ones are due for a version check, what a check's
 * result makes of the recorded version, and the definitions the nodes get, each pinned to its current version.
 * Pure: the controller's version pass (src/controller/versions.ts) resolves sources and applies the plan.
 * Design: docs/design/2026-12-04-updates.md.
 */
import { createHash } from "node:crypto";
import type { ChecksumFrom, ImageSource, ImageSpec, ImageVersion, VersionPin, VersionRecord } from "./api-records.js";
import { isDuration, parseDuration } from "./duration.js";
import { definitionKey, hashOfDefinitionKey } from "./image-definition.js";
import { formatImageReference, parseImageReference } from "./oci-ref.js";

/** How many older version names a record keeps, newest first. */
export const MaxPreviousVersions = 5;

/** The shortest interval a check may repeat at: a vendor's origin is not polled faster than this. */
export const MinUpdateInterval = "1m";

/** The interval of an image's updatePolicy in ms, or undefined when the image is pinned (or the text is invalid, which the CRD refuses). */
export function updateIntervalMs(image: Pick<ImageSpec, "updatePolicy">): number | undefined {
  const text = image.updatePolicy?.interval;
  if (text === undefined || !isDuration(text)) return undefined;
  return Math.max(parseDuration(text), parseDuration(MinUpdateInterval));
}

/**
 * The hash of an image's definition without its version: a record made for another definition (a new URL, new
 * keys, a new interval) is not the current version of this one, and the next check starts afresh.
 */
export function trackedDefinition(image: ImageSpec): string {
  const { version: _version, ...spec } = image;
  return hashOfDefinitionKey(definitionKey(spec));
}

/**
 * A version's name: 12 hex of the SHA-256 of what pins it, so that checking an unchanged source again finds the
 * same name, and any change of digest, checksum or validator is a new one. The name is part of the base's name
 * (names.ts versionedBaseName), so it is short and plain hex.
 */
export function versionNameOf(pin: VersionPin): string {
  const key = JSON.stringify([pin.digest ?? "", pin.checksum ?? "", pin.etag ?? "", pin.lastModified ?? ""]);
  return createHash("sha256").update(key, "utf8").digest("hex").slice(0, 12);
}

/** What a check of the tracked source found: what pins the version now, or why it could not tell. */
export type CheckResult = { ok: true; pin: VersionPin } | { ok: false; message: string };

/** The ids of `images` whose check is due at `nowMs`, and when the next one falls due (ms from now). */
export function planVersionChecks(images: readonly ImageSpec[], records: readonly VersionRecord[], nowMs: number): { due: string[]; nextInMs: number | undefined } {
  const byId = new Map(records.map((r) => [r.id, r]));
  const due: string[] = [];
  let nextInMs: number | undefined;
  for (const image of images) {
    const interval = updateIntervalMs(image);
    if (interval === undefined) continue;
    const record = byId.get(image.id);
    const checked = record?.checkedAt ? Date.parse(record.checkedAt) : NaN;
    if (!record || record.definition !== trackedDefinition(image) || !Number.isFinite(checked)) {
      due.push(image.id);
      continue;
    }
    // A clock that went back makes the wait no longer than one interval.
    const wait = Math.min(interval, checked + interval - nowMs);
    if (wait <= 0) due.push(image.id);
    else nextInMs = nextInMs === undefined ? wait : Math.min(nextInMs, wait);
  }
  if (due.length > 0) nextInMs = undefined;
  return { due, nextInMs };
}

/**
 * The record after a check at `nowIso`. A new pin becomes the current version and the old one's name moves to
 * `previous`; the same pin keeps its version (and its resolvedAt); a failed check keeps the current version,
 * says why in `message` and counts as checked, so a broken origin is asked again one interval later, not in a loop.
 */
export function nextVersionRecord(prior: VersionRecord | undefined, image: ImageSpec, result: CheckResult, nowIso: string): VersionRecord {
  const definition = trackedDefinition(image);
  const same = prior?.definition === definition ? prior : undefined;
  if (!result.ok) {
    return { id: image.id, definition, ...(same?.current ? { current: same.current } : {}), ...(same?.previous?.length ? { previous: same.previous } : {}), checkedAt: nowIso, message: result.message };
  }
  const name = versionNameOf(result.pin);
  if (same?.current?.name === name) {
    return { id: image.id, definition, current: same.current, ...(same.previous?.length ? { previous: same.previous } : {}), checkedAt: nowIso };
  }
  const current: ImageVersion = { name, resolvedAt: nowIso, ...result.pin };
  const previous = same?.current ? [same.current.name, ...(same.previous ?? []).filter((p) => p !== same.current!.name && p !== name)].slice(0, MaxPreviousVersions) : [];
  return { id: image.id, definition, current, ...(previous.length ? { previous } : {}), checkedAt: nowIso };
}

/**
 * The definitions nodes get: a pinned image as it is; a tracked image with its current version, when a check
 * of this definition found one. A tracked image without one is `waiting`: no node fetches it until the first
 * check says what to fetch.
 */
export function pinVersions(images: readonly ImageSpec[], records: readonly VersionRecord[]): { images: ImageSpec[]; waiting: string[] } {
  const byId = new Map(records.map((r) => [r.id, r]));
  const out: ImageSpec[] = [];
  const waiting: string[] = [];
  for (const image of images) {
    if (updateIntervalMs(image) === undefined) {
      out.push(image);
      continue;
    }
    const record = byId.get(image.id);
    if (record?.current && record.definition === trackedDefinition(image)) out.push({ ...image, version: record.current });
    else waiting.push(image.id);
  }
  return { images: out, waiting };
}

/** The records worth keeping: one per tracked id of `images`, in their order; records of ids no longer tracked go. */
export function keptVersionRecords(images: readonly ImageSpec[], records: readonly VersionRecord[]): VersionRecord[] {
  const byId = new Map(records.map((r) => [r.id, r]));
  return images.filter((i) => updateIntervalMs(i) !== undefined && byId.has(i.id)).map((i) => byId.get(i.id)!);
}

/** `ref` pinned to `digest`: the same repository, its tag kept for people to read, the digest deciding. */
export function pinImageReference(ref: string, digest: string): string {
  return formatImageReference({ ...parseImageReference(ref), digest });
}

/** What a node fetches for one definition: the source, the expected checksum, and what makes sure the bytes are the version's. */
export interface VersionedFetch {
  source: ImageSource;
  checksum?: string;
  checksumFrom?: ChecksumFrom;
  /**
   * Request headers that make the origin refuse (HTTP 412) bytes that are no longer the version: If-Match for a
   * strong ETag, If-Unmodified-Since for a Last-Modified. The next check then finds the newer version.
   */
  preconditions?: Record<string, string>;
}

/**
 * The fetch of an image as the node makes it. A pinned image: as written. A tracked image: its version's pin
 * replaces what moves, so every node fetches exactly the version the controller found: a registry tag becomes
 * its manifest digest; a SUMS entry becomes the checksum (the controller verified the SUMS file's signature; the
 * nodes then check the bytes against it, and need neither the SUMS file nor its keys); an ETag or Last-Modified
 * becomes a precondition on the download.
 */
export function versionedFetchOf(image: Pick<ImageSpec, "source" | "checksum" | "checksumFrom" | "version">): VersionedFetch {
  const v = image.version;
  if (!v) return { source: image.source, ...(image.checksum ? { checksum: image.checksum } : {}), ...(image.checksumFrom ? { checksumFrom: image.checksumFrom } : {}) };
  const source: ImageSource = "registry" in image.source && v.digest ? { registry: { ...image.source.registry, image: pinImageReference(image.source.registry.image, v.digest) } } : image.source;
  const checksum = v.checksum ?? image.checksum;
  const preconditions: Record<string, string> = {};
  if ("http" in image.source && v.checksum === undefined) {
    if (v.etag !== undefined) preconditions["if-match"] = v.etag;
    else if (v.lastModified !== undefined) preconditions["if-unmodified-since"] = v.lastModified;
  }
  return { source, ...(checksum ? { checksum } : {}), ...(Object.keys(preconditions).length ? { preconditions } : {}) };
}
