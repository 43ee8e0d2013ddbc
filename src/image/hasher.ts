/**
 * Digests of the disk bytes, computed off the main thread: buffers are transferred (not copied) to a worker that
 * hashes them in order, so hashing overlaps with the download and the disk writes instead of stalling the
 * socket. Falls back to hashing inline when a worker cannot start.
 */
import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { Worker } from "node:worker_threads";

/** Digests (lowercase hex) of everything given to a Hasher since its last reset. */
export interface Digests {
  sha256: string;
  extra?: string;
}

/**
 * Hashes a stream of buffers in order. `update` hashes the first `length` bytes of `buf` and may take ownership
 * of `buf` (the caller must not use it afterwards).
 */
export interface Hasher {
  update(buf: Buffer, length?: number): Promise<void>;
  /** A buffer given to `update` earlier and done with, for the caller to fill again (fewer allocations, less GC). */
  takeFree(): Buffer | undefined;
  reset(): void;
  digest(): Promise<Digests>;
  close(): Promise<void>;
}

const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
let h, x;
const fresh = () => { h = createHash("sha256"); x = workerData.extra ? createHash(workerData.extra) : undefined; };
fresh();
parentPort.on("message", (m) => {
  if (m.t === "u") { const b = Buffer.from(m.b, 0, m.n); h.update(b); if (x) x.update(b); parentPort.postMessage({ t: "a", n: m.n, b: m.b }, [m.b]); }
  else if (m.t === "r") fresh();
  else if (m.t === "d") { parentPort.postMessage({ t: "d", sha256: h.digest("hex"), extra: x ? x.digest("hex") : undefined }); fresh(); }
});
`;

/** Bytes in flight to the worker before `update` waits for it to catch up. */
const maxInFlight = 8 * 1024 * 1024;

/** Buffers kept for reuse; beyond this they are left to the garbage collector. */
const maxFree = 4;

class WorkerHasher implements Hasher {
  private inFlight = 0;
  private free: Buffer[] = [];
  private waiters: (() => void)[] = [];
  private digestWaiter?: (d: Digests) => void;
  private failure?: Error;

  constructor(private readonly worker: Worker) {
    worker.on("message", (m: { t: string; n?: number; b?: ArrayBuffer; sha256?: string; extra?: string }) => {
      if (m.t === "a") {
        this.inFlight -= m.n ?? 0;
        if (m.b && this.free.length < maxFree) this.free.push(Buffer.from(m.b));
        if (this.inFlight <= maxInFlight) for (const w of this.waiters.splice(0)) w();
      } else if (m.t === "d") {
        this.digestWaiter?.({ sha256: m.sha256 ?? "", ...(m.extra ? { extra: m.extra } : {}) });
      }
    });
    worker.on("error", (e) => {
      this.failure = e;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  async update(buf: Buffer, length = buf.length): Promise<void> {
    if (this.failure) throw this.failure;
    // Transfer only a buffer that owns its whole ArrayBuffer; anything else is copied first.
    const whole = buf.byteOffset === 0 && buf.buffer.byteLength === buf.length && !(buf.buffer instanceof SharedArrayBuffer);
    const own = whole ? buf : Buffer.from(buf.subarray(0, length));
    const ab = own.buffer as ArrayBuffer;
    this.inFlight += length;
    this.worker.postMessage({ t: "u", b: ab, n: length }, [ab]);
    if (this.inFlight > maxInFlight) await new Promise<void>((r) => this.waiters.push(r));
  }

  takeFree(): Buffer | undefined {
    return this.free.pop();
  }

  reset(): void {
    this.worker.postMessage({ t: "r" });
  }

  digest(): Promise<Digests> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve) => {
      this.digestWaiter = resolve;
      this.worker.postMessage({ t: "d" });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

class InlineHasher implements Hasher {
  private h!: Hash;
  private x?: Hash;
  constructor(private readonly extra?: string) {
    this.reset();
  }
  private free?: Buffer;
  async update(buf: Buffer, length = buf.length): Promise<void> {
    const b = buf.subarray(0, length);
    this.h.update(b);
    this.x?.update(b);
    this.free = buf;
  }
  takeFree(): Buffer | undefined {
    const b = this.free;
    this.free = undefined;
    return b;
  }
  reset(): void {
    this.h = createHash("sha256");
    this.x = this.extra ? createHash(this.extra) : undefined;
  }
  async digest(): Promise<Digests> {
    const d: Digests = { sha256: this.h.digest("hex"), ...(this.x ? { extra: this.x.digest("hex") } : {}) };
    this.reset();
    return d;
  }
  async close(): Promise<void> {}
}

/** A hasher for sha256 (and `extra`, e.g. "sha512"), in a worker thread when one can start. */
export function createHasher(extra?: string, inline = false): Hasher {
  if (!inline) {
    try {
      const w = new Worker(workerSource, { eval: true, workerData: { extra } });
      w.unref();
      return new WorkerHasher(w);
    } catch {
      // Fall through to hashing on the main thread.
    }
  }
  return new InlineHasher(extra);
}

const readBackBytes = 1024 * 1024;

/**
 * Reads bytes [start, start + length) of `fh` into `hasher`, in order, in buffers the hasher hands back.
 * @throws the error `short` makes when the file ends before them (with the offset where it ended)
 */
export async function hashFileRange(fh: FileHandle, hasher: Hasher, start: number, length: number, short: (endedAt: number) => Error, signal?: AbortSignal): Promise<void> {
  for (let at = start, end = start + length; at < end; ) {
    signal?.throwIfAborted();
    const want = Math.min(readBackBytes, end - at);
    let buf = hasher.takeFree();
    if (!buf || buf.length < want) buf = Buffer.allocUnsafeSlow(readBackBytes);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, at + got);
      if (bytesRead === 0) throw short(at + got);
      got += bytesRead;
    }
    await hasher.update(buf, want);
    at += want;
  }
}
