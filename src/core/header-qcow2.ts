import type { ByteReader } from "./byte-window.js";
import type { HeaderFacts } from "./image-header.js";

// Incompatible feature bits of qcow2 v3 (docs/interop/qcow2.txt).
const IncompatDirty = 1n << 0n;
const IncompatCorrupt = 1n << 1n;
const IncompatDataFile = 1n << 2n;
const IncompatCompression = 1n << 3n;
const IncompatExtendedL2 = 1n << 4n;
const KnownIncompat = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2;

// Header extension types.
const ExtEnd = 0x00000000;
const ExtBackingFormat = 0xe2792aca;
const ExtFeatureTable = 0x6803f857;
const ExtBitmaps = 0x23852875;
const ExtFullDiskEncryption = 0x0537be77;
const ExtDataFile = 0x44415441;

const MaxExtensions = 256;

/** Parses a qcow2 header (v2 or v3) and its extensions. */
export function parseQcow2(r: ByteReader, base: HeaderFacts): HeaderFacts {
  const facts: HeaderFacts = { ...base };
  const version = r.u32be(4);
  facts.subformat = `v${version}`;
  if (version !== 2 && version !== 3) return { ...facts, unknownFeatures: `qcow2 version ${version}` };
  const backingOffset = r.u64be(8);
  const backingSize = r.u32be(16);
  const clusterBits = r.u32be(20);
  facts.virtualSize = r.u64be(24);
  const cryptMethod = r.u32be(32);
  if (cryptMethod !== 0) facts.encrypted = true;
  if (clusterBits < 9 || clusterBits > 21) return { ...facts, corrupt: `cluster bits ${clusterBits} outside 9..21` };
  const clusterSize = 2 ** clusterBits;
  facts.clusterBytes = clusterSize;
  facts.tableBytes = r.u32be(36) * 8 + r.u32be(56) * clusterSize;
  if (backingOffset !== 0) {
    facts.backingFile = backingSize > 0 && backingSize <= 4096 && backingOffset + backingSize <= clusterSize
      ? decodeName(r.bytes(backingOffset, backingSize))
      : `(name at offset ${backingOffset}, ${backingSize} bytes)`;
  }
  checkTables(r, facts, clusterSize);
  if (facts.corrupt) return facts;
  let headerLength = 72;
  if (version === 3) {
    const incompat = r.bytes(72, 8);
    const bits = new DataView(incompat.buffer, incompat.byteOffset, 8).getBigUint64(0, false);
    headerLength = r.u32be(100);
    if (headerLength < 104 || headerLength > clusterSize) return { ...facts, corrupt: `header length ${headerLength} is invalid` };
    if (bits & IncompatCorrupt) facts.corrupt = "the corrupt bit is set";
    else if (bits & IncompatDirty) facts.corrupt = "the dirty bit is set: refcounts were not written back";
    if (bits & IncompatDataFile) facts.dataFile = "(external data file bit set)";
    const unknown = bits & ~KnownIncompat;
    if (unknown) facts.unknownFeatures = `incompatible feature bits 0x${unknown.toString(16)}`;
    if (bits & IncompatCompression && headerLength > 104) {
      const t = r.u8(104);
      facts.compressionType = t === 0 ? "zlib" : t === 1 ? "zstd" : `unknown (${t})`;
      if (t > 1) facts.unknownFeatures = `compression type ${t}`;
    }
  }
  parseExtensions(r, facts, headerLength, clusterSize);
  return facts;
}

function checkTables(r: ByteReader, facts: HeaderFacts, clusterSize: number): void {
  const l1Size = r.u32be(36);
  const l1Offset = r.u64be(40);
  const refcountOffset = r.u64be(48);
  const refcountClusters = r.u32be(56);
  const tableEnd = (offset: number, bytes: number) => offset + bytes;
  if (l1Size > 0 && (l1Offset % clusterSize !== 0 || tableEnd(l1Offset, l1Size * 8) > facts.fileSize)) {
    facts.corrupt = `the L1 table (${l1Size} entries at ${l1Offset}) lies outside the file`;
  } else if (refcountOffset % clusterSize !== 0 || refcountClusters === 0 || tableEnd(refcountOffset, refcountClusters * clusterSize) > facts.fileSize) {
    facts.corrupt = `the refcount table (${refcountClusters} clusters at ${refcountOffset}) lies outside the file`;
  } else if (facts.virtualSize !== undefined && !Number.isFinite(facts.virtualSize)) {
    facts.corrupt = "the virtual size does not fit in 53 bits";
  }
}

function parseExtensions(r: ByteReader, facts: HeaderFacts, start: number, clusterSize: number): void {
  let off = start;
  for (let i = 0; i < MaxExtensions; i++) {
    if (off + 8 > clusterSize || off + 8 > facts.fileSize) {
      facts.corrupt ??= "header extensions run past the first cluster";
      return;
    }
    const type = r.u32be(off);
    const len = r.u32be(off + 4);
    if (type === ExtEnd) return;
    if (off + 8 + len > clusterSize) {
      facts.corrupt ??= `header extension 0x${type.toString(16)} runs past the first cluster`;
      return;
    }
    if (type === ExtDataFile) facts.dataFile = decodeName(r.bytes(off + 8, Math.min(len, 4096)));
    else if (type === ExtBackingFormat) facts.backingFormat = decodeName(r.bytes(off + 8, Math.min(len, 64)));
    else if (type === ExtFullDiskEncryption) facts.encrypted = true;
    else if (type !== ExtBackingFormat && type !== ExtFeatureTable && type !== ExtBitmaps) {
      // Unknown extensions are ignorable by the spec; they do not change how the image is read.
    }
    off += 8 + Math.ceil(len / 8) * 8;
  }
  facts.corrupt ??= "too many header extensions";
}

function decodeName(b: Uint8Array): string {
  return new TextDecoder("utf-8", { fatal: false }).decode(b);
}
