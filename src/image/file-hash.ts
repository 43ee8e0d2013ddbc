/**
 * The SHA-256 of a whole file of ours, read through a descriptor opened without following links (safe-fs.ts)
 * and hashed off the main thread (hasher.ts): what a base's sidecar records as `raw.sha256` when it is stored,
 * and what the agent's re-verification computes again. Holes are not read: `qemu-img map` (SEEK_DATA/SEEK_HOLE
 * on a raw file) names them, and zeros are hashed in their place. Reading a hole would have the kernel fill the
 * page cache with zero pages, seconds of system time per GiB of a sparse base (measured by bench/fetch).
 */
import { createHasher, hashFileRange, type Hasher } from "./hasher.js";
import { qemuImgExtents, type MapExtent } from "./qemu-img.js";
import { descriptorPath, openOwnFile } from "./safe-fs.js";

const chunkBytes = 1024 * 1024;

/**
 * Hashes `path` from its first byte to its end.
 * @throws Error when the file is gone or not a file of ours (ForeignFileError from safe-fs), on a read error,
 *   or when qemu-img cannot map it
 */
export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const fh = await openOwnFile(path, "read");
  if (!fh) throw new Error(`Cannot hash "${path}": it is gone`);
  const hasher = createHasher();
  try {
    const size = (await fh.stat()).size;
    const extents = coverage(await qemuImgExtents(descriptorPath(fh), "raw", signal ? { signal } : {}), size);
    for (const e of extents) {
      if (e.zero) await hashZeros(hasher, e.length, signal);
      else await hashFileRange(fh, hasher, e.start, e.length, (endedAt) => new Error(`Cannot hash "${path}": it ended at ${endedAt} bytes, ${e.start + e.length} were expected`), signal);
    }
    return { sha256: (await hasher.digest()).sha256, bytes: size };
  } finally {
    await hasher.close();
    await fh.close();
  }
}

// The map must cover [0, size) in order; anything else (a file that changed under us) is read whole.
function coverage(extents: readonly MapExtent[], size: number): MapExtent[] {
  let at = 0;
  for (const e of extents) {
    if (e.start !== at || e.length < 0) return [{ start: 0, length: size, zero: false }];
    at += e.length;
  }
  return at === size ? [...extents] : [{ start: 0, length: size, zero: false }];
}

async function hashZeros(hasher: Hasher, length: number, signal?: AbortSignal): Promise<void> {
  for (let left = length; left > 0; ) {
    signal?.throwIfAborted();
    const n = Math.min(chunkBytes, left);
    // A fresh buffer each time: the hasher may take a buffer over (transferred to its worker).
    const free = hasher.takeFree();
    const buf = free && free.length >= n ? free.fill(0, 0, n) : Buffer.alloc(chunkBytes);
    await hasher.update(buf, n);
    left -= n;
  }
}
