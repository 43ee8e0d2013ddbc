/**
 * `helm install` of charts/basecache on a fresh real node, as a user runs it: the Namespace created and labelled
 * as the chart's README says, and only the image pointed at the local registry's copy. The DaemonSet and the
 * Deployment become Ready, one controller leads, and the example ImageCache (its URL filled in) becomes Ready
 * with its base in the node's hostPath. Then deploy/examples/vm-pod.yaml runs as a user runs it: its init
 * container makes the overlay with `basecache disk create`, its main container opens overlay and base read-only
 * with explicit formats; GC keeps the base while the pod exists, even with the ImageCache gone and retention 0,
 * and removes it once the pod and its instance disk are gone.
 *
 * GC passes are asked for as docs/operations.md tells users (a new `basecache.io/gc-requested` value on the
 * node's NodeImageCache), so no chart value but the image is tuned: the default 40-minute interval never fires
 * during the test, and no other pass runs once the image is fetched, which is why a pass counted after a
 * request is the pass that request asked for.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { baseNameFor } from "../../src/core/names.js";
import { eventually } from "../harness/eventually.js";
import { chartDir, helm } from "../harness/helm.js";
import { unavailableReason } from "../harness/node/node.js";
import { startNodeTestbed, stopNodeTestbed, type NodeTestbed } from "../harness/node/testbed.js";
import { Example, exampleImageCache, vmPod } from "../harness/node/vm-pod.js";
import { basePath, BaseDir, fileFacts, metricSum, Namespace, oneControllerLeads, podMetrics, readyAgent, waitImageCacheReady, waitInstalled, type PodFacts } from "../harness/node/workloads.js";

const skip = await unavailableReason();
/** The name startNodeTestbed pushes the agent image under. */
const AgentImageName = "basecache/basecache:test";
const { imageCache: ImageCacheName, imageId: ImageId, pod: PodName, instanceDir: InstanceDir, disk: Disk } = Example;
const ImagePath = "/images/noble.qcow2";
const MiB = 1024 * 1024;

interface NicJson {
  metadata: { generation: number };
  spec: { images?: { id: string }[]; podUses?: { token: string; uses: { base: string; pods: string[] }[] } };
  status?: { podUsesRequest?: string; conditions?: { type: string; status: string }[] };
}

