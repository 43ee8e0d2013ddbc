import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { CoreV1Api } from "@kubernetes/client-node";
import { baseNameFor } from "../../src/core/names.js";
import { mergePatchOptions } from "../../src/kube/client.js";
import { AgentTestbed, type TestNode } from "../harness/agent-testbed.js";
import type { AgentProcess, NodeDirs } from "../harness/agent-process.js";
import type { ControllerProcess } from "../harness/controller-process.js";
import { eventually } from "../harness/eventually.js";
import { startCli } from "../harness/fetch-cli.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { annotateNic, createNic, createPodUsing, eventsAbout, imageStatus, setNicImages } from "./agent-helpers.js";

const H = 3600_000;
let tb: AgentTestbed;
let cp: { kubeconfigPath: string };
let admin: Api;
let origin: Origin;
let images: ImageDir;
let n: TestNode;
let d: NodeDirs;
/** The controller's pod-uses part: the agents may not read pods, so it tells them which bases pods use. */
let answerer: ControllerProcess | undefined;

before(async () => {
  tb = await AgentTestbed.start();
  ({ cp, admin, origin, images } = tb);
  answerer = await tb.answerPodUses();
});

after(async () => {
  await tb?.stop();
});

const node = "gc-node";
const ids = ["overlay-image", "pod-image", "idle-image", "wanted-image"];
const base = (id: string) => baseNameFor(id);

function launch(env: Record<string, string> = {}, args: string[] = []): AgentProcess {
  return tb.launch(n, { env, args });
}

async function gcPasses(a: AgentProcess): Promise<number> {
  return (await a.metrics()).get('basecache_gc_passes_total{outcome="done"}') ?? 0;
}

async function triggerGc(a: AgentProcess, value: string, on = node): Promise<void> {
  const before = await gcPasses(a);
  await annotateNic(admin, on, { "basecache.io/gc-requested": value });
  await eventually(async () => assert.ok((await gcPasses(a)) > before), { timeoutMs: 60_000, description: "a requested GC pass" });
}

test("GC keeps a base under an overlay and one a pod names, honours retention, and removes the rest", async () => {
  n = await tb.node(node);
  d = n.dirs;
  const wanted = await Promise.all(ids.map(async (id) => ({ id, url: origin.serve(`/${id}.qcow2`, { file: await images.qcow2(`${id}.qcow2`, 8) }) })));
  await createNic(admin, node, wanted);
  const first = launch();
  await eventually(async () => {
    for (const id of ids) assert.equal((await imageStatus(admin, node, id))?.phase, "Ready", id);
  }, { timeoutMs: 90_000 });

  // An overlay made the way operators make them, a pod that declares an image, a stranger's file, a dead fetch's work file.
  const made = await startCli(["disk", "create", "--base-dir", d.base, "--id", "overlay-image", "--out", join(d.instances, "vm-1", "disk.qcow2")]);
  assert.equal(made.exitCode, 0, made.stderr);
  await createPodUsing(admin, node, "vm-pod", ["pod-image", "not-on-this-node"]);
  await writeFile(join(d.base, "notes.txt"), "not ours");
  await writeFile(join(d.base, `${baseNameFor("gone-image")}.part`), "partial");

  await setNicImages(admin, node, wanted.filter((w) => w.id === "wanted-image"));
  await triggerGc(first, "1");
  let names = await readdir(d.base);
  for (const id of ids) assert.ok(names.includes(base(id)), `${id} kept within retention or in use`);
  assert.ok(names.includes("notes.txt"));
  assert.ok(!names.includes(`${baseNameFor("gone-image")}.part`), "an abandoned work file goes at once");
  assert.equal(await first.stop(), 0);

  // A day and an hour later (an injected clock): the idle base has passed its retention age.
  const later = launch({ BASECACHE_CLOCK_OFFSET_MS: String(25 * H) });
  await eventually(
    async () => {
      const now = await readdir(d.base);
      assert.ok(!now.includes(base("idle-image")) && !now.includes(`${base("idle-image")}.info.json`));
    },
    { timeoutMs: 60_000, description: "idle base and its sidecar removed" },
  );
  names = await readdir(d.base);
  for (const id of ["overlay-image", "pod-image", "wanted-image"]) assert.ok(names.includes(base(id)), `${id} kept`);
  assert.ok(names.includes("notes.txt"), "unknown names are never deleted");
  const m = await later.metrics();
  assert.equal(m.get('basecache_gc_removals_total{reason="RetentionExpired",kind="base"}'), 1);
  const events = await eventsAbout(admin, node);
  assert.ok(events.some((e) => e.reason === "BaseRemoved" && e.note.includes("idle-image")), JSON.stringify(events));

  // The pod goes: its base is unused from now on, so it starts a fresh retention clock instead of going at once.
  await admin.kc.makeApiClient(CoreV1Api).deleteNamespacedPod({ namespace: "default", name: "vm-pod", gracePeriodSeconds: 0 });
  await eventually(async () => {
    // On demand by signal this time.
    const passes = await gcPasses(later);
    later.kill("SIGUSR1");
    await eventually(async () => assert.ok((await gcPasses(later)) > passes), { timeoutMs: 60_000 });
    const state = JSON.parse(await readFile(join(d.base, ".basecache-gc.json"), "utf8")) as { bases: Record<string, { unusedSince?: number }> };
    assert.ok(state.bases[base("pod-image")]?.unusedSince !== undefined, "the pod's base is now unused");
  }, { timeoutMs: 120_000 });
  assert.ok((await readdir(d.base)).includes(base("pod-image")));
  assert.equal(await later.stop(), 0);
});

