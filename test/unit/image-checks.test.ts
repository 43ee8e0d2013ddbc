import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  ConvertedChain,
  evaluateConverted,
  evaluateEarlyHeader,
  evaluateHeader,
  HeaderChain,
  QemuInfoChain,
  refuseBackingFile,
  refuseBadExtent,
  refuseClusterShape,
  refuseHugeTables,
  refuseConvertedNotRaw,
  refuseConvertedSizeChange,
  refuseCorruptHeader,
  refuseDataFile,
  refuseDisallowedFormat,
  refuseEmpty,
  refuseEncrypted,
  refuseFormatDisagreement,
  refuseHeaderTooLarge,
  refuseNotADisk,
  refuseQemuBackingFile,
  refuseQemuCorrupt,
  refuseQemuDataFile,
  refuseQemuEncrypted,
  refuseQemuTooLarge,
  refuseSizeDisagreement,
  refuseUnalignedRaw,
  refuseUnknownFeature,
  refuseVmdkCreateType,
  evaluateQemuCheck,
  evaluateQemuInfo,
  parseQemuInfo,
  type ImageLimits,
  type ImageVerdict,
  type QemuImageInfo,
} from "../../src/core/image-checks.js";
import type { HeaderFacts } from "../../src/core/image-header.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 ** 3;
const facts = (over: Partial<HeaderFacts> = {}): HeaderFacts => ({ format: "qcow2", fileSize: 1024 * 1024, virtualSize: GiB, ...over });
const info = (over: Partial<QemuImageInfo> = {}): QemuImageInfo => ({ format: "qcow2", virtualSize: GiB, encrypted: false, corrupt: false, dirty: false, ...over });
const limits: ImageLimits = { maxVirtualSize: 2 * GiB };

function reasonOf(v: ReturnType<typeof evaluateHeader>): string {
  return v.accept ? "accept" : v.reason;
}

describe("header rules: each refusal reason", () => {
  const table: [string, Partial<HeaderFacts>, string][] = [
    ["a clean qcow2", {}, "accept"],
    ["an empty file", { format: "raw", fileSize: 0, virtualSize: 0 }, "empty"],
    ["a LUKS volume", { format: "luks" }, "encrypted"],
    ["an encrypted qcow2", { encrypted: true }, "encrypted"],
    ["QED", { format: "qed" }, "unsupported-format"],
    ["qcow version 1", { format: "qcow" }, "unsupported-format"],
    ["gzip", { format: "gzip" }, "unsupported-format"],
    ["parallels", { format: "parallels" }, "unsupported-format"],
    ["dmg", { format: "dmg" }, "unsupported-format"],
    ["a corrupt header", { corrupt: "the corrupt bit is set" }, "corrupt"],
    ["a backing file", { backingFile: "/etc/passwd" }, "backing-file"],
    ["an external data file", { dataFile: "/dev/sda" }, "data-file"],
    ["a vmdk extent outside the file", { format: "vmdk", subformat: "monolithicSparse", badExtent: "x" }, "bad-extent"],
    ["a vmdk create type outside the allow-list", { format: "vmdk", subformat: "vmfs" }, "unsupported-format"],
    ["a streamOptimized vmdk", { format: "vmdk", subformat: "streamOptimized" }, "accept"],
    ["a monolithicSparse vmdk", { format: "vmdk", subformat: "monolithicSparse" }, "accept"],
    ["unknown feature bits", { unknownFeatures: "bit 9" }, "unknown-feature"],
    ["a raw file of 1000 bytes", { format: "raw", fileSize: 1000, virtualSize: 1000 }, "not-a-disk"],
    ["a raw HTML page", { format: "raw", fileSize: 4096, virtualSize: 4096, notADisk: "it is an HTML page" }, "not-a-disk"],
    ["a raw disk", { format: "raw", fileSize: 4096, virtualSize: 4096 }, "accept"],
    ["virtual size above the limit", { virtualSize: 2 * GiB + 1 }, "too-large"],
    ["virtual size exactly at the limit", { virtualSize: 2 * GiB }, "accept"],
    ["vhdx, vpc and vdi are allowed", { format: "vhdx" }, "accept"],
    // Allocation units: what the formats' tools write is accepted, above it costs memory, below it no tool writes.
    ["a vmdk with qemu-img's 64 KiB grains", { format: "vmdk", subformat: "streamOptimized", clusterBytes: 64 * KiB }, "accept"],
    ["a vmdk with 1 MiB grains, the largest accepted", { format: "vmdk", subformat: "streamOptimized", clusterBytes: MiB }, "accept"],
    ["a streamOptimized vmdk with 1 GiB grains", { format: "vmdk", subformat: "streamOptimized", clusterBytes: GiB }, "resource-limit"],
    ["a vmdk with 64 MiB grains", { format: "vmdk", subformat: "monolithicSparse", clusterBytes: 64 * MiB }, "resource-limit"],
    ["a vmdk with 2 KiB grains", { format: "vmdk", subformat: "monolithicSparse", clusterBytes: 2 * KiB }, "unsupported-format"],
    ["a vmdk with grains that are not a power of two", { format: "vmdk", subformat: "monolithicSparse", clusterBytes: 96 * KiB }, "unsupported-format"],
    ["a qcow2 with 2 MiB clusters", { clusterBytes: 2 * MiB }, "accept"],
    ["a qcow2 with 512-byte clusters", { clusterBytes: 512 }, "accept"],
    ["a qcow2 with 4 MiB clusters", { clusterBytes: 4 * MiB }, "resource-limit"],
    ["a vhdx with 32 MiB blocks", { format: "vhdx", clusterBytes: 32 * MiB }, "accept"],
    ["a vhdx with 512 MiB blocks", { format: "vhdx", clusterBytes: 512 * MiB }, "resource-limit"],
    ["a vhdx with 512 KiB blocks", { format: "vhdx", clusterBytes: 512 * KiB }, "unsupported-format"],
    ["a vpc with 2 MiB blocks", { format: "vpc", clusterBytes: 2 * MiB }, "accept"],
    ["a vpc with 1 GiB blocks", { format: "vpc", clusterBytes: GiB }, "resource-limit"],
    ["a vdi with 1 MiB blocks", { format: "vdi", clusterBytes: MiB }, "accept"],
    ["a vdi with 2 MiB blocks", { format: "vdi", clusterBytes: 2 * MiB }, "resource-limit"],
    ["a vdi with 0-byte blocks", { format: "vdi", clusterBytes: 0 }, "unsupported-format"],
    ["tables of 1 MiB", { tableBytes: MiB }, "accept"],
    ["tables of 64 MiB, the most accepted", { tableBytes: 64 * MiB }, "accept"],
    ["tables of more than 64 MiB", { tableBytes: 64 * MiB + 1 }, "resource-limit"],
  ];
  for (const [label, over, reason] of table) test(label, () => assert.equal(reasonOf(evaluateHeader(facts(over), limits)), reason));

  test("no limit accepts any size", () => assert.equal(reasonOf(evaluateHeader(facts({ virtualSize: 100 * 1024 * GiB }), {})), "accept"));
  test("the most specific reason wins: encrypted before backing file", () => {
    assert.equal(reasonOf(evaluateHeader(facts({ encrypted: true, backingFile: "x" }), limits)), "encrypted");
  });
  test("messages quote the offending value", () => {
    const v = evaluateHeader(facts({ backingFile: "/etc/passwd" }), limits);
    assert.ok(!v.accept && v.message.includes('"/etc/passwd"'));
  });
});

