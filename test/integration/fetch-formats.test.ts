import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execa } from "execa";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { Origin } from "../harness/origin.js";
import { ImageDir, sameContent } from "../harness/images.js";
import { filesStartingWith, runFetch } from "../harness/fetch-cli.js";

let origin: Origin;
let images: ImageDir;
let baseDir: string;
let raw: string;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-base-"));
  raw = await images.raw("src.raw", 16);
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

describe("good images of every supported format become identical raw bases", () => {
  const cases: [string, string, string[], boolean][] = [
    ["qcow2", "qcow2", [], false],
    ["qcow2 v2 (compat=0.10)", "qcow2", ["compat=0.10"], false],
    ["compressed qcow2", "qcow2", [], true],
    ["vmdk monolithicSparse", "vmdk", ["subformat=monolithicSparse"], false],
    ["vmdk streamOptimized", "vmdk", ["subformat=streamOptimized"], false],
    ["vhdx", "vhdx", [], false],
    ["vpc dynamic", "vpc", ["subformat=dynamic"], false],
    ["vpc fixed", "vpc", ["subformat=fixed"], false],
    ["vdi", "vdi", [], false],
  ];
  for (const [label, format, opts, compress] of cases) {
    test(label, async () => {
      const name = `good-${label.replace(/\W+/g, "-")}`;
      const img = await images.convert(raw, name, format, opts, compress);
      const id = `id-${name}`;
      const { code, json } = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.serve(`/${name}`, { file: img })]);
      assert.equal(code, 0, json.message);
      assert.equal(json.status, "ready");
      assert.equal(json.format, format);
      assert.equal(json.base, baseNameFor(id));
      assert.equal(json.path, join(baseDir, baseNameFor(id)));
      assert.ok(await sameContent(json.path, img, format), "base content differs from the source image");
      assert.deepEqual((await filesStartingWith(baseDir, json.base)).sort(), [json.base, `${json.base}.info.json`]);
      const sidecar = JSON.parse(await readFile(`${json.path}.info.json`, "utf8")) as { sourceFormat: string; sha256: string };
      assert.equal(sidecar.sourceFormat, format);
      assert.equal(sidecar.sha256, json.sha256);
    });
  }

  test("a raw image is stored sparse and identical", async () => {
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "raw-1", "--url", origin.serve("/src.raw", { file: raw })]);
    assert.equal(code, 0, json.message);
    assert.equal(json.format, "raw");
    assert.deepEqual(await readFile(json.path), await readFile(raw));
    const st = await stat(json.path);
    assert.ok(st.blocks * 512 < st.size / 2, `base allocates ${st.blocks * 512} of ${st.size} bytes: zero blocks were written`);
  });
});

