/** Reads just enough of an image file for the pure header inspector (core/image-header.ts). */
import type { FileHandle } from "node:fs/promises";
import { ByteReader } from "../core/byte-window.js";
import { HeaderProbeBytes, inspectHeader, textualContent, type HeaderFacts } from "../core/image-header.js";
import { ImageRejectedError } from "../lib/errors.js";
import { openRegularFile } from "./safe-fs.js";

const MaxPasses = 16;
const MaxRead = 4 * 1024 * 1024;

/**
 * Runs the header inspector on the regular file at `path`, reading the ranges it asks for. A FIFO or device is
 * refused without blocking; a final symlink is followed unless `follow` is false.
 * @throws ForeignFileError when the path is not a regular file
 */
export async function readHeaderFacts(path: string, opts: { follow?: boolean } = {}): Promise<HeaderFacts> {
  const fh = await openRegularFile(path, opts.follow ?? true);
  try {
    const { size } = await fh.stat();
    const read = async (offset: number, length: number) => {
      const len = Math.max(0, Math.min(length, size - offset, MaxRead));
      const data = Buffer.alloc(len);
      const { bytesRead } = await fh.read(data, 0, len, offset);
      return { offset, data: data.subarray(0, bytesRead) };
    };
    const chunks = [await read(0, HeaderProbeBytes)];
    if (size > HeaderProbeBytes) chunks.push(await read(size - 512, 512));
    for (let pass = 0; pass < MaxPasses; pass++) {
      const r = inspectHeader({ size, chunks });
      if (r.done) return r.facts;
      chunks.push(await read(r.need.offset, Math.max(r.need.length, 4096)));
    }
    // A header that sends us chasing structures all over the file is refused, not an internal error.
    throw new ImageRejectedError("inspect-failed", `Refused image at "${path}": its header needs more than ${MaxPasses} reads to inspect`);
  } finally {
    await fh.close();
  }
}

/**
 * Facts about a file that is raw by construction (a base, open as `fh`): its size and whether its start is
 * plainly text. Our inspector's format detection is not used, because a raw disk may hold any bytes, magic
 * numbers included.
 */
export async function readRawFacts(fh: FileHandle): Promise<HeaderFacts> {
  const { size } = await fh.stat();
  const data = Buffer.alloc(Math.min(size, 4096));
  await fh.read(data, 0, data.length, 0);
  const facts: HeaderFacts = { format: "raw", fileSize: size, virtualSize: size };
  const why = textualContent(new ByteReader({ size, chunks: [{ offset: 0, data }] }));
  if (why) facts.notADisk = why;
  return facts;
}
