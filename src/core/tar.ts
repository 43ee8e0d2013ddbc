/**
 * A streaming tar reader: ustar, pax (local `path`, `linkpath`, `size`) and GNU (`././@LongLink` names,
 * base-256 sizes). Pure and incremental: feed it chunks, get back entries and views of their data, never
 * more than one 512-byte header or one bounded metadata record held in memory.
 */
import type { RejectReason } from "./reject-reasons.js";

/** Why an archive was refused, with one of the refusal reasons of core/reject-reasons.ts. */
export class TarFormatError extends Error {
  constructor(
    readonly reason: Extract<RejectReason, "corrupt" | "not-a-disk" | "too-large" | "unsupported-format">,
    message: string,
  ) {
    super(message);
    this.name = "TarFormatError";
  }
}

export const BlockSize = 512;
/** Largest pax or GNU long-name record we keep; real ones are a few hundred bytes. */
export const MaxMetadataBytes = 1024 * 1024;

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "char-device" | "block-device" | "fifo" | "sparse" | "other";

export interface TarEntry {
  /** The path as stored (after pax and GNU long names), not normalised. */
  path: string;
  type: TarEntryType;
  /** Bytes of data that follow the header. */
  size: number;
  linkPath: string;
  typeflag: string;
}

export type TarEvent = { kind: "entry"; entry: TarEntry } | { kind: "data"; bytes: Uint8Array } | { kind: "entry-end" };

/** The fields of one raw header block, before pax or long names apply. */
export interface RawTarHeader {
  name: string;
  size: number;
  typeflag: string;
  linkName: string;
}

const utf8 = new TextDecoder("utf-8");

// A NUL-terminated (or full-width) text field of a header block.
function decodeField(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return utf8.decode(nul >= 0 ? field.subarray(0, nul) : field);
}

/**
 * Parses a numeric header field: octal ASCII padded with spaces or NULs, or GNU base-256 (first byte 0x80).
 * @throws TarFormatError (corrupt) for a negative, non-octal or unsafe number
 */
export function parseTarNumber(field: Uint8Array): number {
  const first = field[0] ?? 0;
  if (first & 0x80) {
    if (first !== 0x80) throw new TarFormatError("corrupt", "tar header holds a negative base-256 number");
    let value = 0;
    for (const byte of field.subarray(1)) {
      value = value * 256 + byte;
      if (!Number.isSafeInteger(value)) throw new TarFormatError("corrupt", "tar header holds a number too large to handle");
    }
    return value;
  }
  const text = utf8.decode(field).replace(/[\0 ]+$/, "").replace(/^[ \0]+/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError("corrupt", `tar header holds a non-octal number "${text.replace(/[^\x20-\x7e]/g, "?")}"`);
  const value = parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw new TarFormatError("corrupt", "tar header holds a number too large to handle");
  return value;
}

/** True when the block is all zeros (an end-of-archive marker). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (const b of block) if (b !== 0) return false;
  return true;
}

/**
 * Parses one 512-byte header block and verifies its checksum (the unsigned sum, or the signed sum old tars wrote).
 * @throws TarFormatError (corrupt) for a bad checksum or bad numeric field
 */
export function parseTarHeader(block: Uint8Array): RawTarHeader {
  if (block.length !== BlockSize) throw new RangeError(`Cannot parse tar header: block is ${block.length} bytes, not ${BlockSize}`);
  const stored = parseTarNumber(block.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BlockSize; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) throw new TarFormatError("corrupt", "tar header checksum does not match");
  const magic = decodeField(block, 257, 6);
  const version = decodeField(block, 263, 2);
  let name = decodeField(block, 0, 100);
  // POSIX ustar splits long names into prefix/name; old GNU tar ("ustar  ") keeps other fields there.
  if (magic === "ustar" && version === "00") {
    const prefix = decodeField(block, 345, 155);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const typeflag = String.fromCharCode(block[156] ?? 0);
  return { name, size: parseTarNumber(block.subarray(124, 136)), typeflag: typeflag === "\0" ? "0" : typeflag, linkName: decodeField(block, 157, 100) };
}

/**
 * Parses pax extended header records (`"<len> <key>=<value>\n"`, the length counting the whole record).
 * @throws TarFormatError (corrupt) for a malformed record
 */
export function parsePaxRecords(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding after the last record
    const space = data.indexOf(0x20, pos);
    const lenText = space > pos ? utf8.decode(data.subarray(pos, space)) : "";
    if (!/^[1-9][0-9]{0,9}$/.test(lenText)) throw new TarFormatError("corrupt", "pax header has a malformed record length");
    const end = pos + Number(lenText);
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a) throw new TarFormatError("corrupt", "pax header has a record that overruns or lacks its newline");
    const record = utf8.decode(data.subarray(space + 1, end - 1));
    const eq = record.indexOf("=");
    if (eq <= 0) throw new TarFormatError("corrupt", "pax header has a record without a key");
    out[record.slice(0, eq)] = record.slice(eq + 1);
    pos = end;
  }
  return out;
}

const typeByFlag: Record<string, TarEntryType> = {
  "0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
  S: "sparse",
};

// Entry types whose size field says nothing about data that follows (as Go's archive/tar reads them).
const headerOnly = new Set<TarEntryType>(["hardlink", "symlink", "char-device", "block-device", "directory", "fifo"]);

type State = "header" | "data" | "meta" | "padding" | "done";

