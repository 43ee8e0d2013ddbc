import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import type { ImageSpec } from "../../src/core/api-records.js";
import { checkPayload, MaxPayloadBytes, MaxSignatureLayers, pemPublicKeyBlocks, SignatureAnnotation, signatureLayersOf, signatureTagOf, SimpleSigningMediaType } from "../../src/core/cosign.js";
import { definitionKey } from "../../src/core/image-definition.js";
import type { Descriptor, ManifestDocument } from "../../src/core/oci-manifest.js";
import { planPublicKeys } from "../../src/core/public-keys.js";
import { requestKey } from "../../src/core/request-key.js";

const digest = `sha256:${"ab".repeat(32)}`;
const other = `sha256:${"cd".repeat(32)}`;
const payloadOf = (d: unknown, type: unknown = "cosign container image signature") => Buffer.from(JSON.stringify({ critical: { identity: { "docker-reference": "reg.example/vm/disk" }, image: { "docker-manifest-digest": d }, type }, optional: null }));
const layer = (over: Partial<Descriptor> = {}): Descriptor => ({ mediaType: SimpleSigningMediaType, digest: `sha256:${"11".repeat(32)}`, size: 240, annotations: { [SignatureAnnotation]: "MEUCIQ==" }, ...over });
const image = (layers: Descriptor[]): ManifestDocument => ({ kind: "image", mediaType: "application/vnd.oci.image.manifest.v1+json", config: layer({ mediaType: "application/vnd.oci.image.config.v1+json" }), layers });

test("signatures of a digest live under the sha256-<hex>.sig tag; anything else is refused", () => {
  assert.equal(signatureTagOf(digest), `sha256-${"ab".repeat(32)}.sig`);
  for (const bad of ["sha256:abc", `sha512:${"ab".repeat(64)}`, `sha256:${"AB".repeat(32)}`, "latest"]) assert.throws(() => signatureTagOf(bad));
});

test("only simple signing layers with a base64 signature and a bounded payload are signatures", () => {
  const good = layer();
  const d = signatureLayersOf(image([layer({ mediaType: "application/vnd.oci.image.layer.v1.tar" }), layer({ annotations: {} }), layer({ annotations: { [SignatureAnnotation]: "not base64!" } }), layer({ size: MaxPayloadBytes + 1 }), layer({ digest: "sha256:short" }), good]));
  assert.ok(d.ok);
  assert.equal(d.value.length, 1);
  assert.deepEqual(d.value[0]?.payload, good);
  assert.deepEqual(d.value[0]?.signature, Buffer.from("MEUCIQ==", "base64"));
});

test("a manifest with no signature layer, or an index, means the image is unsigned", () => {
  for (const doc of [image([]), image([layer({ mediaType: "text/plain" })]), { kind: "index", mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] } as ManifestDocument]) {
    const d = signatureLayersOf(doc);
    assert.deepEqual(d.ok ? "ok" : d.reason, "image-unsigned");
  }
});

test("at most MaxSignatureLayers signatures are tried", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 60 }), (count) => {
      const d = signatureLayersOf(image(Array.from({ length: count }, () => layer())));
      assert.ok(d.ok);
      assert.equal(d.value.length, Math.min(count, MaxSignatureLayers));
    }),
  );
});

test("a payload must be a cosign image signature of exactly the digest resolved", () => {
  assert.deepEqual(checkPayload(payloadOf(digest), digest), { ok: true, value: { dockerReference: "reg.example/vm/disk" } });
  assert.deepEqual(checkPayload(payloadOf(digest, "Cosign Container Image Signature"), digest).ok, true, "the type is compared without case, as cosign does");
  const reasons: [Buffer, string][] = [
    [payloadOf(other), "signature-wrong-image"],
    [payloadOf(undefined), "signature-wrong-image"],
    [payloadOf(digest.toUpperCase()), "signature-wrong-image"],
    [payloadOf(digest, "something else"), "signature-invalid"],
    [Buffer.from("{not json"), "signature-invalid"],
    [Buffer.from(JSON.stringify({ critical: "x" })), "signature-invalid"],
    [Buffer.from("[]"), "signature-invalid"],
  ];
  for (const [payload, reason] of reasons) {
    const d = checkPayload(payload, digest);
    assert.equal(d.ok ? "ok" : d.reason, reason, payload.toString());
  }
});

test("no payload of arbitrary JSON passes for another digest", () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const d = checkPayload(Buffer.from(JSON.stringify(v)), digest);
      assert.equal(d.ok, false);
    }),
  );
});

const pem = (generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }) as string);
const pem2 = (generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }) as string);

test("PEM public key blocks are taken whole and re-wrapped; private keys and other text are left out", () => {
  assert.deepEqual(pemPublicKeyBlocks(`# our key\n${pem}\n-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n${pem2.replace(/\n/g, "\r\n")}`), [pem, pem2]);
  assert.deepEqual(pemPublicKeyBlocks("password=hunter2"), []);
  assert.deepEqual(pemPublicKeyBlocks("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"), []);
});

const verified = (publicKeys?: string, name = "keys"): ImageSpec => ({ id: "r", source: { registry: { image: "reg.example/vm/disk:1", verify: { keys: { configMapRef: { name, key: "cosign.pub" } }, ...(publicKeys ? { publicKeys } : {}) } } } });

test("planPublicKeys copies a registry verify's PEM keys, drops stale ones, and leaves other images alone", () => {
  const data: Record<string, string> = { "keys/cosign.pub": `comment\n${pem}`, "junk/cosign.pub": "password=hunter2" };
  const lookup = (r: { name: string; key: string }) => data[`${r.name}/${r.key}`];
  const plain: ImageSpec = { id: "p", source: { registry: { image: "reg.example/vm/p:1" } } };
  const [a, b, c, d] = planPublicKeys([verified(), verified("stale", "gone"), verified(undefined, "junk"), plain], lookup);
  const keysOf = (i: ImageSpec | undefined) => (i && "registry" in i.source ? i.source.registry.verify?.publicKeys : "no registry");
  assert.equal(keysOf(a), pem);
  assert.equal(keysOf(b), undefined, "keys from before are not kept when the ConfigMap no longer has them");
  assert.equal(keysOf(c), undefined);
  assert.deepEqual(d, plain);
});

test("new keys are a new definition and a new request; no verify keeps the old keys of both", () => {
  assert.notEqual(definitionKey(verified(pem)), definitionKey(verified(pem2)));
  assert.notEqual(definitionKey(verified(pem)), definitionKey({ id: "r", source: { registry: { image: "reg.example/vm/disk:1" } } }));
  assert.equal(definitionKey({ id: "r", source: { registry: { image: "reg.example/vm/disk:1" } } }), JSON.stringify([{ registry: "reg.example/vm/disk:1" }, "", ""]));
  const source = { registry: { image: "reg.example/vm/disk:1" } };
  assert.notEqual(requestKey({ source, registryVerify: { publicKeys: pem } }), requestKey({ source, registryVerify: { publicKeys: pem2 } }));
  assert.notEqual(requestKey({ source, registryVerify: { publicKeys: pem } }), requestKey({ source }));
});
