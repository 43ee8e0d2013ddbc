import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseVmdkDescriptor } from "../../src/core/header-vmdk.js";
import { headerFacts as facts } from "../harness/header-facts.js";

// Byte fixtures are built here, field by field, from the format specs.

/** A hosted sparse VMDK: KDMV header, then the descriptor at sector 1. */
function sparseVmdk(descriptor: string, capacitySectors = 2048n): Buffer {
  const b = Buffer.alloc(512 * 24);
  b.write("KDMV", 0, "latin1");
  b.writeUInt32LE(1, 4);
  b.writeBigUInt64LE(capacitySectors, 12);
  b.writeBigUInt64LE(128n, 20);
  b.writeBigUInt64LE(1n, 28);
  b.writeBigUInt64LE(20n, 36);
  b.writeUInt32LE(512, 44); // grain table entries, as VMware and qemu-img write
  b.write(descriptor, 512, "latin1");
  return b;
}

const desc = (createType: string, extent: string, parent = "ffffffff") =>
  `# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=${parent}\ncreateType="${createType}"\n\n# Extent description\n${extent}\n`;

describe("vmdk", () => {
  test("a monolithicSparse image is read with its create type and size", () => {
    const f = facts(sparseVmdk(desc("monolithicSparse", 'RW 2048 SPARSE "disk.vmdk"')));
    assert.equal(f.format, "vmdk");
    assert.equal(f.subformat, "monolithicSparse");
    assert.equal(f.virtualSize, 2048 * 512);
    assert.equal(f.badExtent, undefined);
  });
  test("an extent naming a path is bad", () => assert.match(facts(sparseVmdk(desc("monolithicSparse", 'RW 2048 SPARSE "/etc/passwd"'))).badExtent ?? "", /not this file/));
  test("two extents are bad", () => assert.match(facts(sparseVmdk(desc("monolithicSparse", 'RW 1024 SPARSE "a.vmdk"\nRW 1024 SPARSE "b.vmdk"'))).badExtent ?? "", /2 extents/));
  test("a FLAT extent inside a sparse header is bad", () => assert.match(facts(sparseVmdk(desc("monolithicSparse", 'RW 2048 FLAT "x.vmdk" 0'))).badExtent ?? "", /FLAT/));
  test("an extent size different from the capacity is bad", () => assert.match(facts(sparseVmdk(desc("monolithicSparse", 'RW 99 SPARSE "d.vmdk"'))).badExtent ?? "", /covers 99/));
  test("zero capacity defers to the descriptor and is bad", () => assert.ok(facts(sparseVmdk(desc("monolithicSparse", 'RW 0 SPARSE "d.vmdk"'), 0n)).badExtent));
  test("a parent CID means a backing file", () => assert.ok(facts(sparseVmdk(desc("monolithicSparse", 'RW 2048 SPARSE "d.vmdk"', "1234abcd"))).backingFile));
  test("a text descriptor names outside extents", () => {
    const f = facts(Buffer.from(desc("monolithicFlat", 'RW 2048 FLAT "/dev/sda" 0')));
    assert.equal(f.format, "vmdk");
    assert.equal(f.subformat, "monolithicFlat");
    assert.match(f.badExtent ?? "", /\/dev\/sda/);
  });
  test("the grain size and the memory of its tables are read from the sparse header", () => {
    const f = facts(sparseVmdk(desc("monolithicSparse", 'RW 2048 SPARSE "disk.vmdk"')));
    assert.equal(f.clusterBytes, 128 * 512);
    // One grain-directory entry, plus qemu's cache of 16 grain tables of 512 entries.
    assert.equal(f.tableBytes, 4 + 16 * 512 * 4);
  });
  test("a sparse header without grain-table entries, or with more than qemu reads, is corrupt", () => {
    for (const n of [0, 513]) {
      const b = sparseVmdk(desc("monolithicSparse", 'RW 2048 SPARSE "disk.vmdk"'));
      b.writeUInt32LE(n, 44);
      assert.match(facts(b).corrupt ?? "", /entries per grain table/, String(n));
    }
  });
  test("COWD (ESX sparse) is refused", () => assert.ok(facts(Buffer.concat([Buffer.from("COWD"), Buffer.alloc(2044)])).badExtent));
  test("the descriptor parser reads keys and extents", () => {
    const d = parseVmdkDescriptor(desc("streamOptimized", 'RDONLY 10 sparse "x.vmdk"'));
    assert.equal(d.createType, "streamOptimized");
    assert.deepEqual(d.extents, [{ access: "RDONLY", sectors: 10, type: "SPARSE", file: "x.vmdk" }]);
  });
});