test("basecache gc --dry-run reports what a pass would remove and changes nothing; a real run removes exactly that", async () => {
  await unlink(join(d.instances, "vm-1", "disk.qcow2"));
  const env = { BASECACHE_CLOCK_OFFSET_MS: String(26 * H), BASECACHE_LOG_LEVEL: "warn" };
  const args = ["gc", "--base-dir", d.base, "--instances-dir", d.instances, "--node", node, "--kubeconfig", cp.kubeconfigPath, "--json"];
  // 26 h on: the overlay is gone, so its base is seen unused and its clock starts; the pod's base is 1 h into its retention.
  const seen = await startCli(args, env);
  assert.equal(seen.exitCode, 0, seen.stderr);
  const before = (await readdir(d.base)).sort();
  const dry = await startCli([...args, "--dry-run"], { ...env, BASECACHE_CLOCK_OFFSET_MS: String(90 * H) });
  assert.equal(dry.exitCode, 0, dry.stderr);
  const plan = JSON.parse(dry.stdout) as { dryRun: boolean; decisions: { name: string; action: string; reason: string }[]; removed: string[] };
  assert.equal(plan.dryRun, true);
  assert.deepEqual(plan.removed, []);
  const wouldGo = plan.decisions.filter((d) => d.action === "delete" && !d.name.endsWith(".lock")).map((d) => d.name).sort();
  assert.deepEqual(wouldGo, [base("overlay-image"), `${base("overlay-image")}.info.json`, base("pod-image"), `${base("pod-image")}.info.json`].sort());
  assert.ok(plan.decisions.some((d) => d.name === base("wanted-image") && d.reason === "Wanted"));
  assert.ok(plan.decisions.some((d) => d.name === "notes.txt" && d.action === "report"));
  assert.deepEqual((await readdir(d.base)).sort(), before, "a dry run changes nothing");

  const real = await startCli(args, { ...env, BASECACHE_CLOCK_OFFSET_MS: String(90 * H) });
  assert.equal(real.exitCode, 0, real.stderr);
  const done = JSON.parse(real.stdout) as { removed: string[] };
  assert.deepEqual(done.removed.filter((n) => !n.endsWith(".lock")).sort(), wouldGo);
  const names = await readdir(d.base);
  assert.ok(names.includes(base("wanted-image")) && names.includes("notes.txt"));
});