describe("helm install of the chart on the real node, and the VM pod example", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let tb: NodeTestbed;
  let agent: PodFacts;
  let base: { ino: number; size: number; mtimeMs: number };
  let gcRequests = 0;

  before(async () => {
    tb = await startNodeTestbed();
    tb.origin.serve(ImagePath, { file: await tb.images.qcow2("noble.qcow2", 32) });
  });

  after(() => stopNodeTestbed(tb));

  const nic = async (): Promise<NicJson> => JSON.parse(await tb.node.kubectl(["get", "nodeimagecache", tb.node.nodeName, "-o", "json"])) as NicJson;
  const gcPasses = async (): Promise<number> => (await podMetrics(agent.ip)).get('basecache_gc_passes_total{outcome="done"}') ?? 0;

  /** Asks the agent for a GC pass as a user does, and waits for it to finish. */
  async function gcPass(): Promise<void> {
    const before = await gcPasses();
    gcRequests += 1;
    await tb.node.kubectl(["annotate", "nodeimagecache", tb.node.nodeName, `basecache.io/gc-requested=test-${gcRequests}`, "--overwrite"]);
    await eventually(async () => assert.ok((await gcPasses()) > before), { timeoutMs: 120_000, intervalMs: 500, description: `GC pass ${gcRequests} done` });
  }

  /**
   * Runs a pass that could remove the base, so it asks the controller which bases pods use; resolves the pods
   * the controller's answer to that very question lists as using the base.
   */
  async function gcPassPodsUsingBase(): Promise<string[]> {
    await gcPass();
    return eventually(
      async () => {
        const n = await nic();
        assert.ok(n.status?.podUsesRequest, "the pass asked the controller about pods");
        assert.equal(n.spec.podUses?.token, n.status.podUsesRequest, "the controller answered that very question");
        // The status writer may report the pass's outcome a moment after the pass.
        assert.equal(n.status.conditions?.find((c) => c.type === "PodUsesKnown")?.status, "True", JSON.stringify(n.status.conditions));
        return n.spec.podUses.uses.find((u) => u.base === baseNameFor(ImageId))?.pods ?? [];
      },
      { timeoutMs: 30_000, intervalMs: 500, description: "the pass knew the pods' uses" },
    );
  }

  test("helm install with only the image set: the agent and two controllers become Ready; one controller leads", async () => {
    await tb.node.kubectl(["create", "namespace", Namespace]);
    await tb.node.kubectl(["label", "namespace", Namespace, "pod-security.kubernetes.io/enforce=privileged", "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/audit=restricted"]);
    const ref = tb.node.images[AgentImageName] ?? "";
    const [repository, tag] = [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)];
    await helm(["install", "basecache", chartDir, "--namespace", Namespace, "--kubeconfig", tb.node.kubeconfigPath, "--set", `image.repository=${repository}`, "--set", `image.tag=${tag}`]);
    await tb.node.kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/imagecaches.basecache.io", "crd/nodeimagecaches.basecache.io"]);
    await waitInstalled(tb.node);
    await oneControllerLeads(tb.node);
    agent = await readyAgent(tb.node);
  });

  test("the example ImageCache, its URL filled in, becomes Ready: the base is in the hostPath and the node labelled", async () => {
    await tb.node.kubectl(["label", "node", tb.node.nodeName, `${Example.nodeLabel}=true`]);
    // Retention 0: the moment nothing uses the base, GC may remove it.
    await writeFile(join(tb.dir, "imagecache.json"), JSON.stringify(await exampleImageCache(tb.origin.url(ImagePath), "0s")));
    await tb.node.kubectl(["apply", "-f", join(tb.dir, "imagecache.json")]);
    await waitImageCacheReady(tb.node, ImageCacheName);
    base = await fileFacts(basePath(ImageId));
    assert.equal(base.size, 32 * MiB, "the raw base has the image's virtual size");
    await eventually(
      async () => {
        const labels = JSON.parse(await tb.node.kubectl(["get", "node", tb.node.nodeName, "-o", "jsonpath={.metadata.labels}"])) as Record<string, string>;
        assert.equal(labels[`imagecache.basecache.io/${ImageCacheName}`], "ready");
      },
      { timeoutMs: 60_000, intervalMs: 500, description: "the node labelled as holding the ImageCache" },
    );
    // A pass while the ImageCache wants the base records its retention, which outlives the ImageCache.
    await gcPass();
    const state = JSON.parse(await readFile(join(BaseDir, ".basecache-gc.json"), "utf8")) as { bases: Record<string, { retentionMs?: number }> };
    assert.equal(state.bases[baseNameFor(ImageId)]?.retentionMs, 0);
  });

  test("the VM pod example runs: its init container makes the overlay, its main container compares it with the base", async () => {
    await writeFile(join(tb.dir, "vm-pod.json"), JSON.stringify(await vmPod(tb.node.images[AgentImageName] ?? "")));
    await tb.node.kubectl(["apply", "-f", join(tb.dir, "vm-pod.json")]);
    const pod = await eventually(
      async () => {
        const p = JSON.parse(await tb.node.kubectl(["get", "pod", "-n", "default", PodName, "-o", "json"])) as { status: { conditions?: { type: string; status: string }[]; containerStatuses?: { restartCount: number }[] } };
        assert.equal(p.status.conditions?.find((c) => c.type === "Ready")?.status, "True", JSON.stringify(p.status));
        return p;
      },
      { timeoutMs: 180_000, intervalMs: 1000, description: `pod ${PodName} Ready` },
    );
    assert.deepEqual(pod.status.containerStatuses?.map((c) => c.restartCount), [0], "the comparison succeeded the first time");
    const { stdout } = await execa("qemu-img", ["info", "--output=json", "-f", "qcow2", Disk]);
    const info = JSON.parse(stdout) as { "virtual-size": number; "backing-filename"?: string; "backing-filename-format"?: string };
    assert.deepEqual(
      { size: info["virtual-size"], backing: info["backing-filename"], format: info["backing-filename-format"] },
      { size: 20 * 1024 * MiB, backing: basePath(ImageId), format: "raw" },
      "a 20Gi qcow2 overlay on the raw base, its backing format recorded",
    );
    assert.equal((await stat(Disk)).uid, 107, "made by the VM's user");
    assert.deepEqual(await fileFacts(basePath(ImageId)), base, "the base is untouched");
  });

  test("while the pod exists GC keeps the base, even with the ImageCache deleted and retention 0", async () => {
    await tb.node.kubectl(["delete", "imagecache", ImageCacheName, "--wait=true", "--timeout=60s"]);
    await eventually(async () => assert.deepEqual((await nic()).spec.images ?? [], []), { timeoutMs: 60_000, intervalMs: 500, description: "the NodeImageCache wants nothing" });
    assert.deepEqual(await gcPassPodsUsingBase(), [`default/${PodName}`]);
    assert.deepEqual(await fileFacts(basePath(ImageId)), base, "the base is kept");
    assert.equal(metricSum(await podMetrics(agent.ip), "basecache_gc_removals_total"), 0);
  });

  test("the pod deleted, GC keeps the base for its instance disk; the disk removed, GC removes the base", async () => {
    await tb.node.kubectl(["delete", "pod", "-n", "default", PodName, "--wait=true", "--timeout=120s"]);
    assert.deepEqual(await gcPassPodsUsingBase(), [], "no pod uses the base");
    assert.deepEqual(await fileFacts(basePath(ImageId)), base, "the instance disk, a hostPath that outlives the pod, keeps the base");
    // The VM's teardown: its instance directory goes with it (the agent only reads the instances dir).
    await rm(InstanceDir, { recursive: true });
    await gcPass();
    await assert.rejects(stat(basePath(ImageId)), { code: "ENOENT" });
    const removals = [...(await podMetrics(agent.ip))].filter(([k]) => k.startsWith("basecache_gc_removals_total{") && k.includes('kind="base"'));
    assert.deepEqual(removals.map(([k, v]) => [k.includes('reason="RetentionExpired"'), v]), [[true, 1]], "one base removed, its retention expired");
    await eventually(
      async () => {
        const events = JSON.parse(await tb.node.kubectl(["get", "events", "-A", "--field-selector", "reason=BaseRemoved", "-o", "json"])) as { items: { involvedObject: { kind: string; name: string } }[] };
        assert.deepEqual(events.items.map((e) => `${e.involvedObject.kind}/${e.involvedObject.name}`), [`NodeImageCache/${tb.node.nodeName}`]);
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "a BaseRemoved Event on the NodeImageCache" },
    );
  });
});
