import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { mkdir, readdir } from "node:fs/promises";
import { baseNameFor } from "../../src/core/names.js";
import { AgentTestbed, type TestNode } from "../harness/agent-testbed.js";
import { eventually } from "../harness/eventually.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { createNic, eventsAbout, imageStatus } from "./agent-helpers.js";

let tb: AgentTestbed;
let admin: Api;
let origin: Origin;
let images: ImageDir;
let n: TestNode;
let skipReason: string | undefined;

before(async () => {
  tb = await AgentTestbed.start();
  ({ admin, origin, images } = tb);
  n = await tb.node("full-node");
  const r = await execa("mount", ["-t", "tmpfs", "-o", "size=96M", "tmpfs", n.dirs.base], { reject: false });
  if (r.exitCode === 0) tb.onStop(() => execa("umount", [n.dirs.base], { reject: false }));
  else skipReason = `cannot mount a small tmpfs (needs root): ${r.stderr.trim()}`;
});

after(async () => {
  await tb?.stop();
});

test("on a full disk an image fails with disk-full and leaves nothing, while one that fits arrives", async (t) => {
  if (skipReason) return t.skip(skipReason);
  const node = n.name;
  const d = n.dirs;
  const big = origin.serve("/big.raw", { file: await images.raw("big.raw", 200) });
  const random = images.path("random.raw");
  await execa("dd", ["if=/dev/urandom", `of=${random}`, "bs=1M", "count=128", "status=none"]);
  const chunked = origin.serve("/random.raw", { file: random }, { chunked: true });
  const small = origin.serve("/small.qcow2", { file: await images.qcow2("small.qcow2", 8) });
  await createNic(admin, node, [
    { id: "small-image", url: small },
    { id: "announced-too-big", url: big },
    { id: "fills-the-disk", url: chunked },
  ]);
  await mkdir(d.instances, { recursive: true });
  // A long retry backoff keeps a second attempt from running while the directory is checked.
  tb.launch(n, { args: ["--retry-base", "10m", "--retry-max", "10m"] });

  await eventually(
    async () => {
      assert.equal((await imageStatus(admin, node, "small-image"))?.phase, "Ready");
      for (const id of ["announced-too-big", "fills-the-disk"]) {
        const s = await imageStatus(admin, node, id);
        assert.deepEqual([s?.phase, s?.reason], ["Failed", "disk-full"], id);
      }
    },
    { timeoutMs: 120_000 },
  );
  const names = (await readdir(d.base)).filter((n) => !n.startsWith(".basecache-gc.json")).sort();
  assert.deepEqual(names, [baseNameFor("small-image"), `${baseNameFor("small-image")}.info.json`].sort());
  assert.ok(origin.bytesSentFor("/big.raw") < 200 * 1024 * 1024, "the announced image was not downloaded in full");
  assert.ok((await eventsAbout(admin, node)).some((e) => e.reason === "DiskFull" && e.type === "Warning"));
});
