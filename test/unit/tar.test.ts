import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { TarParser, parsePaxRecords, parseTarHeader, parseTarNumber, type TarEvent } from "../../src/core/tar.js";
import { header, pad, file, dirEntry, link, paxRecord, pax, gnuLong, end, archive, disk, refusal } from "../harness/tar-archive.js";

// ---- Header fields ----

test("reads octal and base-256 numeric fields", () => {
  const table: [Uint8Array, number][] = [
    [Buffer.from("00000001750\0"), 1000],
    [Buffer.from("     1750 \0\0"), 1000],
    [Buffer.from("\0\0\0\0\0\0\0\0\0\0\0\0"), 0],
    [Buffer.from("77777777777\0"), 8 * 1024 ** 3 - 1],
    [Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]), 1000],
    [Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0]), 2 ** 36],
  ];
  for (const [field, want] of table) assert.equal(parseTarNumber(field), want, JSON.stringify([...field]));
  for (const bad of [Buffer.from("0000000178x\0"), Buffer.from("-1"), Buffer.from([0xff, 0xff]), Buffer.from([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]) {
    assert.equal(refusal(() => parseTarNumber(bad)).reason, "corrupt");
  }
});

test("parses header blocks and checks their checksum", () => {
  assert.deepEqual(parseTarHeader(header({ name: "disk/a.img", size: 5 })), { name: "disk/a.img", size: 5, typeflag: "0", linkName: "" });
  assert.equal(parseTarHeader(header({ name: "x", type: "\0" })).typeflag, "0");
  assert.equal(parseTarHeader(header({ name: "name", prefix: "some/prefix" })).name, "some/prefix/name");
  assert.equal(parseTarHeader(header({ name: "name", prefix: "junk", magic: "gnu" })).name, "name", "old GNU headers have no prefix field");
  assert.equal(parseTarHeader(header({ name: "v7", magic: "v7" })).name, "v7");
  assert.equal(parseTarHeader(header({ name: "l", type: "2", linkname: "/etc/shadow" })).linkName, "/etc/shadow");
  assert.equal(parseTarHeader(header({ name: "\u00e9\u00e9\u00e9", signedChecksum: true })).name, "\u00e9\u00e9\u00e9", "old signed checksums pass");
  assert.match(refusal(() => parseTarHeader(header({ name: "x", corruptChecksum: true }))).message, /checksum/);
  assert.throws(() => parseTarHeader(Buffer.alloc(100)), RangeError);
});

test("parses pax records and refuses malformed ones", () => {
  const data = Buffer.from(paxRecord("path", "disk/\u00e9.img") + paxRecord("size", "123") + paxRecord("comment", "a=b\nc"));
  assert.deepEqual(parsePaxRecords(data), { path: "disk/\u00e9.img", size: "123", comment: "a=b\nc" });
  assert.deepEqual(parsePaxRecords(Buffer.concat([Buffer.from(paxRecord("a", "1")), Buffer.alloc(10)])), { a: "1" });
  for (const bad of ["x path=a\n", "99 path=a\n", "10 path=abc", "6 =ab\n", "05 a=b\n", "7 path\n"]) {
    assert.equal(refusal(() => parsePaxRecords(Buffer.from(bad))).reason, "corrupt", bad);
  }
});

// ---- The incremental parser ----

function parseAll(tar: Uint8Array, chunk: number): { entries: string[]; data: Map<string, Buffer> } {
  const p = new TarParser();
  const events: TarEvent[] = [];
  for (let off = 0; off < tar.length; off += chunk) events.push(...p.push(tar.subarray(off, off + chunk)));
  p.finish();
  const entries: string[] = [];
  const data = new Map<string, Buffer>();
  let current = "";
  for (const ev of events) {
    if (ev.kind === "entry") {
      current = ev.entry.path;
      entries.push(`${ev.entry.type}:${ev.entry.path}${ev.entry.linkPath ? `->${ev.entry.linkPath}` : ""}:${ev.entry.size}`);
      data.set(current, Buffer.alloc(0));
    } else if (ev.kind === "data") data.set(current, Buffer.concat([data.get(current) ?? Buffer.alloc(0), ev.bytes]));
  }
  return { entries, data };
}

