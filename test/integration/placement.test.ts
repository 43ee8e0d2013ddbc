/**
 * VMs land where their base is: the real controller, running as its own ServiceAccount under deploy/'s RBAC and
 * node admission policy, labels each Node on which an ImageCache is Ready, holds the warming taint on cold nodes
 * of a taintUntilReady ImageCache until their first sync, and touches nothing else on a Node. Node statuses are
 * written as the agents write them.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Node } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { startController, type ControllerProcess } from "../harness/controller-process.js";
import { eventually } from "../harness/eventually.js";
import { Api, httpImage, type StoredImageCache } from "../harness/kube-api.js";
import { applyObjects, describeApiError, readManifests } from "../harness/manifests.js";
import { definitionHash } from "../../src/core/image-definition.js";
import { placementLabel, syncedLabel, WarmingTaintKey } from "../../src/core/placement-keys.js";
import { baseNameFor } from "../../src/core/names.js";
import type { ImageSpec, NodeImageStatus } from "../../src/kube/api-types.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const ns = "basecache-system";
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const userTaint = { key: "dedicated", value: "vm", effect: "NoSchedule" };

let cp: ControlPlane;
let api: Api;
let controllerKc: KubeConfig;
let ctl: ControllerProcess;

before(async () => {
  cp = await startControlPlane();
  await cp.applyCrds();
  api = new Api(cp.adminConfig());
  const files = ["00-namespace.yaml", "10-controller-rbac.yaml", "13-events-rbac.yaml", "15-controller-node-policy.yaml"];
  await applyObjects(cp.adminConfig(), await readManifests(files.map((f) => join(repoRoot, "deploy", f))));
  const sa = await cp.serviceAccountConfig(ns, "basecache-controller");
  controllerKc = sa.kubeConfig;
  await api.createNode("policy-probe", { pool: "probe" });
  // The policy takes effect once the API server has compiled it: wait until it refuses a dry run.
  await eventually(
    async () => {
      const msg = await expectStatus(403, () => patchNodeAs(controllerKc, "policy-probe", { metadata: { labels: { pool: "other" } } }, true));
      assert.match(msg, /ValidatingAdmissionPolicy/);
    },
    { timeoutMs: 60_000, intervalMs: 250, description: "node placement policy in force" },
  );
  ctl = startController(sa.kubeconfigPath, ["--status-interval", "0s"]);
  await ctl.leading();
});

after(async () => {
  await ctl?.stop();
  await cp?.stop();
});

async function patchNodeAs(kc: KubeConfig, name: string, body: object, dryRun = false): Promise<V1Node> {
  return kc.makeApiClient(CoreV1Api).patchNode({ name, body, ...(dryRun ? { dryRun: "All" } : {}) }, mergePatch);
}

/** Runs `fn`, which must fail with `code`; returns the API server's message. */
async function expectStatus(code: number, fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    const described = describeApiError(err);
    assert.ok(described.startsWith(`HTTP ${code}`), `expected HTTP ${code}, got ${described}`);
    return described;
  }
  assert.fail(`expected HTTP ${code}, but the request succeeded`);
}

async function node(name: string): Promise<{ labels: Record<string, string>; taints: { key: string; value?: string; effect: string }[] }> {
  const n = await api.core.readNode({ name });
  // The API server's TaintNodesByCondition adds node.kubernetes.io/not-ready to a new Node; no kubelet lifts it here.
  const taints = (n.spec?.taints ?? []).filter((t) => t.key !== "node.kubernetes.io/not-ready");
  return { labels: n.metadata?.labels ?? {}, taints: taints.map((t) => ({ key: t.key, effect: t.effect, ...(t.value ? { value: t.value } : {}) })) };
}

async function createNode(name: string, labels: Record<string, string>, taints: object[] = []): Promise<void> {
  await api.core.createNode({ body: { metadata: { name, labels }, spec: { taints } } as V1Node });
}

/** The status entries an agent writes once `images` are in `phase` for their current definitions. */
function entries(images: ImageSpec[], phase: NodeImageStatus["phase"], over: Partial<NodeImageStatus> = {}): NodeImageStatus[] {
  return images.map((i) => ({ id: i.id, base: baseNameFor(i.id), phase, definition: definitionHash(i), observedGeneration: 1, ...over }));
}

async function writeStatus(nodeName: string, images: NodeImageStatus[]): Promise<void> {
  await eventually(async () => assert.ok(await api.nic(nodeName), `NodeImageCache ${nodeName} exists`));
  await api.writeNicStatus(nodeName, { observedGeneration: 1, images });
}

