import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatRow, isImageCacheReady, planChangedRows, planNodeRows, summarizeImageCache } from "../../demo/view.js";
import type { ImageCache, NodeImageCache, NodeImageStatus } from "../../src/kube/api-types.js";

const base = "a".repeat(40);

function nic(node: string, wanted: string[], reported: Partial<NodeImageStatus>[] = []): NodeImageCache {
  return {
    metadata: { name: node },
    spec: { nodeName: node, images: wanted.map((id) => ({ id, source: { http: { url: "http://127.0.0.1/x" } }, wantedBy: ["ic"] })) },
    status: { images: reported.map((r) => ({ id: "img", base, phase: "Pending", ...r })) },
  };
}

function ic(status: ImageCache["status"], generation = 1): ImageCache {
  return { metadata: { name: "ubuntu", generation }, spec: { images: [] }, ...(status ? { status } : {}) };
}

const readyCondition = (status: "True" | "False") => ({ type: "Ready", status, reason: status === "True" ? "AllNodesReady" : "NodesNotReady", message: "m", lastTransitionTime: "2026-01-01T00:00:00Z" });

describe("planNodeRows", () => {
  const cases: { name: string; input: NodeImageCache[]; want: { node: string; phase: string; detail: string }[] }[] = [
    { name: "an image wanted but not reported yet is Wanted", input: [nic("n1", ["img"])], want: [{ node: "n1", phase: "Wanted", detail: "not reported by the agent yet" }] },
    {
      name: "a download shows bytes and percent",
      input: [nic("n1", ["img"], [{ phase: "Downloading", bytesDone: 512 * 1024, bytesTotal: 2 * 1024 * 1024 }])],
      want: [{ node: "n1", phase: "Downloading", detail: "512 KiB of 2.0 MiB (25%)" }],
    },
    {
      name: "a ready image shows its base and virtual size",
      input: [nic("n1", ["img"], [{ phase: "Ready", virtualSize: 1024 ** 3 }])],
      want: [{ node: "n1", phase: "Ready", detail: "base aaaaaaaaaaaa…, virtual size 1.0 GiB" }],
    },
    {
      name: "a failed image shows its reason and message",
      input: [nic("n1", ["img"], [{ phase: "Failed", reason: "backing-file", message: "Has a backing file" }])],
      want: [{ node: "n1", phase: "Failed", detail: "backing-file: Has a backing file" }],
    },
    {
      name: "an image still reported after it is no longer wanted keeps its row",
      input: [nic("n1", [], [{ phase: "Ready" }])],
      want: [{ node: "n1", phase: "Ready", detail: "base aaaaaaaaaaaa…" }],
    },
    {
      name: "rows are sorted by node",
      input: [nic("n2", ["img"]), nic("n1", ["img"])],
      want: [
        { node: "n1", phase: "Wanted", detail: "not reported by the agent yet" },
        { node: "n2", phase: "Wanted", detail: "not reported by the agent yet" },
      ],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(
        planNodeRows(c.input).map((r) => ({ node: r.node, phase: r.phase, detail: r.detail })),
        c.want,
      );
    });
  }
});

describe("planChangedRows", () => {
  test("reports every row the first time, then only rows that changed", () => {
    const first = planNodeRows([nic("n1", ["img"], [{ phase: "Pending" }]), nic("n2", ["img"], [{ phase: "Pending" }])]);
    const a = planChangedRows(new Map(), first);
    assert.equal(a.changed.length, 2);
    const second = planNodeRows([nic("n1", ["img"], [{ phase: "Ready" }]), nic("n2", ["img"], [{ phase: "Pending" }])]);
    const b = planChangedRows(a.next, second);
    assert.deepEqual(b.changed.map((r) => `${r.node} ${r.phase}`), ["n1 Ready"]);
    assert.equal(planChangedRows(b.next, second).changed.length, 0);
  });
});

describe("formatRow", () => {
  test("pads columns and trims the end", () => {
    assert.equal(formatRow({ node: "n1", id: "img", phase: "Ready", detail: "" }), `${"n1".padEnd(14)} ${"img".padEnd(14)} Ready`);
  });
});

describe("summarizeImageCache and isImageCacheReady", () => {
  const cases: { name: string; ic: ImageCache; summary: string; ready: boolean }[] = [
    { name: "no status yet", ic: ic(undefined), summary: "ubuntu: no status yet", ready: false },
    {
      name: "partly ready",
      ic: ic({ observedGeneration: 1, desiredNodes: 2, readyNodes: 1, conditions: [readyCondition("False")] }),
      summary: "ubuntu: READY 1/2, Ready=False (NodesNotReady): m",
      ready: false,
    },
    { name: "all ready", ic: ic({ observedGeneration: 1, desiredNodes: 2, readyNodes: 2, conditions: [readyCondition("True")] }), summary: "ubuntu: READY 2/2, Ready=True (AllNodesReady): m", ready: true },
    { name: "ready for an older generation", ic: ic({ observedGeneration: 1, desiredNodes: 2, readyNodes: 2, conditions: [readyCondition("True")] }, 2), summary: "ubuntu: READY 2/2, Ready=True (AllNodesReady): m", ready: false },
    { name: "ready on no node at all", ic: ic({ observedGeneration: 1, desiredNodes: 0, readyNodes: 0, conditions: [readyCondition("True")] }), summary: "ubuntu: READY 0/0, Ready=True (AllNodesReady): m", ready: false },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.equal(summarizeImageCache(c.ic), c.summary);
      assert.equal(isImageCacheReady(c.ic), c.ready);
    });
  }
});
