import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MaxFailures, planImageCacheStatus, type NodeImageReport, type RollupInput } from "../../src/core/rollup.js";
import { findCondition } from "../../src/core/conditions.js";

const now = "2026-11-25T12:00:00Z";
const later = "2026-11-25T13:00:00Z";

function input(overrides: Partial<RollupInput> = {}): RollupInput {
  return { name: "ic", generation: 3, imageIds: ["a", "b"], nodes: ["n1", "n2"], reports: new Map(), conflicts: [], now, ...overrides };
}
function reports(entries: Record<string, [string, NodeImageReport["phase"], string?][]>): Map<string, NodeImageReport[]> {
  return new Map(Object.entries(entries).map(([n, list]) => [n, list.map(([id, phase, reason]) => ({ id, phase, ...(reason ? { reason, message: `${reason} on ${n}` } : {}) }))]));
}
function cond(status: ReturnType<typeof planImageCacheStatus>, type: string) {
  const c = findCondition(status.conditions, type);
  return c && `${c.status}/${c.reason}`;
}

test("counts ready, pending and failed per image, and ready nodes", () => {
  const s = planImageCacheStatus(input({ reports: reports({ n1: [["a", "Ready"], ["b", "Ready"]], n2: [["a", "Failed", "ChecksumMismatch"], ["b", "Downloading"]] }) }));
  assert.deepEqual(s.images, [
    { id: "a", ready: 1, pending: 0, failed: 1 },
    { id: "b", ready: 1, pending: 1, failed: 0 },
  ]);
  assert.equal(s.readyNodes, 1);
  assert.equal(s.desiredNodes, 2);
  assert.equal(s.ready, "1/2");
  assert.equal(s.observedGeneration, 3);
  assert.equal(s.nodeLabel, "imagecache.basecache.io/ic");
  assert.deepEqual(s.failures, [{ node: "n2", id: "a", reason: "ChecksumMismatch", message: "ChecksumMismatch on n2" }]);
  assert.equal(cond(s, "Ready"), "False/NodesNotReady");
  assert.equal(cond(s, "Progressing"), "True/Caching");
  assert.equal(cond(s, "Degraded"), "True/ImagesFailed");
  assert.equal(cond(s, "Conflict"), "False/NoConflict");
  assert.ok(s.conditions.every((c) => c.observedGeneration === 3));
});

test("conditions for each overall outcome", () => {
  const table: [string, Partial<RollupInput>, string, string, string][] = [
    ["no status yet", {}, "False/NodesNotReady", "True/Caching", "False/AsExpected"],
    ["all ready", { reports: reports({ n1: [["a", "Ready"], ["b", "Ready"]], n2: [["a", "Ready"], ["b", "Ready"]] }) }, "True/AllNodesReady", "False/Idle", "False/AsExpected"],
    ["no node selected", { nodes: [] }, "True/NoMatchingNodes", "False/Idle", "False/AsExpected"],
    ["failed, nothing pending", { reports: reports({ n1: [["a", "Ready"], ["b", "Failed", "TooLarge"]], n2: [["a", "Ready"], ["b", "Ready"]] }) }, "False/NodesNotReady", "False/Idle", "True/ImagesFailed"],
    ["images left out for room", { overflowIds: ["b"], reports: reports({ n1: [["a", "Ready"], ["b", "Ready"]], n2: [["a", "Ready"], ["b", "Ready"]] }) }, "False/NodesNotReady", "False/Idle", "True/TooManyImages"],
  ];
  for (const [name, over, ready, progressing, degraded] of table) {
    const s = planImageCacheStatus(input(over));
    assert.deepEqual([cond(s, "Ready"), cond(s, "Progressing"), cond(s, "Degraded")], [ready, progressing, degraded], name);
  }
});

test("a conflict is a condition on both ImageCaches; the loser does not count the lost image", () => {
  const conflicts = [{ id: "b", winner: "old", losers: ["new"] }];
  const winner = planImageCacheStatus(input({ name: "old", conflicts }));
  assert.equal(cond(winner, "Conflict"), "True/ConflictingDefinition");
  assert.match(findCondition(winner.conditions, "Conflict")!.message, /"new"/);
  assert.deepEqual(winner.images.map((i) => i.id), ["a", "b"]);
  const loser = planImageCacheStatus(input({ name: "new", conflicts, reports: reports({ n1: [["a", "Ready"]], n2: [["a", "Ready"]] }) }));
  assert.equal(cond(loser, "Conflict"), "True/ConflictingDefinition");
  assert.match(findCondition(loser.conditions, "Conflict")!.message, /"old"/);
  assert.deepEqual(loser.images.map((i) => i.id), ["a"]);
  assert.equal(cond(loser, "Ready"), "False/NodesNotReady");
  assert.equal(cond(loser, "Degraded"), "True/ConflictingDefinition");
});