test("applies pax and GNU long names and links to the next entry only", () => {
  const longName = `disk/${"n".repeat(150)}.qcow2`;
  const tar = archive(
    pax({ path: longName, size: "700" }),
    file("short", disk(700)).subarray(0, 512), // header says 700 bytes; pax says the same
    pad(disk(700)),
    gnuLong("L", "gnu/" + "g".repeat(120)),
    gnuLong("K", "/" + "t".repeat(120)),
    link("ignored", "2", "ignored"),
    file("after", "x"),
    pax({ comment: "global" }, "g"),
    file("plain", ""),
    end(),
  );
  const { entries, data } = parseAll(tar, 512);
  assert.deepEqual(entries, [`file:${longName}:700`, `symlink:gnu/${"g".repeat(120)}->/${"t".repeat(120)}:0`, "file:after:1", "file:plain:0"]);
  assert.deepEqual(data.get(longName), disk(700));
});

test("reads a size from pax or base-256 beyond the 8 GiB octal limit", () => {
  const big = new TarParser().push(archive(pax({ size: String(20 * 1024 ** 3) }), header({ name: "disk/huge.img", size: 0 })));
  assert.deepEqual(big[0], { kind: "entry", entry: { path: "disk/huge.img", type: "file", size: 20 * 1024 ** 3, linkPath: "", typeflag: "0" } });
  const field = Buffer.alloc(12);
  field[0] = 0x80;
  field.writeUIntBE(20 * 1024 ** 3, 6, 6);
  const b256 = new TarParser().push(header({ name: "disk/huge.img", sizeField: field }));
  assert.equal(b256[0]?.kind === "entry" && b256[0].entry.size, 20 * 1024 ** 3);
});

test("header-only entries consume no data whatever their size field says", () => {
  const tar = archive(header({ name: "d", type: "5", size: 1024 }), file("f", "hello"), end());
  assert.deepEqual(parseAll(tar, 100).entries, ["directory:d:1024", "file:f:5"]);
});

test("an archive may end without zero blocks at an entry boundary, and anything after the zero block is ignored", () => {
  assert.deepEqual(parseAll(file("f", "abc"), 7).entries, ["file:f:3"]);
  assert.deepEqual(parseAll(archive(file("f", "abc"), end(), Buffer.from("trailing junk")), 7).entries, ["file:f:3"]);
});

test("refuses truncated archives, unterminated extended headers and oversized metadata", () => {
  const full = archive(file("f", disk(2000)), end());
  const table: [string, Uint8Array, RegExp][] = [
    ["cut inside data", full.subarray(0, 1000), /before the end of an entry/],
    ["cut inside a header", full.subarray(0, 100), /inside a header/],
    ["pax header with no entry", pax({ path: "x" }), /extended header with no entry/],
    ["cut inside a pax record", pax({ path: "x".repeat(600) }).subarray(0, 700), /extended header with no entry/],
    ["GNU long name with no entry", gnuLong("L", "x"), /extended header with no entry/],
    ["metadata too large", header({ name: "p", type: "x", size: 2 * 1024 * 1024 }), /larger than/],
    ["bad pax size", archive(pax({ size: "12ab" }), file("f", "")), /invalid size/],
    ["bad checksum", header({ name: "f", corruptChecksum: true }), /checksum/],
  ];
  for (const [name, tar, message] of table) {
    const err = refusal(() => {
      const p = new TarParser();
      p.push(tar);
      p.finish();
    });
    assert.equal(err.reason, "corrupt", name);
    assert.match(err.message, message, name);
  }
});

test("chunking never changes what the parser reads", () => {
  const tar = archive(dirEntry("disk/"), pax({ path: "disk/" + "p".repeat(200) }), file("x", disk(3000)), gnuLong("L", "z".repeat(300)), file("y", disk(513, 3)), end());
  const want = parseAll(tar, tar.length);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2000 }), (chunk) => {
      assert.deepEqual(parseAll(tar, chunk), want);
    }),
  );
});

// ---- Choosing the disk ----