describe("qemu-img info must agree with our inspector", () => {
  const table: [string, Partial<HeaderFacts>, Partial<QemuImageInfo>, string][] = [
    ["agreement", {}, {}, "accept"],
    ["a different format", {}, { format: "raw" }, "format-mismatch"],
    ["a different virtual size", {}, { virtualSize: GiB + 512 }, "format-mismatch"],
    ["a backing file only qemu-img sees", {}, { backingFilename: "x" }, "backing-file"],
    ["a data file only qemu-img sees", {}, { dataFile: "x" }, "data-file"],
    ["encryption only qemu-img sees", {}, { encrypted: true }, "encrypted"],
    ["marked corrupt", {}, { corrupt: true }, "corrupt"],
    ["dirty", {}, { dirty: true }, "corrupt"],
    ["too large by qemu-img's reading", { virtualSize: 3 * GiB }, { virtualSize: 3 * GiB }, "too-large"],
    ["vpc size from CHS geometry", { format: "vpc", virtualSize: GiB, altVirtualSize: GiB - 512 * 63 }, { format: "vpc", virtualSize: GiB - 512 * 63 }, "accept"],
  ];
  for (const [label, f, i, reason] of table) test(label, () => assert.equal(reasonOf(evaluateQemuInfo(facts(f), info(i), limits)), reason));
});

describe("qemu-img check", () => {
  const table: [string, Parameters<typeof evaluateQemuCheck>[0], string][] = [
    ["clean", { exitCode: 0, corruptions: 0, leaks: 0, checkErrors: 0 }, "accept"],
    ["leaks only", { exitCode: 3, corruptions: 0, leaks: 12, checkErrors: 0 }, "accept"],
    ["corruptions", { exitCode: 2, corruptions: 1, leaks: 0, checkErrors: 0 }, "corrupt"],
    ["check errors", { exitCode: 1, corruptions: 0, leaks: 0, checkErrors: 1 }, "corrupt"],
    ["could not open", { exitCode: 1, corruptions: 0, leaks: 0, checkErrors: 0 }, "corrupt"],
    ["not supported for the format", { exitCode: 63, corruptions: 0, leaks: 0, checkErrors: 0 }, "accept"],
  ];
  for (const [label, c, reason] of table) test(label, () => assert.equal(reasonOf(evaluateQemuCheck(c)), reason));
});

