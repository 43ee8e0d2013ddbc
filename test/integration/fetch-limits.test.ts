import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConvertEnv } from "../../src/core/convert-limits.js";
import { baseNameFor } from "../../src/core/names.js";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";
import { writeStreamVmdk } from "../harness/vmdk-stream.js";
import { filesStartingWith, runFetch } from "../harness/fetch-cli.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let origin: Origin;
let images: ImageDir;
let baseDir: string;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-base-"));
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

/** What qemu-img itself reads: the file is a VMDK qemu opens and checks clean, so only our inspector refuses it. */
async function qemuAccepts(path: string): Promise<{ clusterSize: number }> {
  const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", "-f", "vmdk", path])).stdout) as { "cluster-size": number };
  await execa("qemu-img", ["check", "-q", "-f", "vmdk", path]);
  return { clusterSize: info["cluster-size"] };
}

describe("grain sizes no legitimate VMDK has are refused from the header, before conversion", () => {
  const cases: [string, { grainBytes: number; capacityBytes: number; allocatedGrains: number }, number][] = [
    // The examples: ~1 MiB that drives convert past 3 GB of RSS, and ~70 KB that keeps it busy for minutes.
    ["a 1 MiB streamOptimized VMDK with 1 GiB grains", { grainBytes: GiB, capacityBytes: 4 * GiB, allocatedGrains: 1 }, 2 * MiB],
    ["a 70 KB streamOptimized VMDK with 64 MiB grains", { grainBytes: 64 * MiB, capacityBytes: GiB, allocatedGrains: 1 }, 100 * 1024],
  ];
  for (const [label, shape, maxFileBytes] of cases) {
    test(label, async () => {
      const name = `grain-${shape.grainBytes}.vmdk`;
      const img = await writeStreamVmdk(images.path(name), shape);
      assert.ok((await stat(img)).size <= maxFileBytes, "the image is as small as the attack's");
      assert.equal((await qemuAccepts(img)).clusterSize, shape.grainBytes);
      const id = `grain-${shape.grainBytes}`;
      const { code, json } = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.serve(`/${name}`, { file: img })]);
      assert.equal(json.reason, "resource-limit", json.message);
      assert.equal(code, 3);
      assert.match(json.message, /grain size is \d+ bytes/);
      assert.deepEqual(await filesStartingWith(baseDir, baseNameFor(id)), []);
    });
  }

  test("a streamOptimized VMDK with qemu-img's 64 KiB grains, written the same way, is accepted", async () => {
    const img = await writeStreamVmdk(images.path("grain-64k.vmdk"), { grainBytes: 64 * 1024, capacityBytes: 64 * MiB, allocatedGrains: 8 });
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "grain-64k", "--url", origin.serve("/grain-64k.vmdk", { file: img })]);
    assert.equal(code, 0, json.message);
    assert.equal(json.virtualSize, 64 * MiB);
  });
});

describe("a conversion stopped by its limits is refused as resource-limit and leaves the cache as it was", () => {
  test("qemu-img convert out of its address space", async () => {
    const raw = await images.raw("limit.raw", 64);
    const img = await images.convert(raw, "limit.vmdk", "vmdk", ["subformat=streamOptimized"]);
    // Another base already in the cache: it must be untouched by the refused fetch.
    const kept = await runFetch(["--base-dir", baseDir, "--id", "kept", "--url", origin.serve("/kept.vmdk", { file: img })]);
    assert.equal(kept.code, 0, kept.json.message);
    const before = await readdir(baseDir);
    const keptBytes = await readFile(kept.json.path);

    // 100 MiB of address space: qemu-img convert needs about 250 MiB, so it aborts on its first large allocation.
    const env = { [ConvertEnv.memory]: String(100 * MiB) };
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "limited", "--url", origin.serve("/limit.vmdk", { file: img })], env);
    assert.equal(json.reason, "resource-limit", json.message);
    assert.equal(code, 3);
    assert.match(json.message, /qemu-img convert .*\(limits: 100 MiB of address space/);
    assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("limited")), []);
    assert.deepEqual((await readdir(baseDir)).sort(), before.sort());
    assert.deepEqual(await readFile(kept.json.path), keptBytes);
  });

  test("a limit that is not a number is a usage error that names the variable", async () => {
    const img = await images.qcow2("env.qcow2", 8);
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "bad-env", "--url", origin.serve("/env.qcow2", { file: img })], { [ConvertEnv.seconds]: "soon" });
    assert.equal(code, 2, json.message);
    assert.match(json.message, /BASECACHE_CONVERT_SECONDS="soon"/);
    assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("bad-env")), []);
  });
});