test("failures are sorted by node then id, capped at 20, with a truncated flag and the full count", () => {
  const nodes = Array.from({ length: 30 }, (_, i) => `node-${String(i).padStart(2, "0")}`);
  const r = new Map(nodes.map((n) => [n, [{ id: "a", phase: "Failed" as const, reason: "FetchFailed", message: "HTTP 503" }, { id: "b", phase: "Ready" as const }]]));
  const s = planImageCacheStatus(input({ nodes: [...nodes].reverse(), reports: r }));
  assert.equal(s.failures.length, MaxFailures);
  assert.equal(s.failuresTruncated, true);
  assert.equal(s.failedCount, 30);
  assert.deepEqual(s.failures.map((f) => f.node), nodes.slice(0, 20));
  const few = planImageCacheStatus(input({ nodes: nodes.slice(0, 3), reports: r }));
  assert.equal(few.failuresTruncated, false);
});

test("transition times move only when a condition's status flips, so a recomputed status is identical", () => {
  const first = planImageCacheStatus(input());
  const again = planImageCacheStatus(input({ existingConditions: first.conditions, now: later }));
  assert.deepEqual(again, first);
  const done = planImageCacheStatus(input({ existingConditions: first.conditions, now: later, reports: reports({ n1: [["a", "Ready"], ["b", "Ready"]], n2: [["a", "Ready"], ["b", "Ready"]] }) }));
  assert.equal(findCondition(done.conditions, "Ready")!.lastTransitionTime, later);
  assert.equal(findCondition(done.conditions, "Degraded")!.lastTransitionTime, now);
});

test("the status stays under 100 KiB at 5,000 nodes x 50 images with every node failing", () => {
  const imageIds = Array.from({ length: 50 }, (_, i) => `ubuntu-24.04-image-${i}`);
  const nodes = Array.from({ length: 5000 }, (_, i) => `worker-node-${i}.cluster.example.com`);
  const bad = imageIds.map((id) => ({ id, phase: "Failed" as const, reason: "FetchFailed", message: "x".repeat(1000) }));
  const s = planImageCacheStatus(input({ imageIds, nodes, reports: new Map(nodes.map((n) => [n, bad])) }));
  const size = Buffer.byteLength(JSON.stringify(s));
  assert.ok(size < 100 * 1024, `status is ${size} bytes`);
  assert.equal(s.failedCount, 250_000);
});

test("a report on an older definition of an image counts as pending until the node catches up", () => {
  const definitions = new Map([["a", "aaaa"], ["b", "bbbb"]]);
  const r = new Map<string, NodeImageReport[]>([
    ["n1", [{ id: "a", phase: "Ready", definition: "aaaa" }, { id: "b", phase: "Ready", definition: "0ld0" }]],
    // An agent that predates the field is taken at its word.
    ["n2", [{ id: "a", phase: "Ready" }, { id: "b", phase: "Failed", reason: "corrupt", definition: "0ld0" }]],
  ]);
  const s = planImageCacheStatus(input({ reports: r, definitions }));
  assert.deepEqual(s.images, [
    { id: "a", ready: 2, pending: 0, failed: 0 },
    { id: "b", ready: 0, pending: 2, failed: 0 },
  ]);
  assert.equal(s.readyNodes, 0);
  assert.deepEqual(s.failures, []);
  assert.equal(cond(s, "Ready"), "False/NodesNotReady");
  assert.equal(cond(s, "Progressing"), "True/Caching");
  const caughtUp = new Map<string, NodeImageReport[]>([
    ["n1", [{ id: "a", phase: "Ready", definition: "aaaa" }, { id: "b", phase: "Ready", definition: "bbbb" }]],
    ["n2", [{ id: "a", phase: "Ready", definition: "aaaa" }, { id: "b", phase: "Ready", definition: "bbbb" }]],
  ]);
  assert.equal(cond(planImageCacheStatus(input({ reports: caughtUp, definitions })), "Ready"), "True/AllNodesReady");
});

test("counts always add up to the selected nodes, whatever the reports", () => {
  const phase = fc.constantFrom("Pending", "Downloading", "Converting", "Ready", "Failed") as fc.Arbitrary<NodeImageReport["phase"]>;
  const arbReports = fc.dictionary(fc.constantFrom("n1", "n2", "n3", "n4"), fc.array(fc.record({ id: fc.constantFrom("a", "b", "c"), phase })));
  fc.assert(
    fc.property(arbReports, fc.subarray(["n1", "n2", "n3", "n4"]), (rep, nodes) => {
      const s = planImageCacheStatus(input({ imageIds: ["a", "b"], nodes, reports: new Map(Object.entries(rep)) }));
      for (const c of s.images) assert.equal(c.ready + c.pending + c.failed, nodes.length);
      assert.ok(s.readyNodes <= s.desiredNodes);
      assert.equal(s.failures.length, Math.min(s.failedCount, MaxFailures));
      assert.equal(s.failedCount, s.images.reduce((n, c) => n + c.failed, 0));
    }),
  );
});
