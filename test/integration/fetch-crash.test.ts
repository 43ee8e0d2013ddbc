import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor, classifyBaseFileName } from "../../src/core/names.js";
import { Origin } from "../harness/origin.js";
import { ImageDir, sameContent } from "../harness/images.js";
import { runFetch, startCli } from "../harness/fetch-cli.js";
import { eventually } from "../harness/eventually.js";

let origin: Origin;
let images: ImageDir;
let baseDir: string;
let qcow2: string;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-base-"));
  // Mostly random data, so the conversion takes long enough to be caught in the act.
  const raw = await images.path("big.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", raw, "1G"]);
  await execa("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", "count=384", "conv=notrunc", "status=none"]);
  qcow2 = await images.convert(raw, "big.qcow2", "qcow2");
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

async function onlyCompleteBases(): Promise<void> {
  const names = await readdir(baseDir);
  const kinds = names.map((n) => classifyBaseFileName(n).kind);
  assert.ok(kinds.every((k) => k === "base" || k === "sidecar"), `unexpected files: ${names.join(", ")}`);
}

async function noQemuImgOn(path: string): Promise<void> {
  const running: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("qemu-img") && cmd.includes(path)) running.push(pid);
  }
  assert.deepEqual(running, [], "a qemu-img is still running on the killed fetch's files");
}

test("a fetch killed with -9 mid-download leaves work files that the next run removes", async () => {
  const id = "crash-download";
  const base = baseNameFor(id);
  const url = origin.route("/slow-big.qcow2", { kind: "slow", chunkBytes: 1024 * 1024, intervalMs: 50, body: { file: qcow2 } });
  const child = startCli(["fetch", "--base-dir", baseDir, "--id", id, "--url", url]);
  await eventually(async () => assert.ok((await stat(join(baseDir, `${base}.part`))).size > 4 * 1024 * 1024));
  child.kill("SIGKILL");
  await child;
  assert.ok((await readdir(baseDir)).includes(`${base}.part`), "the killed run left its .part");
  origin.serve("/fast-big.qcow2", { file: qcow2 });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.url("/fast-big.qcow2")]);
  assert.equal(again.code, 0, again.json.message);
  await onlyCompleteBases();
});

test("a fetch killed with -9 mid-convert leaves work files that the next run removes", async () => {
  const id = "crash-convert";
  const base = baseNameFor(id);
  const url = origin.serve("/convert-big.qcow2", { file: qcow2 });
  const child = startCli(["fetch", "--base-dir", baseDir, "--id", id, "--url", url]);
  await eventually(async () => assert.ok((await stat(join(baseDir, `${base}.converted`))).size > 0), { intervalMs: 20 });
  child.kill("SIGKILL");
  await child;
  await eventually(() => noQemuImgOn(join(baseDir, base)));
  const left = await readdir(baseDir);
  assert.ok(left.includes(`${base}.converted`) || left.includes(base), "the kill happened during the conversion");
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", url]);
  assert.equal(again.code, 0, again.json.message);
  await onlyCompleteBases();
  assert.ok(await sameContent(again.json.path, qcow2, "qcow2"));
});

test("a fetch stopped with SIGTERM mid-download removes its work files, but a resumable .part, and exits non-zero", async () => {
  const id = "sigterm";
  const base = baseNameFor(id);
  const url = origin.route("/slow-term.qcow2", { kind: "slow", chunkBytes: 1024 * 1024, intervalMs: 50, body: { file: qcow2 } });
  const child = startCli(["fetch", "--base-dir", baseDir, "--id", id, "--url", url]);
  await eventually(async () => assert.ok((await stat(join(baseDir, `${base}.part`))).size > 0));
  child.kill("SIGTERM");
  const r = await child;
  assert.notEqual(r.exitCode, 0);
  // A stop keeps a .part only together with its resume record (fetch-resume.test.ts); nothing else stays.
  const left = (await readdir(baseDir)).filter((n) => n.startsWith(base)).sort();
  assert.ok(left.length === 0 || JSON.stringify(left) === JSON.stringify([`${base}.part`, `${base}.part.resume`]), `left: ${left.join(", ")}`);
});
