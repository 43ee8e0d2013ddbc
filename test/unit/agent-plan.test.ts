import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { DefaultRetryPolicy, recordFailure, type ImageMemory } from "../../src/core/agent-memory.js";
import { planAgent, planSeedMemory, type AgentPlan, type AgentPlanInput } from "../../src/core/agent-plan.js";
import type { ImageSpec, NodeImageCache, NodeImageCacheStatus } from "../../src/core/api-records.js";
import { definitionHash, definitionKey } from "../../src/core/image-definition.js";
import { baseNameFor, versionedBaseName } from "../../src/core/names.js";

const NOW = 1_800_000_000_000;

function image(id: string, over: Partial<ImageSpec> = {}): ImageSpec {
  return { id, source: { http: { url: `http://origin/${id}.qcow2` } }, ...over };
}

function nodeImageCache(wanted: readonly ImageSpec[], generation = 3, prior?: NodeImageCacheStatus): NodeImageCache {
  const nic: NodeImageCache = { metadata: { name: "node-1", generation }, spec: { nodeName: "node-1", images: wanted.map((w) => ({ ...w, wantedBy: ["ic"] })) } };
  return prior ? { ...nic, status: prior } : nic;
}

type Over = Partial<AgentPlanInput> & { wanted?: ImageSpec[]; generation?: number; prior?: NodeImageCacheStatus };

function input(over: Over = {}): AgentPlanInput {
  const { wanted = [], generation, prior, ...rest } = over;
  return { now: NOW, nodeImageCache: nodeImageCache(wanted, generation, prior), onDisk: new Map(), memory: {}, tasks: [], seeded: true, concurrency: 2, ...rest };
}

/** Plans with a NodeImageCache, so the plan has a status. */
function planFor(over: Over = {}): AgentPlan & { status: NodeImageCacheStatus } {
  const plan = planAgent(input(over));
  assert.ok(plan.status, "a plan with a NodeImageCache has a status");
  return { ...plan, status: plan.status };
}

const phaseOf = (plan: AgentPlan, id: string) => plan.status?.images?.find((i) => i.id === id);

test("wanted images not on disk start, at most `concurrency` at a time, in spec order", () => {
  const plan = planFor({ wanted: [image("a"), image("b"), image("c")] });
  assert.deepEqual(plan.start.map((i) => i.id), ["a", "b"]);
  assert.deepEqual(plan.status.images?.map((i) => i.phase), ["Downloading", "Downloading", "Pending"]);
  assert.equal(plan.requeueAfterMs, undefined);
});

test("running fetches count against the concurrency", () => {
  const memory: Record<string, ImageMemory> = { a: { running: { definitionKey: definitionKey(image("a")), phase: "Converting", bytesDone: 10, bytesTotal: 10 } } };
  const plan = planFor({ wanted: [image("a"), image("b"), image("c")], memory });
  assert.deepEqual(plan.start.map((i) => i.id), ["b"]);
  assert.deepEqual(phaseOf(plan, "a"), { id: "a", base: baseNameFor("a"), phase: "Converting", bytesDone: 10, bytesTotal: 10, observedGeneration: 3, definition: definitionHash(image("a")) });
});

test("every status entry names the definition it reports on", () => {
  const wanted = [image("a"), image("b", { checksum: `sha256:${"0".repeat(64)}` })];
  const plan = planFor({ wanted });
  assert.deepEqual(plan.status.images?.map((i) => i.definition), wanted.map(definitionHash));
});

test("a size limit rewritten as an equal quantity is the same definition: the fetch under way goes on", () => {
  const memory: Record<string, ImageMemory> = { a: { running: { definitionKey: definitionKey(image("a", { maxVirtualSize: "1Gi" })), phase: "Downloading" } } };
  const plan = planFor({ wanted: [image("a", { maxVirtualSize: "1073741824" })], memory, tasks: ["a"] });
  assert.deepEqual(plan.cancel, []);
  assert.equal(phaseOf(plan, "a")?.phase, "Downloading");
});

