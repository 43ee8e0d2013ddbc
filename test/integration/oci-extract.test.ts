import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extractDiskFromTar } from "../../src/image/tar-layer.js";
import { FetchError, ImageRejectedError } from "../../src/lib/errors.js";
import { eventually } from "../harness/eventually.js";
import { makeQcow2, makeTar } from "../harness/registry.js";

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

function chunksOf(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += size) out.push(data.subarray(off, off + size));
  return out;
}

describe("extractDiskFromTar on archives made by GNU tar", () => {
  let dir: string;
  let disk: Buffer;
  let gz: Buffer;
  let plain: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "basecache-oci-extract-"));
    disk = (await makeQcow2(dir, "d.qcow2", 0x77)).bytes;
    gz = await makeTar(dir, [{ path: "./disk", directory: true }, { path: "./disk/disk.qcow2", content: disk }], { gzip: true });
    plain = await makeTar(dir, [{ path: "disk/disk.qcow2", content: disk }]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("detects gzip from the first bytes even when they arrive one at a time", async () => {
    assert.deepEqual(await bytesOf(extractDiskFromTar(Readable.from(chunksOf(gz, 1)))), disk);
    assert.deepEqual(await bytesOf(extractDiskFromTar(Readable.from(chunksOf(plain, 1000)))), disk);
  });

  test("reads a tar that the caller has already gunzipped", async () => {
    const gunzipped = Readable.from([gz]).pipe(createGunzip());
    assert.deepEqual(await bytesOf(extractDiskFromTar(gunzipped)), disk);
  });

  test("an error of the input passes through unchanged", async () => {
    const input = new PassThrough();
    const out = extractDiskFromTar(input);
    input.write(plain.subarray(0, 4096));
    const failure = new FetchError("truncated", "Cannot download: connection reset", { retryable: true });
    setImmediate(() => input.destroy(failure));
    await assert.rejects(bytesOf(out), (err: unknown) => err === failure);
  });

  test("a refusal destroys the input with the same error", async () => {
    const two = await makeTar(dir, [{ path: "disk/a.img", content: disk }, { path: "disk/b.img", content: disk }]);
    const input = new PassThrough();
    const feeding = pipeline(Readable.from(chunksOf(two, 65536)), input);
    const out = extractDiskFromTar(input);
    const err = await bytesOf(out).then(
      () => assert.fail("expected a refusal"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ImageRejectedError && err.reason === "not-a-disk", String(err));
    await assert.rejects(feeding, (e: unknown) => e === err, "the feeding pipeline fails with the refusal itself");
  });

  test("destroying the output early releases the input", async () => {
    const input = new PassThrough();
    input.write(plain.subarray(0, 8192));
    const out = extractDiskFromTar(input);
    await new Promise<void>((resolve) => out.once("data", () => resolve()));
    out.destroy();
    await eventually(() => assert.ok(input.destroyed, "input destroyed"));
  });
});
