import { test } from "node:test";
import assert from "node:assert/strict";
import type { ImageSpec as ImageDefinition } from "../../src/core/api-records.js";
import type { ImageCacheView } from "../../src/core/desired.js";
import { ManagedByLabel, ManagedByValue, planFanout, planFanoutLabels, type FanoutCurrent, type FanoutInput, type FanoutNode, type FanoutPlan } from "../../src/core/fanout.js";

const NodeLabel = "basecache.io/node";

function img(id: string): ImageDefinition {
  return { id, source: { http: { url: `https://images.example/${id}.qcow2` } } };
}
function ic(name: string, images: ImageDefinition[], nodeSelector?: ImageCacheView["nodeSelector"]): ImageCacheView {
  return { name, images, creationTimestamp: "2026-01-01T00:00:00Z", ...(nodeSelector ? { nodeSelector } : {}) };
}
function node(name = "n1", labels: Record<string, string> = {}): FanoutNode {
  return { name, uid: `uid-${name}`, labels };
}
function owner(name = "n1") {
  return { apiVersion: "v1", kind: "Node", name, uid: `uid-${name}` };
}
function wanted(id: string, wantedBy = ["ic1"]) {
  return { ...img(id), wantedBy, unusedFor: "24h" };
}
/** A NodeImageCache as the controller writes it for `n1` holding `ids`. */
function current(ids: string[], extra: Partial<FanoutCurrent> = {}): FanoutCurrent {
  return { uid: "nic-uid", labels: planFanoutLabels("n1", NodeLabel), images: ids.map((id) => wanted(id)), owners: [owner()], ...extra };
}
function input(n: FanoutNode | undefined, imageCaches: ImageCacheView[], cur?: FanoutCurrent): FanoutInput {
  return { node: n, imageCaches, current: cur, nodeLabel: NodeLabel };
}
function summary(plan: FanoutPlan): string {
  switch (plan.action) {
    case "none":
    case "wait":
      return `${plan.action}: ${plan.reason}`;
    case "delete":
      return `delete ${plan.uid ?? ""}`;
    case "create":
      return `create ${plan.images.map((i) => i.id).join(",")}`;
    case "patch":
      return `patch ${plan.patch.spec ? `spec ${plan.images.map((i) => i.id).join(",")}` : "metadata"}`;
  }
}

const table: [string, FanoutInput, string][] = [
  ["a node no ImageCache selects gets no NodeImageCache", input(node(), [ic("ic1", [img("a")], { matchLabels: { gpu: "yes" } })]), "none: no ImageCache selects the node"],
  ["a selected node without one gets it created", input(node(), [ic("ic1", [img("b"), img("a")])]), "create a,b"],
  ["one that already holds the wanted images is left alone", input(node(), [ic("ic1", [img("a")])], current(["a"])), "none: up to date"],
  ["a new image patches the spec", input(node(), [ic("ic1", [img("a"), img("b")])], current(["a"])), "patch spec a,b"],
  ["an ImageCache that stops selecting the node empties the spec", input(node(), [ic("ic1", [img("a")], { matchLabels: { gpu: "yes" } })], current(["a"])), "patch spec "],
  ["a lost label is put back without touching the spec", input(node(), [ic("ic1", [img("a")])], current(["a"], { labels: {} })), "patch metadata"],
  ["a wrong owner is put right without touching the spec", input(node(), [ic("ic1", [img("a")])], current(["a"], { owners: [owner("other")] })), "patch metadata"],
  ["two owners are one too many", input(node(), [ic("ic1", [img("a")])], current(["a"], { owners: [owner(), owner("other")] })), "patch metadata"],
  ["a node that is gone has its NodeImageCache deleted, that incarnation only", input(undefined, [ic("ic1", [img("a")])], current(["a"])), "delete nic-uid"],
  ["a node and NodeImageCache both gone need nothing", input(undefined, [ic("ic1", [img("a")])]), "none: node and NodeImageCache are both gone"],
  ["one being deleted is waited for", input(node(), [ic("ic1", [img("a")])], current(["a"], { deletionTimestamp: "2026-01-02T00:00:00Z" })), "wait: NodeImageCache is being deleted"],
];

for (const [name, given, expected] of table) test(name, () => assert.equal(summary(planFanout(given)), expected));

test("a created NodeImageCache carries the managed-by and node labels and the Node as its only owner", () => {
  const plan = planFanout(input(node(), [ic("ic1", [img("a")])]));
  assert.equal(plan.action, "create");
  assert.ok(plan.action === "create");
  assert.deepEqual(plan.labels, { [ManagedByLabel]: ManagedByValue, [NodeLabel]: "n1" });
  assert.deepEqual(plan.owner, owner());
  assert.deepEqual(plan.images, [wanted("a")]);
});

test("a node name too long for a label value goes without the node label", () => {
  const long = "n".repeat(64);
  assert.deepEqual(planFanoutLabels(long, NodeLabel), { [ManagedByLabel]: ManagedByValue });
  assert.deepEqual(planFanoutLabels("n".repeat(63), NodeLabel), { [ManagedByLabel]: ManagedByValue, [NodeLabel]: "n".repeat(63) });
});

test("a stored spec with undefined fields dropped equals the plan", () => {
  const stored = current(["a"], { images: [JSON.parse(JSON.stringify({ ...wanted("a"), checksum: undefined })) as object] });
  assert.equal(summary(planFanout(input(node(), [ic("ic1", [img("a")])], stored))), "none: up to date");
});

test("an image two ImageCaches define differently goes with the older definition only", () => {
  const older = ic("old", [img("a")]);
  const newer: ImageCacheView = { name: "new", creationTimestamp: "2026-06-01T00:00:00Z", images: [{ id: "a", source: { http: { url: "https://elsewhere.example/a.qcow2" } } }] };
  const plan = planFanout(input(node(), [newer, older]));
  assert.ok(plan.action === "create");
  assert.deepEqual(plan.images.map((i) => [i.id, i.wantedBy]), [["a", ["old"]]]);
});
