import { test } from "node:test";
import assert from "node:assert/strict";
import type { ImageSpec } from "../../src/core/api-records.js";
import { definitionHash, definitionKey, hashOfDefinitionKey } from "../../src/core/image-definition.js";

function image(id: string, over: Partial<ImageSpec> = {}): ImageSpec {
  return { id, source: { http: { url: `https://images.example/${id}.qcow2` } }, ...over };
}

test("equal quantities written differently are the same definition", () => {
  assert.equal(definitionKey(image("a", { maxVirtualSize: "1Gi" })), definitionKey(image("a", { maxVirtualSize: "1073741824" })));
  assert.equal(definitionHash(image("a", { maxVirtualSize: "1Gi" })), definitionHash(image("a", { maxVirtualSize: "1073741824" })));
  assert.notEqual(definitionKey(image("a", { maxVirtualSize: "1Gi" })), definitionKey(image("a", { maxVirtualSize: "1G" })));
});

test("each part that decides the bytes changes the definition; the id and who wants it do not", () => {
  const variants = [
    image("a"),
    image("a", { source: { http: { url: "http://other/a.qcow2" } } }),
    image("a", { checksum: `sha256:${"1".repeat(64)}` }),
    image("a", { maxVirtualSize: "1Gi" }),
    image("a", { maxVirtualSize: "not-a-size" }),
    image("a", { source: { registry: { image: "https://images.example/a.qcow2" } } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS" } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA512SUMS" } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS", name: "b.qcow2" } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS", algorithm: "sha256" } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS", signature: { keys: { configMapRef: { name: "k", key: "a.asc" } } } } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS", signature: { keys: { configMapRef: { name: "k", key: "b.asc" } } } } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS", signature: { url: "https://images.example/SHA256SUMS.gpg", keys: { configMapRef: { name: "k", key: "a.asc" } } } } }),
    image("a", { checksumFrom: { url: "https://images.example/SHA256SUMS", signature: { keys: { configMapRef: { name: "k", key: "a.asc" } }, publicKeys: "new keys" } } }),
  ];
  assert.equal(new Set(variants.map(definitionKey)).size, variants.length);
  assert.equal(new Set(variants.map(definitionHash)).size, variants.length);
  assert.equal(definitionKey({ ...image("a"), id: "other" }), definitionKey(image("a")));
});

test("a definition without checksumFrom keeps the key it had before checksumFrom existed", () => {
  assert.equal(definitionKey(image("a", { checksum: `sha256:${"1".repeat(64)}` })), JSON.stringify([{ http: "https://images.example/a.qcow2" }, `sha256:${"1".repeat(64)}`, ""]));
});

test("the hash is 16 hex digits of the key, the same each time", () => {
  const key = definitionKey(image("a"));
  assert.match(definitionHash(image("a")), /^[0-9a-f]{16}$/);
  assert.equal(definitionHash(image("a")), hashOfDefinitionKey(key));
  assert.equal(definitionHash(image("a")), definitionHash(image("a")));
});
