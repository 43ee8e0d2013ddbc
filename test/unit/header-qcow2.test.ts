import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { headerFacts as facts } from "../harness/header-facts.js";

// Byte fixtures are built here, field by field, from the format specs.

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
