/**
 * A per-base lock that coalesces fetches of one image on one node. The lock is `<base>.lock`, created with
 * O_EXCL and holding its owner (pid, process start time, pid namespace, nonce). Waiters keep the lock file open;
 * the holder appends the outcome and unlinks it, so every waiter reads the same result through its descriptor
 * even after the name is gone. A lock whose holder died (kill -9) is broken: renamed away, re-read to be sure it is
 * the one judged stale, then removed. The lock is opened without following a symlink or blocking on a FIFO: a
 * lock path that is not a regular file is foreign (ForeignFileError), never waited on.
 */
import { randomBytes } from "node:crypto";
import { link, lstat, open, readFile, readlink, rename, unlink, type FileHandle } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { sleep } from "../lib/clock.js";
import { ForeignFileError } from "../lib/errors.js";
import { openOwnFile, readOwnFile } from "./safe-fs.js";

/** The outcome a holder leaves for the waiters. */
export interface LockOutcome {
  status: "ready" | "rejected" | "failed";
  reason: string;
  message: string;
  /** Which error class to raise in the waiters ("ImageRejectedError", "FetchError", "DiskFullError", ...). */
  errorName?: string;
  /** The request key (core/request-key.ts) of what the holder fetched: a verdict is only for the same request. */
  request?: string;
}

/** Who holds a lock. */
export interface LockOwner {
  pid: number;
  start?: string;
  pidns?: string;
  nonce: string;
}

/** Result of trying to take the lock: we hold it, or another process finished the work while we waited. */
export type LockAttempt = { held: true; lock: HeldLock } | { held: false; outcome: LockOutcome };

const pollMs = 100;
const heartbeatMs = 2000;
/** A lock from another pid namespace is stale when its heartbeat is older than this. */
const foreignStaleMs = 20_000;
/**
 * A lock of a live pid in our namespace is stale when its heartbeat is older than this: a holder beats every
 * heartbeatMs, so only a planted lock naming some live pid (pid 1) goes this long without one.
 */
const silentStaleMs = 30_000;
/** Rounds of "the lock vanished between create and open" before giving up: each is a race another process won. */
const maxRaceRounds = 1000;
/** How often a lock with a second name is looked at again before it counts as a planted hard link. */
const linkedRetries = 5;
/** A lock file still empty after this long was left by a holder that died between create and write. */
const emptyStaleMs = 5000;

/** A lock this process holds. */
export class HeldLock {
  private readonly timer: NodeJS.Timeout;
  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly ownerLine: string,
  ) {
    // On the descriptor: whatever is at the lock's name now, only our own lock file's time moves.
    this.timer = setInterval(() => void fh.utimes(new Date(), new Date()).catch(() => undefined), heartbeatMs);
    this.timer.unref();
  }

  /** Leaves `outcome` for the waiters and removes the lock. Never throws. */
  async release(outcome: LockOutcome): Promise<void> {
    clearInterval(this.timer);
    try {
      await this.fh.write(JSON.stringify(outcome) + "\n", Buffer.byteLength(this.ownerLine));
    } catch {
      // Waiters that read no outcome retry the fetch themselves.
    }
    // Only our own lock goes: one that replaced it (after ours was judged stale and broken) is another holder's.
    if (await this.stillAtPath()) await unlink(this.path).catch(() => undefined);
    await this.fh.close().catch(() => undefined);
  }

  private async stillAtPath(): Promise<boolean> {
    const [mine, there] = await Promise.all([this.fh.stat().catch(() => undefined), lstat(this.path).catch(() => undefined)]);
    return mine !== undefined && there !== undefined && mine.ino === there.ino && mine.dev === there.dev;
  }
}

/**
 * Takes the lock at `path`, or waits for its live holder and returns the holder's outcome. The wait ends with
 * the signal, and when the holder stops beating; it never blocks on what is at the path.
 * @throws ForeignFileError when the lock path is not a regular file (a symlink, a directory, a FIFO, ...)
 */
export async function acquireLock(path: string, signal?: AbortSignal): Promise<LockAttempt> {
  const self = await selfOwner();
  for (let round = 0; ; round++) {
    signal?.throwIfAborted();
    if (round >= maxRaceRounds) throw new Error(`Cannot take lock "${path}": it vanished and reappeared ${maxRaceRounds} times`);
    const mine = await tryCreate(path, self);
    if (mine) return { held: true, lock: mine };
    const fh = await openLock(path, signal);
    if (!fh) continue;
    try {
      const outcome = await waitOrBreak(path, fh, self.pidns, signal);
      if (outcome) return { held: false, outcome };
    } finally {
      await fh.close();
    }
  }
}

/**
 * Opens the lock at `path` to wait on it. A lock being put back by breakLock has a second name for a moment, so
 * a hard-linked lock is looked at again a few times before it is judged planted.
 */
async function openLock(path: string, signal?: AbortSignal): Promise<FileHandle | undefined> {
  for (let i = 0; ; i++) {
    try {
      return await openOwnFile(path);
    } catch (e) {
      const st = e instanceof ForeignFileError ? await lstat(path).catch(() => undefined) : undefined;
      if (i >= linkedRetries || !st?.isFile() || st.nlink < 2) throw e;
      await sleep(pollMs, signal);
    }
  }
}