test("a base already on disk is adopted as Ready, not fetched again", () => {
  const plan = planFor({ wanted: [image("a")], onDisk: new Map([[baseNameFor("a"), { virtualSize: 1 << 30 }]]) });
  assert.deepEqual(plan.start, []);
  assert.equal(phaseOf(plan, "a")?.phase, "Ready");
  assert.equal(phaseOf(plan, "a")?.virtualSize, 1 << 30);
  assert.equal(plan.status.conditions?.[0]?.status, "True");
  assert.equal(plan.status.conditions?.[0]?.reason, "AllImagesReady");
});

test("a rejected image is not retried while its definition is unchanged", () => {
  const defKey = definitionKey(image("a"));
  const memory = { a: { failure: { kind: "rejected" as const, reason: "backing-file", message: "Has a backing file", attempts: 1, definitionKey: defKey, generation: 1 } } };
  const same = planFor({ wanted: [image("a")], memory, generation: 9 });
  assert.deepEqual(same.start, []);
  assert.deepEqual([phaseOf(same, "a")?.phase, phaseOf(same, "a")?.reason], ["Failed", "backing-file"]);
  assert.equal(same.status.conditions?.[0]?.reason, "ImagesFailed");
  assert.equal(same.requeueAfterMs, undefined);
  const changed = planFor({ wanted: [image("a", { checksum: `sha256:${"0".repeat(64)}` })], memory });
  assert.deepEqual(changed.start.map((i) => i.id), ["a"]);
});

test("a rejection remembered only by generation (after a restart) is retried when the generation changes", () => {
  const memory = { a: { failure: { kind: "rejected" as const, reason: "too-large", message: "m", attempts: 1, generation: 3 } } };
  assert.deepEqual(planFor({ wanted: [image("a")], memory, generation: 3 }).start, []);
  assert.deepEqual(planFor({ wanted: [image("a")], memory, generation: 4 }).start.map((i) => i.id), ["a"]);
});

test("a failed source waits for its retry time, then is fetched again", () => {
  const defKey = definitionKey(image("a"));
  const failure = recordFailure(undefined, { kind: "failed", reason: "http-status", message: "Cannot fetch: HTTP 503" }, { now: NOW, generation: 3, definitionKey: defKey, jitter: 0, policy: DefaultRetryPolicy });
  assert.equal(failure.retryAt, NOW + 2_500);
  const waiting = planFor({ wanted: [image("a")], memory: { a: { failure } }, now: NOW + 1000 });
  assert.deepEqual(waiting.start, []);
  assert.equal(waiting.requeueAfterMs, 1_500);
  assert.equal(phaseOf(waiting, "a")?.phase, "Failed");
  const due = planFor({ wanted: [image("a")], memory: { a: { failure } }, now: NOW + 2_500 });
  assert.deepEqual(due.start.map((i) => i.id), ["a"]);
});

test("running fetches of images no longer wanted, or of an old definition, are cancelled", () => {
  const memory = {
    gone: { running: { definitionKey: "x", phase: "Downloading" as const } },
    a: { running: { definitionKey: "old", phase: "Downloading" as const } },
  };
  const plan = planFor({ wanted: [image("a")], memory });
  assert.deepEqual(plan.cancel.map((c) => c.id).sort(), ["a", "gone"]);
  assert.deepEqual(plan.start, []);
  assert.equal(phaseOf(plan, "a")?.phase, "Pending");
});

test("the Ready condition keeps its transition time while its status holds", () => {
  const first = planFor({ wanted: [image("a")] });
  const second = planFor({ wanted: [image("a")], now: NOW + 60_000, prior: first.status });
  assert.equal(second.status.conditions?.[0]?.lastTransitionTime, first.status.conditions?.[0]?.lastTransitionTime);
  const ready = planFor({ wanted: [image("a")], now: NOW + 120_000, prior: second.status, onDisk: new Map([[baseNameFor("a"), {}]]) });
  assert.equal(ready.status.conditions?.[0]?.lastTransitionTime, new Date(NOW + 120_000).toISOString());
});

