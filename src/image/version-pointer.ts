/**
 * A tracked image's pointer, `<sha1(id)>.current`: which version's base new instance disks of the id use. The
 * agent writes it once a version is Ready on the node (so a disk made while the next version downloads still gets
 * a complete base); `basecache disk create` reads it. Its content is never trusted as a path: the base a pointer
 * names is computed again from the id and the version name it records, and a pointer that disagrees is no pointer.
 */
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { baseNameFor, CurrentSuffix, CurrentTempSuffix, versionedBaseName } from "../core/names.js";
import { BaseMode, fsyncDir } from "./base-dir.js";
import { createOwnFile, readOwnFile, statOwnFile } from "./safe-fs.js";

/** What a pointer says. */
export interface VersionPointer {
  id: string;
  /** The version's name (core/versions.ts versionNameOf: 12 hex). */
  version: string;
  /** versionedBaseName(id, version): written for people who read the file, recomputed when it is read. */
  base: string;
  /** When the agent made this version the current one (RFC 3339). */
  since: string;
}

const MaxPointerBytes = 4096;
const versionName = /^[0-9a-f]{12}$/;

/** The pointer's path for `id` in `baseDir`. */
export function pointerPath(baseDir: string, id: string): string {
  return join(baseDir, baseNameFor(id) + CurrentSuffix);
}

/**
 * Makes `version` the current one of `id`, atomically (an exclusively created temp file, fsync, rename, fsync of
 * the dir). Writing the pointer it already has changes nothing on disk.
 * @throws ForeignFileError when something not ours is at the pointer's name or its temp name
 */
export async function writeVersionPointer(baseDir: string, id: string, version: string, now: Date): Promise<boolean> {
  const prior = await readVersionPointer(baseDir, id);
  if (prior?.version === version) return false;
  const path = pointerPath(baseDir, id);
  await statOwnFile(path);
  const temp = join(baseDir, baseNameFor(id) + CurrentTempSuffix);
  const pointer: VersionPointer = { id, version, base: versionedBaseName(id, version), since: now.toISOString() };
  const fh = await createOwnFile(temp, BaseMode);
  try {
    await fh.writeFile(JSON.stringify(pointer, null, 2) + "\n");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(temp, path);
  await fsyncDir(baseDir);
  return true;
}

/**
 * The pointer of `id`, or undefined when there is none, or it is not a file of ours, or it does not parse, or
 * what it says does not hold together (another id, a version name that is not ours).
 * @throws ForeignFileError when something other than our regular file is at the pointer's name
 */
export async function readVersionPointer(baseDir: string, id: string): Promise<VersionPointer | undefined> {
  const text = await readOwnFile(pointerPath(baseDir, id), MaxPointerBytes);
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (r.id !== id || typeof r.version !== "string" || !versionName.test(r.version)) return undefined;
  return { id, version: r.version, base: versionedBaseName(id, r.version), since: typeof r.since === "string" ? r.since : "" };
}
