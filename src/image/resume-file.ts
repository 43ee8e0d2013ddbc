/**
 * The resume record beside a `.part` (`<base>.part.resume`): gathering the facts core/resume-rules.ts decides on,
 * writing the record atomically once the bytes it claims are durable, and reading a kept prefix back into the
 * hasher (a hash state cannot be saved in Node, so the prefix is hashed again from disk). Nothing here trusts the
 * record: it is read bounded, without following a symlink or blocking on a FIFO, and judged in core.
 */
import { rename, type FileHandle } from "node:fs/promises";
import { MaxResumeRecordBytes, type ResumeFacts, type ResumeRecord } from "../core/resume-rules.js";
import { fsyncDir, WorkFileMode, type BasePaths } from "./base-dir.js";
import { hashFileRange, type Hasher } from "./hasher.js";
import { createOwnFile, openOwnFile, removeOwnFile, statOwnFile } from "./safe-fs.js";

/** The first bytes of the disk, which the header checks read again on a resume. */
export const ResumeHeadBytes = 64 * 1024;

/**
 * Gathers what is on disk for a resume: the `.part`'s size and owner, and the record's text and owner.
 * @throws ForeignFileError when either name holds something not ours (a symlink, a FIFO, a hard link): as
 *   for every work file, it is reported and left alone, never trusted or removed
 */
export async function gatherResumeFacts(p: BasePaths): Promise<ResumeFacts> {
  const selfUid = process.getuid?.() ?? -1;
  const part = await statOwnFile(p.part);
  const fh = await openOwnFile(p.resume);
  const facts: ResumeFacts = { selfUid, ...(part ? { part: { size: part.size, uid: part.uid } } : {}) };
  if (!fh) return facts;
  try {
    const st = await fh.stat();
    // One byte more than a record may have: a longer file is cut, so it cannot parse.
    const buf = Buffer.alloc(MaxResumeRecordBytes + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return { ...facts, recordText: buf.subarray(0, bytesRead).toString("utf8"), recordUid: st.uid };
  } finally {
    await fh.close();
  }
}

/**
 * Writes the record atomically: an exclusively created temp file, fsync, rename, fsync of the directory. The
 * caller has made the claimed bytes durable first (fdatasync of the `.part`), so a record never claims more.
 * @throws ForeignFileError when something not ours is at the record's name or its temp name
 */
export async function writeResumeRecord(baseDir: string, p: BasePaths, record: ResumeRecord): Promise<void> {
  await statOwnFile(p.resume);
  const fh = await createOwnFile(p.resumeTemp, WorkFileMode);
  try {
    await fh.writeFile(JSON.stringify(record) + "\n");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(p.resumeTemp, p.resume);
  await fsyncDir(baseDir);
}

/** Removes the record (durably: a `.part` truncated after this can never be paired with it again). */
export async function removeResumeRecord(baseDir: string, p: BasePaths): Promise<void> {
  if (await removeOwnFile(p.resume)) await fsyncDir(baseDir);
}

/**
 * Reads bytes [0, `bytes`) of the `.part` back into `hasher`, in order, and returns the first ResumeHeadBytes of
 * them for the header checks. Holes read as zeros, as they were hashed when first written.
 */
export async function rehashPrefix(fh: FileHandle, bytes: number, hasher: Hasher, signal?: AbortSignal): Promise<Buffer> {
  const head = Buffer.alloc(Math.min(ResumeHeadBytes, bytes));
  const { bytesRead } = await fh.read(head, 0, head.length, 0);
  await hashFileRange(fh, hasher, 0, bytes, (endedAt) => new Error(`Cannot resume download: the .part ended at ${endedAt} bytes, ${bytes} were recorded`), signal);
  return head.subarray(0, bytesRead);
}
