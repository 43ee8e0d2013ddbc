import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { inspectHeader, type HeaderFacts } from "../../src/core/image-header.js";
import { parseVmdkDescriptor } from "../../src/core/header-vmdk.js";

// Byte fixtures are built here, field by field, from the format specs.

function facts(bytes: Buffer, size = bytes.length): HeaderFacts {
  const r = inspectHeader({ size, chunks: [{ offset: 0, data: bytes }] });
  assert.ok(r.done, `parser asked for more bytes: ${JSON.stringify(r.done ? {} : r.need)}`);
  return r.facts;
}

interface Qcow2Opts {
  version?: number;
  clusterBits?: number;
  size?: bigint;
  crypt?: number;
  backing?: string;
  incompat?: bigint;
  extensions?: [number, Buffer][];
  l1Offset?: number;
  refcountOffset?: number;
  fileClusters?: number;
}

/** A qcow2 file image: header, extensions, backing name, and enough clusters for its tables. */
function qcow2(o: Qcow2Opts = {}): Buffer {
  const cb = o.clusterBits ?? 16;
  const cluster = 2 ** cb;
  const buf = Buffer.alloc(cluster * (o.fileClusters ?? 4));
  buf.write("QFI\xfb", 0, "latin1");
  const version = o.version ?? 3;
  buf.writeUInt32BE(version, 4);
  buf.writeUInt32BE(cb, 20);
  buf.writeBigUInt64BE(o.size ?? 1n << 30n, 24);
  buf.writeUInt32BE(o.crypt ?? 0, 32);
  buf.writeUInt32BE(1, 36); // l1 size
  buf.writeBigUInt64BE(BigInt(o.l1Offset ?? 3 * cluster), 40);
  buf.writeBigUInt64BE(BigInt(o.refcountOffset ?? cluster), 48);
  buf.writeUInt32BE(1, 56);
  let off = 72;
  if (version === 3) {
    buf.writeBigUInt64BE(o.incompat ?? 0n, 72);
    buf.writeUInt32BE(4, 96);
    buf.writeUInt32BE(112, 100);
    off = 112;
  }
  for (const [type, data] of o.extensions ?? []) {
    buf.writeUInt32BE(type, off);
    buf.writeUInt32BE(data.length, off + 4);
    data.copy(buf, off + 8);
    off += 8 + Math.ceil(data.length / 8) * 8;
  }
  off += 8; // end-of-extensions marker (zeros)
  if (o.backing) {
    buf.writeBigUInt64BE(BigInt(off), 8);
    buf.writeUInt32BE(Buffer.byteLength(o.backing), 16);
    buf.write(o.backing, off);
  }
  return buf;
}

describe("qcow2 header", () => {
  test("a plain v3 image: format, version and virtual size", () => {
    const f = facts(qcow2({ size: 5n << 30n }));
    assert.equal(f.format, "qcow2");
    assert.equal(f.subformat, "v3");
    assert.equal(f.virtualSize, 5 * 2 ** 30);
    assert.equal(f.backingFile, undefined);
  });
  test("a v2 image parses too", () => assert.equal(facts(qcow2({ version: 2 })).subformat, "v2"));
  test("the backing file name is read", () => assert.equal(facts(qcow2({ backing: "/etc/shadow" })).backingFile, "/etc/shadow"));
  test("the backing format extension is read", () => {
    const f = facts(qcow2({ backing: "base", extensions: [[0xe2792aca, Buffer.from("raw")]] }));
    assert.equal(f.backingFormat, "raw");
    assert.equal(f.backingFile, "base");
  });
  test("the external data file bit is seen", () => assert.ok(facts(qcow2({ incompat: 1n << 2n })).dataFile));
  test("the external data file name extension is read", () => {
    assert.equal(facts(qcow2({ extensions: [[0x44415441, Buffer.from("/dev/sda")]] })).dataFile, "/dev/sda");
  });
  test("AES encryption (crypt method 1) is seen", () => assert.equal(facts(qcow2({ crypt: 1 })).encrypted, true));
  test("LUKS encryption (crypt method 2 with its header extension) is seen", () => {
    assert.equal(facts(qcow2({ crypt: 2, extensions: [[0x0537be77, Buffer.alloc(16)]] })).encrypted, true);
  });
  test("unknown incompatible feature bits are reported", () => assert.match(facts(qcow2({ incompat: 1n << 9n })).unknownFeatures ?? "", /0x200/));
  test("known incompatible bits (compression type, extended L2) are not unknown", () => {
    assert.equal(facts(qcow2({ incompat: (1n << 3n) | (1n << 4n) })).unknownFeatures, undefined);
  });
  test("the corrupt and dirty bits are corruption", () => {
    assert.match(facts(qcow2({ incompat: 2n })).corrupt ?? "", /corrupt bit/);
    assert.match(facts(qcow2({ incompat: 1n })).corrupt ?? "", /dirty/);
  });
  test("an unknown version is an unknown feature", () => assert.match(facts(qcow2({ version: 4 })).unknownFeatures ?? "", /version 4/));
  test("the cluster size and the memory of the L1 and refcount tables are read", () => {
    const f = facts(qcow2());
    assert.equal(f.clusterBytes, 65536);
    assert.equal(f.tableBytes, 1 * 8 + 1 * 65536);
  });
  test("a cluster size outside 512 B..2 MiB is corruption", () => assert.match(facts(qcow2({ clusterBits: 8, fileClusters: 64 })).corrupt ?? "", /cluster bits/));
  test("an L1 table outside the file is corruption", () => assert.match(facts(qcow2({ l1Offset: 100 * 65536 })).corrupt ?? "", /L1 table/));
  test("a refcount table outside the file is corruption", () => assert.match(facts(qcow2({ refcountOffset: 100 * 65536 })).corrupt ?? "", /refcount/));
  test("a truncated header is corruption, not a crash", () => {
    const f = facts(qcow2().subarray(0, 30));
    assert.equal(f.format, "qcow2");
    assert.ok(f.corrupt);
  });
  test("a virtual size beyond 2^53 is corruption", () => assert.ok(facts(qcow2({ size: 1n << 60n })).corrupt));
});

