import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { AgentTestbed, type TestNode } from "../harness/agent-testbed.js";
import type { AgentProcess } from "../harness/agent-process.js";
import { eventually } from "../harness/eventually.js";
import { startCli } from "../harness/fetch-cli.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { createNic, createPodUsing, imageStatus, setNicImages, type WantedImageInput } from "./agent-helpers.js";

const H = 3600_000;
let tb: AgentTestbed;
let admin: Api;
let origin: Origin;
let images: ImageDir;
const nodes = new Map<string, TestNode>();
let tmpfs: string | undefined;

before(async () => {
  tb = await AgentTestbed.start();
  ({ admin, origin, images } = tb);
  // The agents may not read pods: the controller's pod-uses part tells them which bases pods use.
  await tb.answerPodUses();
});

after(async () => {
  await tb?.stop();
});

const running = new Map<string, AgentProcess>();

// fault-3's disk-full image would be retried every second or two; a long backoff keeps its directory still.
function launch(node: string, env: Record<string, string> = {}): AgentProcess {
  const args = node === "fault-3" ? ["--retry-base", "10m", "--retry-max", "10m"] : [];
  const a = tb.launch(nodes.get(node)!, { env, args });
  running.set(node, a);
  return a;
}

async function strays(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /\.(part|converted|tmp|lock)$/.test(n) || n.includes(".broken-"));
}

test("three nodes converge through a dropping origin, a SIGKILLed agent and a full disk; GC then removes only what nothing uses", async () => {
  for (const node of ["fault-1", "fault-2", "fault-3"]) nodes.set(node, await tb.node(node));
  const f3 = nodes.get("fault-3")!.dirs.base;
  const mounted = await execa("mount", ["-t", "tmpfs", "-o", "size=96M", "tmpfs", f3], { reject: false });
  if (mounted.exitCode === 0) {
    tmpfs = f3;
    tb.onStop(() => execa("umount", [f3], { reject: false }));
  }

  const sharedFile = await images.qcow2("shared.qcow2", 16);
  const shared: WantedImageInput = { id: "shared", url: origin.route("/shared.qcow2", { kind: "drop", afterBytes: 200_000, times: 4, body: { file: sharedFile } }) };
  const slowFile = await images.qcow2("slow.qcow2", 32);
  const slowSize = (await stat(slowFile)).size;
  const slow: WantedImageInput = { id: "slow", url: origin.route("/slow.qcow2", { kind: "slow", chunkBytes: Math.ceil(slowSize / 200), intervalMs: 100, body: { file: slowFile } }) };
  const big: WantedImageInput = { id: "big", url: origin.serve("/big.raw", { file: await images.raw("big.raw", 200) }) };
  const wanted: Record<string, WantedImageInput[]> = { "fault-1": [shared], "fault-2": [shared, slow], "fault-3": tmpfs ? [shared, big] : [shared] };
  for (const [node, list] of Object.entries(wanted)) await createNic(admin, node, list);
  for (const node of nodes.keys()) launch(node);

  // SIGKILL the agent of fault-2 in the middle of its slow download, then start it again.
  const f2 = nodes.get("fault-2")!.dirs.base;
  await eventually(async () => assert.ok((await stat(join(f2, `${baseNameFor("slow")}.part`))).size > 0), { timeoutMs: 90_000 });
  const killed = running.get("fault-2")!;
  killed.kill("SIGKILL");
  await killed.exited;
  launch("fault-2");

  await eventually(
    async () => {
      for (const [node, list] of Object.entries(wanted)) {
        for (const w of list) {
          const s = await imageStatus(admin, node, w.id);
          if (w.id === "big") assert.deepEqual([s?.phase, s?.reason], ["Failed", "disk-full"], `${node} ${w.id}`);
          else assert.equal(s?.phase, "Ready", `${node} ${w.id}`);
        }
      }
    },
    { timeoutMs: 180_000, description: "every node converged" },
  );
  for (const { dirs } of nodes.values()) assert.deepEqual(await strays(dirs.base), [], dirs.base);

  // Uses: an overlay on fault-1, a pod on fault-2; fault-3 has none. Then nothing is wanted any more.
  const f1 = nodes.get("fault-1")!.dirs;
  const made = await startCli(["disk", "create", "--base-dir", f1.base, "--id", "shared", "--out", join(f1.instances, "vm", "disk.qcow2")]);
  assert.equal(made.exitCode, 0, made.stderr);
  await createPodUsing(admin, "fault-2", "vm-on-fault-2", ["shared", "slow"]);
  for (const node of nodes.keys()) await setNicImages(admin, node, []);
  // Let each agent see the change and start the retention clocks, then restart them all a day and more later.
  for (const node of nodes.keys()) await eventually(async () => assert.deepEqual((await admin.nic(node))?.status?.images, []), { timeoutMs: 60_000 });
  await tb.stopAgents();
  for (const node of nodes.keys()) {
    const n = nodes.get(node)!;
    const r = await startCli(["gc", "--base-dir", n.dirs.base, "--instances-dir", n.dirs.instances, "--node", node, "--kubeconfig", tb.cp.kubeconfigPath, "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
  }
  for (const node of nodes.keys()) launch(node, { BASECACHE_CLOCK_OFFSET_MS: String(25 * H) });

  await eventually(async () => assert.ok(!(await readdir(f3)).includes(baseNameFor("shared"))), { timeoutMs: 60_000, description: "fault-3's unused base removed" });
  assert.ok((await readdir(f1.base)).includes(baseNameFor("shared")), "the overlay's base stays on fault-1");
  const f2names = await readdir(f2);
  assert.ok(f2names.includes(baseNameFor("shared")) && f2names.includes(baseNameFor("slow")), "the pod's bases stay on fault-2");
  // The pass that removed fault-3's base releases that base's lock just after the unlink.
  await eventually(async () => {
    for (const { dirs } of nodes.values()) assert.deepEqual(await strays(dirs.base), [], dirs.base);
  });
});
