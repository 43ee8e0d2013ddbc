/**
 * VMs land where their base is, with the real kube-scheduler: deploy/examples/vm-pod.yaml, whose required node
 * affinity is the label the controller puts on nodes where deploy/examples/imagecache.yaml is Ready, stays
 * Pending (Unschedulable) while the origin withholds the image, and is scheduled and runs once the image is
 * Ready and the node labelled. The label goes when the node is no longer selected and when the ImageCache is
 * deleted; the VM's instance disk, left on the hostPath, is what `basecache gc --dry-run` says keeps the base.
 * With `spec.placement.taintUntilReady` the node carries the warming taint until its first sync, so a pod
 * without a toleration stays Pending; then the taint goes and the pod runs.
 *
 * The origin holds each request for the image unanswered until the test releases it (Origin.gate), so "not
 * Ready yet" is a state the test controls, not a race with the download.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { eventually } from "../harness/eventually.js";
import { unavailableReason } from "../harness/node/node.js";
import { installDeploy, startNodeTestbed, stopNodeTestbed, type NodeTestbed } from "../harness/node/testbed.js";
import { Example, exampleImageCache, vmPod } from "../harness/node/vm-pod.js";
import { imageCache, Namespace, readyAgent, waitImageCacheReady } from "../harness/node/workloads.js";

const skip = await unavailableReason();
const AgentImageName = "basecache/basecache:test";
const ReadyLabel = `imagecache.basecache.io/${Example.imageCache}`;
const WarmCache = "warm-pool";
const WarmTaint = "basecache.io/warming";
const ColdPod = "no-toleration";

interface PodJson {
  spec: { nodeName?: string };
  status: { phase?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}
interface NodeJson {
  metadata: { labels?: Record<string, string> };
  spec: { taints?: { key: string; effect: string }[] };
}

describe("VM placement with the real scheduler: node labels and the warming taint", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let tb: NodeTestbed;
  let qcow2: string;

  before(async () => {
    tb = await startNodeTestbed();
    qcow2 = await tb.images.qcow2("noble.qcow2", 32);
    await installDeploy(tb);
  });

  after(() => stopNodeTestbed(tb));

  const pod = async (name: string): Promise<PodJson> => JSON.parse(await tb.node.kubectl(["get", "pod", "-n", "default", name, "-o", "json"])) as PodJson;
  const node = async (): Promise<NodeJson> => JSON.parse(await tb.node.kubectl(["get", "node", tb.node.nodeName, "-o", "json"])) as NodeJson;
  const labels = async (): Promise<Record<string, string>> => (await node()).metadata.labels ?? {};
  const hasWarmTaint = async (): Promise<boolean> => ((await node()).spec.taints ?? []).some((t) => t.key === WarmTaint && t.effect === "NoSchedule");

  async function apply(file: string, obj: object): Promise<void> {
    await writeFile(join(tb.dir, file), JSON.stringify(obj));
    await tb.node.kubectl(["apply", "-f", join(tb.dir, file)]);
  }

  /** Waits until the scheduler has tried pod `name` and found no node; resolves its PodScheduled message. */
  async function unschedulable(name: string): Promise<string> {
    return eventually(
      async () => {
        const p = await pod(name);
        const c = p.status.conditions?.find((x) => x.type === "PodScheduled");
        assert.deepEqual([p.status.phase, p.spec.nodeName, c?.status, c?.reason], ["Pending", undefined, "False", "Unschedulable"], JSON.stringify(p.status));
        return c?.message ?? "";
      },
      { timeoutMs: 60_000, intervalMs: 500, description: `pod ${name} Unschedulable` },
    );
  }

  /** Waits until pod `name` runs Ready on the node. */
  async function runsOnNode(name: string): Promise<void> {
    await eventually(
      async () => {
        const p = await pod(name);
        assert.equal(p.spec.nodeName, tb.node.nodeName, JSON.stringify(p.status));
        assert.equal(p.status.conditions?.find((c) => c.type === "Ready")?.status, "True", JSON.stringify(p.status));
      },
      { timeoutMs: 180_000, intervalMs: 1000, description: `pod ${name} Ready on the node` },
    );
  }

  test("the VM pod example stays Pending while its image is withheld, then is scheduled and runs", async () => {
    const { url, release } = tb.origin.gate("/images/noble.qcow2", { file: qcow2 });
    await tb.node.kubectl(["label", "node", tb.node.nodeName, `${Example.nodeLabel}=true`]);
    await apply("imagecache.json", await exampleImageCache(url));
    await apply("vm-pod.json", await vmPod(tb.node.images[AgentImageName] ?? ""));
    assert.match(await unschedulable(Example.pod), /affinity/, "the node affinity is what keeps it off the node");
    // The agent is fetching and the origin holds the answer: the ImageCache is not Ready and the pod still waits.
    await eventually(async () => assert.ok(tb.origin.requestsTo("/images/noble.qcow2") > 0), { timeoutMs: 120_000, intervalMs: 500, description: "the agent asked the origin" });
    const ic = JSON.parse(await tb.node.kubectl(["get", "imagecache", Example.imageCache, "-o", "json"])) as { status?: { conditions?: { type: string; status: string }[] } };
    assert.notEqual(ic.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
    assert.equal((await labels())[ReadyLabel], undefined, "no placement label yet");
    await unschedulable(Example.pod);

    release();
    await waitImageCacheReady(tb.node, Example.imageCache);
    await eventually(async () => assert.equal((await labels())[ReadyLabel], "ready"), { timeoutMs: 60_000, intervalMs: 500, description: "the node labelled" });
    await runsOnNode(Example.pod);
  });

  test("the label goes when the node is no longer selected, comes back, and goes with the ImageCache; the VM keeps running", async () => {
    await tb.node.kubectl(["label", "node", tb.node.nodeName, `${Example.nodeLabel}-`]);
    await eventually(async () => assert.equal((await labels())[ReadyLabel], undefined), { timeoutMs: 60_000, intervalMs: 500, description: "the label gone with the selection" });
    await tb.node.kubectl(["label", "node", tb.node.nodeName, `${Example.nodeLabel}=true`]);
    await eventually(async () => assert.equal((await labels())[ReadyLabel], "ready"), { timeoutMs: 120_000, intervalMs: 500, description: "the label back with the selection" });
    await tb.node.kubectl(["delete", "imagecache", Example.imageCache, "--wait=true", "--timeout=60s"]);
    await eventually(async () => assert.equal((await labels())[ReadyLabel], undefined), { timeoutMs: 60_000, intervalMs: 500, description: "the label gone with the ImageCache" });
    // Labels steer the scheduler only (IgnoredDuringExecution): the running VM is not touched.
    const p = await pod(Example.pod);
    assert.equal(p.status.conditions?.find((c) => c.type === "Ready")?.status, "True");
    await tb.node.kubectl(["delete", "pod", "-n", "default", Example.pod, "--wait=true", "--timeout=120s"]);
    // What docs/operations.md ("Freeing a base that an instance disk holds") tells a user to run: the disk the
    // pod left on the hostPath is named as what keeps the base.
    const agent = await readyAgent(tb.node);
    const dryRun = await tb.node.kubectl(["exec", "-n", Namespace, agent.name, "-c", "agent", "--", "basecache", "gc", "--base-dir", "/var/lib/basecache/_base", "--instances-dir", "/var/lib/basecache/instances", "--dry-run"]);
    const line = dryRun.split("\n").find((l) => l.includes(baseNameFor(Example.imageId)));
    assert.match(line ?? "", new RegExp(`^keep +InUse +${baseNameFor(Example.imageId)} .* Used by disk ${Example.disk}$`), dryRun);
  });

  test("with taintUntilReady the node is tainted until its first sync: a pod without a toleration waits, then runs", async () => {
    const { url, release } = tb.origin.gate("/images/warm.qcow2", { file: qcow2 });
    const warm = imageCache(WarmCache, "warm-image", url) as { spec: Record<string, unknown> };
    warm.spec.placement = { taintUntilReady: true };
    await apply("warm.json", warm);
    await eventually(async () => assert.ok(await hasWarmTaint()), { timeoutMs: 60_000, intervalMs: 500, description: "the warming taint on the node" });
    await apply("cold-pod.json", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: ColdPod, namespace: "default" },
      spec: { containers: [{ name: "pause", image: tb.node.pauseImage }], terminationGracePeriodSeconds: 1, automountServiceAccountToken: false },
    });
    // The scheduler names no taint key: the node's only taint is ours, so it is what keeps the pod off.
    assert.match(await unschedulable(ColdPod), /untolerated taint/);
    assert.deepEqual(((await node()).spec.taints ?? []).map((t) => `${t.key}:${t.effect}`), [`${WarmTaint}:NoSchedule`]);
    await eventually(async () => assert.ok(tb.origin.requestsTo("/images/warm.qcow2") > 0), { timeoutMs: 120_000, intervalMs: 500, description: "the agent asked the origin" });
    assert.ok(await hasWarmTaint(), "still tainted while the image is withheld");
    await unschedulable(ColdPod);

    release();
    await waitImageCacheReady(tb.node, WarmCache);
    await eventually(async () => assert.equal(await hasWarmTaint(), false), { timeoutMs: 60_000, intervalMs: 500, description: "the taint lifted" });
    const synced = await labels();
    assert.deepEqual([synced[`imagecache.basecache.io/${WarmCache}`], synced[`synced.imagecache.basecache.io/${WarmCache}`]], ["ready", "true"]);
    await runsOnNode(ColdPod);

    await tb.node.kubectl(["delete", "imagecache", WarmCache, "--wait=true", "--timeout=60s"]);
    await eventually(
      async () => assert.deepEqual(Object.keys(await labels()).filter((k) => k.includes("imagecache.basecache.io/")), []),
      { timeoutMs: 60_000, intervalMs: 500, description: "both labels gone with the ImageCache" },
    );
    assert.equal(await hasWarmTaint(), false, "no taint comes back");
  });
});
