import { createHash } from "node:crypto";

/** Suffix of a download in progress. */
export const PartSuffix = ".part";
/** Suffix of a conversion in progress. */
export const ConvertedSuffix = ".converted";
/** Suffix of the sidecar that records what was learned about a base. */
export const SidecarSuffix = ".info.json";
/**
 * Suffix of a tracked image's pointer, `<sha1(id)>.current`: which version's base new instance disks use (the
 * newest Ready one). The agent writes it; `basecache disk create` reads it.
 */
export const CurrentSuffix = ".current";
/** Suffix of a pointer being written. */
export const CurrentTempSuffix = ".current.tmp";
/** Suffix of the lock that coalesces fetches of one id on a node. */
export const LockSuffix = ".lock";
/** Suffix of a sidecar being written. */
export const SidecarTempSuffix = ".info.json.tmp";
/** Suffix of the resume record beside a `.part` (core/resume-rules.ts). */
export const ResumeSuffix = ".part.resume";
/** Suffix of a resume record being written. */
export const ResumeTempSuffix = ".part.resume.tmp";

/** Base file name for an image id: lowercase hex SHA-1 of its UTF-8 bytes, as Nova names `_base` files. */
export function baseNameFor(imageId: string): string {
  return createHash("sha1").update(imageId, "utf8").digest("hex");
}

/**
 * Base file name for one version of a tracked image: the SHA-1 of `<id>@<version>`, so each version is a base of
 * its own beside the others (an overlay on an old version keeps its backing file), and a pinned image keeps
 * Nova's `sha1(id)`. Both are 40 hex, so GC and every scan treat them alike.
 */
export function versionedBaseName(imageId: string, version: string): string {
  return baseNameFor(`${imageId}@${version}`);
}

/** The base an image definition is stored as: versionedBaseName when it carries a version, else baseNameFor. */
export function baseNameOfImage(image: { id: string; version?: { name: string } | undefined }): string {
  return image.version ? versionedBaseName(image.id, image.version.name) : baseNameFor(image.id);
}

/** What a file name in `_base` is, from its name alone. */
export type BaseFileKind =
  | { kind: "base"; base: string }
  | { kind: "sidecar"; base: string }
  | { kind: "temp"; base: string; suffix: string }
  | { kind: "lock"; base: string }
  | { kind: "pointer"; base: string }
  | { kind: "unknown" };

const sha1Hex = /^[0-9a-f]{40}$/;
const tempSuffixes = [PartSuffix, ConvertedSuffix, SidecarTempSuffix, ResumeSuffix, ResumeTempSuffix, CurrentTempSuffix];

/** Classifies a `_base` entry by name; anything we did not write is "unknown" and never deleted on a guess. */
export function classifyBaseFileName(name: string): BaseFileKind {
  if (sha1Hex.test(name)) return { kind: "base", base: name };
  const stem = name.slice(0, 40);
  if (!sha1Hex.test(stem)) return { kind: "unknown" };
  const rest = name.slice(40);
  if (rest === SidecarSuffix) return { kind: "sidecar", base: stem };
  if (rest === LockSuffix) return { kind: "lock", base: stem };
  if (rest === CurrentSuffix) return { kind: "pointer", base: stem };
  if (tempSuffixes.includes(rest)) return { kind: "temp", base: stem, suffix: rest };
  return { kind: "unknown" };
}
