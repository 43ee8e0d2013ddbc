/**
 * Writes streamOptimized VMDKs field by field (VMware's Virtual Disk Format 1.1, as qemu's vmdk driver reads it),
 * for the shapes qemu-img will not create: grains other than 64 KiB. Every grain written is real zlib data of
 * zeros with its marker, so qemu-img opens, checks and maps the file as it would a legitimate image.
 */
import { createDeflate } from "node:zlib";
import { writeFile } from "node:fs/promises";

const Sector = 512;
const GtesPerGt = 512;

/** The shape of the VMDK to write. */
export interface StreamVmdkShape {
  /** Grain size in bytes (a multiple of 512). */
  grainBytes: number;
  /** Virtual size in bytes (a multiple of the grain). */
  capacityBytes: number;
  /** How many grains, from the start, hold (compressed zero) data. */
  allocatedGrains: number;
}

/** zlib data of `bytes` zero bytes, compressed as a stream (no buffer of that size is ever allocated). */
async function deflateZeros(bytes: number): Promise<Buffer> {
  const z = createDeflate({ level: 9 });
  const out: Buffer[] = [];
  z.on("data", (c: Buffer) => out.push(c));
  const done = new Promise<void>((resolve, reject) => {
    z.on("end", resolve);
    z.on("error", reject);
  });
  const chunk = Buffer.alloc(Math.min(bytes, 4 * 1024 * 1024));
  for (let left = bytes; left > 0; left -= chunk.length) {
    const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
    if (!z.write(part)) await new Promise((r) => z.once("drain", r));
  }
  z.end();
  await done;
  return Buffer.concat(out);
}

const pad = (n: number) => Math.ceil(n / Sector) * Sector;

/** Writes a streamOptimized VMDK of `shape` at `path`; returns the path. */
export async function writeStreamVmdk(path: string, shape: StreamVmdkShape): Promise<string> {
  const grainSectors = shape.grainBytes / Sector;
  const capacity = shape.capacityBytes / Sector;
  const grains = Math.ceil(capacity / grainSectors);
  const gts = Math.ceil(grains / GtesPerGt);
  const descriptor = Buffer.from(
    [
      "# Disk DescriptorFile",
      "version=1",
      "CID=1e2d3c4b",
      "parentCID=ffffffff",
      'createType="streamOptimized"',
      "",
      "# Extent description",
      `RW ${capacity} SPARSE "disk.vmdk"`,
      "",
      "# The Disk Data Base",
      'ddb.virtualHWVersion = "4"',
      'ddb.adapterType = "ide"',
      "",
    ].join("\n"),
  );
  const descSectors = pad(descriptor.length) / Sector;
  const gdSector = 1 + descSectors;
  const gdSectors = pad(gts * 4) / Sector;
  const gtSector = gdSector + gdSectors;
  const gtSectors = (gts * GtesPerGt * 4) / Sector;
  const grainStart = gtSector + gtSectors;

  const header = Buffer.alloc(Sector);
  header.write("KDMV", 0, "latin1");
  header.writeUInt32LE(3, 4); // version 3: streamOptimized
  header.writeUInt32LE(1 | (1 << 16) | (1 << 17), 8); // newline check, compressed grains, markers
  header.writeBigUInt64LE(BigInt(capacity), 12);
  header.writeBigUInt64LE(BigInt(grainSectors), 20);
  header.writeBigUInt64LE(1n, 28);
  header.writeBigUInt64LE(BigInt(descSectors), 36);
  header.writeUInt32LE(GtesPerGt, 44);
  header.writeBigUInt64LE(0n, 48); // no redundant grain directory
  header.writeBigUInt64LE(BigInt(gdSector), 56);
  header.writeBigUInt64LE(BigInt(grainStart), 64);
  header.write("\n \r\n", 73, "latin1");
  header.writeUInt16LE(1, 77); // deflate

  const gd = Buffer.alloc(gdSectors * Sector);
  for (let i = 0; i < gts; i++) gd.writeUInt32LE(gtSector + (i * GtesPerGt * 4) / Sector, i * 4);
  const gt = Buffer.alloc(gtSectors * Sector);
  const data = await deflateZeros(shape.grainBytes);
  const grainsOut: Buffer[] = [];
  let sector = grainStart;
  for (let g = 0; g < Math.min(shape.allocatedGrains, grains); g++) {
    const marker = Buffer.alloc(12);
    marker.writeBigUInt64LE(BigInt(g * grainSectors), 0);
    marker.writeUInt32LE(data.length, 8);
    const block = Buffer.alloc(pad(12 + data.length));
    marker.copy(block, 0);
    data.copy(block, 12);
    gt.writeUInt32LE(sector, g * 4);
    grainsOut.push(block);
    sector += block.length / Sector;
  }
  const eos = Buffer.alloc(Sector); // end-of-stream marker: all zero
  await writeFile(path, Buffer.concat([header, Buffer.concat([descriptor], descSectors * Sector), gd, gt, ...grainsOut, eos]));
  return path;
}
