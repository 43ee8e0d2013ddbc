import type { ByteReader } from "./byte-window.js";
import type { HeaderFacts } from "./image-header.js";

const RegionTableOffset = 192 * 1024;
const RegionBat = "2DC27766-F623-4200-9D64-115E9BFD4A08";
const RegionMetadata = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const ItemFileParameters = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
const ItemVirtualDiskSize = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const ItemParentLocator = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";
const KnownItems = new Set([
  ItemFileParameters,
  ItemVirtualDiskSize,
  ItemParentLocator,
  "BECA12AB-B2E6-4523-93EF-C309E000C746", // page 83 data
  "8141BF1D-A96F-4709-BA47-F233A8FAAB5F", // logical sector size
  "CDA348C7-445D-4471-9CC9-E9885251C556", // physical sector size
]);
const MaxEntries = 2047;

/** Formats the 16 bytes of a GUID stored in the mixed-endian Microsoft layout. */
export function guidAt(r: ByteReader, o: number): string {
  const hex = (n: number, w: number) => n.toString(16).padStart(w, "0");
  const tail = Array.from(r.bytes(o + 8, 8), (b) => hex(b, 2)).join("");
  return `${hex(r.u32le(o), 8)}-${hex(r.u16le(o + 4), 4)}-${hex(r.u16le(o + 6), 4)}-${tail.slice(0, 4)}-${tail.slice(4)}`.toUpperCase();
}

/** Parses a VHDX region table and metadata region: virtual size, parent (backing) and required unknowns. */
export function parseVhdx(r: ByteReader, base: HeaderFacts): HeaderFacts {
  const facts: HeaderFacts = { ...base };
  if (!r.startsWith(RegionTableOffset, "regi")) return { ...facts, corrupt: "the region table signature is missing" };
  const count = r.u32le(RegionTableOffset + 8);
  if (count > MaxEntries) return { ...facts, corrupt: `the region table has ${count} entries` };
  let metadata: { offset: number; length: number } | undefined;
  for (let i = 0; i < count; i++) {
    const e = RegionTableOffset + 16 + i * 32;
    const guid = guidAt(r, e);
    const offset = r.u64le(e + 16);
    const length = r.u32le(e + 24);
    const required = (r.u32le(e + 28) & 1) === 1;
    if (offset + length > r.size) return { ...facts, corrupt: `region ${guid} lies outside the file` };
    if (guid === RegionMetadata) metadata = { offset, length };
    else if (guid === RegionBat) facts.tableBytes = length; // qemu reads the whole BAT into memory
    else if (guid !== RegionBat && required) facts.unknownFeatures = `required region ${guid}`;
  }
  if (!metadata) return { ...facts, corrupt: "the metadata region is missing" };
  return parseMetadata(r, facts, metadata.offset, metadata.length);
}

function parseMetadata(r: ByteReader, facts: HeaderFacts, start: number, length: number): HeaderFacts {
  if (!r.startsWith(start, "metadata")) return { ...facts, corrupt: "the metadata table signature is missing" };
  const count = r.u16le(start + 10);
  if (32 + count * 32 > length) return { ...facts, corrupt: `the metadata table has ${count} entries` };
  for (let i = 0; i < count; i++) {
    const e = start + 32 + i * 32;
    const id = guidAt(r, e);
    const itemOffset = r.u32le(e + 16);
    const itemLength = r.u32le(e + 20);
    const required = (r.u32le(e + 24) & 4) !== 0;
    if (itemOffset + itemLength > length) return { ...facts, corrupt: `metadata item ${id} lies outside its region` };
    const at = start + itemOffset;
    if (id === ItemFileParameters && itemLength >= 8) {
      facts.clusterBytes = r.u32le(at);
      if ((r.u32le(at + 4) & 2) !== 0) facts.backingFile = "(parent locator)";
    } else if (id === ItemVirtualDiskSize && itemLength >= 8) {
      facts.virtualSize = r.u64le(at);
    } else if (id === ItemParentLocator) {
      facts.backingFile = "(parent locator)";
    } else if (!KnownItems.has(id) && required) {
      facts.unknownFeatures = `required metadata item ${id}`;
    }
  }
  if (facts.virtualSize === undefined) facts.corrupt = "the virtual disk size item is missing";
  return facts;
}
