import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { baseNameFor } from "../../src/core/names.js";
import { fetchImage } from "../../src/image/pipeline.js";
import { FetchError, ImageRejectedError } from "../../src/lib/errors.js";
import { ImageDir } from "../harness/images.js";
import { makeTar, pushArtifact, pushContainerImage, startRegistry, startTamperingProxy, type TestRegistry } from "../harness/registry.js";

/** The raw form of a source image, made by qemu-img itself: what the base must equal byte for byte. */
async function rawOf(images: ImageDir, path: string, format: string): Promise<Buffer> {
  const out = images.path(`${baseNameFor(path)}.raw`);
  await execa("qemu-img", ["convert", "-q", "-f", format, "-O", "raw", path, out], { stdin: "ignore" });
  return readFile(out);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.fail("expected a rejection");
}

async function filesFor(baseDir: string, id: string): Promise<string[]> {
  const stem = baseNameFor(id);
  return (await readdir(baseDir).catch(() => [] as string[])).filter((n) => n.startsWith(stem));
}

describe("fetchImage from a real registry, end to end", () => {
  let reg: TestRegistry;
  let authed: TestRegistry;
  let images: ImageDir;
  let baseDir: string;
  let qcow2: string;
  let qcow2Bytes: Buffer;

  before(async () => {
    images = await ImageDir.create("basecache-oci-e2e-");
    baseDir = await mkdtemp(join(tmpdir(), "basecache-oci-e2e-base-"));
    reg = await startRegistry();
    authed = await startRegistry({ tokenAuth: {} });
    qcow2 = await images.qcow2("src.qcow2", 16);
    qcow2Bytes = await readFile(qcow2);
  });
  after(async () => {
    await reg?.stop();
    await authed?.stop();
    await images?.cleanup();
    await rm(baseDir, { recursive: true, force: true });
  });

  test("an OCI artifact qcow2 becomes a raw base equal to qemu-img's conversion", async () => {
    const pushed = await pushArtifact(reg, "os/artifact", "v1", [{ data: qcow2Bytes, mediaType: "application/vnd.qemu.qcow2", title: "src.qcow2" }]);
    const result = await fetchImage({ baseDir, id: "artifact-1", source: { registry: { image: pushed.ref } } });
    assert.equal(result.format, "qcow2");
    assert.equal(result.cached, false);
    assert.deepEqual(await readFile(result.path), await rawOf(images, qcow2, "qcow2"));
    const again = await fetchImage({ baseDir, id: "artifact-1", source: { registry: { image: pushed.ref } } });
    assert.equal(again.cached, true, "a second fetch is a cache hit");
  });

  test("a KubeVirt containerDisk (tar+gzip, disk/disk.qcow2) becomes the same raw base", async () => {
    const layer = await makeTar(images.dir, [{ path: "disk", directory: true }, { path: "disk/disk.qcow2", content: qcow2Bytes }], { gzip: true });
    const pushed = await pushContainerImage(reg, "kubevirt/containerdisk", "v1", [{ data: layer, gzip: true }], { docker: true });
    const result = await fetchImage({ baseDir, id: "containerdisk-1", source: { registry: { image: pushed.ref } } });
    assert.equal(result.format, "qcow2");
    assert.deepEqual(await readFile(result.path), await rawOf(images, qcow2, "qcow2"));
  });

  test("an uncompressed tar containerDisk holding a raw disk becomes that raw base", async () => {
    const raw = await images.raw("disk.raw", 8);
    const layer = await makeTar(images.dir, [{ path: "disk/disk.img", content: await readFile(raw) }], { format: "pax" });
    const pushed = await pushContainerImage(reg, "kubevirt/rawdisk", "v1", [{ data: layer, gzip: false }]);
    const result = await fetchImage({ baseDir, id: "rawdisk-1", source: { registry: { image: pushed.ref } } });
    assert.equal(result.format, "raw");
    assert.deepEqual(await readFile(result.path), await readFile(raw));
  });

  test("a registry behind bearer-token auth is fetched with the resolved token", async () => {
    const pushed = await pushArtifact(authed, "os/private-ish", "v1", [{ data: qcow2Bytes, mediaType: "application/vnd.qemu.qcow2" }]);
    const result = await fetchImage({ baseDir, id: "authed-1", source: { registry: { image: pushed.ref } } });
    assert.deepEqual(await readFile(result.path), await rawOf(images, qcow2, "qcow2"));
  });

  test("a qcow2 with a backing file pushed as an artifact is refused like any other hostile image", async () => {
    const hostile = await images.withBacking("hostile.qcow2", "/etc/passwd", "raw");
    const pushed = await pushArtifact(reg, "hostile/backing", "v1", [{ data: await readFile(hostile), mediaType: "application/vnd.qemu.qcow2" }]);
    const err = await rejection(fetchImage({ baseDir, id: "hostile-backing", source: { registry: { image: pushed.ref } } }));
    assert.ok(err instanceof ImageRejectedError && err.reason === "backing-file", String(err));
    assert.deepEqual(await filesFor(baseDir, "hostile-backing"), []);
  });

  test("a containerDisk with two disks is refused and leaves nothing behind", async () => {
    const layer = await makeTar(images.dir, [{ path: "disk/a.qcow2", content: qcow2Bytes }, { path: "disk/b.qcow2", content: qcow2Bytes }], { gzip: true });
    const pushed = await pushContainerImage(reg, "hostile/two-disks", "v1", [{ data: layer, gzip: true }]);
    const err = await rejection(fetchImage({ baseDir, id: "hostile-two", source: { registry: { image: pushed.ref } } }));
    assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
    assert.deepEqual(await filesFor(baseDir, "hostile-two"), []);
  });

  test("a containerDisk whose disk is a symlink is refused and leaves nothing behind", async () => {
    const layer = await makeTar(images.dir, [{ path: "disk/disk.qcow2", symlink: "/etc/passwd" }], { gzip: true });
    const pushed = await pushContainerImage(reg, "hostile/symlink", "v1", [{ data: layer, gzip: true }]);
    const err = await rejection(fetchImage({ baseDir, id: "hostile-symlink", source: { registry: { image: pushed.ref } } }));
    assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
    assert.deepEqual(await filesFor(baseDir, "hostile-symlink"), []);
  });

  for (const shape of ["artifact", "containerDisk"] as const) {
    test(`a mirror that alters the ${shape} blob is caught by the layer digest and leaves nothing behind`, async () => {
      const repo = `hostile/altered-${shape.toLowerCase()}`;
      if (shape === "artifact") await pushArtifact(reg, repo, "v1", [{ data: qcow2Bytes, mediaType: "application/vnd.qemu.qcow2" }]);
      else await pushContainerImage(reg, repo, "v1", [{ data: await makeTar(images.dir, [{ path: "disk/disk.qcow2", content: qcow2Bytes }]), gzip: false }]);
      // One byte flipped in the middle of the disk data: the tar stays well formed and qcow2's header intact,
      // so only the digest can tell.
      const at = (shape === "artifact" ? 0 : 512) + Math.floor(qcow2Bytes.length / 2);
      const proxy = await startTamperingProxy(
        reg,
        (_p, body) => body,
        (_p, body) => {
          const copy = Buffer.from(body);
          copy[at] = (copy[at] ?? 0) ^ 0xff;
          return copy;
        },
      );
      try {
        const id = `altered-${shape}`;
        const err = await rejection(fetchImage({ baseDir, id, source: { registry: { image: `${proxy.host}/${repo}:v1` } } }));
        assert.ok(err instanceof ImageRejectedError && err.reason === "checksum-mismatch", String(err));
        assert.deepEqual(await filesFor(baseDir, id), []);
      } finally {
        await proxy.close();
      }
    });
  }

  test("a missing layer fails as a source error and leaves nothing behind", async () => {
    const pushed = await pushArtifact(reg, "hostile/missing", "v1", [{ data: qcow2Bytes, mediaType: "application/vnd.qemu.qcow2" }]);
    await reg.deleteBlob("hostile/missing", pushed.layer!.digest);
    const err = await rejection(fetchImage({ baseDir, id: "hostile-missing", source: { registry: { image: pushed.ref } } }));
    assert.ok(err instanceof FetchError && err.status === 404, String(err));
    assert.deepEqual(await filesFor(baseDir, "hostile-missing"), []);
  });
});
