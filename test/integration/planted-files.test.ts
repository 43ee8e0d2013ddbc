/**
 * Files planted at a base's names (the base, its sidecar, lock and work files) or at an instance disk's names:
 * symlinks (to a file outside, dangling), directories, FIFOs, sockets and hard links to a file outside. Each is
 * reported as foreign (exit 2, reason foreign-file, the path in the message), never followed, written through,
 * used or removed, and nothing else is left behind. Real qemu-img, real HTTP origin, the real CLI.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { link, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { ForeignFileError } from "../../src/lib/errors.js";
import { fetchImage } from "../../src/image/pipeline.js";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";
import { runFetch, startCli } from "../harness/fetch-cli.js";

let origin: Origin;
let images: ImageDir;
let root: string;
let outside: string;
let secret: string;
let rawUrl: string;
const sockets: Server[] = [];
const SecretText = "outside the base dir: must never be read, written or served\n";

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  root = await mkdtemp(join(tmpdir(), "basecache-planted-"));
  outside = join(root, "outside");
  await mkdir(outside);
  secret = join(outside, "secret");
  await writeFile(secret, SecretText);
  rawUrl = origin.serve("/disk.raw", { file: await images.raw("disk.raw", 4) });
});

after(async () => {
  for (const s of sockets) s.close();
  await origin.close();
  await images.cleanup();
  await rm(root, { recursive: true, force: true });
});

type Plant = "symlink to a file outside" | "dangling symlink" | "directory" | "FIFO" | "socket" | "hard link to a file outside";
const plants: Plant[] = ["symlink to a file outside", "dangling symlink", "directory", "FIFO", "socket", "hard link to a file outside"];

async function plant(kind: Plant, path: string): Promise<void> {
  switch (kind) {
    case "symlink to a file outside":
      return symlink(secret, path);
    case "dangling symlink":
      return symlink(join(outside, "nothing-here"), path);
    case "directory":
      return mkdir(path);
    case "FIFO":
      await execa("mkfifo", [path]);
      return;
    case "socket": {
      const server = createServer();
      sockets.push(server);
      await new Promise<void>((resolve) => server.listen(path, resolve));
      return;
    }
    case "hard link to a file outside":
      return link(secret, path);
  }
}

async function assertOutsideUntouched(): Promise<void> {
  assert.equal(await readFile(secret, "utf8"), SecretText);
  assert.deepEqual(await readdir(outside), ["secret"], "nothing was created outside");
}

let n = 0;
async function freshBaseDir(): Promise<string> {
  const dir = join(root, `base-${n++}`);
  await mkdir(dir);
  return dir;
}

describe("fetch with a planted file at one of the base's names", () => {
  const suffixes = ["", ".part", ".converted", ".info.json", ".info.json.tmp", ".lock"];
  for (const suffix of suffixes)
    for (const kind of plants) {
      test(`${suffix || "the base"} as a ${kind} is reported, left alone, and nothing is downloaded`, async () => {
        const baseDir = await freshBaseDir();
        const id = `planted${suffix}-${kind}`;
        const base = baseNameFor(id);
        const planted = join(baseDir, base + suffix);
        await plant(kind, planted);
        const before = await lstat(planted);
        const bytesBefore = origin.bytesSentFor("/disk.raw");
        await assert.rejects(fetchImage({ baseDir, id, source: { http: { url: rawUrl } } }), (e: unknown) => {
          assert.ok(e instanceof ForeignFileError, String(e));
          assert.equal(e.path, planted);
          assert.ok(e.message.includes(planted), e.message);
          return true;
        });
        assert.equal(origin.bytesSentFor("/disk.raw"), bytesBefore, "nothing was downloaded");
        const after = await lstat(planted);
        assert.equal(after.ino, before.ino, "the planted entry is still there, unchanged");
        assert.deepEqual(await readdir(baseDir), [base + suffix], "nothing else is left in the base dir");
        await assertOutsideUntouched();
      });
    }

  test("the CLI exits 2 with reason foreign-file and names the path: a symlinked base is no cached base", async () => {
    const baseDir = await freshBaseDir();
    const base = baseNameFor("cli-symlink");
    await symlink(secret, join(baseDir, base));
    const r = await runFetch(["--base-dir", baseDir, "--id", "cli-symlink", "--url", rawUrl]);
    assert.equal(r.code, 2, r.json.message);
    assert.equal(r.json.status, "failed");
    assert.equal(r.json.reason, "foreign-file");
    assert.match(r.json.message, new RegExp(`"${join(baseDir, base)}": it is a symbolic link`));
    assert.deepEqual(await readdir(baseDir), [base]);
  });

  test("the CLI exits 2 at once for a FIFO or a dangling symlink as the lock, and for a directory as the base", async () => {
    const cases: [string, Plant, string][] = [
      ["cli-fifo", "FIFO", ".lock"],
      ["cli-dangling", "dangling symlink", ".lock"],
      ["cli-dir", "directory", ""],
    ];
    await Promise.all(
      cases.map(async ([id, kind, suffix]) => {
        const baseDir = await freshBaseDir();
        const planted = join(baseDir, baseNameFor(id) + suffix);
        await plant(kind, planted);
        const r = await runFetch(["--base-dir", baseDir, "--id", id, "--url", rawUrl]);
        assert.equal(r.code, 2, `${id}: ${r.json.message}`);
        assert.equal(r.json.reason, "foreign-file", id);
        assert.ok(r.json.message.includes(planted), r.json.message);
        assert.deepEqual(await readdir(baseDir), [baseNameFor(id) + suffix], `${id}: no sidecar or work file left`);
      }),
    );
    await assertOutsideUntouched();
  });

  test("a regular file left at a work name by a dead fetch is ours: it is removed and the fetch succeeds", async () => {
    const baseDir = await freshBaseDir();
    const base = baseNameFor("leftover");
    for (const suffix of [".part", ".converted", ".info.json.tmp"]) await writeFile(join(baseDir, base + suffix), "left over");
    const r = await runFetch(["--base-dir", baseDir, "--id", "leftover", "--url", rawUrl]);
    assert.equal(r.code, 0, r.json.message);
    assert.deepEqual((await readdir(baseDir)).sort(), [base, `${base}.info.json`]);
  });
});

describe("gc with planted files at its state file's names", () => {
  for (const name of [".basecache-gc.json", ".basecache-gc.json.tmp"]) {
    test(`a symlink at ${name} is never read or written through: gc names it and exits 2`, async () => {
      const baseDir = await freshBaseDir();
      const instances = join(root, `inst-${n++}`);
      await mkdir(instances);
      await symlink(secret, join(baseDir, name));
      const r = await startCli(["gc", "--base-dir", baseDir, "--instances-dir", instances]);
      assert.equal(r.exitCode, 2, r.stderr);
      assert.ok(r.stderr.includes(join(baseDir, name)), r.stderr);
      assert.ok((await lstat(join(baseDir, name))).isSymbolicLink(), "the link stays");
      await assertOutsideUntouched();
    });
  }
});

describe("disk create with planted files", () => {
  let baseDir: string;
  let instances: string;
  const base = baseNameFor("img");

  before(async () => {
    baseDir = join(root, "_base");
    instances = join(root, "instances");
    await mkdir(instances);
    const r = await runFetch(["--base-dir", baseDir, "--id", "img", "--url", rawUrl]);
    assert.equal(r.code, 0, r.json.message);
  });

  async function disk(...args: string[]) {
    const r = await startCli(["disk", "create", "--base-dir", baseDir, ...args]);
    return { code: r.exitCode, stderr: r.stderr };
  }

  for (const kind of ["symlink to a file outside", "hard link to a file outside", "FIFO"] as Plant[]) {
    for (const copy of [false, true]) {
      test(`a base that is a ${kind} is refused${copy ? " for --copy" : ""}: nothing outside is read into a disk`, async () => {
        const id = `planted-base-${kind}-${copy}`;
        const planted = join(baseDir, baseNameFor(id));
        await plant(kind, planted);
        const out = join(instances, `${baseNameFor(id)}.disk`);
        const r = await disk("--id", id, "--out", out, ...(copy ? ["--copy"] : []));
        assert.equal(r.code, 2, r.stderr);
        assert.ok(r.stderr.includes(planted), r.stderr);
        assert.deepEqual((await readdir(instances)).filter((x) => x.startsWith(baseNameFor(id))), [], "no disk and no temp file");
        await rm(planted, { recursive: true });
        await assertOutsideUntouched();
      });
    }
  }

  for (const kind of ["symlink to a file outside", "dangling symlink", "FIFO", "directory", "hard link to a file outside"] as Plant[]) {
    test(`a ${kind} at the disk's temporary name is never written through, and no disk appears`, async () => {
      const out = join(instances, `tmp-${n++}.qcow2`);
      const planted = `${out}.creating`;
      await plant(kind, planted);
      const before = await lstat(planted);
      const r = await disk("--id", "img", "--out", out);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(planted), r.stderr);
      assert.equal((await lstat(planted)).ino, before.ino, "the planted entry stays");
      await assert.rejects(lstat(out), { code: "ENOENT" });
      await assertOutsideUntouched();
    });
  }

  test("a dangling symlink as the output is an existing file: nothing is created where it points", async () => {
    const out = join(instances, "dangling.qcow2");
    const target = join(outside, "made-through-link");
    await symlink(target, out);
    const r = await disk("--id", "img", "--out", out);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /a symbolic link is there/);
    await assert.rejects(stat(target), { code: "ENOENT" });
    await assertOutsideUntouched();
  });

  test("an output directory reached through a symlink is refused: the disk is not made outside", async () => {
    await symlink(outside, join(instances, "vm-link"));
    const r = await disk("--id", "img", "--out", join(instances, "vm-link", "disk.qcow2"));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /symbolic link/);
    await assertOutsideUntouched();
  });

  test("a sidecar that is a symlink makes the base unusable", async () => {
    const sidecar = join(baseDir, `${base}.info.json`);
    const saved = await readFile(sidecar);
    await rm(sidecar);
    await symlink(secret, sidecar);
    try {
      const r = await disk("--id", "img", "--out", join(instances, "sidecar.qcow2"));
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(sidecar), r.stderr);
    } finally {
      await rm(sidecar);
      await writeFile(sidecar, saved);
    }
  });

  test("a regular file left at the temporary name by a dead create is ours: removed, and the disk is made", async () => {
    const out = join(instances, "leftover.qcow2");
    await writeFile(`${out}.creating`, "half a disk");
    const r = await disk("--id", "img", "--out", out);
    assert.equal(r.code, 0, r.stderr);
    await assert.rejects(lstat(`${out}.creating`), { code: "ENOENT" });
    assert.equal((await lstat(out)).nlink, 1);
  });
});