describe("placement labels", () => {
  const a = httpImage("place-a");
  const b = httpImage("place-b");
  const label = placementLabel("place");

  test("appear where every image is Ready, and go when the node stops holding them, leaving other labels and taints alone", async () => {
    await createNode("place-1", { pool: "place", team: "vm" }, [userTaint]);
    await createNode("place-2", { pool: "place" });
    await api.createImageCache("place", { nodeSelector: { matchLabels: { pool: "place" } }, images: [a, b] });
    await writeStatus("place-1", entries([a, b], "Ready"));
    await writeStatus("place-2", [...entries([a], "Ready"), ...entries([b], "Downloading")]);
    await eventually(async () => assert.equal((await node("place-1")).labels[label], "ready"));
    assert.equal((await node("place-2")).labels[label], undefined);
    assert.deepEqual((await node("place-1")).taints, [userTaint], "no warming taint without taintUntilReady");

    // An image that fails takes the label away; Ready again brings it back.
    await writeStatus("place-1", [...entries([a], "Ready"), ...entries([b], "Failed", { reason: "ChecksumMismatch", message: "Checksum mismatch" })]);
    await eventually(async () => assert.equal((await node("place-1")).labels[label], undefined));
    await writeStatus("place-1", entries([a, b], "Ready"));
    await eventually(async () => assert.equal((await node("place-1")).labels[label], "ready"));

    // Someone else labels the node meanwhile: their label stays.
    await api.setNodeLabels("place-1", { "example.com/rack": "r7" });
    // A new image in the ImageCache: not every image is Ready on the node any more.
    const c = httpImage("place-c");
    await api.patchImageCache("place", { images: [a, b, c] });
    await eventually(async () => assert.equal((await node("place-1")).labels[label], undefined));
    await writeStatus("place-1", entries([a, b, c], "Ready"));
    await eventually(async () => assert.equal((await node("place-1")).labels[label], "ready"));

    // A changed definition: a Ready report on the old one does not count.
    const c2 = httpImage("place-c", "https://images.example/place-c-v2.qcow2");
    await api.patchImageCache("place", { images: [a, b, c2] });
    await eventually(async () => assert.equal((await node("place-1")).labels[label], undefined));
    await writeStatus("place-1", entries([a, b, c2], "Ready"));
    await eventually(async () => assert.equal((await node("place-1")).labels[label], "ready"));

    // The node leaves the selector.
    await api.setNodeLabels("place-1", { pool: "elsewhere" });
    await eventually(async () => assert.equal((await node("place-1")).labels[label], undefined));
    const after = await node("place-1");
    assert.equal(after.labels.team, "vm");
    assert.equal(after.labels["example.com/rack"], "r7");
    assert.deepEqual(after.taints, [userTaint]);
  });

  test("go from every node when the ImageCache is deleted, with no finalizer on it", async () => {
    const d = httpImage("gone-a");
    for (const n of ["gone-1", "gone-2"]) await createNode(n, { pool: "gone" });
    const ic = await api.createImageCache("gone", { nodeSelector: { matchLabels: { pool: "gone" } }, images: [d] });
    for (const n of ["gone-1", "gone-2"]) await writeStatus(n, entries([d], "Ready"));
    for (const n of ["gone-1", "gone-2"]) await eventually(async () => assert.equal((await node(n)).labels[placementLabel("gone")], "ready"));
    assert.equal((await api.imageCache("gone")).metadata.uid, ic.metadata.uid);
    assert.deepEqual((await api.custom.getClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "imagecaches", name: "gone" }) as { metadata: { finalizers?: string[] } }).metadata.finalizers, undefined);
    await api.deleteImageCache("gone");
    for (const n of ["gone-1", "gone-2"]) await eventually(async () => assert.equal((await node(n)).labels[placementLabel("gone")], undefined));
  });

  test("use a hashed key for an ImageCache name longer than a label name allows", async () => {
    const name = `${"long-name.".repeat(12)}vm-images`;
    assert.ok(name.length > 63);
    const img = httpImage("long-a");
    await createNode("long-1", { pool: "long" });
    await api.createImageCache(name, { nodeSelector: { matchLabels: { pool: "long" } }, images: [img] });
    await writeStatus("long-1", entries([img], "Ready"));
    const key = placementLabel(name);
    assert.match(key, /^imagecache\.basecache\.io\/long-name\.long-name\.long-name\.long-name\.lo_[0-9a-f]{20}$/);
    await eventually(async () => assert.equal((await node("long-1")).labels[key], "ready"));
    assert.equal((await api.imageCache(name)).status?.nodeLabel, key, "the status names the key");
  });
});

