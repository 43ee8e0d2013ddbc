import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { headerFacts as facts } from "../harness/header-facts.js";

// Byte fixtures are built here, field by field, from the format specs.

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
  const tarHeader = (): Buffer => {
    const b = Buffer.alloc(1024);
    b.write("disk.vmdk", 0);
    b.write("ustar\x0000", 257, "latin1");
    return b;
  };
  const archives: [string, Buffer, RegExp][] = [
    ["a tar (an OVA)", tarHeader(), /tar archive/],
    ["a zip", Buffer.concat([Buffer.from("PK\x03\x04", "latin1"), Buffer.alloc(1020)]), /zip archive/],
    ["a 7-Zip archive", Buffer.concat([Buffer.from("7z\xbc\xaf\x27\x1c", "latin1"), Buffer.alloc(1018)]), /7-Zip/],
    ["a RAR archive", Buffer.concat([Buffer.from("Rar!\x1a\x07\x00", "latin1"), Buffer.alloc(1017)]), /RAR/],
    ["a newc cpio archive", Buffer.concat([Buffer.from("070701"), Buffer.alloc(1018)]), /cpio/],
    ["an ar archive", Buffer.concat([Buffer.from("!<arch>\n"), Buffer.alloc(1016)]), /ar archive/],
  ];
  for (const [label, bytes, what] of archives) test(`${label} is not a disk`, () => assert.match(facts(bytes).notADisk ?? "", what));
  test("a tar magic elsewhere than at 257 is not a tar", () => {
    const b = Buffer.alloc(1024);
    b.write("ustar", 300);
    assert.equal(facts(b).notADisk, undefined);
  });
  test("an ISO 9660 image stays a disk", () => {
    const b = Buffer.alloc(0x8800);
    b.write("\x01CD001\x01", 0x8000, "latin1");
    assert.equal(facts(b).format, "raw");
    assert.equal(facts(b).notADisk, undefined);
  });
  test("binary data with zeros is a disk", () => assert.equal(facts(Buffer.concat([Buffer.from([0xeb, 0x63, 0x90]), Buffer.alloc(509)])).notADisk, undefined));
});
