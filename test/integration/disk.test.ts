import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { inspectInstanceDisk } from "../../src/image/instance-disk.js";
import { Origin } from "../harness/origin.js";
import { ImageDir, sameContent } from "../harness/images.js";
import { runFetch, startCli } from "../harness/fetch-cli.js";

let origin: Origin;
let images: ImageDir;
let root: string;
let baseDir: string;
let instances: string;
let basePath: string;
const MiB = 1024 * 1024;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  root = await mkdtemp(join(tmpdir(), "basecache-disk-"));
  baseDir = join(root, "_base");
  instances = join(root, "instances");
  await mkdir(instances, { recursive: true });
  const qcow2 = await images.qcow2("src.qcow2", 16);
  const r = await runFetch(["--base-dir", baseDir, "--id", "img", "--url", origin.serve("/src.qcow2", { file: qcow2 })]);
  assert.equal(r.code, 0, r.json.message);
  basePath = r.json.path;
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(root, { recursive: true, force: true });
});

async function disk(...args: string[]) {
  const r = await startCli(["disk", ...args]);
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

test("disk create makes a qcow2 overlay on the base, grown to the size asked", async () => {
  const out = join(instances, "vm1", "disk");
  const r = await disk("create", "--base-dir", baseDir, "--id", "img", "--out", out, "--size", "64Mi", "--json");
  assert.equal(r.code, 0, r.stderr);
  const { stdout } = await execa("qemu-img", ["info", "--output=json", "-f", "qcow2", "--force-share", out]);
  const info = JSON.parse(stdout) as Record<string, unknown>;
  assert.equal(info["virtual-size"], 64 * MiB);
  assert.equal(info["backing-filename"], basePath);
  assert.equal(info["backing-filename-format"], "raw");
  // The first 16 MiB read as the base.
  const head = images.path("head.raw");
  await execa("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", out, head]);
  await execa("qemu-img", ["resize", "-q", "-f", "raw", "--shrink", head, "16M"]);
  assert.ok(await sameContent(head, basePath, "raw"));
});

test("disk inspect says which base an overlay uses, without qemu-img", async () => {
  const out = join(instances, "vm2.qcow2");
  assert.equal((await disk("create", "--base-dir", baseDir, "--id", "img", "--out", out)).code, 0);
  const info = await inspectInstanceDisk(out);
  assert.deepEqual(info, { format: "qcow2", virtualSize: 16 * MiB, backingFile: basePath, backingFormat: "raw", baseName: baseNameFor("img") });
  const r = await disk("inspect", out, "--json");
  assert.equal(r.code, 0);
  assert.equal((JSON.parse(r.stdout) as { baseName: string }).baseName, baseNameFor("img"));
});

test("disk inspect resolves a relative backing file against the disk's directory", async () => {
  const out = join(root, "rel.qcow2");
  await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", `_base/${baseNameFor("img")}`, "-F", "raw", out], { cwd: root });
  const info = await inspectInstanceDisk(out, "qcow2");
  assert.equal(info.backingFile, basePath);
  assert.equal(info.baseName, baseNameFor("img"));
});

test("a raw disk uses no base, and --format qcow2 on a raw disk is refused", async () => {
  const raw = join(root, "plain.raw");
  await writeFile(raw, Buffer.alloc(MiB));
  assert.deepEqual(await inspectInstanceDisk(raw), { format: "raw", virtualSize: MiB });
  await assert.rejects(inspectInstanceDisk(raw, "qcow2"), TypeError);
});

test("disk create --copy makes a full raw copy of the base, resized", async () => {
  const out = join(instances, "vm3.raw");
  const r = await disk("create", "--base-dir", baseDir, "--id", "img", "--out", out, "--copy", "--size", "32Mi");
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await stat(out)).size, 32 * MiB);
  assert.deepEqual(await inspectInstanceDisk(out, "raw"), { format: "raw", virtualSize: 32 * MiB });
  const head = images.path("copy-head.raw");
  await execa("qemu-img", ["convert", "-f", "raw", "-O", "raw", out, head]);
  await execa("qemu-img", ["resize", "-q", "-f", "raw", "--shrink", head, "16M"]);
  assert.ok(await sameContent(head, basePath, "raw"));
});

test("a size smaller than the base is a clear usage error", async () => {
  const out = join(instances, "small.qcow2");
  const r = await disk("create", "--base-dir", baseDir, "--id", "img", "--out", out, "--size", "1Mi");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot be smaller/);
  assert.ok(!(await readdir(instances)).some((n) => n.startsWith("small")));
});

test("a missing base and an existing output are usage errors", async () => {
  assert.equal((await disk("create", "--base-dir", baseDir, "--id", "nope", "--out", join(instances, "x"))).code, 2);
  const out = join(instances, "exists");
  await writeFile(out, "x");
  assert.equal((await disk("create", "--base-dir", baseDir, "--id", "img", "--out", out)).code, 2);
});

test("disk create re-inspects the base and refuses one that no longer passes", async () => {
  const id = "tampered";
  const p = join(baseDir, baseNameFor(id));
  await writeFile(p, "<!DOCTYPE html><html>" + "x".repeat(484) + "</html>");
  const r = await disk("create", "--base-dir", baseDir, "--id", id, "--out", join(instances, "t.qcow2"));
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /not a disk/);
});