test("no images wanted is Ready", () => {
  const plan = planFor();
  assert.deepEqual(plan.status.images, []);
  assert.equal(plan.status.conditions?.[0]?.status, "True");
});

test("property: never more than `concurrency` fetches run, no image is both started and Ready, and every wanted image has one entry", () => {
  const ids = ["a", "b", "c", "d", "e"];
  fc.assert(
    fc.property(
      fc.subarray(ids, { minLength: 0 }),
      fc.subarray(ids),
      fc.subarray(ids),
      fc.subarray(ids),
      (wantedIds, present, running, rejected) => {
        const wanted = wantedIds.map((id) => image(id));
        const memory: Record<string, ImageMemory> = {};
        for (const id of running) memory[id] = { running: { definitionKey: definitionKey(image(id)), phase: "Downloading" } };
        for (const id of rejected) memory[id] = { ...memory[id], failure: { kind: "rejected", reason: "corrupt", message: "m", attempts: 1, definitionKey: definitionKey(image(id)), generation: 3 } };
        const concurrency = 1 + (running.length % 3);
        const plan = planFor({ wanted, memory, concurrency, onDisk: new Map(present.map((id) => [baseNameFor(id), {}])) });
        const stillRunning = running.filter((id) => !plan.cancel.some((c) => c.id === id)).length;
        assert.ok(plan.start.length === 0 || stillRunning + plan.start.length <= concurrency);
        for (const s of plan.start) {
          assert.ok(!present.includes(s.id));
          assert.ok(!rejected.includes(s.id));
          assert.ok(!running.includes(s.id));
        }
        assert.deepEqual(plan.status.images?.map((i) => i.id), wantedIds);
      },
    ),
  );
});

test("a base on disk is checked once per definition against the pipeline, without using a fetch slot", () => {
  const onDisk = new Map([[baseNameFor("a"), {}]]);
  const fresh = planFor({ wanted: [image("a"), image("b"), image("c")], onDisk });
  assert.deepEqual(fresh.verify.map((i) => i.id), ["a"]);
  assert.deepEqual(fresh.start.map((i) => i.id), ["b", "c"]);
  assert.equal(phaseOf(fresh, "a")?.phase, "Ready");
  const checked = planFor({ wanted: [image("a")], onDisk, memory: { a: { verified: definitionKey(image("a")) } } });
  assert.deepEqual(checked.verify, []);
  const redefined = planFor({ wanted: [image("a", { maxVirtualSize: "1Gi" })], onDisk, memory: { a: { verified: definitionKey(image("a")) } } });
  assert.deepEqual(redefined.verify.map((i) => i.id), ["a"]);
});

test("a base on disk that its definition rejects (a checksum that does not match) is Failed, and kept", () => {
  const img = image("a", { checksum: `sha256:${"1".repeat(64)}` });
  const memory = { a: { failure: { kind: "rejected" as const, reason: "checksum-mismatch", message: "m", attempts: 1, definitionKey: definitionKey(img), generation: 3 } } };
  const plan = planFor({ wanted: [img], onDisk: new Map([[baseNameFor("a"), {}]]), memory });
  assert.deepEqual([phaseOf(plan, "a")?.phase, phaseOf(plan, "a")?.reason], ["Failed", "checksum-mismatch"]);
  assert.deepEqual([plan.start, plan.verify], [[], []]);
});

test("under a cache budget the status carries CacheWithinBudget, False only when GC can evict nothing more", () => {
  const none = planFor();
  assert.equal(none.status.conditions?.find((c) => c.type === "CacheWithinBudget"), undefined);
  const within = planFor({ budget: { overBudget: false, cacheBytes: 10, highBytes: 90 } });
  assert.deepEqual(
    within.status.conditions?.filter((c) => c.type === "CacheWithinBudget").map((c) => [c.status, c.reason]),
    [["True", "WithinBudget"]],
  );
  const over = planFor({ budget: { overBudget: true, cacheBytes: 100, highBytes: 90 }, prior: within.status, now: NOW + 1000 });
  const c = over.status.conditions?.find((x) => x.type === "CacheWithinBudget");
  assert.deepEqual([c?.status, c?.reason, c?.lastTransitionTime], ["False", "OverBudget", new Date(NOW + 1000).toISOString()]);
  // Usage moving within the same verdict does not change the condition (no status write for it).
  const again = planFor({ budget: { overBudget: true, cacheBytes: 120, highBytes: 90 }, prior: over.status, now: NOW + 5000 });
  assert.deepEqual(again.status.conditions, over.status.conditions);
});

