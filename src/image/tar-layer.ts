/**
 * The disk inside a tar layer (a KubeVirt containerDisk, or an OCI artifact packed as tar): the one regular file
 * under `disk/`, or else the only regular file, streamed out as it arrives. Choosing the entry is core/tar-disk.ts.
 */
import { Readable, pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { TarDiskSelector, type DiskSelectorOptions } from "../core/tar-disk.js";
import { TarFormatError } from "../core/tar.js";
import { ImageRejectedError, asError } from "../lib/errors.js";

/**
 * Streams the disk file out of a tar layer (gzip-compressed or not, detected from its first bytes): the one
 * regular file under `disk/`, or else the only regular file. Errors with ImageRejectedError for an unsafe,
 * ambiguous or corrupt archive; errors of `input` pass through. Holds at most one small file in memory.
 */
export function extractDiskFromTar(input: Readable, opts: DiskSelectorOptions = {}): Readable {
  const disk = extractDisk(input, opts);
  return new Readable({
    read() {
      disk.next().then(
        (r) => void this.push(r.done ? null : r.value),
        (err: unknown) => this.destroy(asError(err)),
      );
    },
    // NOTE: not Readable.from: its destroy waits for the generator, which may be stuck awaiting a stalled
    // input, so a consumer that gives up would never release the input.
    destroy(err, cb) {
      if (!input.destroyed) input.destroy();
      disk.return(undefined).catch(() => {});
      cb(err);
    },
  });
}

async function* extractDisk(input: Readable, opts: DiskSelectorOptions): AsyncGenerator<Uint8Array> {
  const selector = new TarDiskSelector(opts);
  try {
    for await (const chunk of maybeGunzip(input)) {
      for (const bytes of selector.push(chunk)) yield bytes;
    }
    for (const bytes of selector.finish()) yield bytes;
  } catch (err) {
    const mapped = rejectionFor(err);
    // NOTE: the input dies with the same error, so a caller that also awaits the input's own pipeline sees
    // the refusal rather than a premature close that looks like a network failure worth retrying.
    if (!input.destroyed) input.destroy(mapped);
    throw mapped;
  } finally {
    if (!input.destroyed) input.destroy();
  }
}

function rejectionFor(err: unknown): Error {
  if (err instanceof TarFormatError) return new ImageRejectedError(err.reason, `Cannot extract the disk from its tar layer: ${err.message}`, { cause: err });
  if ((err as { code?: string } | null)?.code?.startsWith("Z_")) {
    return new ImageRejectedError("corrupt", `Cannot extract the disk from its tar layer: gzip data is corrupt (${(err as Error).message})`, { cause: err });
  }
  return asError(err);
}

async function* maybeGunzip(input: Readable): AsyncGenerator<Uint8Array> {
  const it: AsyncIterator<Buffer> = input[Symbol.asyncIterator]();
  let head: Buffer = Buffer.alloc(0);
  while (head.length < 2) {
    const next = await it.next();
    if (next.done) break;
    head = head.length === 0 ? next.value : Buffer.concat([head, next.value]);
  }
  const rest = async function* (): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  };
  if (head[0] !== 0x1f || head[1] !== 0x8b) {
    yield* rest();
    return;
  }
  const gunzip = createGunzip();
  pipeline(Readable.from(rest()), gunzip, () => {});
  yield* gunzip;
}
