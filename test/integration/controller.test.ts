// The controller against a real control plane: one `basecache controller` process for the file; each test
// keeps apart by its own node names, labels and ImageCache names.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { startController, type ControllerProcess } from "../harness/controller-process.js";
import { eventually } from "../harness/eventually.js";
import { Api, agentApi, httpImage, sha } from "../harness/kube-api.js";
import { baseNameFor } from "../../src/core/names.js";
import type { NodeImageStatus } from "../../src/kube/api-types.js";

let cp: ControlPlane;
let api: Api;
let ctl: ControllerProcess;

before(async () => {
  cp = await startControlPlane();
  await cp.applyCrds();
  api = new Api(cp.adminConfig());
  ctl = startController(cp.kubeconfigPath, ["--status-interval", "0s"]);
  await ctl.leading();
});
after(async () => {
  await ctl?.stop();
  await cp?.stop();
});

const condition = (status: { conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined, type: string) => status?.conditions?.find((c) => c.type === type);

test("fans images out to the nodes the selector matches, owned by their Node", async () => {
  const uid1 = await api.createNode("fan-1", { pool: "fan", gpu: "yes" });
  await api.createNode("fan-2", { pool: "fan", gpu: "yes" });
  await api.createNode("fan-3", { pool: "fan", gpu: "no" });
  await api.createImageCache("fan", { nodeSelector: { matchLabels: { pool: "fan", gpu: "yes" } }, images: [httpImage("fan-b"), { ...httpImage("fan-a"), checksum: sha("a"), maxVirtualSize: "10Gi" }], retention: { unusedFor: "2h" } });
  await eventually(async () => {
    assert.deepEqual(await api.nicImageIds("fan-1"), ["fan-a", "fan-b"]);
    assert.deepEqual(await api.nicImageIds("fan-2"), ["fan-a", "fan-b"]);
  });
  assert.equal(await api.nic("fan-3"), undefined);
  const nic = (await api.nic("fan-1"))!;
  assert.equal(nic.spec.nodeName, "fan-1");
  assert.deepEqual(nic.spec.images[0], { id: "fan-a", source: { http: { url: "https://images.example/fan-a.qcow2" } }, checksum: sha("a"), maxVirtualSize: "10Gi", wantedBy: ["fan"], unusedFor: "2h" });
  assert.deepEqual(nic.metadata.ownerReferences?.map((o) => [o.kind, o.name, o.uid]), [["Node", "fan-1", uid1]]);
  await eventually(async () => {
    const ic = await api.imageCache("fan");
    assert.equal(ic.status?.desiredNodes, 2);
    assert.equal(ic.status?.ready, "0/2");
    assert.equal(ic.status?.observedGeneration, ic.metadata.generation);
    assert.equal(condition(ic.status, "Progressing")?.status, "True");
  });
});

test("a label change moves images from one node to another", async () => {
  await api.createNode("move-1", { pool: "move", tier: "gold" });
  await api.createNode("move-2", { pool: "move", tier: "bronze" });
  await api.createImageCache("move", { nodeSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["gold"] }] }, images: [httpImage("move-img")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("move-1"), ["move-img"]));
  assert.equal(await api.nic("move-2"), undefined);
  await api.setNodeLabels("move-1", { tier: "bronze" });
  await api.setNodeLabels("move-2", { tier: "gold" });
  await eventually(async () => {
    assert.deepEqual(await api.nicImageIds("move-1"), []);
    assert.deepEqual(await api.nicImageIds("move-2"), ["move-img"]);
    assert.equal((await api.imageCache("move")).status?.desiredNodes, 1);
  });
});

test("two ImageCaches sharing an image both want it; deleting one keeps it for the other", async () => {
  await api.createNode("share-1", { pool: "share" });
  await api.createImageCache("share-a", { nodeSelector: { matchLabels: { pool: "share" } }, images: [httpImage("share-common"), httpImage("share-only-a")], retention: { unusedFor: "48h" } });
  await api.createImageCache("share-b", { nodeSelector: { matchLabels: { pool: "share" } }, images: [httpImage("share-common")], retention: { unusedFor: "1h30m" } });
  await eventually(async () => {
    const nic = await api.nic("share-1");
    const common = nic?.spec.images.find((i) => i.id === "share-common");
    assert.deepEqual(common?.wantedBy, ["share-a", "share-b"]);
    assert.equal(common?.unusedFor, "1h30m");
    assert.deepEqual(nic?.spec.images.map((i) => i.id), ["share-common", "share-only-a"]);
  });
  for (const name of ["share-a", "share-b"]) {
    await eventually(async () => assert.equal(condition((await api.imageCache(name)).status, "Conflict")?.status, "False"));
  }
  await api.deleteImageCache("share-a");
  await eventually(async () => {
    const nic = await api.nic("share-1");
    assert.deepEqual(nic?.spec.images.map((i) => [i.id, i.wantedBy, i.unusedFor]), [["share-common", ["share-b"], "1h30m"]]);
  });
});