test("the status reports the cache's usage in bytes and for humans, for kubectl's Cache column", () => {
  const plan = planAgent(input({ disk: { cacheBytes: 25_174_016, filesystemBytes: 10 * 1024 ** 3, filesystemFreeBytes: 1024 ** 3 } }));
  assert.deepEqual(plan.status?.disk, { cacheBytes: 25_174_016, cache: "24.0 MiB", filesystemBytes: 10 * 1024 ** 3, filesystemFreeBytes: 1024 ** 3 });
});

test("without a NodeImageCache every task is cancelled, nothing starts and no status is offered", () => {
  const memory = { a: { running: { definitionKey: "x", phase: "Downloading" as const } }, b: { verified: "y" } };
  const plan = planAgent({ ...input({ memory, tasks: ["a", "b"] }), nodeImageCache: undefined });
  assert.deepEqual(plan.cancel, [
    { id: "a", why: "its NodeImageCache is gone" },
    { id: "b", why: "its NodeImageCache is gone" },
  ]);
  assert.deepEqual([plan.start, plan.verify, plan.forget, plan.status, plan.seed], [[], [], [], undefined, undefined]);
});

test("what the agent remembers of images no longer wanted is forgotten, unless a task for it is under way", () => {
  const memory: Record<string, ImageMemory> = { a: { verified: "f" }, gone: { verified: "f" }, checking: { verified: "f" }, failed: { failure: { kind: "failed", reason: "x", message: "m", attempts: 1, generation: 1 } } };
  const plan = planFor({ wanted: [image("a")], memory, tasks: ["checking"] });
  assert.deepEqual(plan.forget.sort(), ["failed", "gone"]);
  assert.deepEqual(plan.cancel, []);
});

test("the first pass takes rejections from a status written before a restart, and holds them in that pass already", () => {
  const prior: NodeImageCacheStatus = {
    observedGeneration: 3,
    images: [
      { id: "a", base: baseNameFor("a"), phase: "Failed", reason: "backing-file", message: "Refused image \"a\": has a backing file", observedGeneration: 3 },
      { id: "b", base: baseNameFor("b"), phase: "Failed", reason: "http-status", message: "HTTP 503" },
    ],
  };
  const plan = planFor({ wanted: [image("a"), image("b")], prior, seeded: false });
  assert.deepEqual(Object.keys(plan.seed ?? {}), ["a"]);
  assert.deepEqual(plan.start.map((i) => i.id), ["b"]);
  assert.deepEqual([phaseOf(plan, "a")?.phase, phaseOf(plan, "a")?.reason], ["Failed", "backing-file"]);
  assert.equal(planFor({ wanted: [image("a")], prior, seeded: true }).seed, undefined);
});

