/**
 * Cosign-signed registry images against real parts: a real registry, signatures made by the real cosign
 * (`cosign sign --key`, pushed as the `sha256-<hex>.sig` tag), verified by the pipeline with @sigstore/verify
 * before any layer is downloaded. Good, unsigned, wrongly keyed, copied and tampered signatures each get their
 * own reason, and a refused image leaves nothing in the base dir and never had its disk layer requested.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signatureTagOf } from "../../src/core/cosign.js";
import { baseNameFor } from "../../src/core/names.js";
import { checkSourceVersion } from "../../src/image/version-check.js";
import { fetchImage } from "../../src/image/pipeline.js";
import type { FetchRequest } from "../../src/image/fetch-request.js";
import { keyFingerprint } from "../../src/image/cosign-verify.js";
import { ImageRejectedError } from "../../src/lib/errors.js";
import { silentLogger } from "../../src/lib/log.js";
import { CosignSigner } from "../harness/cosign.js";
import { filesStartingWith, runFetch } from "../harness/fetch-cli.js";
import { ImageDir } from "../harness/images.js";
import { OciManifestType, pushArtifact, startRegistry, startTamperingProxy, type Pushed, type TestRegistry } from "../harness/registry.js";
import { createPublicKey } from "node:crypto";

const QcowType = "application/vnd.qemu.qcow2";

async function rejection(p: Promise<unknown>): Promise<ImageRejectedError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ImageRejectedError) return err;
    throw err;
  }
  assert.fail("expected a refusal");
}

describe("cosign-verified registry images", () => {
  let reg: TestRegistry;
  let images: ImageDir;
  let baseDir: string;
  let publisher: CosignSigner;
  let stranger: CosignSigner;
  let publisherKey: string;
  let disk: Buffer;
  let n = 0;

  before(async () => {
    images = await ImageDir.create("basecache-cosign-");
    baseDir = await mkdtemp(join(tmpdir(), "basecache-cosign-base-"));
    reg = await startRegistry();
    [publisher, stranger] = await Promise.all([CosignSigner.create(), CosignSigner.create()]);
    publisherKey = await publisher.publicKey();
    disk = await readFile(await images.qcow2("disk.qcow2", 21));
  });
  after(async () => {
    await reg?.stop();
    await Promise.all([publisher?.close(), stranger?.close()]);
    await images?.cleanup();
    await rm(baseDir, { recursive: true, force: true });
  });

  /** A fresh repository with one qcow2 artifact under `v1`; a different pattern makes a different manifest. */
  async function push(repo: string, pattern = 21): Promise<Pushed> {
    const data = pattern === 21 ? disk : await readFile(await images.qcow2(`disk-${pattern}.qcow2`, pattern));
    return pushArtifact(reg, repo, "v1", [{ data, mediaType: QcowType, title: "disk.qcow2" }]);
  }
  const byDigest = (p: Pushed) => `${p.ref.replace(/:v1$/, "")}@${p.manifest.digest}`;
  const request = (id: string, ref: string, keys = publisherKey): FetchRequest => ({ baseDir, id, source: { registry: { image: ref } }, registryVerify: { publicKeys: keys, keysFrom: "the test's keys" }, log: silentLogger });

  test("an image signed by a trusted key becomes a base; the sidecar records the digest and the key", async () => {
    const pushed = await push(`vm/signed-${++n}`);
    await publisher.sign(byDigest(pushed));
    const r = await fetchImage(request("signed", pushed.ref));
    assert.equal(r.format, "qcow2");
    const sidecar = JSON.parse(await readFile(join(baseDir, `${baseNameFor("signed")}.info.json`), "utf8")) as { signature?: { digest: string; signedBy: string } };
    assert.equal(sidecar.signature?.digest, pushed.manifest.digest);
    assert.equal(sidecar.signature?.signedBy, keyFingerprint(createPublicKey(publisherKey)));
  });

  test("with two keys supplied, the one that signed is the one recorded", async () => {
    const pushed = await push(`vm/two-keys-${++n}`);
    await publisher.sign(byDigest(pushed));
    const keys = (await stranger.publicKey()) + publisherKey;
    await fetchImage(request("two-keys", pushed.ref, keys));
    const sidecar = JSON.parse(await readFile(join(baseDir, `${baseNameFor("two-keys")}.info.json`), "utf8")) as { signature?: { signedBy: string } };
    assert.equal(sidecar.signature?.signedBy, keyFingerprint(createPublicKey(publisherKey)));
  });

  test("refusals: unsigned, signed by another key, no usable key; each leaves nothing and never asks for the disk layer", async () => {
    const blobsAsked: string[] = [];
    const proxy = await startTamperingProxy(reg, (_p, body) => body, (path, body) => {
      blobsAsked.push(path);
      return body;
    });
    process.env.BASECACHE_INSECURE_REGISTRIES = proxy.host;
    try {
      const unsigned = await push(`vm/unsigned-${++n}`);
      const strangers = await push(`vm/strangers-${++n}`);
      await stranger.sign(byDigest(strangers));
      const via = (p: Pushed) => p.ref.replace(reg.host, proxy.host);
      const cases: [string, FetchRequest, string][] = [
        ["unsigned", request("unsigned", via(unsigned)), "image-unsigned"],
        ["strangers", request("strangers", via(strangers)), "signature-invalid"],
        ["no-keys", request("no-keys", via(strangers), "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n"), "signature-no-keys"],
      ];
      for (const [id, req, reason] of cases) {
        const err = await rejection(fetchImage(req));
        assert.equal(err.reason, reason, err.message);
        assert.deepEqual(await filesStartingWith(baseDir, baseNameFor(id)), [], `nothing left for ${id}`);
      }
      const diskLayer = unsigned.layer?.digest ?? "";
      assert.ok(!blobsAsked.some((p) => p.includes(diskLayer)), `the disk layer was never requested: ${blobsAsked.join(", ")}`);
    } finally {
      delete process.env.BASECACHE_INSECURE_REGISTRIES;
      await proxy.close();
    }
  });

  test("a good signature copied from another image is refused as signature-wrong-image", async () => {
    const signed = await push(`vm/copy-${++n}`, 22);
    await publisher.sign(byDigest(signed));
    const other = await push(`vm/copy-${n}`, 23);
    // The publisher's signature manifest of the first image, put under the second image's signature tag.
    const sigManifest = await fetch(`${reg.url}/v2/vm/copy-${n}/manifests/${signatureTagOf(signed.manifest.digest)}`, { headers: { accept: OciManifestType } }).then((r) => r.text());
    await reg.pushManifest(`vm/copy-${n}`, signatureTagOf(other.manifest.digest), sigManifest, OciManifestType);
    const err = await rejection(fetchImage(request("copied", `${reg.host}/vm/copy-${n}@${other.manifest.digest}`)));
    assert.equal(err.reason, "signature-wrong-image", err.message);
    assert.match(err.message, new RegExp(signed.manifest.digest));
  });

  test("a signature payload changed on the way is refused, the image untouched", async () => {
    const pushed = await push(`vm/mitm-${++n}`);
    await publisher.sign(byDigest(pushed));
    // One payload grows (an extra claim), the next keeps its length but names another digest: both are not the blob signed.
    let tampered = 0;
    const proxy = await startTamperingProxy(reg, (_p, body) => body, (_path, body) => {
      const text = body.toString("utf8");
      if (!text.includes("docker-manifest-digest")) return body;
      tampered++;
      return Buffer.from(tampered === 1 ? text.replace(/"optional":null/, '"optional":{"x":"y"}') : text.replace(/sha256:([0-9a-f])/, (_m, c: string) => `sha256:${c === "0" ? "1" : "0"}`));
    });
    process.env.BASECACHE_INSECURE_REGISTRIES = proxy.host;
    try {
      for (const round of [1, 2]) {
        const err = await rejection(fetchImage(request("mitm", pushed.ref.replace(reg.host, proxy.host))));
        assert.equal(err.reason, "corrupt", err.message);
        assert.equal(tampered, round);
        assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("mitm")), []);
      }
    } finally {
      delete process.env.BASECACHE_INSECURE_REGISTRIES;
      await proxy.close();
    }
  });

  test("basecache fetch --cosign-key: exit 0 for a signed image, 3 with the reason for an unsigned one", async () => {
    const keyFile = join(baseDir, "..", `cosign-${process.pid}.pub`);
    await writeFile(keyFile, publisherKey);
    try {
      const signed = await push(`vm/cli-${++n}`);
      await publisher.sign(byDigest(signed));
      const ok = await runFetch(["--base-dir", baseDir, "--id", "cli-signed", "--registry-image", signed.ref, "--cosign-key", keyFile, "--json"]);
      assert.equal(ok.code, 0, ok.stderr);
      const unsigned = await push(`vm/cli-unsigned-${++n}`);
      const refused = await runFetch(["--base-dir", baseDir, "--id", "cli-unsigned", "--registry-image", unsigned.ref, "--cosign-key", keyFile, "--json"]);
      assert.equal(refused.code, 3, refused.stderr);
      assert.equal(refused.json.reason, "image-unsigned");
    } finally {
      await rm(keyFile, { force: true });
    }
  });

  test("a tracked tag that moves to an unsigned digest is no new version; a signed one is, with its key", async () => {
    const first = await push(`vm/tracked-${++n}`, 24);
    await publisher.sign(byDigest(first));
    const image = { id: "tracked", source: { registry: { image: first.ref, verify: { keys: { configMapRef: { name: "k", key: "cosign.pub" } }, publicKeys: publisherKey } } }, updatePolicy: { interval: "1m" } };
    const opts = { log: silentLogger, idleTimeoutMs: 10_000 };
    const v1 = await checkSourceVersion(image, opts);
    assert.deepEqual(v1, { ok: true, pin: { digest: first.manifest.digest, signedBy: keyFingerprint(createPublicKey(publisherKey)) } });
    const moved = await push(`vm/tracked-${n}`, 25);
    const v2 = await checkSourceVersion(image, opts);
    assert.equal(v2.ok, false);
    assert.match(v2.ok ? "" : v2.message, /no cosign signature for manifest/);
    await publisher.sign(byDigest(moved));
    const v3 = await checkSourceVersion(image, opts);
    assert.deepEqual(v3, { ok: true, pin: { digest: moved.manifest.digest, signedBy: keyFingerprint(createPublicKey(publisherKey)) } });
  });
});
