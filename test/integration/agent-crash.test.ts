import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { baseNameFor } from "../../src/core/names.js";
import { CheckpointEveryBytes } from "../../src/image/part-download.js";
import { AgentTestbed } from "../harness/agent-testbed.js";
import { eventually } from "../harness/eventually.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { createNic, imageStatus, setNicImages } from "./agent-helpers.js";

let tb: AgentTestbed;
let admin: Api;
let origin: Origin;
let images: ImageDir;

before(async () => {
  tb = await AgentTestbed.start();
  ({ admin, origin, images } = tb);
});

after(async () => {
  await tb?.stop();
});

// Only complete bases, their sidecars and GC's state file: no work files, locks or broken-lock leftovers.
async function assertNoStrays(dir: string, ids: string[]): Promise<void> {
  const names = (await readdir(dir)).filter((n) => !n.startsWith(".basecache-gc.json")).sort();
  assert.deepEqual(names, ids.flatMap((id) => [baseNameFor(id), `${baseNameFor(id)}.info.json`]).sort());
}

async function slowImage(path: string, seconds: number): Promise<string> {
  const file = await images.qcow2(path.slice(1), 32);
  const size = (await stat(file)).size;
  return origin.route(path, { kind: "slow", chunkBytes: Math.ceil(size / (seconds * 10)), intervalMs: 100, body: { file } });
}

test("an agent killed with SIGKILL mid-download and restarted ends with a correct cache and no strays", async () => {
  const node = "crash-node";
  const n = await tb.node(node);
  const d = n.dirs;
  const url = await slowImage("/crash.qcow2", 20);
  await createNic(admin, node, [{ id: "crash-image", url }]);
  const first = tb.launch(n);
  const part = `${baseNameFor("crash-image")}.part`;
  await eventually(async () => assert.ok((await stat(`${d.base}/${part}`)).size > 0), {
    timeoutMs: 90_000,
    description: "a partial download",
  });
  first.kill("SIGKILL");
  await first.exited;
  const left = await readdir(d.base);
  assert.ok(left.includes(part), "the killed agent left its partial download");

  // The restarted agent finds the same source, now served at full speed.
  origin.serve("/crash.qcow2", { file: images.path("crash.qcow2") });
  tb.launch(n);
  await eventually(async () => assert.equal((await imageStatus(admin, node, "crash-image"))?.phase, "Ready"), { timeoutMs: 90_000 });
  await assertNoStrays(d.base, ["crash-image"]);
});

test("an agent killed with SIGKILL after a checkpoint resumes on restart: one Range from the record, about one image served", async () => {
  const node = "resume-node";
  const n = await tb.node(node);
  const d = n.dirs;
  const MiB = 1024 * 1024;
  const file = await images.raw("agent-resume.raw", 160);
  const size = (await stat(file)).size;
  const sha = createHash("sha256").update(await readFile(file)).digest("hex");
  const url = origin.route("/agent-resume.raw", { kind: "slow", chunkBytes: MiB, intervalMs: 50, body: { file } });
  await createNic(admin, node, [{ id: "resume-image", url, checksum: `sha256:${sha}` }]);
  const first = tb.launch(n);
  const record = `${d.base}/${baseNameFor("resume-image")}.part.resume`;
  // Killed only once a durable checkpoint claims some bytes: that is what a restart may keep.
  const kept = await eventually(async () => {
    const bytes = (JSON.parse(await readFile(record, "utf8")) as { bytes: number }).bytes;
    assert.ok(bytes > 0, `the record claims ${bytes} bytes`);
    return bytes;
  }, { intervalMs: 20, timeoutMs: 120_000, description: "a resume record" });
  first.kill("SIGKILL");
  await first.exited;

  origin.serve("/agent-resume.raw", { file });
  const second = tb.launch(n);
  await eventually(async () => assert.equal((await imageStatus(admin, node, "resume-image"))?.phase, "Ready"), { timeoutMs: 120_000 });
  const ranges = (origin.seen.get("/agent-resume.raw") ?? []).map((h) => h.range).filter((r) => r !== undefined);
  assert.equal(ranges.length, 1, `Range requests: ${JSON.stringify(ranges)}`);
  assert.ok(Number(/^bytes=(\d+)-$/.exec(ranges[0] ?? "")?.[1]) >= kept, `the range ${ranges[0]} starts at or after the ${kept} recorded bytes`);
  assert.equal(origin.answered.get("/agent-resume.raw")?.at(-1), 206);
  const served = origin.bytesSentFor("/agent-resume.raw");
  // The kill lands at most one checkpoint interval (and what was in flight) past the record.
  assert.ok(served < size + CheckpointEveryBytes + 8 * MiB, `the origin served ${served} bytes for an image of ${size}`);
  assert.ok(((await second.metrics()).get('basecache_fetch_resumed_bytes_total{image_id="resume-image"}') ?? 0) >= kept);
  await assertNoStrays(d.base, ["resume-image"]);
});