test("basecache gc without a node removes no base, only work files", async () => {
  await writeFile(join(d.base, `${baseNameFor("x")}.converted`), "x");
  const r = await startCli(["gc", "--base-dir", d.base, "--instances-dir", d.instances, "--json"], { BASECACHE_CLOCK_OFFSET_MS: String(1000 * H), NODE_NAME: "" });
  assert.equal(r.exitCode, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { removed: string[]; decisions: { name: string; reason: string }[] };
  assert.deepEqual(out.removed, [`${baseNameFor("x")}.converted`]);
  assert.equal(out.decisions.find((x) => x.name === base("wanted-image"))?.reason, "ReferencesIncomplete");
});

test("an instance disk whose header cannot be read keeps every base, however old", async () => {
  const stale = baseNameFor("stale-image");
  await writeFile(join(d.base, stale), Buffer.alloc(4096, 7));
  await mkdir(join(d.instances, "vm-broken"), { recursive: true });
  await writeFile(join(d.instances, "vm-broken", "disk.qcow2"), Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]), Buffer.from("truncated")]));
  const args = ["gc", "--base-dir", d.base, "--instances-dir", d.instances, "--node", node, "--kubeconfig", cp.kubeconfigPath, "--json"];
  for (const hours of [200, 400]) {
    const r = await startCli(args, { BASECACHE_CLOCK_OFFSET_MS: String(hours * H) });
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { removed: string[]; decisions: { name: string; reason: string; message: string }[] };
    assert.deepEqual(out.removed.filter((n) => /^[0-9a-f]{40}$/.test(n)), []);
    const decision = out.decisions.find((x) => x.name === stale);
    assert.equal(decision?.reason, "ReferencesIncomplete");
    assert.match(decision?.message ?? "", /vm-broken/);
  }
  assert.ok((await readdir(d.base)).includes(stale));
});

