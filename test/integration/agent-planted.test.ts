/**
 * The agent with files planted in its base dir: a symlink at one image's base name is reported in status (reason
 * foreign-file, the path in the message) and as an Event, never served as Ready and never followed; the other
 * image is fetched as usual; GC reports the planted entry and leaves it. Real control plane, agent, origin.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { lstat, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { AgentTestbed } from "../harness/agent-testbed.js";
import { eventually } from "../harness/eventually.js";
import { startCli } from "../harness/fetch-cli.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { createNic, eventsAbout, imageStatus } from "./agent-helpers.js";

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

test("a symlink planted at a base's name is reported in status and an Event, not served; GC leaves it alone", async () => {
  const node = "planted-node";
  const n = await tb.node(node);
  const dirs = n.dirs;
  const outside = join(dirs.root, "outside");
  await mkdir(outside);
  const secret = join(outside, "secret.raw");
  await writeFile(secret, Buffer.alloc(1024 * 1024, 0x41));
  const planted = join(dirs.base, baseNameFor("planted-image"));
  await symlink(secret, planted);
  const url = origin.serve("/good.qcow2", { file: await images.qcow2("good.qcow2", 8) });
  await createNic(admin, node, [
    { id: "planted-image", url },
    { id: "good-image", url },
  ]);
  tb.launch(n);

  await eventually(
    async () => {
      assert.equal((await imageStatus(admin, node, "good-image"))?.phase, "Ready");
      const s = await imageStatus(admin, node, "planted-image");
      assert.equal(s?.phase, "Failed");
      assert.equal(s?.reason, "foreign-file");
      assert.ok(s?.message?.includes(planted), s?.message);
    },
    { timeoutMs: 60_000, description: "the planted base reported as foreign, the other image Ready" },
  );
  await eventually(async () => assert.ok((await eventsAbout(admin, node)).some((e) => e.type === "Warning" && e.note.includes(planted))), {
    timeoutMs: 30_000,
    description: "a Warning Event naming the planted path",
  });
  assert.ok((await lstat(planted)).isSymbolicLink(), "the planted link stays");
  assert.equal((await readFile(secret)).length, 1024 * 1024);

  const gc = await startCli(["gc", "--base-dir", dirs.base, "--instances-dir", dirs.instances, "--dry-run", "--json"]);
  assert.equal(gc.exitCode, 0, gc.stderr);
  const decision = (JSON.parse(gc.stdout) as { decisions: { name: string; action: string; reason: string }[] }).decisions.find((d) => d.name === baseNameFor("planted-image"));
  assert.deepEqual(decision && { action: decision.action, reason: decision.reason }, { action: "report", reason: "NotARegularFile" });
});
