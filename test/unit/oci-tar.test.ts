import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { TarDiskSelector, normaliseTarPath } from "../../src/core/tar-disk.js";
import { TarFormatError, TarParser, parsePaxRecords, parseTarHeader, parseTarNumber, type TarEvent } from "../../src/core/tar.js";

// ---- A minimal tar writer for building inputs (GNU tar builds the real ones in the integration tests) ----

interface HeaderSpec {
  name: string;
  size?: number;
  type?: string;
  linkname?: string;
  prefix?: string;
  magic?: "ustar" | "gnu" | "v7";
  sizeField?: Uint8Array;
  corruptChecksum?: boolean;
  signedChecksum?: boolean;
}

function octal(value: number, width: number): Buffer {
  return Buffer.from(value.toString(8).padStart(width - 1, "0") + "\0", "ascii");
}

function header(h: HeaderSpec): Buffer {
  const b = Buffer.alloc(512);
  b.write(h.name, 0, 100, "utf8");
  octal(0o644, 8).copy(b, 100);
  octal(0, 8).copy(b, 108);
  octal(0, 8).copy(b, 116);
  (h.sizeField ? Buffer.from(h.sizeField) : octal(h.size ?? 0, 12)).copy(b, 124);
  octal(0, 12).copy(b, 136);
  b.write(h.type ?? "0", 156, 1, "ascii");
  if (h.linkname) b.write(h.linkname, 157, 100, "utf8");
  const magic = h.magic ?? "ustar";
  if (magic === "ustar") b.write("ustar\u000000", 257, 8, "binary");
  if (magic === "gnu") b.write("ustar  \u0000", 257, 8, "binary");
  if (h.prefix) b.write(h.prefix, 345, 155, "utf8");
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += h.signedChecksum && byte > 127 ? byte - 256 : byte;
  octal(h.corruptChecksum ? sum + 1 : sum, 7).copy(b, 148);
  b[155] = 0x20;
  return b;
}

function pad(data: Uint8Array): Buffer {
  const rem = data.length % 512;
  return Buffer.concat([Buffer.from(data), Buffer.alloc(rem === 0 ? 0 : 512 - rem)]);
}

function file(name: string, data: Uint8Array | string, extra: Partial<HeaderSpec> = {}): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  return Buffer.concat([header({ name, size: bytes.length, ...extra }), pad(bytes)]);
}
const dirEntry = (name: string) => header({ name, type: "5" });
const link = (name: string, type: string, target: string) => header({ name, type, linkname: target });

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  // The length counts bytes, including its own digits.
  let len = Buffer.byteLength(body) + 1;
  while (Buffer.byteLength(`${len}${body}`) !== len) len = Buffer.byteLength(`${len}${body}`);
  return `${len}${body}`;
}
function pax(records: Record<string, string>, type = "x"): Buffer {
  const data = Buffer.from(Object.entries(records).map(([k, v]) => paxRecord(k, v)).join(""));
  return Buffer.concat([header({ name: "PaxHeader", type, size: data.length }), pad(data)]);
}
function gnuLong(type: "L" | "K", value: string): Buffer {
  const data = Buffer.from(value + "\0");
  return Buffer.concat([header({ name: "././@LongLink", type, size: data.length, magic: "gnu" }), pad(data)]);
}
const end = () => Buffer.alloc(1024);
const archive = (...parts: Buffer[]) => Buffer.concat(parts);

function disk(size: number, seed = 7): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function selectDisk(tar: Uint8Array, opts: ConstructorParameters<typeof TarDiskSelector>[0] = {}, chunk = 997): Buffer {
  const s = new TarDiskSelector(opts);
  const out: Uint8Array[] = [];
  for (let off = 0; off < tar.length; off += chunk) out.push(...s.push(tar.subarray(off, off + chunk)));
  out.push(...s.finish());
  return Buffer.concat(out);
}

function refusal(fn: () => unknown): TarFormatError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TarFormatError) return err;
    throw err;
  }
  assert.fail("expected a TarFormatError");
}

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

test("normalises tar paths and refuses .. components", () => {
  const table: [string, string][] = [
    ["disk/a.img", "disk/a.img"],
    ["./disk/a.img", "disk/a.img"],
    ["/disk//./a.img", "disk/a.img"],
    ["disk/", "disk"],
    ["./", ""],
  ];
  for (const [input, want] of table) assert.equal(normaliseTarPath(input), want, input);
  for (const bad of ["../x", "disk/../../x", "disk/..", "a/../disk/x"]) assert.equal(refusal(() => normaliseTarPath(bad)).reason, "not-a-disk", bad);
});

test("emits exactly the disk file's bytes", () => {
  const d = disk(200_000);
  const small = disk(100, 9);
  const table: { name: string; tar: Buffer; want: Buffer }[] = [
    { name: "containerDisk", tar: archive(dirEntry("disk/"), file("disk/disk.img", d), end()), want: d },
    { name: "./ paths, other files and links around it", tar: archive(dirEntry("./"), dirEntry("./disk/"), file("./etc/hosts", "x"), link("./bin", "2", "usr/bin"), file("./disk/disk.qcow2", d), file("./after", disk(70_000)), end()), want: d },
    { name: "the only regular file, large", tar: archive(file("image.qcow2", d), end()), want: d },
    { name: "the only regular file, small and held", tar: archive(dirEntry("x/"), file("x/tiny.img", small), end()), want: small },
    { name: "a held small file dropped for a later disk/ file", tar: archive(file("readme", small), file("disk/d.img", d), end()), want: d },
    { name: "a pax long path under disk/", tar: archive(pax({ path: `disk/${"p".repeat(300)}.img` }), file("short", d), end()), want: d },
    { name: "a GNU long name under disk/", tar: archive(gnuLong("L", `disk/${"g".repeat(300)}.img`), file("././@LongLink", d, { magic: "gnu" }), end()), want: d },
    { name: "a ustar prefix under disk/", tar: archive(file("name.img", d, { prefix: "disk/sub" }), end()), want: d },
    { name: "an empty disk file", tar: archive(file("disk/empty.img", ""), end()), want: Buffer.alloc(0) },
  ];
  for (const row of table) {
    for (const chunk of [1, 511, 512, 4096, row.tar.length]) assert.deepEqual(selectDisk(row.tar, {}, chunk), row.want, `${row.name} in chunks of ${chunk}`);
  }
});

