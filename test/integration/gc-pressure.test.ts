import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { AgentTestbed } from "../harness/agent-testbed.js";
import type { NodeDirs } from "../harness/agent-process.js";
import { eventually } from "../harness/eventually.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { createNic, createPodUsing, eventsAbout, imageStatus, setNicImages, type WantedImageInput } from "./agent-helpers.js";

let tb: AgentTestbed;
let admin: Api;
let origin: Origin;
let images: ImageDir;
let d: NodeDirs;

before(async () => {
  tb = await AgentTestbed.start();
  ({ admin, origin, images } = tb);
  // The agents may not read pods: the controller's pod-uses part tells them which bases pods use.
  await tb.answerPodUses();
});

after(async () => {
  await tb?.stop();
});

const node = "budget-node";
const MiB = 1024 * 1024;

async function image(id: string): Promise<WantedImageInput> {
  return { id, url: origin.serve(`/${id}.qcow2`, { file: await images.qcow2(`${id}.qcow2`, 8) }) };
}

// The cache's own allocated bytes, as the budget counts them (never other files).
async function cacheBytes(): Promise<number> {
  let n = 0;
  for (const name of await readdir(d.base)) if (/^[0-9a-f]{40}/.test(name)) n += (await stat(join(d.base, name))).blocks * 512;
  return n;
}

test("past the high watermark unused bases are evicted for a newcomer, never a used or wanted one; an image that cannot fit fails with disk-full", async () => {
  const n = await tb.node(node);
  d = n.dirs;
  const old = await Promise.all(["old-1", "old-2", "old-3", "old-4"].map(image));
  await createNic(admin, node, old);
  const agent = tb.launch(n, { args: ["--cache-budget", "8Mi", "--high-watermark", "0.9", "--low-watermark", "0.5", "--retry-base", "10m", "--retry-max", "10m"] });
  await eventually(async () => {
    for (const w of old) assert.equal((await imageStatus(admin, node, w.id))?.phase, "Ready", w.id);
  }, { timeoutMs: 90_000 });
  // A stranger's big file on the same filesystem does not count against the budget.
  await writeFile(join(d.base, "someone-elses.bin"), Buffer.alloc(16 * MiB, 1));
  await createPodUsing(admin, node, "uses-old-1", ["old-1"]);

  const fresh = await Promise.all(["new-1", "new-2"].map(image));
  await setNicImages(admin, node, fresh);
  await eventually(async () => {
    for (const w of fresh) assert.equal((await imageStatus(admin, node, w.id))?.phase, "Ready", w.id);
  }, { timeoutMs: 90_000 });
  await eventually(async () => {
    const m = await agent.metrics();
    assert.ok((m.get('basecache_gc_removals_total{reason="Evicted",kind="base"}') ?? 0) >= 1);
  });
  const names = await readdir(d.base);
  assert.ok(names.includes(baseNameFor("old-1")), "a base a pod uses is never evicted");
  for (const w of fresh) assert.ok(names.includes(baseNameFor(w.id)), `${w.id} kept`);
  assert.ok(names.includes("someone-elses.bin"));
  assert.ok((await cacheBytes()) <= 8 * MiB, `cache holds ${await cacheBytes()} bytes`);
  assert.ok((await eventsAbout(admin, node)).some((e) => e.reason === "BaseRemoved" && e.note.includes("Evicted")));
  await eventually(async () => {
    const c = (await admin.nic(node))?.status?.conditions?.find((x) => x.type === "CacheWithinBudget");
    assert.deepEqual([c?.status, c?.reason], ["True", "WithinBudget"]);
  });

  // Larger than the whole budget: refused with disk-full, and nothing is evicted for it. A slow origin makes
  // sure the size is judged while the download still runs.
  const huge = images.path("huge.raw");
  await images.raw("huge.raw", 24);
  const { size } = await stat(huge);
  const hugeUrl = origin.route("/huge.raw", { kind: "slow", chunkBytes: Math.ceil(size / 100), intervalMs: 100, body: { file: huge } });
  const before = (await readdir(d.base)).filter((n) => /^[0-9a-f]{40}$/.test(n)).sort();
  await setNicImages(admin, node, [...fresh, { id: "huge-image", url: hugeUrl }]);
  await eventually(async () => {
    const s = await imageStatus(admin, node, "huge-image");
    assert.deepEqual([s?.phase, s?.reason], ["Failed", "disk-full"]);
  }, { timeoutMs: 60_000 });
  await eventually(async () => assert.ok(!(await readdir(d.base)).some((n) => n.startsWith(baseNameFor("huge-image")))));
  assert.deepEqual((await readdir(d.base)).filter((n) => /^[0-9a-f]{40}$/.test(n)).sort(), before);
});
