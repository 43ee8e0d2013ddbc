import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";
import { filesStartingWith, runFetch } from "../harness/fetch-cli.js";
import { eventually } from "../harness/eventually.js";

let origin: Origin;
let images: ImageDir;
let baseDir: string;
let qcow2: string;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-base-"));
  qcow2 = await images.convert(await images.raw("src.raw", 24), "src.qcow2", "qcow2");
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

const fetchArgs = (id: string, url: string) => ["--base-dir", baseDir, "--id", id, "--url", url];

test("five concurrent fetches of one image download it once and all report it ready", async () => {
  // A slow body keeps the first download running while the others start and wait.
  const url = origin.route("/shared.qcow2", { kind: "slow", chunkBytes: 256 * 1024, intervalMs: 150, body: { file: qcow2 } });
  const runs = await Promise.all(Array.from({ length: 5 }, () => runFetch(fetchArgs("shared", url))));
  for (const r of runs) assert.equal(r.code, 0, r.json.message);
  assert.equal(origin.requestsTo("/shared.qcow2"), 1);
  assert.equal(new Set(runs.map((r) => r.json.sha256)).size, 1, "all report the same sha256");
  assert.equal(runs.filter((r) => r.json.cached === false).length, 1, "exactly one process downloaded");
  const base = baseNameFor("shared");
  assert.deepEqual((await filesStartingWith(baseDir, base)).sort(), [base, `${base}.info.json`]);
});

test("concurrent fetches of a hostile image all report the same refusal", async () => {
  const backed = await images.withBacking("backed.qcow2", qcow2, "qcow2");
  const url = origin.route("/backed.qcow2", { kind: "slow", chunkBytes: 16 * 1024, intervalMs: 100, body: { file: backed } });
  const runs = await Promise.all(Array.from({ length: 3 }, () => runFetch(fetchArgs("backed", url))));
  for (const r of runs) {
    assert.equal(r.code, 3, r.json.message);
    assert.equal(r.json.reason, "backing-file");
  }
  assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("backed")), []);
});

test("a lock left by a dead process is broken", async () => {
  const base = baseNameFor("stale");
  // pid 2^22 + 1 is above the default pid_max, so no live process in our pid namespace has it.
  await writeFile(join(baseDir, `${base}.lock`), JSON.stringify({ pid: 4194305, pidns: await readlink("/proc/self/ns/pid"), nonce: "dead" }) + "\n");
  await writeFile(join(baseDir, `${base}.part`), "left over");
  const r = await runFetch(fetchArgs("stale", origin.serve("/stale.qcow2", { file: qcow2 })));
  assert.equal(r.code, 0, r.json.message);
  assert.deepEqual((await filesStartingWith(baseDir, base)).sort(), [base, `${base}.info.json`]);
  assert.deepEqual((await readdir(baseDir)).filter((n) => n.startsWith(".")), []);
});

test("the base dir listing shows who holds work files, and stale ones are removed while live ones stay", async () => {
  const { listBaseDir, removeStaleTempFiles } = await import("../../src/image/base-dir.js");
  const live = baseNameFor("live-fetch");
  const url = origin.route("/live.qcow2", { kind: "slow", chunkBytes: 64 * 1024, intervalMs: 100, body: { file: qcow2 } });
  const running = runFetch(fetchArgs("live-fetch", url));
  await eventually(async () => assert.ok((await readdir(baseDir)).includes(`${live}.part`)));
  // Left behind by a fetch killed with -9 (written after the live fetch's own start-up sweep).
  const dead = baseNameFor("dead-fetch");
  await writeFile(join(baseDir, `${dead}.part`), "half");
  await writeFile(join(baseDir, `${dead}.lock`), JSON.stringify({ pid: 4194305, pidns: await readlink("/proc/self/ns/pid"), nonce: "gone" }) + "\n");
  await writeFile(join(baseDir, "notes.txt"), "not ours");
  const entries = await listBaseDir(baseDir);
  const byName = new Map(entries.map((e) => [e.name, e]));
  assert.equal(byName.get(`${dead}.part`)?.kind.kind, "temp");
  assert.equal(byName.get(`${dead}.part`)?.heldBy?.alive, false);
  assert.equal(byName.get(`${live}.part`)?.heldBy?.alive, true);
  assert.equal(byName.get("notes.txt")?.kind.kind, "unknown");
  const removed = await removeStaleTempFiles(baseDir);
  assert.deepEqual(removed, [join(baseDir, `${dead}.part`)]);
  const names = await readdir(baseDir);
  assert.ok(names.includes(`${live}.part`), "a live fetch keeps its work file");
  assert.ok(names.includes("notes.txt"), "unknown files are never removed");
  assert.ok(!names.includes(`${dead}.lock`), "the stale lock is gone");
  assert.equal((await running).code, 0);
});

test("a waiter with the right checksum does not inherit the verdict of a holder with the wrong one", async () => {
  const good = `sha256:${createHash("sha256").update(await readFile(qcow2)).digest("hex")}`;
  const wrong = `sha256:${"0".repeat(64)}`;
  const url = origin.route("/verdict.qcow2", { kind: "slow", chunkBytes: 128 * 1024, intervalMs: 200, body: { file: qcow2 } });
  const base = baseNameFor("verdict");
  const first = runFetch([...fetchArgs("verdict", url), "--checksum", wrong]);
  // The second starts while the first holds the lock and downloads.
  await eventually(async () => assert.ok((await readdir(baseDir)).includes(`${base}.part`)));
  const second = runFetch([...fetchArgs("verdict", url), "--checksum", good]);
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.code, 3, a.json.message);
  assert.equal(a.json.reason, "checksum-mismatch");
  assert.equal(b.code, 0, b.json.message);
  assert.equal(b.json.cached, false, "the second fetched for itself");
  assert.equal(origin.requestsTo("/verdict.qcow2"), 2);
  assert.deepEqual((await filesStartingWith(baseDir, base)).sort(), [base, `${base}.info.json`]);
});

test("a waiter with the wrong checksum gets its own refusal, quoting its own hash, and the base stays", async () => {
  const good = `sha256:${createHash("sha256").update(await readFile(qcow2)).digest("hex")}`;
  const wrong = `sha256:${"1".repeat(64)}`;
  const url = origin.route("/verdict2.qcow2", { kind: "slow", chunkBytes: 256 * 1024, intervalMs: 100, body: { file: qcow2 } });
  const base = baseNameFor("verdict2");
  const first = runFetch([...fetchArgs("verdict2", url), "--checksum", good]);
  await eventually(async () => assert.ok((await readdir(baseDir)).includes(`${base}.part`)));
  const second = runFetch([...fetchArgs("verdict2", url), "--checksum", wrong]);
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.code, 0, a.json.message);
  assert.equal(b.code, 3, b.json.message);
  assert.equal(b.json.reason, "checksum-mismatch");
  assert.ok(b.json.message.includes("1".repeat(64)), b.json.message);
  assert.equal(origin.requestsTo("/verdict2.qcow2"), 1, "the waiter judged the holder's base, it downloaded nothing");
  assert.deepEqual((await filesStartingWith(baseDir, base)).sort(), [base, `${base}.info.json`]);
});
