import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { headerFacts as facts } from "../harness/header-facts.js";

// Byte fixtures are built here, field by field, from the format specs.

function vpcFooter(type: number, size: bigint): Buffer {
  const f = Buffer.alloc(512);
  f.write("conectix", 0);
  f.writeBigUInt64BE(type === 2 ? 0xffffffffffffffffn : 512n, 16);
  f.writeBigUInt64BE(size, 40);
  f.writeBigUInt64BE(size, 48);
  f.writeUInt16BE(1000, 56);
  f.writeUInt8(16, 58);
  f.writeUInt8(63, 59);
  f.writeUInt32BE(type, 60);
  return f;
}

describe("vpc and vdi", () => {
  test("a fixed VHD is found by its footer at the end", () => {
    const f = facts(Buffer.concat([Buffer.alloc(1024 * 1024, 1), vpcFooter(2, 1048576n)]));
    assert.equal(f.format, "vpc");
    assert.equal(f.subformat, "fixed");
    assert.equal(f.virtualSize, 1048576);
    assert.equal(f.altVirtualSize, 1000 * 16 * 63 * 512);
  });
  test("a differencing VHD has a backing file", () => {
    const dyn = Buffer.alloc(1024);
    dyn.write("cxsparse", 0);
    assert.ok(facts(Buffer.concat([vpcFooter(4, 1048576n), dyn, Buffer.alloc(512)])).backingFile);
  });
  test("a dynamic VHD with a parent name has a backing file", () => {
    const dyn = Buffer.alloc(1024);
    dyn.write("cxsparse", 0);
    dyn.write("p\0a\0r\0e\0n\0t\0", 64);
    assert.ok(facts(Buffer.concat([vpcFooter(3, 1048576n), dyn, Buffer.alloc(512)])).backingFile);
  });
  test("a dynamic VHD without its dynamic header is corrupt", () => assert.ok(facts(Buffer.concat([vpcFooter(3, 1048576n), Buffer.alloc(1536)])).corrupt));

  function vdi(type: number, parent = false): Buffer {
    const b = Buffer.alloc(1024);
    b.write("<<< QEMU VM Virtual Disk Image >>>\n", 0);
    b.writeUInt32LE(0xbeda107f, 0x40);
    b.writeUInt32LE(0x00010001, 0x44);
    b.writeUInt32LE(type, 0x4c);
    b.writeUInt32LE(512, 0x154);
    b.writeUInt32LE(1024, 0x158);
    b.writeBigUInt64LE(1n << 30n, 0x170);
    if (parent) b.fill(7, 0x1b8, 0x1c8);
    return b;
  }
  test("a dynamic VDI is read with its size", () => {
    const f = facts(vdi(1));
    assert.equal(f.format, "vdi");
    assert.equal(f.virtualSize, 2 ** 30);
    assert.equal(f.backingFile, undefined);
  });
  test("a VDI's block size and block map are read", () => {
    const b = vdi(1);
    b.writeUInt32LE(1024 * 1024, 0x178);
    b.writeUInt32LE(1024, 0x180);
    const f = facts(b);
    assert.equal(f.clusterBytes, 1024 * 1024);
    assert.equal(f.tableBytes, 4096);
  });
  test("a differencing VDI or one with a parent UUID has a backing file", () => {
    assert.ok(facts(vdi(4)).backingFile);
    assert.ok(facts(vdi(1, true)).backingFile);
  });
});
