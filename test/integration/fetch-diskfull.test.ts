import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";
import { runFetch } from "../harness/fetch-cli.js";

let origin: Origin;
let images: ImageDir;
let mountDir: string;
let mounted = false;
let skipReason: string | undefined;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  mountDir = await mkdtemp(join(tmpdir(), "basecache-tmpfs-"));
  const r = await execa("mount", ["-t", "tmpfs", "-o", "size=96M", "tmpfs", mountDir], { reject: false });
  if (r.exitCode === 0) mounted = true;
  else skipReason = `cannot mount a small tmpfs (needs root): ${r.stderr.trim()}`;
});

after(async () => {
  await origin.close();
  await images.cleanup();
  if (mounted) await execa("umount", [mountDir], { reject: false });
  await rm(mountDir, { recursive: true, force: true });
});

async function emptyBaseDir(name: string): Promise<string> {
  const dir = join(mountDir, name);
  await execa("mkdir", ["-p", dir]);
  return dir;
}

test("an image announced larger than the free space is refused before downloading (exit 5)", async (t) => {
  if (skipReason) return t.skip(skipReason);
  const dir = await emptyBaseDir("announced");
  const raw = await images.raw("big.raw", 200);
  const url = origin.serve("/big.raw", { file: raw });
  const { code, json } = await runFetch(["--base-dir", dir, "--id", "big", "--url", url]);
  assert.equal(code, 5, json.message);
  assert.equal(json.reason, "disk-full");
  // Whole bytes, and a size a human reads (the reserve is a fraction of the filesystem's size).
  assert.match(json.message, /it is 209715200 bytes \(200 MiB\) and the base dir's filesystem has \d+ bytes \(\d+(\.\d)? MiB\) free/);
  assert.ok(origin.bytesSentFor("/big.raw") < 200 * 1024 * 1024, "the body was not downloaded in full");
  assert.deepEqual(await readdir(dir), []);
});

test("an image without a length that fills the filesystem fails with exit 5 and leaves nothing", async (t) => {
  if (skipReason) return t.skip(skipReason);
  const dir = await emptyBaseDir("chunked");
  const raw = await images.path("random.raw");
  await execa("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", "count=128", "status=none"]);
  const url = origin.serve("/random.raw", { file: raw }, { chunked: true });
  const { code, json } = await runFetch(["--base-dir", dir, "--id", "chunked", "--url", url]);
  assert.equal(code, 5, json.message);
  assert.deepEqual(await readdir(dir), []);
});

test("a compressed image whose data cannot fit once converted fails with exit 5 before converting", async (t) => {
  if (skipReason) return t.skip(skipReason);
  const dir = await emptyBaseDir("convert");
  // Hex text compresses about 2:1: the ~40 MiB download fits, its 72 MiB of data once converted do not.
  const raw = images.path("hex.raw");
  await writeFile(raw, randomBytes(36 * 1024 * 1024).toString("hex"));
  const small = await images.convert(raw, "hex.qcow2", "qcow2", [], true);
  const { code, json } = await runFetch(["--base-dir", dir, "--id", "hex", "--url", origin.serve("/hex.qcow2", { file: small })]);
  assert.equal(code, 5, json.message);
  assert.equal(json.reason, "disk-full");
  assert.deepEqual(await readdir(dir), []);
});

test("an image larger than the filesystem can hold as one file, even sparse, is refused as too-large (exit 3)", async (t) => {
  if (skipReason) return t.skip(skipReason);
  // ext2 with 1 KiB blocks holds files of at most 16 GiB; the qcow2 declares 20 GiB and holds almost nothing.
  const fsImage = images.path("ext2.img");
  const mnt = await mkdtemp(join(tmpdir(), "basecache-ext2-"));
  await execa("truncate", ["-s", "64M", fsImage]);
  await execa("mkfs.ext2", ["-q", "-F", "-b", "1024", fsImage]);
  await execa("mount", ["-o", "loop", fsImage, mnt]);
  try {
    const dir = join(mnt, "base");
    const img = await images.qcow2("huge.qcow2", 20 * 1024);
    const { code, json } = await runFetch(["--base-dir", dir, "--id", "huge", "--url", origin.serve("/huge.qcow2", { file: img })]);
    assert.equal(json.reason, "too-large", json.message);
    assert.equal(code, 3);
    assert.match(json.message, /21474836480 bytes \(20\.0 GiB\) is larger than a file the base dir's filesystem can hold/);
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await execa("umount", [mnt], { reject: false });
    await rm(mnt, { recursive: true, force: true });
  }
});

test("a compression bomb is refused with exit 3, not written", async (t) => {
  if (skipReason) return t.skip(skipReason);
  const dir = await emptyBaseDir("bomb");
  const raw = images.path("pattern.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", raw, "512M"]);
  await execa("qemu-io", ["-f", "raw", "-c", "write -P 0x61 0 500M", raw]);
  const small = await images.convert(raw, "pattern.qcow2", "qcow2", [], true);
  const { code, json } = await runFetch(["--base-dir", dir, "--id", "pattern", "--url", origin.serve("/pattern.qcow2", { file: small })]);
  assert.equal(code, 3, json.message);
  assert.equal(json.reason, "compression-bomb");
  assert.deepEqual(await readdir(dir), []);
});

test("on tmpfs a conversion succeeds (O_DIRECT where the kernel has it, else writeback and fsync)", async (t) => {
  if (skipReason) return t.skip(skipReason);
  const dir = await emptyBaseDir("odirect");
  const small = await images.qcow2("small.qcow2", 8);
  const { code, json } = await runFetch(["--base-dir", dir, "--id", "small", "--url", origin.serve("/small.qcow2", { file: small })]);
  assert.equal(code, 0, json.message);
  assert.equal(json.virtualSize, 8 * 1024 * 1024);
});