test("planSeedMemory: which status entries become remembered rejections", () => {
  const entry = (over: Partial<NonNullable<NodeImageCacheStatus["images"]>[number]>) => ({ id: "a", base: baseNameFor("a"), phase: "Failed" as const, reason: "corrupt", message: "m", ...over });
  const defKey = definitionKey(image("a"));
  const table: { what: string; images: NonNullable<NodeImageCacheStatus["images"]>; memory?: Record<string, ImageMemory>; want: Record<string, ImageMemory> }[] = [
    { what: "a rejection of this generation, with its definition key", images: [entry({ observedGeneration: 3 })], want: { a: { failure: { kind: "rejected", reason: "corrupt", message: "m", attempts: 1, generation: 3, definitionKey: defKey } } } },
    { what: "a rejection of an older generation, by generation only", images: [entry({ observedGeneration: 2 })], want: { a: { failure: { kind: "rejected", reason: "corrupt", message: "m", attempts: 1, generation: 2 } } } },
    { what: "the status's generation when the entry has none", images: [entry({})], want: { a: { failure: { kind: "rejected", reason: "corrupt", message: "m", attempts: 1, generation: 1 } } } },
    { what: "a failed source is not a rejection", images: [entry({ reason: "unreachable" })], want: {} },
    { what: "a Ready entry", images: [entry({ phase: "Ready", reason: undefined })], want: {} },
    { what: "an id the agent already remembers", images: [entry({})], memory: { a: { verified: defKey } }, want: {} },
  ];
  for (const t of table) {
    const nic = nodeImageCache([image("a")], 3, { observedGeneration: 1, images: t.images });
    assert.deepEqual(planSeedMemory(nic, t.memory ?? {}), t.want, t.what);
  }
});

test("a tracked image's version names its base; the old version stays listed while the new one downloads", () => {
  const v1 = { name: "111111111111", resolvedAt: "2026-12-01T00:00:00Z", etag: '"1"' };
  const v2 = { name: "222222222222", resolvedAt: "2026-12-02T00:00:00Z", etag: '"2"' };
  const b1 = versionedBaseName("t", v1.name);
  const b2 = versionedBaseName("t", v2.name);
  const versionsOnDisk = new Map([["t", [{ version: v1.name, base: b1 }]]]);
  const fetching = planFor({ wanted: [image("t", { updatePolicy: { interval: "1h" }, version: v2 })], onDisk: new Map([[b1, { virtualSize: 5 }]]), versionsOnDisk });
  assert.deepEqual(fetching.start.map((i) => i.id), ["t"]);
  const entry = phaseOf(fetching, "t");
  assert.equal(entry?.base, b2);
  assert.equal(entry?.version, v2.name);
  assert.deepEqual(entry?.previousVersions, [{ version: v1.name, base: b1 }]);
  // Once the new one is there it is Ready; the current version is never listed as a previous one.
  const both = new Map([["t", [{ version: v2.name, base: b2 }, { version: v1.name, base: b1 }]]]);
  const ready = planFor({ wanted: [image("t", { updatePolicy: { interval: "1h" }, version: v2 })], onDisk: new Map([[b2, { virtualSize: 5 }]]), versionsOnDisk: both });
  assert.equal(phaseOf(ready, "t")?.phase, "Ready");
  assert.deepEqual(phaseOf(ready, "t")?.previousVersions, [{ version: v1.name, base: b1 }]);
  // A pinned image keeps Nova's name and says nothing of versions.
  const pinned = phaseOf(planFor({ wanted: [image("p")] }), "p");
  assert.equal(pinned?.base, baseNameFor("p"));
  assert.equal(pinned?.version, undefined);
});

test("a base found corrupt is Failed with base-corrupt and neither fetched nor verified over; once gone it is fetched", () => {
  const corrupt = planFor({ wanted: [image("a")], onDisk: new Map([[baseNameFor("a"), { virtualSize: 1 << 30, corrupt: "Base changed" }]]) });
  assert.deepEqual([corrupt.start, corrupt.verify], [[], []]);
  assert.deepEqual([phaseOf(corrupt, "a")?.phase, phaseOf(corrupt, "a")?.reason, phaseOf(corrupt, "a")?.message], ["Failed", "base-corrupt", "Base changed"]);
  const gone = planFor({ wanted: [image("a")] });
  assert.deepEqual(gone.start.map((i) => i.id), ["a"]);
});

test("base-corrupt in the last status is not remembered as a refusal after a restart: it is about the file, not the definition", () => {
  const prior: NodeImageCacheStatus = { images: [{ id: "a", base: baseNameFor("a"), phase: "Failed", reason: "base-corrupt", message: "Base changed", observedGeneration: 3 }] };
  const plan = planFor({ wanted: [image("a")], prior, seeded: false });
  assert.deepEqual(plan.start.map((i) => i.id), ["a"], "the base is gone (GC removed it): fetched again");
});