test("reports the chosen disk entry", () => {
  const s = new TarDiskSelector();
  s.push(archive(file("./disk/d.img", disk(10)), end()));
  s.finish();
  assert.deepEqual(s.chosen, { path: "disk/d.img", size: 10 });
});

test("refuses links, devices, sparse files, .. paths, ambiguity and oversize as the disk", () => {
  const d = disk(100_000);
  const table: { name: string; tar: Buffer; reason: string; message: RegExp; opts?: ConstructorParameters<typeof TarDiskSelector>[0] }[] = [
    { name: "two files under disk/", tar: archive(file("disk/a.img", "a"), file("disk/b.img", "b"), end()), reason: "not-a-disk", message: /several files under disk\/ \("disk\/a.img", "disk\/b.img"\)/ },
    { name: "symlink as the disk", tar: archive(link("disk/disk.img", "2", "/etc/shadow"), end()), reason: "not-a-disk", message: /symlink/ },
    { name: "hardlink as the disk", tar: archive(file("x", "a"), link("disk/disk.img", "1", "x"), end()), reason: "not-a-disk", message: /hardlink/ },
    { name: "char device", tar: archive(link("disk/zero", "3", ""), end()), reason: "not-a-disk", message: /char-device/ },
    { name: "block device", tar: archive(link("disk/sda", "4", ""), end()), reason: "not-a-disk", message: /block-device/ },
    { name: "fifo", tar: archive(link("disk/p", "6", ""), end()), reason: "not-a-disk", message: /fifo/ },
    { name: "GNU sparse", tar: archive(file("disk/s.img", "abc", { type: "S" }), end()), reason: "not-a-disk", message: /sparse/ },
    { name: "pax sparse", tar: archive(pax({ "GNU.sparse.major": "1", "GNU.sparse.name": "disk/s.img" }), file("disk/GNUSparseFile.0/s.img", "abc"), end()), reason: "not-a-disk", message: /sparse/ },
    { name: "unknown type", tar: archive(file("disk/q", "abc", { type: "Q" }), end()), reason: "not-a-disk", message: /other/ },
    { name: "disk itself a symlink", tar: archive(link("disk", "2", "/"), file("disk/x.img", "a"), end()), reason: "not-a-disk", message: /"disk" is a symlink/ },
    { name: "../ path", tar: archive(file("../disk.img", "a"), end()), reason: "not-a-disk", message: /"\.\."/ },
    { name: ".. inside disk/", tar: archive(file("disk/../../etc/cron.d/x", "a"), end()), reason: "not-a-disk", message: /"\.\."/ },
    { name: ".. on an ignored symlink", tar: archive(file("disk/d.img", "a"), link("../x", "2", "y"), end()), reason: "not-a-disk", message: /"\.\."/ },
    { name: "nothing but directories", tar: archive(dirEntry("disk/"), end()), reason: "not-a-disk", message: /no regular file/ },
    { name: "empty archive", tar: end(), reason: "not-a-disk", message: /no regular file/ },
    { name: "two small files outside disk/", tar: archive(file("a", "a"), file("b", "b"), end()), reason: "not-a-disk", message: /2 regular files and none under disk/ },
    { name: "a large file then another", tar: archive(file("a.img", d), file("b", "b"), end()), reason: "not-a-disk", message: /several regular files \("a.img", "b"\)/ },
    { name: "a large file then a disk/ file", tar: archive(file("a.img", d), file("disk/b.img", "b"), end()), reason: "not-a-disk", message: /already taken as the disk/ },
    { name: "disk over the limit", tar: archive(file("disk/a.img", d), end()), reason: "too-large", message: /more than the limit of 1000/, opts: { maxBytes: 1000 } },
    { name: "only file over the limit", tar: archive(file("a.img", d), end()), reason: "too-large", message: /limit/, opts: { maxBytes: 1000 } },
    { name: "truncated disk", tar: archive(file("disk/a.img", d)).subarray(0, 50_000), reason: "corrupt", message: /before the end/ },
  ];
  for (const row of table) {
    const err = refusal(() => selectDisk(row.tar, row.opts));
    assert.equal(err.reason, row.reason, row.name);
    assert.match(err.message, row.message, row.name);
  }
});

test("chunking never changes the chosen bytes", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 1, max: 5000 }), fc.boolean(), (size, chunk, extras) => {
      const d = disk(size, size & 0xff);
      const parts = extras ? [dirEntry("./disk/"), file("./etc/x", "conf"), file("./disk/d.qcow2", d), link("./l", "2", "x"), end()] : [file("disk/d.qcow2", d)];
      assert.deepEqual(selectDisk(archive(...parts), {}, chunk), d);
    }),
    { numRuns: 60 },
  );
});
