import type { ByteReader } from "./byte-window.js";
import type { HeaderFacts } from "./image-header.js";

const VpcDiskTypes: Record<number, string> = { 2: "fixed", 3: "dynamic", 4: "differencing" };

/** True when the last 512 bytes hold a VHD footer (a fixed VHD has no copy at the start). */
export function vpcFooterAtEnd(r: ByteReader): boolean {
  return r.size >= 1024 && r.size % 512 === 0 && r.startsWith(r.size - 512, "conectix");
}

/** Parses a VHD (qemu "vpc") footer: disk type, current size and the CHS size. */
export function parseVpc(r: ByteReader, base: HeaderFacts): HeaderFacts {
  const at = r.startsWith(0, "conectix") ? 0 : r.size - 512;
  const type = r.u32be(at + 60);
  const facts: HeaderFacts = { ...base, subformat: VpcDiskTypes[type] ?? `type ${type}` };
  facts.virtualSize = r.u64be(at + 48);
  const cyls = r.u16be(at + 56);
  const heads = r.u8(at + 58);
  const spt = r.u8(at + 59);
  facts.altVirtualSize = cyls * heads * spt * 512;
  if (type === 4) facts.backingFile = "(differencing VHD parent)";
  else if (type !== 2 && type !== 3) facts.unknownFeatures = `VHD disk type ${type}`;
  if (type === 3) {
    const dataOffset = r.u64be(at + 16);
    if (dataOffset + 1024 > r.size) return { ...facts, corrupt: `the dynamic header at ${dataOffset} lies outside the file` };
    if (!r.startsWith(dataOffset, "cxsparse")) return { ...facts, corrupt: "the dynamic header signature is missing" };
    const parentName = r.bytes(dataOffset + 64, 512);
    if (parentName.some((b) => b !== 0)) facts.backingFile = "(parent unicode name in dynamic header)";
    // The block allocation table (4 bytes a block) is read whole.
    facts.tableBytes = r.u32be(dataOffset + 28) * 4;
    facts.clusterBytes = r.u32be(dataOffset + 32);
  }
  return facts;
}

const VdiTypes: Record<number, string> = { 1: "dynamic", 2: "fixed", 3: "undo", 4: "diff" };

/** Parses a VDI header (v1.1): image type, disk size, parent UUID. */
export function parseVdi(r: ByteReader, base: HeaderFacts): HeaderFacts {
  const version = r.u32le(0x44);
  const type = r.u32le(0x4c);
  const facts: HeaderFacts = { ...base, subformat: VdiTypes[type] ?? `type ${type}` };
  if (version !== 0x00010001) return { ...facts, unknownFeatures: `VDI version 0x${version.toString(16)}` };
  facts.virtualSize = r.u64le(0x170);
  const offsetBmap = r.u32le(0x154);
  const offsetData = r.u32le(0x158);
  if (offsetBmap > r.size || offsetData > r.size) facts.corrupt = "the block map or data offset lies outside the file";
  facts.clusterBytes = r.u32le(0x178);
  // The block map (4 bytes a block) is read whole.
  facts.tableBytes = r.u32le(0x180) * 4;
  const parent = r.bytes(0x1b8, 16);
  if (type === 3 || type === 4 || parent.some((b) => b !== 0)) facts.backingFile = "(VDI parent image)";
  else if (type !== 1 && type !== 2) facts.unknownFeatures = `VDI image type ${type}`;
  return facts;
}
