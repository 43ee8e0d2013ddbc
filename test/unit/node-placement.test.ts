import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { holdsEveryImage, placementPatch, planNodePlacement, type PlacementCache, type PlacementInput, type Taint } from "../../src/core/node-placement.js";
import { planImageCacheStatus, type NodeImageReport } from "../../src/core/rollup.js";

const R = "imagecache.basecache.io/";
const S = "synced.imagecache.basecache.io/";
const warming: Taint = { key: "basecache.io/warming", effect: "NoSchedule" };

function cache(name: string, over: Partial<PlacementCache> = {}): PlacementCache {
  return { name, deleting: false, images: [{ id: `${name}-img`, definition: "d1" }], lostIds: [], taintUntilReady: false, ...over };
}
function ready(...ids: string[]): NodeImageReport[] {
  return ids.map((id) => ({ id, phase: "Ready", definition: "d1" }));
}
function input(caches: PlacementCache[], reports: NodeImageReport[] | undefined, labels: Record<string, string> = {}, taints: Taint[] = []): PlacementInput {
  return { node: { name: "n1", labels: { pool: "vm", ...labels }, taints, resourceVersion: "7" }, imageCaches: caches, reports };
}

test("an ImageCache is Ready on a node only when every image is Ready for its current definition", () => {
  const two = cache("c", { images: [{ id: "a", definition: "d1" }, { id: "b", definition: "d1" }] });
  const table: [string, PlacementCache, NodeImageReport[] | undefined, boolean][] = [
    ["all Ready", two, ready("a", "b"), true],
    ["no status yet", two, undefined, false],
    ["one still downloading", two, [...ready("a"), { id: "b", phase: "Downloading", definition: "d1" }], false],
    ["one failed", two, [...ready("a"), { id: "b", phase: "Failed", reason: "TooLarge", definition: "d1" }], false],
    ["one missing", two, ready("a"), false],
    ["one Ready for an older definition", two, [...ready("a"), { id: "b", phase: "Ready", definition: "d0" }], false],
    ["an agent that reports no definition", two, [{ id: "a", phase: "Ready" }, { id: "b", phase: "Ready" }], true],
    ["an id lost to an older definition", { ...two, lostIds: ["b"] }, ready("a", "b"), false],
    ["extra images of other ImageCaches do not matter", two, ready("a", "b", "z"), true],
  ];
  const tracked = cache("t", { images: [{ id: "a", definition: "d1" }, { id: "b", definition: "d1", tracked: true }] });
  const older = [{ version: "111111111111", base: "f".repeat(40) }];
  table.push(
    ["a tracked image's new version downloading, an older one on the node", tracked, [...ready("a"), { id: "b", phase: "Downloading", definition: "d1", previousVersions: older }], true],
    ["a tracked image's new version failed, an older one on the node", tracked, [...ready("a"), { id: "b", phase: "Failed", reason: "http-status", definition: "d1", previousVersions: older }], true],
    ["a tracked image's first version downloading", tracked, [...ready("a"), { id: "b", phase: "Downloading", definition: "d1" }], false],
    ["a tracked image reported for another definition", tracked, [...ready("a"), { id: "b", phase: "Downloading", definition: "d0", previousVersions: older }], false],
    ["a pinned image never counts older versions", two, [...ready("a"), { id: "b", phase: "Downloading", definition: "d1", previousVersions: older }], false],
  );
  for (const [name, ic, reports, want] of table) assert.equal(holdsEveryImage(ic, reports), want, name);
});

test("labels each Ready ImageCache, removes labels nothing wants, and leaves every other label alone", () => {
  const table: [string, PlacementInput, Record<string, string | null>][] = [
    ["ready: label added", input([cache("a")], ready("a-img")), { [`${R}a`]: "ready" }],
    ["already labelled: nothing", input([cache("a")], ready("a-img"), { [`${R}a`]: "ready" }), {}],
    ["wrong value: put right", input([cache("a")], ready("a-img"), { [`${R}a`]: "yes" }), { [`${R}a`]: "ready" }],
    ["not ready any more: removed", input([cache("a")], [], { [`${R}a`]: "ready" }), { [`${R}a`]: null }],
    ["ImageCache deleted: removed", input([], ready("a-img"), { [`${R}a`]: "ready", [`${S}a`]: "true" }), { [`${R}a`]: null, [`${S}a`]: null }],
    ["ImageCache being deleted: removed", input([cache("a", { deleting: true })], ready("a-img"), { [`${R}a`]: "ready" }), { [`${R}a`]: null }],
    ["node no longer selected: removed", input([cache("a", { nodeSelector: { matchLabels: { pool: "gpu" } } })], ready("a-img"), { [`${R}a`]: "ready" }), { [`${R}a`]: null }],
    ["others' labels kept", input([cache("a")], ready("a-img"), { "imagecache.example/a": "x", "basecache.io/node": "n1" }), { [`${R}a`]: "ready" }],
    ["two ImageCaches, one ready", input([cache("a"), cache("b")], ready("b-img")), { [`${R}b`]: "ready" }],
  ];
  for (const [name, inp, want] of table) assert.deepEqual(planNodePlacement(inp).labelChanges, want, name);
});