describe("format detection by magic", () => {
  const table: [string, Buffer, string][] = [
    ["QED", Buffer.concat([Buffer.from("QED\0"), Buffer.alloc(508)]), "qed"],
    ["qcow version 1", Buffer.concat([Buffer.from("QFI\xfb\0\0\0\x01", "latin1"), Buffer.alloc(504)]), "qcow"],
    ["LUKS", Buffer.concat([Buffer.from("LUKS\xba\xbe", "latin1"), Buffer.alloc(506)]), "luks"],
    ["gzip", Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(508)]), "gzip"],
    ["xz", Buffer.concat([Buffer.from("\xfd7zXZ\0", "latin1"), Buffer.alloc(506)]), "xz"],
    ["zstd", Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(508)]), "zstd"],
    ["bochs", Buffer.concat([Buffer.from("Bochs Virtual HD Image"), Buffer.alloc(490)]), "bochs"],
    ["parallels", Buffer.concat([Buffer.from("WithoutFreeSpace"), Buffer.alloc(496)]), "parallels"],
    ["zeros", Buffer.alloc(4096), "raw"],
  ];
  for (const [label, bytes, format] of table) test(label, () => assert.equal(facts(bytes).format, format));
  test("a dmg trailer at the end", () => {
    const b = Buffer.alloc(8192);
    b.write("koly", 8192 - 512);
    assert.equal(facts(b).format, "dmg");
  });
});

describe("raw", () => {
  test("the virtual size is the file size", () => assert.equal(facts(Buffer.alloc(1024, 1)).virtualSize, 1024));
  test("an HTML page is not a disk", () => assert.match(facts(Buffer.from("<!DOCTYPE html><html>hi</html>\n")).notADisk ?? "", /HTML/));
  test("JSON is not a disk", () => assert.match(facts(Buffer.from('  {"error": "denied"}')).notADisk ?? "", /JSON/));
  test("plain text without a zero byte is not a disk", () => assert.match(facts(Buffer.from("hello world\n".repeat(100))).notADisk ?? "", /text/));
  test("a printable fill pattern is a disk, not a document", () => assert.equal(facts(Buffer.alloc(8192, 0x41)).notADisk, undefined));
  test("binary data with zeros is a disk", () => assert.equal(facts(Buffer.concat([Buffer.from([0xeb, 0x63, 0x90]), Buffer.alloc(509)])).notADisk, undefined));
});

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

test("the parser asks for bytes it does not have instead of guessing", () => {
  const b = vhdx();
  const r = inspectHeader({ size: b.length, chunks: [{ offset: 0, data: b.subarray(0, 64 * 1024) }] });
  assert.equal(r.done, false);
  if (!r.done) assert.ok(r.need.offset >= 64 * 1024);
});