test("deleting an ImageCache removes its images from every node", async () => {
  await api.createNode("del-1", { pool: "del" });
  await api.createNode("del-2", { pool: "del" });
  await api.createImageCache("del", { nodeSelector: { matchLabels: { pool: "del" } }, images: [httpImage("del-1"), httpImage("del-2")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("del-2"), ["del-1", "del-2"]));
  await api.deleteImageCache("del");
  await eventually(async () => {
    assert.deepEqual(await api.nicImageIds("del-1"), []);
    assert.deepEqual(await api.nicImageIds("del-2"), []);
  });
});

test("the same id defined differently is a condition on both ImageCaches, and the older definition is used", async () => {
  // creationTimestamp has one-second precision; a tie goes to the name first in order, so the names agree.
  await api.createNode("conf-1", { pool: "conf" });
  await api.createImageCache("conf-a-old", { nodeSelector: { matchLabels: { pool: "conf" } }, images: [httpImage("conf-x", "https://one.example/x.qcow2")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("conf-1"), ["conf-x"]));
  await api.createImageCache("conf-b-new", { nodeSelector: { matchLabels: { pool: "conf" } }, images: [httpImage("conf-x", "https://two.example/x.qcow2"), httpImage("conf-y")] });
  await eventually(async () => {
    const older = condition((await api.imageCache("conf-a-old")).status, "Conflict");
    const newer = (await api.imageCache("conf-b-new")).status;
    assert.equal(older?.status, "True");
    assert.equal(older?.reason, "ConflictingDefinition");
    assert.match(older?.message ?? "", /"conf-b-new"/);
    assert.equal(condition(newer, "Conflict")?.status, "True");
    assert.match(condition(newer, "Conflict")?.message ?? "", /"conf-a-old"/);
    assert.equal(condition(newer, "Degraded")?.reason, "ConflictingDefinition");
    const nic = await api.nic("conf-1");
    const x = nic?.spec.images.find((i) => i.id === "conf-x");
    assert.deepEqual(x?.source, { http: { url: "https://one.example/x.qcow2" } });
    assert.deepEqual(x?.wantedBy, ["conf-a-old"]);
    assert.deepEqual(nic?.spec.images.map((i) => i.id), ["conf-x", "conf-y"]);
  });
  // Fixing the newer definition clears the condition on both.
  await api.patchImageCache("conf-b-new", { images: [httpImage("conf-x", "https://one.example/x.qcow2"), httpImage("conf-y")] });
  await eventually(async () => {
    assert.equal(condition((await api.imageCache("conf-a-old")).status, "Conflict")?.status, "False");
    assert.equal(condition((await api.imageCache("conf-b-new")).status, "Conflict")?.status, "False");
    assert.deepEqual((await api.nic("conf-1"))?.spec.images.find((i) => i.id === "conf-x")?.wantedBy, ["conf-a-old", "conf-b-new"]);
  });
});

function entry(id: string, phase: NodeImageStatus["phase"], extra: Partial<NodeImageStatus> = {}): NodeImageStatus {
  return { id, base: baseNameFor(id), phase, observedGeneration: 1, ...extra };
}

test("rolls node statuses written by the nodes' agents up into the ImageCache", async () => {
  for (const n of ["roll-1", "roll-2", "roll-3"]) await api.createNode(n, { pool: "roll" });
  await api.createImageCache("roll", { nodeSelector: { matchLabels: { pool: "roll" } }, images: [httpImage("roll-a"), httpImage("roll-b")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("roll-3"), ["roll-a", "roll-b"]));
  const agents = await Promise.all(["roll-1", "roll-2", "roll-3"].map((n) => agentApi(cp, n)));
  await agents[0]!.writeNicStatus("roll-1", { observedGeneration: 1, images: [entry("roll-a", "Ready"), entry("roll-b", "Ready")] });
  await agents[1]!.writeNicStatus("roll-2", { observedGeneration: 1, images: [entry("roll-a", "Ready"), entry("roll-b", "Failed", { reason: "ChecksumMismatch", message: "Checksum of roll-b does not match" })] });
  await agents[2]!.writeNicStatus("roll-3", { observedGeneration: 1, images: [entry("roll-a", "Downloading", { bytesDone: 10, bytesTotal: 100 }), entry("roll-b", "Pending")] });
  await eventually(async () => {
    const s = (await api.imageCache("roll")).status;
    assert.equal(s?.ready, "1/3");
    assert.equal(s?.readyNodes, 1);
    assert.deepEqual(s?.images, [
      { id: "roll-a", ready: 2, pending: 1, failed: 0 },
      { id: "roll-b", ready: 1, pending: 1, failed: 1 },
    ]);
    assert.deepEqual(s?.failures, [{ node: "roll-2", id: "roll-b", reason: "ChecksumMismatch", message: "Checksum of roll-b does not match" }]);
    assert.equal(s?.failuresTruncated, false);
    assert.equal(condition(s, "Ready")?.status, "False");
    assert.equal(condition(s, "Progressing")?.status, "True");
    assert.equal(condition(s, "Degraded")?.reason, "ImagesFailed");
  });
  await agents[1]!.writeNicStatus("roll-2", { images: [entry("roll-a", "Ready"), entry("roll-b", "Ready")] });
  await agents[2]!.writeNicStatus("roll-3", { images: [entry("roll-a", "Ready"), entry("roll-b", "Ready")] });
  await eventually(async () => {
    const s = (await api.imageCache("roll")).status;
    assert.equal(s?.ready, "3/3");
    assert.deepEqual(s?.failures, []);
    assert.equal(condition(s, "Ready")?.reason, "AllNodesReady");
    assert.equal(condition(s, "Progressing")?.status, "False");
    assert.equal(condition(s, "Degraded")?.status, "False");
  });
});

test("a deleted node loses its NodeImageCache", async () => {
  await api.createNode("gone-1", { pool: "gone" });
  await api.createImageCache("gone", { nodeSelector: { matchLabels: { pool: "gone" } }, images: [httpImage("gone-img")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("gone-1"), ["gone-img"]));
  await api.deleteNode("gone-1");
  await eventually(async () => assert.equal(await api.nic("gone-1"), undefined));
  await eventually(async () => assert.equal((await api.imageCache("gone")).status?.desiredNodes, 0));
});

test("a NodeImageCache edited or deleted by hand is put back", async () => {
  await api.createNode("drift-1", { pool: "drift" });
  await api.createImageCache("drift", { nodeSelector: { matchLabels: { pool: "drift" } }, images: [httpImage("drift-img")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("drift-1"), ["drift-img"]));
  await api.custom.patchClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", name: "drift-1", body: [{ op: "replace", path: "/spec/images", value: [] }] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("drift-1"), ["drift-img"]));
  await api.custom.deleteClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", name: "drift-1" });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("drift-1"), ["drift-img"]));
});

test("a restarted controller writes nothing when nothing changed", async () => {
  // Let the running controller settle, then compare every object's resourceVersion across a restart.
  await eventually(async () => assert.equal((await ctl.metrics()).get("basecache_controller_queue_depth"), 0));
  await ctl.stop();
  const versions = async () => {
    const objects = [...(await api.listNics()), ...(await api.listImageCaches())];
    return new Map(objects.map((o) => [`${o.metadata.name}`, o.metadata.resourceVersion]));
  };
  const before = await versions();
  const nodes = (await api.core.listNode()).items.length;
  ctl = startController(cp.kubeconfigPath, ["--status-interval", "0s"]);
  await ctl.leading();
  const keys = nodes + (await api.listImageCaches()).length;
  await eventually(async () => {
    const m = await ctl.metrics();
    const passes = [...m].filter(([k]) => k.startsWith("basecache_controller_reconcile_total")).reduce((n, [, v]) => n + v, 0);
    assert.ok(passes >= keys, `${passes} passes of ${keys} keys`);
    assert.equal(m.get("basecache_controller_queue_depth"), 0);
  });
  const m = await ctl.metrics();
  assert.deepEqual([...m].filter(([k]) => k.startsWith("basecache_controller_writes_total")), []);
  assert.deepEqual(await versions(), before);
});

test("serves /healthz and /readyz, and Prometheus metrics", async () => {
  const health = await ctl.address("/readyz");
  for (const path of ["/healthz", "/readyz"]) {
    const res = await fetch(`http://${health}${path}`);
    assert.equal(res.status, 200, path);
    assert.match(await res.text(), /ok/);
  }
  const metrics = await ctl.metrics();
  assert.ok([...metrics.keys()].some((k) => k.startsWith("basecache_controller_reconcile_total")));
  assert.ok(metrics.has("basecache_process_cpu_seconds_total"));
});
