/**
 * Page-cache discipline, end to end: real fetches of a few hundred MiB of random data from the real test origin,
 * raw, qcow2 and zstd, each keep the bytes they wrote and had not yet made durable under the write-back bound.
 * The writer's own counters prove it, with no clock: the most bytes ever not durable at once, the fdatasyncs it
 * started (each covers at most the bound, so there must be enough of them), and that write-back shares its syncs
 * with the resume checkpoints instead of adding its own.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchImage, type WriteBackReport } from "../../src/image/pipeline.js";
import { DefaultWriteBackBytes } from "../../src/core/write-back.js";
import { CheckpointEveryBytes } from "../../src/image/part-download.js";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";

const MiB = 1024 * 1024;
/** Random data (no zero block to skip), a hole, random data: 192 MiB written of 256 MiB. */
const DataBytes = 192 * MiB;
const SmallInterval = 4 * MiB;
let origin: Origin;
let images: ImageDir;
let baseDir: string;
let raw: string;
let rawSha: string;
let qcow2: string;
let qcow2Sha: string;
let zstd: string;

async function sha256Of(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create("basecache-writeback-");
  baseDir = await mkdtemp(join(tmpdir(), "basecache-writeback-base-"));
  raw = images.path("disk.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", raw, "256M"]);
  await execa("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", "count=96", "conv=notrunc", "status=none"]);
  await execa("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", "count=96", "seek=160", "conv=notrunc", "status=none"]);
  qcow2 = await images.convert(raw, "disk.qcow2", "qcow2");
  zstd = images.path("disk.raw.zst");
  await execa("zstd", ["-q", "-1", "-T1", raw, "-o", zstd]);
  [rawSha, qcow2Sha] = await Promise.all([sha256Of(raw), sha256Of(qcow2)]);
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

/** Checks the bound and the syncs it takes to hold it over `written` bytes. */
function assertBounded(wb: WriteBackReport | undefined, interval: number): WriteBackReport {
  assert.ok(wb, "a download reports its write-back");
  assert.equal(wb.limitBytes, 2 * interval);
  assert.ok(wb.peakUnsyncedBytes > 0 && wb.peakUnsyncedBytes <= wb.limitBytes, `at most ${wb.limitBytes} bytes not durable at once, saw ${wb.peakUnsyncedBytes}`);
  // A sync covers only bytes that were not durable, so at most the bound; what the last one left, the final
  // fsync (or the conversion's read) covers.
  const needed = Math.ceil((wb.writtenBytes - wb.limitBytes) / wb.limitBytes);
  assert.ok(wb.syncs >= needed, `${wb.syncs} syncs cannot have kept ${wb.writtenBytes} bytes under ${wb.limitBytes}`);
  return wb;
}

describe("write-back bounds the bytes a fetch leaves not durable", () => {
  for (const kind of ["raw", "qcow2"] as const) {
    test(`${kind}: every byte written counts, and never more than twice the interval is unsynced`, async () => {
      const path = kind === "raw" ? raw : qcow2;
      const sha = kind === "raw" ? rawSha : qcow2Sha;
      const url = origin.serve(`/wb-${kind}`, { file: path });
      const r = await fetchImage({ baseDir, id: `wb-${kind}`, source: { http: { url } }, checksum: `sha256:${sha}`, writeBackBytes: SmallInterval });
      const wb = assertBounded(r.writeBack, SmallInterval);
      // Holes are skipped, random data is not: a raw .part holds exactly the data, a qcow2 one its data clusters.
      if (kind === "raw") assert.equal(wb.writtenBytes, DataBytes);
      else assert.ok(wb.writtenBytes >= DataBytes && wb.writtenBytes < DataBytes + 2 * MiB, `wrote ${wb.writtenBytes}`);
      assert.equal(await sha256Of(r.path), rawSha, "the base holds the image's bytes");
    });
  }

  test("zstd (no resume checkpoints: a compressed download restarts): the decoded bytes are bounded the same way", async () => {
    const url = origin.serve("/wb-zstd", { file: zstd });
    const r = await fetchImage({ baseDir, id: "wb-zstd", source: { http: { url } }, checksum: `sha256:${rawSha}`, writeBackBytes: SmallInterval });
    const wb = assertBounded(r.writeBack, SmallInterval);
    assert.equal(wb.writtenBytes, DataBytes);
    assert.equal(await sha256Of(r.path), rawSha);
  });

  test("by default write-back and the resume checkpoints share one fdatasync per interval", async () => {
    assert.equal(DefaultWriteBackBytes, CheckpointEveryBytes, "the test reasons about one interval");
    const url = origin.serve("/wb-default", { file: raw });
    const r = await fetchImage({ baseDir, id: "wb-default", source: { http: { url } }, checksum: `sha256:${rawSha}` });
    const wb = assertBounded(r.writeBack, DefaultWriteBackBytes);
    // 256 MiB accepted, 192 MiB written: both triggers fire about 6 to 8 times; separate syncs would be over 14.
    const accepted = 256 * MiB;
    assert.ok(wb.syncs <= Math.ceil(accepted / CheckpointEveryBytes), `${wb.syncs} syncs for ${accepted / MiB} MiB: write-back and checkpoints did not share them`);
  });

  test("0 turns write-back off: no bound, and only the checkpoints sync", async () => {
    const url = origin.serve("/wb-off", { file: raw });
    const r = await fetchImage({ baseDir, id: "wb-off", source: { http: { url } }, checksum: `sha256:${rawSha}`, writeBackBytes: 0 });
    assert.ok(r.writeBack);
    assert.equal(r.writeBack.limitBytes, 0);
    assert.equal(r.writeBack.holds, 0);
    assert.ok(r.writeBack.syncs <= Math.ceil((256 * MiB) / CheckpointEveryBytes), `${r.writeBack.syncs} syncs: more than the checkpoints take`);
    assert.equal(await sha256Of(r.path), rawSha);
  });

  test("a zstd download with write-back off syncs nothing while writing: it takes no checkpoint, it restarts", async () => {
    const url = origin.serve("/wb-zstd-off", { file: zstd });
    const r = await fetchImage({ baseDir, id: "wb-zstd-off", source: { http: { url } }, checksum: `sha256:${rawSha}`, writeBackBytes: 0 });
    assert.ok(r.writeBack);
    assert.deepEqual({ syncs: r.writeBack.syncs, holds: r.writeBack.holds, limitBytes: r.writeBack.limitBytes }, { syncs: 0, holds: 0, limitBytes: 0 });
    assert.equal(await sha256Of(r.path), rawSha);
  });

  test("an interval that is not a whole number of bytes is refused before anything is downloaded", async () => {
    const url = origin.serve("/wb-bad", { file: raw });
    for (const writeBackBytes of [-1, 1.5]) {
      await assert.rejects(fetchImage({ baseDir, id: "wb-bad", source: { http: { url } }, writeBackBytes }), TypeError);
    }
    assert.equal(origin.requestsTo("/wb-bad"), 0);
  });

  test("no work file is left behind", async () => {
    const names = await readdir(baseDir);
    assert.deepEqual(names.filter((n) => /\.(part|converted)/.test(n)), []);
  });
});