test("taintUntilReady holds the warming taint until the first sync, then never again while selected", () => {
  const t = cache("a", { taintUntilReady: true });
  const other: Taint = { key: "dedicated", value: "vm", effect: "NoSchedule" };
  const table: [string, PlacementInput, Record<string, string | null>, Taint[] | undefined][] = [
    ["cold node: tainted", input([t], undefined), {}, [warming]],
    ["cold node already tainted: nothing", input([t], [], {}, [warming]), {}, undefined],
    ["first Ready: labelled, synced, untainted", input([t], ready("a-img"), {}, [other, warming]), { [`${R}a`]: "ready", [`${S}a`]: "true" }, [other]],
    ["re-fetching after a sync: not tainted again", input([t], [{ id: "a-img", phase: "Downloading", definition: "d2" }], { [`${R}a`]: "ready", [`${S}a`]: "true" }), { [`${R}a`]: null }, undefined],
    ["taintUntilReady turned off: memory and taint go", input([cache("a")], [], { [`${S}a`]: "true" }, [warming]), { [`${S}a`]: null }, []],
    ["unselected: memory and taint go", input([{ ...t, nodeSelector: { matchLabels: { pool: "gpu" } } }], [], { [`${S}a`]: "true" }, [warming]), { [`${S}a`]: null }, []],
    ["a second cold ImageCache keeps it", input([t, cache("b", { taintUntilReady: true })], ready("a-img"), {}, [warming]), { [`${R}a`]: "ready", [`${S}a`]: "true" }, undefined],
    ["our key with another effect is put right", input([t], [], {}, [{ key: "basecache.io/warming", effect: "NoExecute" }, other]), {}, [other, warming]],
    ["a registration taint with nothing to wait for goes", input([cache("a")], [], {}, [warming, other]), {}, [other]],
    ["others' taints alone: nothing", input([cache("a")], [], {}, [other]), {}, undefined],
  ];
  for (const [name, inp, labels, taints] of table) {
    const plan = planNodePlacement(inp);
    assert.deepEqual(plan.labelChanges, labels, name);
    assert.deepEqual(plan.taints, taints, name);
  }
});

test("the patch carries the resourceVersion, our label changes and the whole taint list, or is absent", () => {
  const none = planNodePlacement(input([cache("a")], ready("a-img"), { [`${R}a`]: "ready" }));
  assert.equal(placementPatch(none, "7"), undefined);
  const add = planNodePlacement(input([cache("a", { taintUntilReady: true })], ready("a-img"), {}, [warming]));
  assert.deepEqual(placementPatch(add, "7"), { metadata: { resourceVersion: "7", labels: { [`${R}a`]: "ready", [`${S}a`]: "true" } }, spec: { taints: null } });
  const taint = planNodePlacement(input([cache("a", { taintUntilReady: true })], undefined));
  assert.deepEqual(placementPatch(taint, "9"), { metadata: { resourceVersion: "9" }, spec: { taints: [warming] } });
});

test("a plan applied is a fixed point: planning again changes nothing", () => {
  const arbCache = fc.record({
    name: fc.constantFrom("a", "b", "c"),
    deleting: fc.boolean(),
    taintUntilReady: fc.boolean(),
    pool: fc.constantFrom(undefined, "vm", "gpu"),
  });
  const arbReport = fc.record({ id: fc.constantFrom("a-img", "b-img", "c-img"), phase: fc.constantFrom("Ready", "Downloading", "Failed") as fc.Arbitrary<NodeImageReport["phase"]> });
  fc.assert(
    fc.property(fc.uniqueArray(arbCache, { selector: (c) => c.name }), fc.option(fc.array(arbReport)), fc.boolean(), (cs, reports, tainted) => {
      const caches = cs.map((c) => cache(c.name, { deleting: c.deleting, taintUntilReady: c.taintUntilReady, ...(c.pool ? { nodeSelector: { matchLabels: { pool: c.pool } } } : {}) }));
      const first = input(caches, reports ?? undefined, { [`${R}stale`]: "ready" }, tainted ? [warming] : []);
      const plan = planNodePlacement(first);
      const labels: Record<string, string> = { ...first.node.labels };
      for (const [k, v] of Object.entries(plan.labelChanges)) if (v === null) delete labels[k];
      else labels[k] = v;
      const again = planNodePlacement({ ...first, node: { ...first.node, labels, taints: plan.taints ?? first.node.taints } });
      assert.deepEqual(again.labelChanges, {});
      assert.equal(again.taints, undefined);
      assert.equal((plan.taints ?? first.node.taints).some((t) => t.key === warming.key), again.warming.length > 0);
    }),
    { numRuns: 500 },
  );
});

test("labelled nodes are exactly the roll-up's ready nodes", () => {
  const ids = ["a", "b"];
  const arbPhase = fc.constantFrom("Ready", "Pending", "Downloading", "Failed") as fc.Arbitrary<NodeImageReport["phase"]>;
  const arbNode = fc.option(fc.array(fc.record({ id: fc.constantFrom(...ids), phase: arbPhase, definition: fc.constantFrom("d1", "d0") }), { maxLength: 3 }));
  fc.assert(
    fc.property(fc.array(arbNode, { minLength: 1, maxLength: 6 }), (nodes) => {
      const ic = cache("ic", { images: ids.map((id) => ({ id, definition: "d1" })) });
      const names = nodes.map((_, i) => `n${i}`);
      // The roll-up reads the first report of an id; give it unique ids as an agent writes them.
      const dedup = nodes.map((r) => (r ? [...new Map(r.map((x) => [x.id, x])).values()] : undefined));
      const reports = new Map(names.flatMap((n, i) => (dedup[i] ? [[n, dedup[i]!] as const] : [])));
      const status = planImageCacheStatus({ name: "ic", generation: 1, imageIds: ids, nodes: names, reports, definitions: new Map(ids.map((id) => [id, "d1"])), conflicts: [], now: "2026-01-01T00:00:00Z" });
      const labelled = dedup.filter((r) => planNodePlacement(input([ic], r)).ready.includes("ic")).length;
      assert.equal(labelled, status.readyNodes);
    }),
    { numRuns: 500 },
  );
});