// The agent may not read pods: the controller answers, to the token the agent asked with, which bases they use.
test("pod uses come from the controller: without a fresh answer to its own question, the agent keeps every base", async () => {
  const n2 = await tb.node("gc-pods-node");
  const dirs = n2.dirs;
  const start = (hours: number) => tb.launch(n2, { env: { BASECACHE_CLOCK_OFFSET_MS: String(hours * H) }, args: ["--pod-uses-timeout", "2s"] });
  const podUsesKnown = async () => (await admin.nic(n2.name))?.status?.conditions?.find((x) => x.type === "PodUsesKnown");
  const timeouts = async (a: AgentProcess) => (await a.metrics()).get('basecache_gc_pod_uses_questions_total{outcome="timeout"}') ?? 0;
  const wanted = await Promise.all(["podded", "loner"].map(async (id) => ({ id, url: origin.serve(`/${id}.qcow2`, { file: await images.qcow2(`${id}.qcow2`, 8) }), unusedFor: "1h" })));
  await createNic(admin, n2.name, wanted);
  let a = start(0);
  await eventually(async () => {
    for (const w of wanted) assert.equal((await imageStatus(admin, n2.name, w.id))?.phase, "Ready", w.id);
  }, { timeoutMs: 90_000 });
  await createPodUsing(admin, n2.name, "vm-podded", ["podded"]);
  await setNicImages(admin, n2.name, []);
  await triggerGc(a, "1", n2.name);
  const state = JSON.parse(await readFile(join(dirs.base, ".basecache-gc.json"), "utf8")) as { bases: Record<string, { unusedSince?: number }> };
  assert.equal(state.bases[base("podded")]?.unusedSince, undefined, "the pod's base is in use");
  assert.ok(state.bases[base("loner")]?.unusedSince !== undefined, "the other base's clock started");
  assert.equal(await a.stop(), 0);

  // 30 hours on, past any retention (no pass saw these bases wanted, so they have the default 24h), with no
  // controller to answer: every base stays, and the agent says why.
  assert.equal(await answerer?.stop(), 0);
  answerer = undefined;
  a = start(30);
  await eventually(async () => assert.ok((await gcPasses(a)) >= 1), { timeoutMs: 60_000, description: "the start pass" });
  let names = await readdir(dirs.base);
  assert.ok(names.includes(base("podded")) && names.includes(base("loner")), "nothing removed without an answer");
  assert.ok((await timeouts(a)) >= 1);
  assert.ok(((await a.metrics()).get('basecache_gc_refusals_total{reason="ReferencesIncomplete"}') ?? 0) >= 1, "the pass counted as one that could not see every use");
  await eventually(async () => {
    const c = await podUsesKnown();
    assert.equal(c?.status, "False");
    assert.equal(c?.reason, "NoAnswer");
    assert.match(c?.message ?? "", /no answer from the controller within 2s/);
  }, { timeoutMs: 30_000, description: "the PodUsesKnown condition" });
  assert.ok((await eventsAbout(admin, n2.name)).some((e) => e.reason === "GcRefused" && /no answer from the controller/.test(e.note)));

  // A forged answer, and a replay of an answer to the agent's previous question, are both ignored, and the
  // condition says the answer present is to another request.
  const previous = (await admin.nic(n2.name))?.status?.podUsesRequest ?? "";
  assert.notEqual(previous, "");
  for (const token of ["forged", previous]) {
    await admin.custom.patchClusterCustomObject(
      { group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", name: n2.name, body: { spec: { podUses: { token, observedAt: new Date().toISOString().replace(/\.\d+Z$/, "Z"), uses: [] } } } },
      mergePatchOptions,
    );
    const asked = await timeouts(a);
    await triggerGc(a, `forged-${token}`, n2.name);
    assert.ok((await timeouts(a)) > asked, `the pass after the answer with token "${token}" waited out its own question`);
    names = await readdir(dirs.base);
    assert.ok(names.includes(base("podded")) && names.includes(base("loner")), `an answer with token "${token}" was trusted`);
    await eventually(async () => {
      const c = await podUsesKnown();
      assert.equal(c?.reason, "NoAnswer");
      assert.match(c?.message ?? "", /the one present answers another request/);
    }, { timeoutMs: 30_000, description: "the PodUsesKnown condition naming another request's answer" });
  }

  // The controller back: the unused base goes, the pod's stays.
  answerer = await tb.answerPodUses();
  await triggerGc(a, "answered", n2.name);
  names = await readdir(dirs.base);
  // The logs' tails only explain a failure; nothing is asserted on them.
  const tails = () => `agent:\n${a.logTail()}\ncontroller:\n${answerer?.logTail() ?? ""}`;
  assert.ok(!names.includes(base("loner")), `the unused, expired base is removed once the controller answers\n${tails()}`);
  assert.ok(names.includes(base("podded")), "the base a pod uses is kept");
  await eventually(async () => assert.equal((await podUsesKnown())?.status, "True"), { timeoutMs: 30_000, description: "PodUsesKnown True" });

  // The pod goes: its base's clock starts, and once past its retention it is removed.
  await admin.kc.makeApiClient(CoreV1Api).deleteNamespacedPod({ namespace: "default", name: "vm-podded", gracePeriodSeconds: 0 });
  await triggerGc(a, "pod-gone", n2.name);
  assert.ok((await readdir(dirs.base)).includes(base("podded")), "a fresh retention clock, not removal at once");
  assert.equal(await a.stop(), 0);
  a = start(60);
  await eventually(async () => assert.ok(!(await readdir(dirs.base)).includes(base("podded"))), { timeoutMs: 60_000, description: "the pod's base removed after its retention" });
  assert.equal(await a.stop(), 0);
});
