import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { resolveRegistryImage } from "../../src/image/oci-fetch.js";
import { extractDiskFromTar } from "../../src/image/tar-layer.js";
import type { ResolvedSource } from "../../src/image/source.js";
import { FetchError, ImageRejectedError } from "../../src/lib/errors.js";
import { makeQcow2, makeTar, pushArtifact, pushContainerImage, pushIndex, sha256Digest, startRegistry, type TestRegistry } from "../harness/registry.js";

/** Downloads a resolved source the way the pipeline does, unpacking when asked, and returns the disk bytes. */
async function download(src: ResolvedSource, range?: string): Promise<Buffer> {
  const res = await fetch(src.url, { headers: { ...src.headers, ...(range ? { range } : {}) } });
  assert.ok(res.ok, `GET ${src.url} answered ${res.status}`);
  const body = Buffer.from(await res.arrayBuffer());
  if (!range) assert.equal(sha256Digest(body), src.expectedDigest, "the blob matches expectedDigest");
  if (src.unpack === "none" || src.unpack === undefined) return body;
  return bytesOf(extractDiskFromTar(Readable.from([body])));
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.fail("expected a rejection");
}

describe("resolveRegistryImage against a real registry", () => {
  let reg: TestRegistry;
  let dir: string;
  let diskA: Buffer;
  let diskB: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "basecache-oci-test-"));
    reg = await startRegistry();
    diskA = (await makeQcow2(dir, "a.qcow2", 0xab)).bytes;
    diskB = (await makeQcow2(dir, "b.qcow2", 0xcd)).bytes;
  });
  after(async () => {
    await reg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("an OCI artifact whose single layer is a qcow2 resolves to that blob, unpacked none", async () => {
    const pushed = await pushArtifact(reg, "os/artifact", "v1", [{ data: diskA, mediaType: "application/vnd.qemu.qcow2" }]);
    const src = await resolveRegistryImage(pushed.ref, {});
    assert.equal(src.unpack, "none");
    assert.equal(src.expectedDigest, sha256Digest(diskA));
    assert.ok(src.url.startsWith(`http://${reg.host}/v2/os/artifact/blobs/sha256:`));
    assert.deepEqual(await download(src), diskA);
  });

  test("the resolved blob URL serves Range requests, so the pipeline can resume", async () => {
    const pushed = await pushArtifact(reg, "os/ranged", "v1", [{ data: diskA, mediaType: "application/octet-stream" }]);
    const src = await resolveRegistryImage(pushed.ref, {});
    assert.deepEqual(await download(src, "bytes=70000-"), diskA.subarray(70000));
  });

  test("a chunked upload with a titled disk among other layers resolves to the titled layer", async () => {
    const pushed = await pushArtifact(
      reg,
      "os/titled",
      "v2",
      [
        { data: Buffer.from("# notes\n"), mediaType: "text/markdown", title: "README.md" },
        { data: diskB, mediaType: "application/vnd.oci.image.layer.v1.tar", title: "debian-12.qcow2" },
      ],
      { chunkSize: 100_000 },
    );
    const src = await resolveRegistryImage(pushed.ref, {});
    assert.equal(src.unpack, "none", "a titled disk layer is the disk, even when labelled tar");
    assert.deepEqual(await download(src), diskB);
  });

  for (const shape of [
    { name: "an OCI containerDisk with a tar+gzip layer", gzip: true, docker: false, unpack: "tar+gzip" },
    { name: "a Docker schema2 containerDisk with a tar.gzip layer", gzip: true, docker: true, unpack: "tar+gzip" },
    { name: "an OCI containerDisk with an uncompressed tar layer", gzip: false, docker: false, unpack: "tar" },
  ] as const) {
    test(`${shape.name} unpacks to exactly the disk under disk/`, async () => {
      const layer = await makeTar(dir, [{ path: "disk", directory: true }, { path: "disk/disk.qcow2", content: diskA }], { gzip: shape.gzip });
      const repo = `kubevirt/cd-${shape.gzip ? "gz" : "tar"}-${shape.docker ? "docker" : "oci"}`;
      const pushed = await pushContainerImage(reg, repo, "latest", [{ data: layer, gzip: shape.gzip }], { docker: shape.docker });
      const src = await resolveRegistryImage(pushed.ref, {});
      assert.equal(src.unpack, shape.unpack);
      assert.equal(src.expectedDigest, sha256Digest(layer));
      assert.deepEqual(await download(src), diskA);
    });
  }

  test("a containerDisk on a small base layer takes the disk from the largest layer", async () => {
    const base = await makeTar(dir, [{ path: "etc/os-release", content: "ID=test\n" }], { gzip: true });
    const diskLayer = await makeTar(dir, [{ path: "disk/disk.img", content: diskB }], { gzip: true });
    const pushed = await pushContainerImage(reg, "kubevirt/layered", "1", [{ data: base, gzip: true }, { data: diskLayer, gzip: true }]);
    const src = await resolveRegistryImage(pushed.ref, {});
    assert.equal(src.expectedDigest, sha256Digest(diskLayer));
    assert.deepEqual(await download(src), diskB);
  });

  for (const format of ["gnu", "pax", "ustar"] as const) {
    test(`a ${format} tar whose disk has a long path is read whole`, async () => {
      const long = `disk/${"d".repeat(60)}/${"n".repeat(80)}.qcow2`;
      const layer = await makeTar(dir, [{ path: long, content: diskB }], { format, gzip: true });
      const pushed = await pushContainerImage(reg, `kubevirt/long-${format}`, "1", [{ data: layer, gzip: true }]);
      assert.deepEqual(await download(await resolveRegistryImage(pushed.ref, {})), diskB);
    });
  }

  test("an index picks the linux/amd64 manifest", async () => {
    const arm = await pushContainerImage(reg, "multi/os", "arm64", [{ data: await makeTar(dir, [{ path: "disk/d.qcow2", content: diskB }], { gzip: true }), gzip: true }], { architecture: "arm64" });
    const amd = await pushContainerImage(reg, "multi/os", "amd64", [{ data: await makeTar(dir, [{ path: "disk/d.qcow2", content: diskA }], { gzip: true }), gzip: true }]);
    const attestation = await pushArtifact(reg, "multi/os", "att", [{ data: Buffer.from("{}x"), mediaType: "application/vnd.in-toto+json" }]);
    for (const docker of [false, true]) {
      const entries = [
        { manifest: arm.manifest, platform: { os: "linux", architecture: "arm64" } },
        { manifest: attestation.manifest, mediaType: "application/vnd.oci.image.manifest.v1+json", platform: { os: "unknown", architecture: "unknown" }, annotations: { "vnd.docker.reference.type": "attestation-manifest" } },
        { manifest: amd.manifest, platform: { os: "linux", architecture: "amd64" } },
      ];
      // Docker manifest lists may only point at Docker manifests, so that list leaves the OCI attestation out.
      const idx = await pushIndex(reg, "multi/os", docker ? "list" : "index", docker ? [entries[0]!, entries[2]!].map((e) => ({ ...e, mediaType: "application/vnd.oci.image.manifest.v1+json" })) : entries, { docker });
      const src = await resolveRegistryImage(idx.ref, {});
      assert.deepEqual(await download(src), diskA, docker ? "manifest list" : "OCI index");
    }
    const err = await rejection(resolveRegistryImage(reg.ref("multi/os", "index"), { platform: { os: "linux", architecture: "s390x" } }));
    assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
  });

  test("a reference pinned by digest resolves and is verified", async () => {
    const pushed = await pushArtifact(reg, "os/pinned", "v1", [{ data: diskA, mediaType: "application/vnd.qemu.qcow2" }]);
    const byDigest = await resolveRegistryImage(reg.ref("os/pinned", pushed.manifest.digest), {});
    assert.deepEqual(await download(byDigest), diskA);
    const tagAndDigest = await resolveRegistryImage(`${reg.host}/os/pinned:v1@${pushed.manifest.digest}`, {});
    assert.equal(tagAndDigest.expectedDigest, sha256Digest(diskA));
  });

  test("a pinned digest the registry does not hold fails with 404", async () => {
    await pushArtifact(reg, "os/pinned2", "v1", [{ data: diskA, mediaType: "application/vnd.qemu.qcow2" }]);
    const err = await rejection(resolveRegistryImage(reg.ref("os/pinned2", sha256Digest(Buffer.from("other"))), {}));
    assert.ok(err instanceof FetchError && err.status === 404 && !err.retryable, String(err));
  });

  test("an unknown tag fails with a non-retryable 404", async () => {
    const err = await rejection(resolveRegistryImage(reg.ref("os/none", "nope"), {}));
    assert.ok(err instanceof FetchError, String(err));
    assert.equal(err.reason, "http-status");
    assert.equal(err.status, 404);
    assert.equal(err.retryable, false);
  });

  test("a layer deleted from the registry fails at resolve time with 404", async () => {
    const pushed = await pushArtifact(reg, "hostile/missing", "v1", [{ data: diskB, mediaType: "application/vnd.qemu.qcow2" }]);
    await reg.deleteBlob("hostile/missing", pushed.layer!.digest);
    const err = await rejection(resolveRegistryImage(pushed.ref, {}));
    assert.ok(err instanceof FetchError && err.status === 404, String(err));
    assert.match(err.message, /layer sha256:/);
  });

  test("two titled disk layers are refused as ambiguous", async () => {
    const pushed = await pushArtifact(reg, "hostile/two-titled", "v1", [
      { data: diskA, mediaType: "application/vnd.qemu.qcow2", title: "a.qcow2" },
      { data: diskB, mediaType: "application/vnd.qemu.qcow2", title: "b.img" },
    ]);
    const err = await rejection(resolveRegistryImage(pushed.ref, {}));
    assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
  });

  test("an image with only an empty layer is refused", async () => {
    const pushed = await pushArtifact(reg, "hostile/empty", "v1", [{ data: Buffer.from("{}"), mediaType: "application/vnd.oci.empty.v1+json" }]);
    const err = await rejection(resolveRegistryImage(pushed.ref, {}));
    assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
  });

  const hostileTars: { name: string; members: Parameters<typeof makeTar>[1]; match: RegExp }[] = [
    { name: "two disks under disk/", members: [{ path: "disk/a.qcow2", content: "a".repeat(1000) }, { path: "disk/b.qcow2", content: "b".repeat(1000) }], match: /several files under disk/ },
    { name: "a symlink as the disk", members: [{ path: "disk", directory: true }, { path: "disk/disk.qcow2", symlink: "/etc/shadow" }], match: /symlink/ },
    { name: "a ../ path", members: [{ path: "../disk.qcow2", content: "x".repeat(1000) }], match: /"\.\."/ },
    { name: "a disk/../ path", members: [{ path: "disk", directory: true }, { path: "disk/../../etc/x", content: "x".repeat(1000) }], match: /"\.\."/ },
    { name: "no regular file", members: [{ path: "disk", directory: true }], match: /no regular file/ },
  ];
  for (const h of hostileTars) {
    test(`a containerDisk with ${h.name} resolves but its layer is refused when unpacked`, async () => {
      const layer = await makeTar(dir, h.members, { gzip: true });
      const pushed = await pushContainerImage(reg, `hostile/tar-${hostileTars.indexOf(h)}`, "v1", [{ data: layer, gzip: true }]);
      const src = await resolveRegistryImage(pushed.ref, {});
      const err = await rejection(download(src));
      assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
      assert.match(err.message, h.match);
    });
  }

  for (const gzip of [true, false]) {
    test(`a ${gzip ? "gzip" : "plain"} tar layer cut short inside the disk is refused as corrupt`, async () => {
      const layer = await makeTar(dir, [{ path: "disk/disk.qcow2", content: diskA }], { gzip });
      const err = await rejection(bytesOf(extractDiskFromTar(Readable.from([layer.subarray(0, Math.floor(layer.length / 2))]))));
      assert.ok(err instanceof ImageRejectedError && err.reason === "corrupt", String(err));
    });
  }

  test("a stopped registry fails with a retryable registry error", async () => {
    const other = await startRegistry();
    const ref = other.ref("os/gone", "v1");
    await other.stop();
    const err = await rejection(resolveRegistryImage(ref, {}));
    assert.ok(err instanceof FetchError && err.reason === "registry" && err.retryable, String(err));
  });

  test("a malformed reference is a configuration error", async () => {
    const err = await rejection(resolveRegistryImage(`${reg.host}/Upper/Case:v1`, {}));
    assert.equal(err.name, "ConfigError");
    assert.match(await text(Readable.from([err.message])), /repository component/);
  });
});
