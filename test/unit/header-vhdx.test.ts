import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { inspectHeader } from "../../src/core/image-header.js";
import { headerFacts as facts } from "../harness/header-facts.js";

// Byte fixtures are built here, field by field, from the format specs.

/** Writes a GUID string in the mixed-endian on-disk layout. */
function guid(s: string): Buffer {
  const h = s.replace(/-/g, "");
  const b = Buffer.from(h, "hex");
  const out = Buffer.alloc(16);
  out.writeUInt32LE(b.readUInt32BE(0), 0);
  out.writeUInt16LE(b.readUInt16BE(4), 4);
  out.writeUInt16LE(b.readUInt16BE(6), 6);
  b.copy(out, 8, 8, 16);
  return out;
}

function vhdx(o: { hasParent?: boolean; extraRequired?: boolean; size?: bigint } = {}): Buffer {
  const MiB = 1024 * 1024;
  const b = Buffer.alloc(2 * MiB);
  b.write("vhdxfile", 0);
  const rt = 192 * 1024;
  b.write("regi", rt);
  b.writeUInt32LE(o.extraRequired ? 3 : 2, rt + 8);
  const entry = (i: number, g: string, offset: number, length: number, required: number) => {
    guid(g).copy(b, rt + 16 + i * 32);
    b.writeBigUInt64LE(BigInt(offset), rt + 16 + i * 32 + 16);
    b.writeUInt32LE(length, rt + 16 + i * 32 + 24);
    b.writeUInt32LE(required, rt + 16 + i * 32 + 28);
  };
  entry(0, "2DC27766-F623-4200-9D64-115E9BFD4A08", MiB + 512 * 1024, 64 * 1024, 1);
  entry(1, "8B7CA206-4790-4B9A-B8FE-575F050F886E", MiB, 64 * 1024, 1);
  if (o.extraRequired) entry(2, "11111111-2222-3333-4444-555555555555", MiB + 256 * 1024, 4096, 1);
  const md = MiB;
  b.write("metadata", md);
  b.writeUInt16LE(2, md + 10);
  const item = (i: number, g: string, off: number, len: number) => {
    guid(g).copy(b, md + 32 + i * 32);
    b.writeUInt32LE(off, md + 32 + i * 32 + 16);
    b.writeUInt32LE(len, md + 32 + i * 32 + 20);
    b.writeUInt32LE(4, md + 32 + i * 32 + 24);
  };
  item(0, "CAA16737-FA36-4D43-B3B6-33F0AA44E76B", 4096, 8);
  item(1, "2FA54224-CD1B-4876-B211-5DBED83BF4B8", 4104, 8);
  b.writeUInt32LE(32 * MiB, md + 4096);
  b.writeUInt32LE(o.hasParent ? 2 : 0, md + 4100);
  b.writeBigUInt64LE(o.size ?? 1n << 30n, md + 4104);
  return b;
}

describe("vhdx", () => {
  test("the virtual size comes from the metadata region", () => {
    const f = facts(vhdx({ size: 3n << 30n }));
    assert.equal(f.format, "vhdx");
    assert.equal(f.virtualSize, 3 * 2 ** 30);
  });
  test("the block size and the BAT's length are read", () => {
    const f = facts(vhdx());
    assert.equal(f.clusterBytes, 32 * 1024 * 1024);
    assert.equal(f.tableBytes, 64 * 1024);
  });
  test("the HasParent flag means a backing file", () => assert.ok(facts(vhdx({ hasParent: true })).backingFile));
  test("an unknown required region is an unknown feature", () => assert.match(facts(vhdx({ extraRequired: true })).unknownFeatures ?? "", /region/));
  test("a missing region table is corruption", () => {
    const b = vhdx();
    b.fill(0, 192 * 1024, 192 * 1024 + 4);
    assert.ok(facts(b).corrupt);
  });
});

test("the parser asks for the metadata region's bytes it does not have instead of guessing", () => {
  const b = vhdx();
  const r = inspectHeader({ size: b.length, chunks: [{ offset: 0, data: b.subarray(0, 64 * 1024) }] });
  assert.equal(r.done, false);
  if (!r.done) assert.ok(r.need.offset >= 64 * 1024);
});