async function tryCreate(path: string, self: Omit<LockOwner, "nonce">): Promise<HeldLock | undefined> {
  let fh: FileHandle;
  try {
    // "wx" is O_CREAT|O_EXCL: whatever is at the name, a dangling symlink included, is never opened.
    fh = await open(path, "wx", 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw e;
  }
  const line = JSON.stringify({ ...self, nonce: randomBytes(8).toString("hex") }) + "\n";
  await fh.write(line, 0);
  return new HeldLock(path, fh, line);
}

/** Waits while the holder lives; returns its outcome, or undefined when the caller should try again. */
async function waitOrBreak(path: string, fh: FileHandle, ourNs: string | undefined, signal?: AbortSignal): Promise<LockOutcome | undefined> {
  const ino = (await fh.stat()).ino;
  for (;;) {
    const { owner, outcome } = parseLock(await readAll(fh));
    if (outcome) return outcome;
    if (!(await sameFile(path, ino))) return undefined; // released without an outcome: try to take it
    if (await isStale(owner, fh, ourNs)) {
      await breakLock(path, owner);
      return undefined;
    }
    await sleep(pollMs, signal);
  }
}

async function isStale(owner: LockOwner | undefined, fh: FileHandle, ourNs: string | undefined): Promise<boolean> {
  const st = await fh.stat();
  if (!owner) return Date.now() - st.mtimeMs > emptyStaleMs;
  return !(await holderAlive(owner, st.mtimeMs, ourNs));
}

// NOTE: a pid from another pid namespace (a restarted agent container, a CLI in another container) cannot be
// probed, so there the heartbeat decides: every holder refreshes the lock's mtime each heartbeatMs.
async function holderAlive(owner: LockOwner, lockMtimeMs: number, ourNs: string | undefined): Promise<boolean> {
  if (owner.pidns !== ourNs) return Date.now() - lockMtimeMs <= foreignStaleMs;
  if (Date.now() - lockMtimeMs > silentStaleMs) return false;
  return processAlive(owner.pid, owner.start);
}

async function breakLock(path: string, stale: LockOwner | undefined): Promise<void> {
  const aside = join(dirname(path), `.${basename(path)}.broken-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await rename(path, aside);
  } catch {
    return; // someone else broke it first
  }
  const { owner } = parseLock((await readOwnFile(aside, 4096).catch(() => undefined)) ?? "");
  if (owner && stale && owner.nonce !== stale.nonce) {
    // NOTE: between our stat and rename a new holder replaced the stale lock; put its lock back.
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

/** Reads who holds the lock at `path`, if anyone, and when its holder last beat (the lock file's mtime). */
export async function readLockOwner(path: string): Promise<{ owner: LockOwner; mtimeMs: number } | undefined> {
  // One descriptor for both, so the owner and the heartbeat come from the same lock file.
  const fh = await openOwnFile(path).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const { owner } = parseLock(await readAll(fh));
    return owner ? { owner, mtimeMs: (await fh.stat()).mtimeMs } : undefined;
  } catch {
    return undefined;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * True when `owner` is alive by the rule that breaks stale locks: a live process in our pid namespace, or, for
 * another namespace, a heartbeat (`lockMtimeMs`) younger than foreignStaleMs.
 */
export async function isLockOwnerAlive(owner: LockOwner, lockMtimeMs: number): Promise<boolean> {
  return holderAlive(owner, lockMtimeMs, await pidNamespace());
}

function parseLock(text: string): { owner?: LockOwner; outcome?: LockOutcome } {
  const lines = text.split("\n");
  const out: { owner?: LockOwner; outcome?: LockOutcome } = {};
  try {
    if (lines.length > 1 && lines[0]) out.owner = JSON.parse(lines[0]) as LockOwner;
    if (lines.length > 2 && lines[1]) out.outcome = JSON.parse(lines[1]) as LockOutcome;
  } catch {
    // A partial line: the writer is still writing; read again on the next poll.
  }
  return out;
}

async function readAll(fh: FileHandle): Promise<string> {
  const buf = Buffer.alloc(4096);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  return buf.subarray(0, bytesRead).toString("utf8");
}

async function sameFile(path: string, ino: number): Promise<boolean> {
  try {
    return (await lstat(path)).ino === ino;
  } catch {
    return false;
  }
}

async function processAlive(pid: number, start: string | undefined): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  // A recycled pid belongs to a process with another start time.
  const now = await processStart(pid);
  return start === undefined || now === undefined || now === start;
}

async function processStart(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

async function pidNamespace(): Promise<string | undefined> {
  return readlink("/proc/self/ns/pid").catch(() => undefined);
}

async function selfOwner(): Promise<Omit<LockOwner, "nonce">> {
  const start = await processStart(process.pid);
  const pidns = await pidNamespace();
  return { pid: process.pid, ...(start ? { start } : {}), ...(pidns ? { pidns } : {}) };
}

/** Takes the lock at `path` without waiting: breaks it when its holder is dead, returns undefined when it lives. */
export async function tryAcquireLock(path: string): Promise<HeldLock | undefined> {
  const self = await selfOwner();
  for (let i = 0; i < 3; i++) {
    const mine = await tryCreate(path, self);
    if (mine) return mine;
    // A lock path that is not our kind of file is left alone: a GC or cleanup pass does not take it.
    const fh = await openOwnFile(path).catch(() => undefined);
    if (!fh) continue;
    try {
      const { owner } = parseLock(await readAll(fh));
      if (!(await isStale(owner, fh, self.pidns))) return undefined;
      await breakLock(path, owner);
    } finally {
      await fh.close();
    }
  }
  return undefined;
}
