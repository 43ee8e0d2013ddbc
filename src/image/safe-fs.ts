/**
 * Opening, creating and removing the files at our own names (bases, sidecars, locks, work files, instance disk
 * temporaries) without trusting what is there. Our files are regular files with one name, created exclusively;
 * anything else at one of our names was planted (or left by a tool we do not know) and is foreign:
 * `ForeignFileError`, never followed (O_NOFOLLOW), never blocked on (O_NONBLOCK: a FIFO opens at once), never
 * written through, never removed.
 */
import { constants, type Stats } from "node:fs";
import { lstat, open, unlink, type FileHandle } from "node:fs/promises";
import { ForeignFileError } from "../lib/errors.js";

const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants;

/** How a file that is not one of ours reads in a message ("a symbolic link", "a FIFO", ...); undefined when it is ours. */
export function foreignKind(st: Stats): string | undefined {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (!st.isFile()) return "not a regular file";
  // A second name may be outside our directory: writing or serving it would reach that file.
  if (st.nlink > 1) return `a file with ${st.nlink} names (a hard link)`;
  return undefined;
}

function check(path: string, st: Stats): void {
  const what = foreignKind(st);
  if (what !== undefined) throw new ForeignFileError(path, what);
}

/**
 * Opens our file at `path` without following a symlink or blocking on a FIFO, and checks what it opened.
 * Returns undefined when nothing is there.
 * @throws ForeignFileError when something other than our regular file is there
 */
export async function openOwnFile(path: string, mode: "read" | "write" = "read"): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, (mode === "read" ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    // ELOOP: a symlink; EISDIR: a directory opened for writing; ENXIO: a FIFO or socket with no peer.
    if (code === "ELOOP" || code === "EISDIR" || code === "ENXIO" || code === "EOPNOTSUPP") throw new ForeignFileError(path, await describe(path), undefined, { cause: e });
    throw e;
  }
  try {
    check(path, await fh.stat());
    return fh;
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/**
 * The lstat of our file at `path` (never followed); undefined when nothing is there.
 * @throws ForeignFileError when something other than our regular file is there
 */
export async function statOwnFile(path: string): Promise<Stats | undefined> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (st) check(path, st);
  return st;
}

/**
 * Creates a new file at `path` exclusively (O_EXCL: nothing at the name is ever opened, a symlink included).
 * A file of ours left there by a process that died is removed first; anything else is foreign.
 * @throws ForeignFileError when something that is not ours is at the name
 */
export async function createOwnFile(path: string, mode: number): Promise<FileHandle> {
  for (let i = 0; ; i++) {
    try {
      // The umask may take bits away from `mode`, never add any.
      return await open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i > 0) throw e;
      await removeOwnFile(path);
    }
  }
}

/**
 * Removes our file at `path` if it is there. unlink never follows, but a name that is not ours is left alone.
 * Returns whether a file was removed.
 * @throws ForeignFileError when something other than our regular file is at the name
 */
export async function removeOwnFile(path: string): Promise<boolean> {
  if (!(await statOwnFile(path))) return false;
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/** Reads our small file at `path` (at most `maxBytes`), never following or blocking; undefined when missing. */
export async function readOwnFile(path: string, maxBytes: number): Promise<string | undefined> {
  const fh = await openOwnFile(path);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(maxBytes);
    const { bytesRead } = await fh.read(buf, 0, maxBytes, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}

/**
 * Opens a regular file for reading without blocking on a FIFO or a device, following a final symlink only when
 * `follow` is set (an instance disk GC reads through a link); how many names it has is not checked.
 * @throws ForeignFileError when the path is not a regular file (or, without `follow`, is a symlink)
 */
export async function openRegularFile(path: string, follow: boolean): Promise<FileHandle> {
  const notRegular = (what: string, cause?: unknown) => new ForeignFileError(path, what, `Cannot read "${path}": it is ${what}, not a regular file`, cause === undefined ? undefined : { cause });
  let fh: FileHandle;
  try {
    fh = await open(path, O_RDONLY | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || code === "ENXIO" || code === "EOPNOTSUPP") throw notRegular(await describe(path), e);
    throw e;
  }
  const st = await fh.stat();
  if (st.isFile()) return fh;
  await fh.close().catch(() => undefined);
  throw notRegular(foreignKind(st) ?? "not a regular file");
}

/** Unlinks `path` only while it is still the file behind `fh` (something put at the name since is not ours). */
export async function unlinkIfSame(path: string, fh: FileHandle): Promise<void> {
  const [mine, there] = await Promise.all([fh.stat().catch(() => undefined), lstat(path).catch(() => undefined)]);
  if (mine && there && mine.ino === there.ino && mine.dev === there.dev) await unlink(path).catch(() => undefined);
}

/**
 * A path that opens exactly the file behind `fh` (the same inode, whatever is at its name now), for a child
 * process such as qemu-img or cp that can only be given a path.
 */
export function descriptorPath(fh: FileHandle): string {
  return `/proc/${process.pid}/fd/${fh.fd}`;
}

async function describe(path: string): Promise<string> {
  const st = await lstat(path).catch(() => undefined);
  return (st && foreignKind(st)) ?? "not a regular file";
}
