/**
 * Pure random access over the parts of a file that the edge has read so far. A parser that reads a byte the
 * window does not hold throws `NeedBytes`; the edge reads that range and runs the parser again. This keeps the
 * header parsers free of I/O while letting them follow offsets anywhere in a file.
 */

/** Bytes of one file that have been read: its total size and some ranges of it. */
export interface ByteWindow {
  size: number;
  chunks: readonly { offset: number; data: Uint8Array }[];
}

/** Thrown by a ByteReader when a parser needs bytes the window does not hold. */
export class NeedBytes extends Error {
  constructor(
    readonly offset: number,
    readonly length: number,
  ) {
    super(`Need bytes ${offset}+${length}`);
    this.name = "NeedBytes";
  }
}

/** Thrown by a ByteReader when a parser reads past the end of the file. */
export class PastEnd extends Error {
  constructor(
    readonly offset: number,
    readonly length: number,
  ) {
    super(`Read past the end of the file at ${offset}+${length}`);
    this.name = "PastEnd";
  }
}

/** Typed reads over a ByteWindow. */
export class ByteReader {
  constructor(readonly window: ByteWindow) {}

  get size(): number {
    return this.window.size;
  }

  /** The bytes at offset..offset+length.
   * @throws PastEnd beyond the file, NeedBytes when not read yet */
  bytes(offset: number, length: number): Uint8Array {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.window.size) {
      throw new PastEnd(offset, length);
    }
    for (const c of this.window.chunks) {
      if (offset >= c.offset && offset + length <= c.offset + c.data.length) {
        return c.data.subarray(offset - c.offset, offset - c.offset + length);
      }
    }
    throw new NeedBytes(offset, length);
  }

  /** True when the file is long enough to hold offset..offset+length. */
  has(offset: number, length: number): boolean {
    return offset >= 0 && offset + length <= this.window.size;
  }

  private view(offset: number, length: number): DataView {
    const b = this.bytes(offset, length);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  u8(o: number): number {
    return this.view(o, 1).getUint8(0);
  }
  u16le(o: number): number {
    return this.view(o, 2).getUint16(0, true);
  }
  u16be(o: number): number {
    return this.view(o, 2).getUint16(0, false);
  }
  u32le(o: number): number {
    return this.view(o, 4).getUint32(0, true);
  }
  u32be(o: number): number {
    return this.view(o, 4).getUint32(0, false);
  }
  /** A little-endian u64 as a number; values above 2^53 become Infinity so size checks refuse them. */
  u64le(o: number): number {
    return toSafe(this.view(o, 8).getBigUint64(0, true));
  }
  /** A big-endian u64 as a number; values above 2^53 become Infinity so size checks refuse them. */
  u64be(o: number): number {
    return toSafe(this.view(o, 8).getBigUint64(0, false));
  }
  /** Latin-1 text of the bytes (header magics and descriptors are ASCII). */
  ascii(o: number, length: number): string {
    let s = "";
    for (const b of this.bytes(o, length)) s += String.fromCharCode(b);
    return s;
  }
  /** Whether the bytes at `o` equal `magic` (false when the file is too short). */
  startsWith(o: number, magic: string): boolean {
    return this.has(o, magic.length) && this.ascii(o, magic.length) === magic;
  }
}

function toSafe(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(v);
}
