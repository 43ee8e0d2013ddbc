import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decideSumsChecksum, defaultSumsName, MaxSumsBytes, parseSumsFile, parseSumsLine, stripClearsign, type SumsLookup } from "../../src/core/sums-file.js";

const a = "a".repeat(64);
const b = "b".repeat(64);
const long = "c".repeat(128);
const url = "https://alice:hunter2@cloud.example/releases/SHA256SUMS";

function lookup(text: string, over: Partial<SumsLookup> = {}): SumsLookup {
  return { url, sizeBytes: text.length, text, name: "disk.img", ...over };
}

function outcome(l: SumsLookup): string {
  const v = decideSumsChecksum(l);
  return v.accept ? `${v.checksum.algorithm}:${v.checksum.hex}` : v.reason;
}

describe("parseSumsLine", () => {
  const table: [string, string, string | undefined][] = [
    ["GNU text mode", `${a}  disk.img`, `disk.img sha256:${a}`],
    ["GNU binary mode", `${a} *disk.img`, `disk.img sha256:${a}`],
    ["GNU sha512", `${long}  disk.img`, `disk.img sha512:${long}`],
    ["upper-case hex is the same digest", `${a.toUpperCase()}  disk.img`, `disk.img sha256:${a}`],
    ["a ./ prefix is dropped", `${a}  ./disk.img`, `disk.img sha256:${a}`],
    ["a name with spaces", `${a}  my disk.img`, `my disk.img sha256:${a}`],
    ["BSD", `SHA256 (disk.img) = ${a}`, `disk.img sha256:${a}`],
    ["BSD sha512", `SHA512 (disk.img) = ${long}`, `disk.img sha512:${long}`],
    ["BSD without spaces (shasum)", `SHA256(./disk.img)= ${a}`, `disk.img sha256:${a}`],
    ["a CRLF line", `${a}  disk.img\r`, `disk.img sha256:${a}`],
    ["BSD with a hash of the wrong length", `SHA256 (disk.img) = ${long}`, undefined],
    ["an MD5 line", `${"d".repeat(32)}  disk.img`, undefined],
    ["a BSD MD5 line", `MD5 (disk.img) = ${"d".repeat(32)}`, undefined],
    ["a Fedora size comment", "# disk.img: 123456 bytes", undefined],
    ["one space only (not sha256sum's output)", `${a} disk.img`, undefined],
    ["blank", "   ", undefined],
    ["HTML", "<html><body>Not found</body></html>", undefined],
  ];
  for (const [what, line, want] of table) {
    test(what, () => {
      const e = parseSumsLine(line);
      assert.equal(e ? `${e.name} ${e.checksum.algorithm}:${e.checksum.hex}` : undefined, want);
    });
  }
});

describe("decideSumsChecksum", () => {
  const fedora = [
    "-----BEGIN PGP SIGNED MESSAGE-----",
    "Hash: SHA256",
    "",
    "# Fedora-Cloud-41.qcow2: 123 bytes",
    `SHA256 (Fedora-Cloud-41.qcow2) = ${a}`,
    "# Fedora-Cloud-41.raw.xz: 99 bytes",
    `SHA256 (Fedora-Cloud-41.raw.xz) = ${b}`,
    "-----BEGIN PGP SIGNATURE-----",
    "",
    "iQIzBAEBCAAdFiEE",
    "-----END PGP SIGNATURE-----",
  ].join("\n");
  const table: [string, SumsLookup, string][] = [
    ["GNU: the image's line", lookup(`${b}  other.img\n${a}  disk.img\n`), `sha256:${a}`],
    ["BSD: the image's line", lookup(`SHA256 (other.img) = ${b}\nSHA256 (disk.img) = ${a}\n`), `sha256:${a}`],
    ["a ./ prefix on the line", lookup(`${a} *./disk.img\n`), `sha256:${a}`],
    ["a ./ prefix on the name asked", lookup(`${a}  disk.img\n`, { name: "./disk.img" }), `sha256:${a}`],
    ["Fedora's CHECKSUM, once the signature is off", lookup(stripClearsign(fedora), { name: "Fedora-Cloud-41.qcow2" }), `sha256:${a}`],
    ["sha512 is taken over sha256 when both are listed", lookup(`${a}  disk.img\n${long}  disk.img\n`), `sha512:${long}`],
    ["the algorithm asked is the one taken", lookup(`${a}  disk.img\n${long}  disk.img\n`, { algorithm: "sha256" }), `sha256:${a}`],
    ["the same line twice is one entry", lookup(`${a}  disk.img\n${a} *./disk.img\n`), `sha256:${a}`],
    ["two lines that disagree", lookup(`${a}  disk.img\n${b}  disk.img\n`), "checksum-ambiguous"],
    ["two sha256 lines that disagree beside a sha512 one", lookup(`${a}  disk.img\n${b}  disk.img\n${long}  disk.img\n`), "checksum-ambiguous"],
    ["not listed", lookup(`${a}  other.img\n`), "checksum-not-listed"],
    ["listed only under a path", lookup(`${a}  amd64/disk.img\n`), "checksum-not-listed"],
    ["names are case-sensitive", lookup(`${a}  Disk.img\n`), "checksum-not-listed"],
    ["listed, but not for the algorithm asked", lookup(`${a}  disk.img\n`, { algorithm: "sha512" }), "checksum-not-listed"],
    ["no checksum line at all (an error page)", lookup("<html>Not found</html>\n"), "sums-malformed"],
    ["empty", lookup(""), "sums-malformed"],
    ["MD5 only", lookup(`${"d".repeat(32)}  disk.img\n`), "sums-malformed"],
    ["over the size bound", lookup(`${a}  disk.img\n`, { sizeBytes: MaxSumsBytes + 1 }), "sums-too-large"],
    ["at the size bound", lookup(`${a}  disk.img\n`, { sizeBytes: MaxSumsBytes }), `sha256:${a}`],
  ];
  for (const [what, l, want] of table) test(what, () => assert.equal(outcome(l), want));

  test("a refusal names the file's URL without its password", () => {
    const v = decideSumsChecksum(lookup(`${a}  other.img\n`));
    assert.equal(v.accept, false);
    if (v.accept) return;
    assert.match(v.message, /cloud\.example\/releases\/SHA256SUMS/);
    assert.doesNotMatch(v.message, /hunter2/);
    assert.match(v.message, /"disk\.img"/);
  });
});

describe("stripClearsign", () => {
  test("keeps the body, un-dash-escaped, and drops the armor and the signature", () => {
    const text = ["-----BEGIN PGP SIGNED MESSAGE-----", "Hash: SHA256", "", `${a}  disk.img`, "- -leading-dash", "-----BEGIN PGP SIGNATURE-----", "", `${b}  disk.img`, "-----END PGP SIGNATURE-----", ""].join("\n");
    assert.equal(stripClearsign(text), `${a}  disk.img\n-leading-dash`);
    assert.deepEqual(parseSumsFile(stripClearsign(text)).map((e) => e.checksum.hex), [a]);
  });
  test("a plain file is left as it is", () => assert.equal(stripClearsign(`${a}  disk.img\n`), `${a}  disk.img\n`));
});

describe("defaultSumsName", () => {
  const table: [string, string][] = [
    ["https://cloud.example/noble/current/noble-server-cloudimg-amd64.img", "noble-server-cloudimg-amd64.img"],
    ["https://cloud.example/a/disk%20one.img?token=x", "disk one.img"],
    ["https://cloud.example/a/dir/", "dir"],
  ];
  for (const [u, want] of table) test(u, () => assert.equal(defaultSumsName(u), want));
});