describe("converted output", () => {
  test("raw with the source's virtual size is accepted", () => assert.equal(reasonOf(evaluateConverted(info({ format: "raw" }), GiB)), "accept"));
  test("anything but raw is refused", () => assert.equal(reasonOf(evaluateConverted(info({ format: "qcow2" }), GiB)), "inspect-failed"));
  test("another size is refused", () => assert.equal(reasonOf(evaluateConverted(info({ format: "raw", virtualSize: 512 }), GiB)), "inspect-failed"));
});

describe("parsing qemu-img info JSON", () => {
  test("reads format, sizes, backing and format-specific flags", () => {
    const i = parseQemuInfo({
      format: "qcow2",
      "virtual-size": 1024,
      "actual-size": 200,
      "backing-filename": "b.raw",
      "full-backing-filename": "/x/b.raw",
      "backing-filename-format": "raw",
      "format-specific": { type: "qcow2", data: { "data-file": "/d", corrupt: true, encrypt: { format: "luks" } } },
    });
    assert.deepEqual(i, { format: "qcow2", virtualSize: 1024, actualSize: 200, backingFilename: "/x/b.raw", backingFormat: "raw", dataFile: "/d", encrypted: true, corrupt: true, dirty: false });
  });
  test("refuses output without a format", () => assert.throws(() => parseQemuInfo({ "virtual-size": 1 }), TypeError));
  test("refuses non-objects", () => assert.throws(() => parseQemuInfo("x"), TypeError));
});

describe("each named rule alone", () => {
  const rules: [string, (f: HeaderFacts, l: ImageLimits) => ImageVerdict, [Partial<HeaderFacts>, string][]][] = [
    ["refuseEmpty", refuseEmpty, [[{ fileSize: 0 }, "empty"], [{ fileSize: 1 }, "accept"]]],
    ["refuseEncrypted", refuseEncrypted, [[{ format: "luks" }, "encrypted"], [{ encrypted: true }, "encrypted"], [{}, "accept"]]],
    ["refuseDisallowedFormat", refuseDisallowedFormat, [[{ format: "qed" }, "unsupported-format"], [{ format: "vdi" }, "accept"]]],
    ["refuseCorruptHeader", refuseCorruptHeader, [[{ corrupt: "x" }, "corrupt"], [{}, "accept"]]],
    ["refuseBackingFile", refuseBackingFile, [[{ backingFile: "" }, "backing-file"], [{}, "accept"]]],
    ["refuseDataFile", refuseDataFile, [[{ dataFile: "d" }, "data-file"], [{}, "accept"]]],
    ["refuseBadExtent", refuseBadExtent, [[{ badExtent: "x" }, "bad-extent"], [{}, "accept"]]],
    ["refuseVmdkCreateType", refuseVmdkCreateType, [[{ format: "vmdk", subformat: "twoGbMaxExtentSparse" }, "unsupported-format"], [{ format: "vmdk" }, "unsupported-format"], [{ format: "vmdk", subformat: "streamOptimized" }, "accept"], [{ subformat: "whatever" }, "accept"]]],
    ["refuseUnknownFeature", refuseUnknownFeature, [[{ unknownFeatures: "bit 3" }, "unknown-feature"], [{}, "accept"]]],
    ["refuseClusterShape", refuseClusterShape, [[{ clusterBytes: 4 * 1024 * 1024 }, "resource-limit"], [{ clusterBytes: 256 }, "unsupported-format"], [{ clusterBytes: 65536 }, "accept"], [{}, "accept"]]],
    ["refuseHugeTables", refuseHugeTables, [[{ tableBytes: 1024 ** 3 }, "resource-limit"], [{ tableBytes: 65536 }, "accept"], [{}, "accept"]]],
    ["refuseUnalignedRaw", refuseUnalignedRaw, [[{ format: "raw", fileSize: 513 }, "not-a-disk"], [{ format: "raw", fileSize: 1024 }, "accept"], [{ fileSize: 513 }, "accept"]]],
    ["refuseNotADisk", refuseNotADisk, [[{ notADisk: "text" }, "not-a-disk"], [{}, "accept"]]],
    ["refuseHeaderTooLarge", refuseHeaderTooLarge, [[{ virtualSize: 2 * GiB + 1 }, "too-large"], [{ virtualSize: 2 * GiB }, "accept"], [{ virtualSize: undefined }, "accept"]]],
  ];
  for (const [name, rule, cases] of rules) {
    for (const [over, expected] of cases) test(`${name}: ${JSON.stringify(over)} -> ${expected}`, () => assert.equal(reasonOf(rule(facts(over), limits)), expected));
  }
  test("the header chain holds every rule once, in this order", () => assert.deepEqual(HeaderChain, rules.map(([, r]) => r)));

  const infoRules: [string, (f: HeaderFacts, i: QemuImageInfo, l: ImageLimits) => ImageVerdict, [Partial<QemuImageInfo>, string][]][] = [
    ["refuseFormatDisagreement", refuseFormatDisagreement, [[{ format: "raw" }, "format-mismatch"], [{}, "accept"]]],
    ["refuseQemuBackingFile", refuseQemuBackingFile, [[{ backingFilename: "b" }, "backing-file"], [{}, "accept"]]],
    ["refuseQemuDataFile", refuseQemuDataFile, [[{ dataFile: "d" }, "data-file"], [{}, "accept"]]],
    ["refuseQemuEncrypted", refuseQemuEncrypted, [[{ encrypted: true }, "encrypted"], [{}, "accept"]]],
    ["refuseQemuCorrupt", refuseQemuCorrupt, [[{ corrupt: true }, "corrupt"], [{ dirty: true }, "corrupt"], [{}, "accept"]]],
    ["refuseSizeDisagreement", refuseSizeDisagreement, [[{ virtualSize: GiB - 512 }, "format-mismatch"], [{}, "accept"]]],
    ["refuseQemuTooLarge", refuseQemuTooLarge, [[{ virtualSize: 2 * GiB + 512 }, "too-large"], [{}, "accept"]]],
  ];
  for (const [name, rule, cases] of infoRules) {
    for (const [over, expected] of cases) test(`${name}: ${JSON.stringify(over)} -> ${expected}`, () => assert.equal(reasonOf(rule(facts(), info(over), limits)), expected));
  }
  test("the qemu-img info chain holds every rule once, in this order", () => assert.deepEqual(QemuInfoChain, infoRules.map(([, r]) => r)));

  test("refuseConvertedNotRaw and refuseConvertedSizeChange, in this order", () => {
    assert.equal(reasonOf(refuseConvertedNotRaw(info({ format: "qcow2" }))), "inspect-failed");
    assert.equal(reasonOf(refuseConvertedNotRaw(info({ format: "raw" }))), "accept");
    assert.equal(reasonOf(refuseConvertedSizeChange(info({ virtualSize: 512 }), GiB)), "inspect-failed");
    assert.equal(reasonOf(refuseConvertedSizeChange(info(), GiB)), "accept");
    assert.deepEqual(ConvertedChain, [refuseConvertedNotRaw, refuseConvertedSizeChange]);
  });
});