/** Incremental tar parser. `push` each chunk in order, then `finish`. */
export class TarParser {
  private state: State = "header";
  private readonly header = new Uint8Array(BlockSize);
  private headerFill = 0;
  private remaining = 0;
  private padding = 0;
  private meta: Uint8Array = new Uint8Array(0);
  private metaFill = 0;
  private metaKind = "";
  private pax: Record<string, string> | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;

  /**
   * Consumes a chunk. Data events are views into `chunk`, valid as long as the caller keeps it unchanged.
   * @throws TarFormatError for a corrupt or unsupported archive
   */
  push(chunk: Uint8Array): TarEvent[] {
    const events: TarEvent[] = [];
    let off = 0;
    while (off < chunk.length) {
      const avail = chunk.length - off;
      switch (this.state) {
        case "header": {
          const n = Math.min(BlockSize - this.headerFill, avail);
          this.header.set(chunk.subarray(off, off + n), this.headerFill);
          this.headerFill += n;
          off += n;
          if (this.headerFill === BlockSize) {
            this.headerFill = 0;
            this.onHeader(events);
          }
          break;
        }
        case "data": {
          const n = Math.min(this.remaining, avail);
          events.push({ kind: "data", bytes: chunk.subarray(off, off + n) });
          off += n;
          this.remaining -= n;
          if (this.remaining === 0) {
            events.push({ kind: "entry-end" });
            this.state = this.padding > 0 ? "padding" : "header";
          }
          break;
        }
        case "meta": {
          const n = Math.min(this.meta.length - this.metaFill, avail);
          this.meta.set(chunk.subarray(off, off + n), this.metaFill);
          this.metaFill += n;
          off += n;
          if (this.metaFill === this.meta.length) {
            this.onMeta();
            this.state = this.padding > 0 ? "padding" : "header";
          }
          break;
        }
        case "padding": {
          const n = Math.min(this.padding, avail);
          off += n;
          this.padding -= n;
          if (this.padding === 0) this.state = "header";
          break;
        }
        case "done":
          return events;
      }
    }
    return events;
  }

  /**
   * Ends the input. An archive may end at a header boundary without its zero blocks, as many writers leave it.
   * @throws TarFormatError (corrupt) when the input ended inside a header, a metadata record or an entry's data
   */
  finish(): void {
    if (this.state === "done") return;
    if (this.state === "data") throw new TarFormatError("corrupt", `tar archive ended ${this.remaining} bytes before the end of an entry`);
    if (this.state === "meta" || this.pax !== undefined || this.longName !== undefined || this.longLink !== undefined) {
      throw new TarFormatError("corrupt", "tar archive ended after an extended header with no entry");
    }
    if (this.state === "header" && this.headerFill !== 0) throw new TarFormatError("corrupt", "tar archive ended inside a header block");
    this.state = "done";
  }

  private onHeader(events: TarEvent[]): void {
    if (isZeroBlock(this.header)) {
      this.state = "done";
      return;
    }
    const raw = parseTarHeader(this.header);
    const flag = raw.typeflag;
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      if (raw.size > MaxMetadataBytes) throw new TarFormatError("corrupt", `tar extended header of ${raw.size} bytes is larger than ${MaxMetadataBytes}`);
      this.metaKind = flag;
      this.meta = new Uint8Array(raw.size);
      this.metaFill = 0;
      this.padding = padOf(raw.size);
      if (raw.size === 0) this.onMeta();
      this.state = raw.size === 0 ? (this.padding > 0 ? "padding" : "header") : "meta";
      return;
    }
    const entry = this.resolveEntry(raw);
    events.push({ kind: "entry", entry });
    const dataBytes = headerOnly.has(entry.type) ? 0 : entry.size;
    this.remaining = dataBytes;
    this.padding = padOf(dataBytes);
    if (dataBytes === 0) {
      events.push({ kind: "entry-end" });
      this.state = "header";
    } else {
      this.state = "data";
    }
  }

  private resolveEntry(raw: RawTarHeader): TarEntry {
    const pax = this.pax ?? {};
    let size = raw.size;
    if (pax.size !== undefined) {
      if (!/^[0-9]{1,16}$/.test(pax.size) || !Number.isSafeInteger(Number(pax.size))) throw new TarFormatError("corrupt", "pax header has an invalid size");
      size = Number(pax.size);
    }
    const isPaxSparse = Object.keys(pax).some((k) => k.startsWith("GNU.sparse."));
    const type = isPaxSparse ? "sparse" : (typeByFlag[raw.typeflag] ?? "other");
    const entry: TarEntry = {
      path: pax.path || this.longName || raw.name,
      type,
      size,
      linkPath: pax.linkpath || this.longLink || raw.linkName,
      typeflag: raw.typeflag,
    };
    this.pax = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    return entry;
  }

  private onMeta(): void {
    const data = this.meta;
    this.meta = new Uint8Array(0);
    if (this.metaKind === "x") this.pax = { ...this.pax, ...parsePaxRecords(data) };
    else if (this.metaKind === "L") this.longName = decodeField(data, 0, data.length);
    else if (this.metaKind === "K") this.longLink = decodeField(data, 0, data.length);
    // A global pax header ("g") sets defaults such as a comment; a global path or size would be meaningless.
  }
}

function padOf(size: number): number {
  const rem = size % BlockSize;
  return rem === 0 ? 0 : BlockSize - rem;
}
