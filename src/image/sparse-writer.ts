/**
 * Writes a stream of bytes to a file sparsely: all-zero blocks are skipped (left as holes) and the file is
 * extended to its full length at the end. Any image format reads back the same, since a hole reads as zeros,
 * so every download goes through it; for a raw source this is the base itself. With a write-back policy
 * (core/write-back.ts) it also keeps the bytes written and not yet durable bounded: a background fdatasync
 * per interval, and new writes held while twice that is unsynced, so a disk slower than the network does not
 * fill the node's memory with dirty pages.
 */
import type { FileHandle } from "node:fs/promises";
import { IdleWriteBack, planWriteBack, syncLanded, syncStarted, unsyncedBytes, writeIssued, writeLanded, type WriteBackPolicy, type WriteBackState } from "../core/write-back.js";
import type { Digests, Hasher } from "./hasher.js";

/** Size of the blocks tested for zeros; one filesystem block on every filesystem we care about. */
export const SparseBlockBytes = 4096;
const flushBytes = 1024 * 1024;
const maxFlushesInFlight = 4;
/** Size of the buffers blocks are gathered in: a flush is 1 MiB plus at most one socket chunk. */
const bufferBytes = 2 * 1024 * 1024;
const zeroBlock = Buffer.alloc(SparseBlockBytes);
const granuleBytes = 64 * 1024;
const zeroGranule = Buffer.alloc(granuleBytes);

/** What the writer's write-back did, for a test or a bench to check the bound with. */
export interface WriteBackStats {
  /** fdatasyncs started while writing (write-back and checkpoints: one and the same). */
  syncs: number;
  /** Times a write was held until a sync landed. */
  holds: number;
  /** The most bytes written (or being written) and not yet durable at any moment. */
  peakUnsyncedBytes: number;
  /** Bytes that reached the file (zeros skipped). */
  writtenBytes: number;
}

/** How a writer records what is durable, so that a fetch killed later can resume (image/resume-file.ts). */
export interface CheckpointPolicy {
  /** Take a checkpoint once this many bytes were accepted since the last one. */
  everyBytes: number;
  /**
   * Whether a record could be saved now (the source has a length and a validator, and is not decoded as it
   * arrives): a checkpoint that can record nothing would only be a sync, which write-back decides.
   */
  wanted: () => boolean;
  /** Called once bytes [0, `bytes`) are durable on disk (written, the length set, fdatasync'd). */
  save: (bytes: number) => Promise<void>;
  /** Called before the file is truncated for a restart: the record must go first, or it would claim lost bytes. */
  drop: () => Promise<void>;
}

