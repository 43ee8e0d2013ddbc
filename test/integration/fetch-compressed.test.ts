/**
 * Compressed sources, end to end: gzip, xz and zstd images made here by the real CLIs, served by the real HTTP
 * origin and pushed to the real registry (artifact blobs and zstd tar layers), decoded as a stream while they
 * download. Bombs in every format stop at the size limit with nothing left and no decoder running; truncated
 * and corrupt streams, and streams that need more decoder memory than allowed, are refused with their own reason.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { DecompressEnv } from "../../src/core/compression.js";
import { baseNameFor } from "../../src/core/names.js";
import { fetchImage } from "../../src/image/pipeline.js";
import { ImageRejectedError } from "../../src/lib/errors.js";
import { ImageDir } from "../harness/images.js";
import { Origin } from "../harness/origin.js";
import { makeTar, pushArtifact, pushContainerImage, startRegistry, type TestRegistry } from "../harness/registry.js";

const MiB = 1024 * 1024;
type Tool = "gzip" | "xz" | "zstd";
const Suffix: Record<Tool, string> = { gzip: "gz", xz: "xz", zstd: "zst" };

/** Compresses `src` with the real CLI into `out` (`args` replace the level). */
async function compress(tool: Tool, src: string, out: string, args: string[] = []): Promise<string> {
  const level = tool === "xz" ? ["-T1", "-6"] : tool === "zstd" ? ["-q", "-19"] : ["-6"];
  await execa(tool, [...(args.length ? args : level), "-c"], { inputFile: src, stdout: { file: out } });
  return out;
}

/** `head -c SIZE /dev/zero | TOOL`: a small file that expands to SIZE bytes. */
async function bomb(tool: Tool, out: string, size: number): Promise<string> {
  const fast = tool === "xz" ? ["-T1", "-1"] : tool === "zstd" ? ["-q", "-3"] : ["-1"];
  await execa("sh", ["-c", `head -c ${size} /dev/zero | ${tool} ${fast.join(" ")} -c > "$0"`, out]);
  return out;
}

async function rawOf(images: ImageDir, path: string, format: string): Promise<Buffer> {
  const out = images.path(`${baseNameFor(path)}.raw`);
  await execa("qemu-img", ["convert", "-q", "-f", format, "-O", "raw", path, out], { stdin: "ignore" });
  return readFile(out);
}

