import { test } from "node:test";
import assert from "node:assert/strict";
import { requestKey, type RequestParts } from "../../src/core/request-key.js";

const base: RequestParts = { source: { http: { url: "http://o/a.qcow2" } }, checksum: "sha256:" + "a".repeat(64), maxVirtualSize: 1024 };

test("requests that differ in source, checksum or limit have different keys", () => {
  const variants: [string, RequestParts][] = [
    ["another URL", { ...base, source: { http: { url: "http://o/b.qcow2" } } }],
    ["a registry image", { ...base, source: { registry: { image: "r/a:1" } } }],
    ["another checksum", { ...base, checksum: "sha256:" + "b".repeat(64) }],
    ["no checksum", { source: base.source, maxVirtualSize: 1024 }],
    ["another algorithm", { ...base, checksum: "sha512:" + "a".repeat(128) }],
    ["another limit", { ...base, maxVirtualSize: 2048 }],
    ["no limit", { source: base.source, ...(base.checksum ? { checksum: base.checksum } : {}) }],
    ["a resolved source", { ...base, source: { url: "http://o/a.qcow2" } }],
    ["a checksum file", { source: base.source, checksumFrom: { url: "http://o/SHA256SUMS" } }],
    ["another checksum file", { source: base.source, checksumFrom: { url: "http://o/SHA512SUMS" } }],
    ["another listed name", { source: base.source, checksumFrom: { url: "http://o/SHA256SUMS", name: "b.qcow2" } }],
    ["a signed checksum file", { source: base.source, checksumFrom: { url: "http://o/SHA256SUMS", signature: { keys: new Uint8Array([1]) } } }],
    ["other keys", { source: base.source, checksumFrom: { url: "http://o/SHA256SUMS", signature: { keys: new Uint8Array([2]) } } }],
    ["a detached signature", { source: base.source, checksumFrom: { url: "http://o/SHA256SUMS", signature: { url: "http://o/SHA256SUMS.gpg", keys: new Uint8Array([2]) } } }],
  ];
  const keys = new Set([requestKey(base), ...variants.map(([, r]) => requestKey(r))]);
  assert.equal(keys.size, variants.length + 1);
});

test("the same request has the same key, whatever the case of its hex digits or a registry token", () => {
  assert.equal(requestKey(base), requestKey({ ...base, checksum: "sha256:" + "A".repeat(64) }));
  const resolved = { url: "http://r/blob", unpack: "tar", expectedDigest: "sha256:" + "c".repeat(64) };
  assert.equal(requestKey({ source: resolved }), requestKey({ source: { ...resolved, headers: { authorization: "Bearer other" } } as RequestParts["source"] }));
});

test("a key never holds the URL, so a password in it stays out of the lock file", () => {
  const k = requestKey({ source: { http: { url: "https://u:hunter2@o/a" } } });
  assert.match(k, /^[0-9a-f]{32}$/);
  assert.ok(!k.includes("hunter2"));
});
