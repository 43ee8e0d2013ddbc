import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { formatChecksum, parseChecksum } from "../../src/core/checksum.js";

describe("checksums", () => {
  test("sha256 and sha512 with any case", () => {
    assert.deepEqual(parseChecksum(`sha256:${"AB".repeat(32)}`), { algorithm: "sha256", hex: "ab".repeat(32) });
    assert.equal(parseChecksum(`sha512:${"0".repeat(128)}`).algorithm, "sha512");
  });
  const bad = ["md5:abc", "sha256:", `sha256:${"0".repeat(63)}`, `sha512:${"0".repeat(64)}`, `sha256:${"g".repeat(64)}`, "0".repeat(64)];
  for (const b of bad) test(`refuses "${b.slice(0, 20)}"`, () => assert.throws(() => parseChecksum(b), RangeError));
});

test("a parsed checksum formats back to its canonical text", () => {
  const text = `sha256:${"ab".repeat(32)}`;
  assert.equal(formatChecksum(parseChecksum(text.toUpperCase().replace("SHA256", "sha256"))), text);
});