describe("hostile, broken and oversize images are refused with exit 3 and leave nothing", () => {
  const cases: [string, () => Promise<string>, string, string[]?][] = [
    ["qcow2 with a backing file", async () => images.withBacking("backed.qcow2", raw, "raw"), "backing-file"],
    ["qcow2 with an external data file", async () => images.withDataFile("datafile.qcow2", images.path("data.raw")), "data-file"],
    ["LUKS-encrypted qcow2", async () => images.encrypted("luks.qcow2"), "encrypted"],
    ["QED", async () => images.convert(raw, "img.qed", "qed"), "unsupported-format"],
    ["vmdk monolithicFlat descriptor naming a host file", async () => images.vmdkOutsideExtent("flat.vmdk"), "bad-extent"],
    ["vmdk twoGbMaxExtentSparse", async () => images.empty("split.vmdk", "vmdk", "16M", ["subformat=twoGbMaxExtentSparse"]), "bad-extent"],
    ["sparse vmdk whose embedded extent names another file", async () => images.vmdkEmbeddedOutsideExtent("evil-sparse.vmdk"), "bad-extent"],
    ["corrupt qcow2", async () => images.corruptQcow2("corrupt.qcow2"), "corrupt"],
    ["qcow2 above --max-virtual-size", async () => images.empty("big.qcow2", "qcow2", "2G"), "too-large", ["--max-virtual-size", "1Gi"]],
    ["raw above --max-virtual-size", async () => images.raw("big.raw", 16), "too-large", ["--max-virtual-size", "8Mi"]],
    ["a raw file that is not a whole number of sectors", async () => images.file("odd.raw", Buffer.concat([Buffer.alloc(1000, 1), Buffer.alloc(100, 0)])), "not-a-disk"],
    ["an empty file", async () => images.file("empty.raw", Buffer.alloc(0)), "empty"],
    ["a LUKS volume", async () => images.empty("vol.luks", "luks", "16M", ["key-secret=s0"]).catch(() => images.file("vol.luks", Buffer.concat([Buffer.from("LUKS\xba\xbe\0\x01", "latin1"), Buffer.alloc(4096 - 8)]))), "encrypted"],
  ];
  for (const [label, build, reason, extra] of cases) {
    test(label, async () => {
      const img = await build();
      const id = `hostile-${label}`;
      const path = `/${label.replace(/\W+/g, "-")}`;
      const { code, json } = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.serve(path, { file: img }), ...(extra ?? [])]);
      assert.equal(json.status, "rejected", json.message);
      assert.equal(json.reason, reason, json.message);
      assert.equal(code, 3);
      // A refusal after the header was read names the format it saw.
      if (reason === "corrupt") assert.equal(json.format, "qcow2");
      assert.deepEqual(await filesStartingWith(baseDir, baseNameFor(id)), []);
    });
  }

  test("an HTML page served with 200 is not a disk", async () => {
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "html", "--url", origin.route("/page", { kind: "html" })]);
    assert.equal(code, 3);
    assert.equal(json.reason, "not-a-disk");
    assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("html")), []);
  });

  test("an HTML page served as octet-stream is still not a disk", async () => {
    const page = Buffer.from("<!DOCTYPE html><html><body>" + "x".repeat(4096 - 41) + "</body></html>");
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "html2", "--url", origin.serve("/page2", page.subarray(0, 4096))]);
    assert.equal(code, 3);
    assert.equal(json.reason, "not-a-disk");
  });

  test("archives are not disks: an OVA (tar of a real VMDK) and a zip are refused, nothing stored", async () => {
    await images.convert(raw, "appliance-disk1.vmdk", "vmdk", ["subformat=streamOptimized"]);
    const ova = join(images.dir, "appliance.ova");
    await execa("tar", ["-cf", ova, "-C", images.dir, "appliance-disk1.vmdk"]);
    // A zip's local file header, stored (no compression), then a raw disk's bytes: what `zip -0` writes first.
    const vmdkBytes = await readFile(raw);
    const local = Buffer.alloc(30);
    local.write("PK\x03\x04", 0, "latin1");
    local.writeUInt32LE(vmdkBytes.length, 18);
    local.writeUInt32LE(vmdkBytes.length, 22);
    local.writeUInt16LE("disk.vmdk".length, 26);
    const zip = await images.file("appliance.zip", Buffer.concat([local, Buffer.from("disk.vmdk"), vmdkBytes, Buffer.alloc(512 - ((30 + 9 + vmdkBytes.length) % 512))]));
    for (const [id, file, what] of [["ova", ova, /tar archive/], ["zip", zip, /zip archive/]] as const) {
      const { code, json } = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.serve(`/${id}`, { file })]);
      assert.equal(code, 3, id);
      assert.equal(json.reason, "not-a-disk", id);
      assert.match(String(json.message), what);
      assert.deepEqual(await filesStartingWith(baseDir, baseNameFor(id)), [], id);
    }
  });

  test("a checksum mismatch is refused", async () => {
    const img = await images.qcow2("sum.qcow2", 8);
    const { code, json } = await runFetch(["--base-dir", baseDir, "--id", "sum", "--url", origin.serve("/sum.qcow2", { file: img }), "--checksum", `sha256:${"0".repeat(64)}`]);
    assert.equal(code, 3);
    assert.equal(json.reason, "checksum-mismatch");
    // What the fetch learned before refusing is still reported.
    assert.equal(json.sha256, createHash("sha256").update(await readFile(img)).digest("hex"));
    assert.equal(json.bytesDownloaded, (await stat(img)).size);
    assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("sum")), []);
  });
});