describe("evaluateEarlyHeader", () => {
  const qcow2Head = (backing: boolean): Buffer => {
    const h = Buffer.alloc(4096);
    h.write("QFI\xfb", 0, "latin1");
    h.writeUInt32BE(3, 4); // version
    if (backing) {
      h.writeBigUInt64BE(1024n, 8); // backing file offset
      h.writeUInt32BE(4, 16); // backing file name length
      h.write("/etc", 1024);
    }
    h.writeUInt32BE(16, 20); // cluster bits
    h.writeBigUInt64BE(BigInt(GiB), 24); // virtual size
    h.writeUInt32BE(1, 36); // l1 size
    h.writeBigUInt64BE(65536n, 40); // l1 offset
    h.writeBigUInt64BE(131072n, 48); // refcount table offset
    h.writeUInt32BE(1, 56); // refcount clusters
    h.writeUInt32BE(4, 96); // refcount order
    h.writeUInt32BE(104, 100); // header length
    return h;
  };
  test("an unknown total accepts: nothing is final yet", () => assert.equal(reasonOf(evaluateEarlyHeader(qcow2Head(true), undefined, limits)), "accept"));
  test("a backing file is final from the header", () => assert.equal(reasonOf(evaluateEarlyHeader(qcow2Head(true), 1024 * 1024, limits)), "backing-file"));
  test("too large is final from the header", () => assert.equal(reasonOf(evaluateEarlyHeader(qcow2Head(false), 1024 * 1024, { maxVirtualSize: GiB / 2 })), "too-large"));
  test("a reason that needs the whole file (not-a-disk) waits for it", () => {
    const html = Buffer.from("<!doctype html><html><body>404</body></html>".padEnd(4096, " "));
    assert.equal(reasonOf(evaluateHeader({ format: "raw", fileSize: 4096, virtualSize: 4096, notADisk: "it is an HTML page" }, limits)), "not-a-disk");
    assert.equal(reasonOf(evaluateEarlyHeader(html, 4096, limits)), "accept");
  });
});
