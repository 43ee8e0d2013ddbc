import { test } from "node:test";
import assert from "node:assert/strict";
import { dearmorPublicKeys, isArmored } from "../../src/core/openpgp-armor.js";

const block = (body: string[], headers: string[] = []) => ["-----BEGIN PGP PUBLIC KEY BLOCK-----", ...headers, "", ...body, "=AbCd", "-----END PGP PUBLIC KEY BLOCK-----"].join("\n");

test("one block: the base64 body, without headers or the CRC line", () => {
  assert.deepEqual(dearmorPublicKeys(block(["mDMEZ0", "5aBc=="], ["Comment: test key"])), ["mDMEZ05aBc=="]);
});

test("two blocks (a vendor's two keys) in order, with text around them", () => {
  assert.deepEqual(dearmorPublicKeys(`Fedora 41 key\n${block(["AAAA"])}\r\n\nand the next\n${block(["BBBB"])}\n`), ["AAAA", "BBBB"]);
});

test("refusals", () => {
  const table: [string, string][] = [
    ["no block", "hello"],
    ["a private key block", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----"],
    ["no END", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"],
    ["an empty block", block([])],
    ["a body that is not base64", block(["not base64!"])],
  ];
  for (const [what, text] of table) assert.throws(() => dearmorPublicKeys(text), RangeError, what);
});

test("armored text and binary keyrings are told apart by the first byte", () => {
  assert.equal(isArmored("-".charCodeAt(0)), true);
  assert.equal(isArmored(0x99), false);
  assert.equal(isArmored(0xc6), false);
  assert.equal(isArmored(undefined), false);
});