test("an origin that drops the connection mid-transfer is resumed and the node converges", async () => {
  const node = "drop-node";
  const n = await tb.node(node);
  const d = n.dirs;
  const file = await images.qcow2("drop.qcow2", 16);
  const url = origin.route("/drop.qcow2", { kind: "drop", afterBytes: 300_000, times: 3, body: { file } });
  await createNic(admin, node, [{ id: "drop-image", url }]);
  tb.launch(n);
  await eventually(async () => assert.equal((await imageStatus(admin, node, "drop-image"))?.phase, "Ready"), { timeoutMs: 90_000 });
  await assertNoStrays(d.base, ["drop-image"]);
});

test("SIGTERM mid-download stops the agent with exit 0 and rolls the download back", async () => {
  const node = "term-node";
  const n = await tb.node(node);
  const d = n.dirs;
  const url = await slowImage("/term.qcow2", 30);
  await createNic(admin, node, [{ id: "term-image", url }]);
  const agent = tb.launch(n);
  await eventually(async () => assert.ok((await stat(`${d.base}/${baseNameFor("term-image")}.part`)).size > 0), { timeoutMs: 60_000 });
  assert.equal(await agent.stop(), 0);
  await assertNoStrays(d.base, []);
});

test("a restarted agent remembers a rejection from its status and does not fetch the image again", async () => {
  const node = "reject-node";
  const n = await tb.node(node);
  const base = await images.raw("reject-base.raw", 4);
  const url = origin.serve("/rejected.qcow2", { file: await images.withBacking("rejected.qcow2", base, "raw") });
  const good = origin.serve("/after.qcow2", { file: await images.qcow2("after.qcow2", 8) });
  await createNic(admin, node, [{ id: "rejected-image", url }]);
  const first = tb.launch(n);
  await eventually(async () => assert.equal((await imageStatus(admin, node, "rejected-image"))?.reason, "backing-file"), { timeoutMs: 60_000 });
  assert.equal(await first.stop(), 0);
  const requests = origin.requestsTo("/rejected.qcow2");

  const second = tb.launch(n);
  // Its first pass over the node has ended: the remembered rejection was planned against, not a new fetch.
  await eventually(async () => assert.ok(((await second.metrics()).get('basecache_agent_reconcile_total{kind="node",outcome="success"}') ?? 0) > 0), {
    timeoutMs: 60_000,
    description: "the restarted agent's first pass",
  });
  // Something else to do proves the restarted agent has reconciled this generation.
  await setNicImages(admin, node, [{ id: "rejected-image", url }, { id: "after-image", url: good }]);
  await eventually(async () => assert.equal((await imageStatus(admin, node, "after-image"))?.phase, "Ready"), { timeoutMs: 60_000 });
  assert.equal(origin.requestsTo("/rejected.qcow2"), requests);
  assert.equal((await imageStatus(admin, node, "rejected-image"))?.phase, "Failed");
});
