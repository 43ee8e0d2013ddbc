import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { TarDiskSelector, normaliseTarPath } from "../../src/core/tar-disk.js";
import { file, dirEntry, link, pax, gnuLong, end, archive, disk, refusal } from "../harness/tar-archive.js";

function selectDisk(tar: Uint8Array, opts: ConstructorParameters<typeof TarDiskSelector>[0] = {}, chunk = 997): Buffer {
  const s = new TarDiskSelector(opts);
  const out: Uint8Array[] = [];
  for (let off = 0; off < tar.length; off += chunk) out.push(...s.push(tar.subarray(off, off + chunk)));
  out.push(...s.finish());
  return Buffer.concat(out);
}

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