async function rejection(p: Promise<unknown>): Promise<ImageRejectedError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ImageRejectedError, `expected a refusal, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a refusal");
}

async function filesFor(baseDir: string, id: string): Promise<string[]> {
  const stem = baseNameFor(id);
  return (await readdir(baseDir).catch(() => [] as string[])).filter((n) => n.includes(stem));
}

/** xz or zstd processes whose parent is this test process: a decoder that outlived its fetch. */
async function ourDecoders(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
    if (m && Number(m[2]) === process.pid && /^(xz|zstd|prlimit|setpriv)$/.test(m[1] ?? "")) found.push(`${pid} ${m[1]}`);
  }
  return found;
}

async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("compressed sources decoded as a stream", () => {
  let origin: Origin;
  let reg: TestRegistry;
  let images: ImageDir;
  let baseDir: string;
  let qcow2: string;
  let raw: string;
  const expected = new Map<string, Buffer>();

  before(async () => {
    origin = await Origin.start();
    reg = await startRegistry();
    images = await ImageDir.create("basecache-compressed-");
    baseDir = await mkdtemp(join(tmpdir(), "basecache-compressed-base-"));
    qcow2 = await images.qcow2("src.qcow2", 16);
    raw = await images.raw("src.raw", 16);
    expected.set("qcow2", await rawOf(images, qcow2, "qcow2"));
    expected.set("raw", await readFile(raw));
  });
  after(async () => {
    await origin?.close();
    await reg?.stop();
    await images?.cleanup();
    await rm(baseDir, { recursive: true, force: true });
  });

  for (const tool of ["gzip", "xz", "zstd"] as const) {
    for (const format of ["qcow2", "raw"] as const) {
      test(`a ${format} image compressed with ${tool} over HTTP becomes the same raw base`, async () => {
        const src = format === "qcow2" ? qcow2 : raw;
        const packed = await compress(tool, src, images.path(`src.${format}.${Suffix[tool]}`));
        const url = origin.serve(`/src.${format}.${Suffix[tool]}`, { file: packed });
        const want = expected.get(format) as Buffer;
        const result = await fetchImage({ baseDir, id: `http-${tool}-${format}`, source: { http: { url } }, maxVirtualSize: 16 * MiB });
        assert.equal(result.format, format);
        assert.deepEqual(await readFile(result.path), want);
        const packedBytes = (await readFile(packed)).length;
        assert.equal(result.bytesDownloaded, packedBytes, "the compressed bytes are what was downloaded");
        // The checksum covers the image as decoded, as for gzip layers: the disk the base is made from.
        const decoded = createHash("sha256").update(await readFile(src)).digest("hex");
        assert.equal(result.sha256, decoded);
        const sidecar = JSON.parse(await readFile(`${result.path}.info.json`, "utf8")) as { compression?: string; sha256: string };
        assert.equal(sidecar.compression, tool);
        assert.equal(sidecar.sha256, decoded);
        assert.deepEqual(await ourDecoders(), []);
      });
    }
  }

  test("the checksum names the decoded image, not the compressed file", async () => {
    const packed = await compress("xz", qcow2, images.path("sum.qcow2.xz"));
    const url = origin.serve("/sum.qcow2.xz", { file: packed }, { chunked: true });
    const decoded = createHash("sha256").update(await readFile(qcow2)).digest("hex");
    const ok = await fetchImage({ baseDir, id: "sum-ok", source: { http: { url } }, checksum: `sha256:${decoded}` });
    assert.equal(ok.format, "qcow2");
    const file = createHash("sha256").update(await readFile(packed)).digest("hex");
    const err = await rejection(fetchImage({ baseDir, id: "sum-file", source: { http: { url } }, checksum: `sha256:${file}` }));
    assert.equal(err.reason, "checksum-mismatch");
    assert.deepEqual(await filesFor(baseDir, "sum-file"), []);
  });

  for (const tool of ["gzip", "xz", "zstd"] as const) {
    test(`a ${tool} bomb stops at the size limit, leaves nothing and no decoder`, async () => {
      // 16 MiB of virtual size allows about 81 MiB of download; 256 MiB of zeros compress to a few hundred KiB.
      const packed = await bomb(tool, images.path(`bomb.${Suffix[tool]}`), 256 * MiB);
      assert.ok((await readFile(packed)).length < 2 * MiB);
      const url = origin.serve(`/bomb.${Suffix[tool]}`, { file: packed });
      const err = await rejection(fetchImage({ baseDir, id: `bomb-${tool}`, source: { http: { url } }, maxVirtualSize: 16 * MiB }));
      assert.equal(err.reason, "compression-bomb");
      assert.match(err.message, /unpacks to more than \d+ bytes/);
      assert.deepEqual(await filesFor(baseDir, `bomb-${tool}`), []);
      assert.deepEqual(await ourDecoders(), []);
    });
  }

  for (const tool of ["gzip", "xz", "zstd"] as const) {
    test(`a truncated ${tool} stream is refused as corrupt`, async () => {
      const packed = await readFile(await compress(tool, raw, images.path(`cut.raw.${Suffix[tool]}`)));
      // Chunked: the origin announces no length, so only the decoder can tell the stream ends early.
      const url = origin.serve(`/cut.${Suffix[tool]}`, packed.subarray(0, Math.floor(packed.length / 2)), { chunked: true });
      const err = await rejection(fetchImage({ baseDir, id: `cut-${tool}`, source: { http: { url } } }));
      assert.equal(err.reason, "corrupt");
      assert.match(err.message, new RegExp(`the ${tool} stream is truncated or corrupt`));
      assert.deepEqual(await filesFor(baseDir, `cut-${tool}`), []);
      assert.deepEqual(await ourDecoders(), []);
    });
  }

  test("a zstd stream with damaged data is refused as corrupt", async () => {
    const packed = Buffer.from(await readFile(await compress("zstd", raw, images.path("bad.raw.zst"))));
    const mid = Math.floor(packed.length / 2);
    packed.fill(0xa5, mid, mid + 64);
    const url = origin.serve("/bad.zst", packed);
    const err = await rejection(fetchImage({ baseDir, id: "bad-zstd", source: { http: { url } } }));
    assert.equal(err.reason, "corrupt");
    assert.match(err.message, /zstd stream is truncated or corrupt \(zstd exited 1: .+\)/);
    assert.deepEqual(await filesFor(baseDir, "bad-zstd"), []);
  });

  test("an xz whose dictionary needs more than the decoder memory limit is refused", async () => {
    const packed = await compress("xz", raw, images.path("dict.raw.xz"), ["-T1", "--lzma2=dict=64MiB,mf=hc3"]);
    const url = origin.serve("/dict.xz", { file: packed });
    const err = await withEnv({ [DecompressEnv.memory]: String(16 * MiB) }, () => rejection(fetchImage({ baseDir, id: "dict-xz", source: { http: { url } } })));
    assert.equal(err.reason, "resource-limit");
    assert.match(err.message, /the xz stream needs more memory to decode than the limit of 16777216 bytes: .*Memory usage limit reached/);
    assert.deepEqual(await filesFor(baseDir, "dict-xz"), []);
    // The same file within the default limit is an ordinary image.
    const ok = await fetchImage({ baseDir, id: "dict-xz-ok", source: { http: { url } } });
    assert.equal(ok.format, "raw");
  });

  test("a zstd whose window is larger than the decoder memory limit is refused", async () => {
    // From a pipe zstd cannot shrink the window to the input's size: the frame declares all 128 MiB.
    const packed = images.path("window.raw.zst");
    await execa("sh", ["-c", `cat "$0" | zstd -q --long=27 -c > "$1"`, raw, packed]);
    const url = origin.serve("/window.zst", { file: packed });
    const err = await withEnv({ [DecompressEnv.memory]: String(64 * MiB) }, () => rejection(fetchImage({ baseDir, id: "window-zstd", source: { http: { url } } })));
    assert.equal(err.reason, "resource-limit");
    assert.match(err.message, /Window size larger than maximum : 134217728 > 67108864/);
    assert.deepEqual(await filesFor(baseDir, "window-zstd"), []);
  });

  test("zstd containerDisk layers (OCI and Docker media types) become the same raw base", async () => {
    const tar = images.path("layer.tar");
    await writeFile(tar, await makeTar(images.dir, [{ path: "disk", directory: true }, { path: "disk/disk.qcow2", content: await readFile(qcow2) }]));
    const zst = await readFile(await compress("zstd", tar, images.path("layer.tar.zst")));
    const shapes = [
      { repo: "cd/zstd-oci", mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", docker: false },
      { repo: "cd/zstd-docker", mediaType: "application/vnd.docker.image.rootfs.diff.tar.zstd", docker: true },
    ];
    for (const s of shapes) {
      const pushed = await pushContainerImage(reg, s.repo, "v1", [{ data: zst, gzip: false, mediaType: s.mediaType }], { docker: s.docker });
      const result = await fetchImage({ baseDir, id: `layer-${s.repo}`, source: { registry: { image: pushed.ref } }, maxVirtualSize: 16 * MiB });
      assert.equal(result.format, "qcow2", s.mediaType);
      assert.deepEqual(await readFile(result.path), expected.get("qcow2"), s.mediaType);
    }
  });

  test("an xz artifact blob is decoded by its magic and checked against its layer digest", async () => {
    const xz = await readFile(await compress("xz", qcow2, images.path("artifact.qcow2.xz")));
    const pushed = await pushArtifact(reg, "os/xz-artifact", "v1", [{ data: xz, mediaType: "application/octet-stream" }]);
    const result = await fetchImage({ baseDir, id: "artifact-xz", source: { registry: { image: pushed.ref } } });
    assert.equal(result.format, "qcow2");
    assert.deepEqual(await readFile(result.path), expected.get("qcow2"));
  });

  test("a zstd bomb pushed as a registry artifact stops at the size limit", async () => {
    const packed = await readFile(await bomb("zstd", images.path("reg-bomb.zst"), 256 * MiB));
    const pushed = await pushArtifact(reg, "hostile/zstd-bomb", "v1", [{ data: packed, mediaType: "application/octet-stream" }]);
    const err = await rejection(fetchImage({ baseDir, id: "reg-bomb", source: { registry: { image: pushed.ref } }, maxVirtualSize: 16 * MiB }));
    assert.equal(err.reason, "compression-bomb");
    assert.deepEqual(await filesFor(baseDir, "reg-bomb"), []);
    assert.deepEqual(await ourDecoders(), []);
  });
});