describe("the warming taint of a taintUntilReady ImageCache", () => {
  const warming = { key: WarmingTaintKey, effect: "NoSchedule" };

  test("is held until the node's first sync, is not brought back by a re-fetch, and goes with the ImageCache", async () => {
    const img = httpImage("warm-a");
    await createNode("warm-1", { pool: "warm" }, [userTaint]);
    await api.createImageCache("warm", { nodeSelector: { matchLabels: { pool: "warm" } }, images: [img], placement: { taintUntilReady: true } });
    await eventually(async () => assert.deepEqual((await node("warm-1")).taints, [userTaint, warming]));
    await writeStatus("warm-1", entries([img], "Downloading"));
    await writeStatus("warm-1", entries([img], "Ready"));
    await eventually(async () => {
      const n = await node("warm-1");
      assert.deepEqual(n.taints, [userTaint]);
      assert.equal(n.labels[placementLabel("warm")], "ready");
      assert.equal(n.labels[syncedLabel("warm")], "true");
    });
    // A second image to fetch: the placement label goes, the taint does not come back.
    const more = httpImage("warm-b");
    await api.patchImageCache("warm", { images: [img, more] });
    await eventually(async () => assert.equal((await node("warm-1")).labels[placementLabel("warm")], undefined));
    assert.deepEqual((await node("warm-1")).taints, [userTaint], "the pass that took the label away left the taint off");
    await writeStatus("warm-1", [...entries([img], "Ready"), ...entries([more], "Downloading")]);
    await settled((s) => s?.images?.find((i) => i.id === "warm-b")?.pending === 1, "warm");
    assert.deepEqual((await node("warm-1")).taints, [userTaint]);
    // A node that joins later is cold and tainted.
    await createNode("warm-2", { pool: "warm" });
    await eventually(async () => assert.deepEqual((await node("warm-2")).taints, [warming]));
    await api.deleteImageCache("warm");
    await eventually(async () => {
      for (const n of ["warm-1", "warm-2"]) {
        const got = await node(n);
        assert.deepEqual(got.taints, n === "warm-1" ? [userTaint] : []);
        assert.deepEqual(Object.keys(got.labels).filter((k) => k.includes("imagecache.basecache.io/")), []);
      }
    });
  });
});

/** Waits until the ImageCache's roll-up shows `seen` and the controller's queue is empty: every pass is done. */
async function settled(seen: (s: StoredImageCache["status"]) => boolean, name: string): Promise<void> {
  await eventually(async () => {
    assert.ok(seen((await api.imageCache(name)).status), `the roll-up of ${name} has caught up`);
    assert.equal((await ctl.metrics()).get("basecache_controller_queue_depth"), 0);
  });
}

describe("the controller's ServiceAccount on Nodes", () => {
  const denied: [string, object][] = [
    ["another label", { metadata: { labels: { pool: "other" } } }],
    ["removing another label", { metadata: { labels: { pool: null } } }],
    ["a placement label with another value", { metadata: { labels: { [placementLabel("x")]: "yes" } } }],
    ["an annotation", { metadata: { annotations: { "example.com/note": "x" } } }],
    ["another taint", { spec: { taints: [{ key: "example.com/other", effect: "NoSchedule" }] } }],
    ["the warming taint with another effect", { spec: { taints: [{ key: WarmingTaintKey, effect: "NoExecute" }] } }],
    ["unschedulable", { spec: { unschedulable: true } }],
    ["the provider id", { spec: { providerID: "example://x" } }],
  ];
  for (const [what, body] of denied) {
    test(`is refused ${what}`, async () => {
      const msg = await expectStatus(403, () => patchNodeAs(controllerKc, "policy-probe", body));
      assert.match(msg, /basecache-controller-node-placement/);
    });
  }

  test("may set and remove its own labels and taint, keeping others' taints", async () => {
    await api.core.patchNode({ name: "policy-probe", body: { spec: { taints: [userTaint] } } }, mergePatch);
    const mine = { metadata: { labels: { [placementLabel("probe")]: "ready", [syncedLabel("probe")]: "true" } }, spec: { taints: [userTaint, { key: WarmingTaintKey, effect: "NoSchedule" }] } };
    await patchNodeAs(controllerKc, "policy-probe", mine, true);
    await patchNodeAs(controllerKc, "policy-probe", { spec: { taints: [{ key: WarmingTaintKey, effect: "NoSchedule" }] } }, true).then(
      () => assert.fail("dropping another's taint must be refused"),
      (err: unknown) => assert.match(describeApiError(err), /HTTP 403.*only add or remove the taint/),
    );
  });

  test("cannot write Node status, create or delete Nodes", async () => {
    const core = controllerKc.makeApiClient(CoreV1Api);
    await expectStatus(403, () => core.patchNodeStatus({ name: "policy-probe", body: { status: { phase: "Running" } } }, mergePatch));
    await expectStatus(403, () => core.deleteNode({ name: "policy-probe" }));
    await expectStatus(403, () => core.createNode({ body: { metadata: { name: "made-by-controller" } } }));
  });

  test("a patch from a stale resourceVersion is refused, so no writer's change is lost", async () => {
    const n = await api.core.readNode({ name: "policy-probe" });
    await api.setNodeLabels("policy-probe", { "example.com/touched": "yes" });
    const body = { metadata: { resourceVersion: n.metadata?.resourceVersion, labels: { [placementLabel("probe")]: "ready" } } };
    await expectStatus(409, () => patchNodeAs(controllerKc, "policy-probe", body));
  });
});
