/**
 * The SHA-256 of a whole file of ours, read through a descriptor opened without following links (safe-fs.ts)
 * and hashed off the main thread (hasher.ts): what a base's sidecar records as `raw.sha256` when it is stored,
 * and what the agent's re-verification computes again.
 */
import { createHasher } from "./hasher.js";
import { openOwnFile } from "./safe-fs.js";

const readBytes = 1024 * 1024;

/**
 * Hashes `path` from its first byte to its end.
 * @throws Error when the file is gone or not a file of ours (ForeignFileError from safe-fs), or on a read error
 */
export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const fh = await openOwnFile(path, "read");
  if (!fh) throw new Error(`Cannot hash "${path}": it is gone`);
  const hasher = createHasher();
  try {
    let at = 0;
    for (;;) {
      signal?.throwIfAborted();
      let buf = hasher.takeFree();
      if (!buf || buf.length < readBytes) buf = Buffer.allocUnsafeSlow(readBytes);
      const { bytesRead } = await fh.read(buf, 0, readBytes, at);
      if (bytesRead === 0) break;
      await hasher.update(buf, bytesRead);
      at += bytesRead;
    }
    return { sha256: (await hasher.digest()).sha256, bytes: at };
  } finally {
    await hasher.close();
    await fh.close();
  }
}
