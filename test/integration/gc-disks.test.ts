import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { InstanceDiskScanner } from "../../src/agent/inventory.js";
import { eventually } from "../harness/eventually.js";
import { startCli } from "../harness/fetch-cli.js";
import { diskInspector } from "../../src/agent/options.js";

let root: string;
let baseDir: string;
let instances: string;
const base = (id: string) => join(baseDir, baseNameFor(id));

before(async () => {
  root = await mkdtemp(join(tmpdir(), "basecache-gc-disks-"));
  baseDir = join(root, "_base");
  instances = join(root, "instances");
  await mkdir(baseDir);
  await mkdir(instances);
  for (const id of ["abs", "rel", "link", "chain", "json", "copy", "data"]) await truncate(await touch(base(id)), 1024 * 1024);
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function touch(p: string): Promise<string> {
  await writeFile(p, "");
  return p;
}

async function overlay(path: string, backing: string, format = "raw"): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true });
  await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", format, path, "1M"]);
}

test("instance disks are resolved to the bases they use, however the backing file is named", async () => {
  await overlay(join(instances, "vm-abs", "disk"), base("abs"));
  // Relative to the overlay's own directory, as qemu resolves it.
  await overlay(join(instances, "vm-rel", "disk"), relative(join(instances, "vm-rel"), base("rel")));
  // Through a symlink to the base dir.
  await symlink(baseDir, join(root, "base-link"));
  await overlay(join(instances, "vm-link", "disk"), join(root, "base-link", baseNameFor("link")));
  // Through an image outside both directories that sits on a base.
  await overlay(join(root, "elsewhere", "mid.qcow2"), base("chain"));
  await overlay(join(instances, "vm-chain", "disk"), join(root, "elsewhere", "mid.qcow2"), "qcow2");
  // A json: backing file name.
  await overlay(join(instances, "vm-json", "disk"), `json:{"driver":"raw","file":{"driver":"file","filename":"${base("json")}"}}`);
  // A full raw copy uses nothing; a stranger's file neither.
  await execa("cp", ["--sparse=always", base("copy"), join(instances, "vm-copy.raw")]);
  await writeFile(join(instances, "libvirt.xml"), "<domain/>");

  const scan = await new InstanceDiskScanner(diskInspector).scan(instances, baseDir);
  assert.deepEqual(scan.uncertainties, []);
  const used = new Map(scan.uses.map((u) => [u.base, u.by]));
  for (const id of ["abs", "rel", "link", "chain", "json"]) assert.ok(used.has(baseNameFor(id)), `${id}: ${JSON.stringify(scan.uses)}`);
  assert.ok(!used.has(baseNameFor("copy")));
  assert.match(used.get(baseNameFor("chain")) ?? "", /vm-chain/);
});

test("a warm scan reads no unchanged header again, and sees a changed one", async () => {
  const scanner = new InstanceDiskScanner(diskInspector);
  const cold = await scanner.scan(instances, baseDir);
  const warm = await scanner.scan(instances, baseDir);
  assert.ok(cold.inspected > 0);
  assert.equal(warm.inspected, 0);
  await overlay(join(instances, "vm-new", "disk"), base("data"));
  const again = await scanner.scan(instances, baseDir);
  assert.equal(again.inspected, 1);
  assert.ok(again.uses.some((u) => u.base === baseNameFor("data")));
});

test("a disk whose references cannot be read, or a missing instances dir, is an uncertainty", async () => {
  const broken = join(instances, "vm-broken", "disk");
  await mkdir(join(instances, "vm-broken"));
  await writeFile(broken, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]), Buffer.from("short")]));
  const scan = await new InstanceDiskScanner(diskInspector).scan(instances, baseDir);
  assert.ok(scan.uncertainties.some((u) => u.includes("vm-broken")), JSON.stringify(scan.uncertainties));
  await rm(broken);
  const missing = await new InstanceDiskScanner(diskInspector).scan(join(root, "no-such-dir"), baseDir);
  assert.equal(missing.uncertainties.length, 1);
});

test("a base that a live process holds open is kept, and the decision says so", async () => {
  const held = base("abs");
  const holder = execa("sleep", ["60"], { stdin: { file: held }, reject: false });
  try {
    await eventually(async () => {
      const r = await startCli(["gc", "--base-dir", baseDir, "--instances-dir", join(root, "empty"), "--dry-run", "--json"]);
      const out = JSON.parse(r.stdout) as { decisions: { name: string; reason: string }[] };
      assert.equal(out.decisions.find((d) => d.name === baseNameFor("abs"))?.reason, "Open");
    });
  } finally {
    holder.kill("SIGKILL");
    await holder;
  }
});
