import { test } from "node:test";
import assert from "node:assert/strict";
import type { ImageSpec } from "../../src/core/api-records.js";
import { dearmorPublicKeys } from "../../src/core/openpgp-armor.js";
import { MaxPublicKeysLength, planPublicKeys, publicKeyBlocks } from "../../src/core/public-keys.js";

const body = "mDMEZ05a".repeat(20);
const armored = `Comment: vendor\n-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: x\n\n${body}\n=AbCd\n-----END PGP PUBLIC KEY BLOCK-----\n`;

function signed(name: string, key: string, publicKeys?: string): ImageSpec {
  return { id: "a", source: { http: { url: "https://v.example/a.img" } }, checksumFrom: { url: "https://v.example/SUMS", signature: { keys: { configMapRef: { name, key } }, ...(publicKeys ? { publicKeys } : {}) } } };
}

test("only the public key blocks are copied, the same keys once decoded", () => {
  const out = publicKeyBlocks(armored);
  assert.ok(out);
  assert.deepEqual(dearmorPublicKeys(out), [body]);
  assert.doesNotMatch(out, /Comment|vendor/);
});

test("text with no public key block, or too much of it, is not copied", () => {
  assert.equal(publicKeyBlocks("password=hunter2"), undefined);
  assert.equal(publicKeyBlocks("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n"), undefined);
  const huge = `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n${"A".repeat(MaxPublicKeysLength)}\n-----END PGP PUBLIC KEY BLOCK-----\n`;
  assert.equal(publicKeyBlocks(huge), undefined);
});

test("planPublicKeys fills in the keys a checksumFrom names, and nothing when they are missing", () => {
  const data: Record<string, string> = { "keys/ubuntu.asc": armored, "keys/other": "not a key" };
  const lookup = (r: { name: string; key: string }) => data[`${r.name}/${r.key}`];
  const plain: ImageSpec = { id: "p", source: { http: { url: "https://v.example/p.img" } }, checksumFrom: { url: "https://v.example/SUMS" } };
  const fixed: ImageSpec = { id: "f", source: { http: { url: "https://v.example/f.img" } }, checksum: `sha256:${"a".repeat(64)}` };
  const [a, b, c, d, e] = planPublicKeys([signed("keys", "ubuntu.asc"), signed("keys", "other"), signed("keys", "gone", "stale keys"), plain, fixed], lookup);
  assert.equal(a?.checksumFrom?.signature?.publicKeys, publicKeyBlocks(armored));
  assert.equal(b?.checksumFrom?.signature?.publicKeys, undefined);
  assert.equal(c?.checksumFrom?.signature?.publicKeys, undefined, "keys from before are not kept when the ConfigMap no longer has them");
  assert.deepEqual(d, plain);
  assert.deepEqual(e, fixed);
});