/** Sequential sparse writer over an open file; it also feeds every byte, in order, to its hasher. */
export class SparseWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushedTo = 0;
  /** Bytes actually written (not skipped as zeros). */
  written = 0;
  private inFlight: Promise<void>[] = [];
  /** Hashing happens strictly in order, after each block's write. */
  private hashChain: Promise<void> = Promise.resolve();
  private failure?: unknown;
  /**
   * Background syncs and the bound on unsynced bytes (core/write-back.ts); none: no background sync and no
   * bound, only the checkpoints' syncs.
   */
  writeBack?: WriteBackPolicy;
  /** Durable checkpoints for a resume after a crash; none when unset. */
  checkpoints?: CheckpointPolicy;
  private checkpointedAt = 0;
  /** The one sync in flight, a write-back sync or a checkpoint (with checkpoints every sync is one); settles, never rejects. */
  private syncing?: Promise<void>;
  private wb: WriteBackState = IdleWriteBack;
  /** Writes held by the bound, woken whenever a write or a sync lands. */
  private waiters: (() => void)[] = [];
  private readonly counts = { syncs: 0, holds: 0, peak: 0 };

  constructor(
    private readonly fh: FileHandle,
    private readonly hasher: Hasher,
  ) {}

  /**
   * Continues a file whose first `offset` bytes are kept (a resumed download); the caller has truncated the file
   * to `offset` and given those bytes to the hasher already. Call before the first write.
   */
  resumeAt(offset: number): void {
    this.flushedTo = offset;
    this.checkpointedAt = offset;
  }

  /** Bytes accepted so far: the logical length of the file. */
  get position(): number {
    return this.flushedTo + this.pendingBytes;
  }

  /** What write-back did so far. */
  get writeBackStats(): WriteBackStats {
    return { syncs: this.counts.syncs, holds: this.counts.holds, peakUnsyncedBytes: this.counts.peak, writtenBytes: this.written };
  }

  /**
   * Appends `chunk`; data reaches the file in blocks of about 1 MiB. Up to `maxFlushesInFlight` blocks are written
   * while more bytes arrive, so the socket is not paused on every disk write; the hasher sees them in order.
   * A block waits while the write-back bound is reached, until the sync in flight lands.
   */
  async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < flushBytes) return;
    await this.admit(this.pendingBytes);
    const flushed = this.flush(false);
    flushed.catch(() => undefined); // observed through `failure`, drain() and the shift below
    this.inFlight.push(flushed);
    if (this.inFlight.length > maxFlushesInFlight) await this.inFlight.shift();
    const cp = this.wantedCheckpoints();
    if (cp && !this.wb.syncInFlight && this.flushedTo - this.checkpointedAt >= cp.everyBytes) await this.startSync();
    else if (this.writeBack && planWriteBack(this.wb, this.writeBack, 0).startSync) await this.startSync();
  }

  /** Holds a block of `bytes` while the policy says so, starting the sync it asks for. */
  private async admit(bytes: number): Promise<void> {
    const policy = this.writeBack;
    if (!policy) return;
    let held = false;
    for (;;) {
      if (this.failure) throw this.failure;
      const step = planWriteBack(this.wb, policy, bytes);
      if (step.startSync) {
        await this.startSync();
        continue;
      }
      if (!step.wait) return;
      if (!held) this.counts.holds++;
      held = true;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private wantedCheckpoints(): CheckpointPolicy | undefined {
    return this.checkpoints?.wanted() ? this.checkpoints : undefined;
  }

  private notify(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /**
   * Starts the one sync: an fdatasync of what has landed and, with checkpoints, the record after it. Resolves once
   * the sync is under way; only a checkpoint holds up the download, for the blocks already being written.
   */
  private startSync(): Promise<void> {
    this.wb = syncStarted(this.wb);
    this.counts.syncs++;
    let underWay = () => {};
    const started = new Promise<void>((resolve) => (underWay = resolve));
    const settle = (e?: unknown) => {
      if (e !== undefined) this.failure ??= e;
      this.syncing = undefined;
      this.wb = syncLanded(this.wb);
      this.notify();
    };
    this.syncing = this.runSync(underWay).then(() => settle(), (e: unknown) => settle(e ?? new Error("sync failed")));
    return started;
  }

  /**
   * A checkpoint makes bytes [0, flushedTo) durable and then records them, in that order. Setting the length is
   * safe once the blocks being written have landed and before any more are issued (the caller waits for
   * `underWay`): a trailing hole then counts, and the file is never shorter than a record claims.
   */
  private async runSync(underWay: () => void): Promise<void> {
    const cp = this.wantedCheckpoints();
    let at = 0;
    try {
      if (cp) {
        await Promise.allSettled(this.inFlight.splice(0));
        if (this.failure) throw this.failure;
        at = this.flushedTo;
        await this.fh.truncate(at);
        this.checkpointedAt = at;
        // The blocks that landed meanwhile are covered too: the fdatasync starts after them.
        this.wb = syncStarted(this.wb);
      }
    } finally {
      underWay();
    }
    await this.fh.datasync();
    if (cp) await cp.save(at);
  }

  /** Drops everything and starts again at offset 0 (a download that must restart). */
  async reset(): Promise<void> {
    await this.drain();
    await this.checkpoints?.drop();
    this.checkpointedAt = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.flushedTo = 0;
    this.written = 0;
    this.wb = IdleWriteBack;
    this.hasher.reset();
    await this.fh.truncate(0);
  }

  /** Digests of all bytes written since the last reset (call after `finish`). */
  digest(): Promise<Digests> {
    return this.hasher.digest();
  }

  /** Waits for the blocks being written and hashed and for the sync in flight; rethrows the first failure. */
  async drain(): Promise<void> {
    const all = this.inFlight.splice(0);
    await Promise.allSettled(all);
    await this.syncing;
    await this.hashChain.catch(() => undefined);
    if (this.failure) throw this.failure;
  }

  /** Writes what is pending, sets the final length (trailing holes) and optionally fsyncs. */
  async finish(sync: boolean): Promise<void> {
    await this.drain();
    await this.flush(true);
    await this.hashChain;
    await this.fh.truncate(this.flushedTo);
    if (sync) await this.fh.sync();
  }

  private async flush(all: boolean): Promise<void> {
    if (this.pendingBytes === 0) return;
    // A buffer of our own (recycled from the hasher when it can), so that the hasher may take it over once written.
    const full = this.ownBuffer(this.pendingBytes);
    const buf = full.subarray(0, this.pendingBytes);
    // Keep block alignment relative to the file: flush whole blocks unless this is the end.
    const usable = all ? buf.length : buf.length - ((this.flushedTo + buf.length) % SparseBlockBytes);
    const at = this.flushedTo;
    this.flushedTo += usable;
    const rest = buf.subarray(usable);
    this.pending = rest.length ? [Buffer.from(rest)] : [];
    this.pendingBytes = rest.length;
    // The whole block counts as unsynced while it is written (its zeros may turn out holes): an upper bound.
    this.wb = writeIssued(this.wb, usable);
    this.counts.peak = Math.max(this.counts.peak, unsyncedBytes(this.wb));
    const landed = { bytes: 0 };
    const written = this.writeSparse(buf.subarray(0, usable), at, landed).finally(() => {
      this.wb = writeLanded(this.wb, usable, landed.bytes);
      this.notify();
    });
    written.catch(() => undefined); // awaited below, possibly after it fails: keep that from counting as unhandled
    // The block counts as flushed once it is written and handed to the hasher: the hasher's own backpressure
    // (bytes in flight to its worker) then bounds memory when hashing is slower than the network.
    const hashed = this.hashChain.then(async () => {
      await written;
      await this.hasher.update(full, usable);
    });
    this.hashChain = hashed;
    await hashed.catch((e: unknown) => {
      this.failure ??= e;
      throw e;
    });
  }

  /** A whole buffer (it owns its ArrayBuffer) of at least `size` bytes, holding the pending chunks. */
  private ownBuffer(size: number): Buffer {
    let buf = this.hasher.takeFree();
    if (!buf || buf.length < size) buf = Buffer.allocUnsafeSlow(Math.max(size, bufferBytes));
    let o = 0;
    for (const c of this.pending) o += c.copy(buf, o);
    return buf;
  }

  private async writeSparse(buf: Buffer, at: number, landed: { bytes: number }): Promise<void> {
    let runStart = -1;
    const headGap = (SparseBlockBytes - (at % SparseBlockBytes)) % SparseBlockBytes;
    const blocks: [number, number][] = [];
    if (headGap > 0) blocks.push([0, Math.min(headGap, buf.length)]);
    for (let o = headGap; o < buf.length; o += SparseBlockBytes) blocks.push([o, Math.min(o + SparseBlockBytes, buf.length)]);
    // Test 64 KiB granules first: one compare instead of sixteen over the long zero runs of a disk image.
    let zeroUntil = -1;
    let granuleFrom = 0;
    for (const [s, e] of blocks) {
      if (s >= granuleFrom && e - s === SparseBlockBytes && s + granuleBytes <= buf.length) {
        granuleFrom = s + granuleBytes;
        if (buf.subarray(s, granuleFrom).equals(zeroGranule)) zeroUntil = granuleFrom;
      }
      const zero = s < zeroUntil || (e - s === SparseBlockBytes ? buf.subarray(s, e).equals(zeroBlock) : isZero(buf.subarray(s, e)));
      if (!zero && runStart < 0) runStart = s;
      if (zero && runStart >= 0) {
        await this.writeAll(buf.subarray(runStart, s), at + runStart, landed);
        runStart = -1;
      }
    }
    if (runStart >= 0) await this.writeAll(buf.subarray(runStart), at + runStart, landed);
  }

  private async writeAll(buf: Buffer, at: number, landed: { bytes: number }): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, at + done);
      done += bytesWritten;
      landed.bytes += bytesWritten;
    }
    this.written += buf.length;
  }
}

function isZero(b: Buffer): boolean {
  return b.equals(zeroBlock.subarray(0, b.length));
}
