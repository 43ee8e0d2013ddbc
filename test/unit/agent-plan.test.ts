import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { baseNameFor } from "../../src/core/names.js";
import {
  DefaultRetryPolicy,
  imageDefinitionHash,
  imageFingerprint,
  planAgent,
  recordFailure,
  type AgentPlanInput,
  
  type ImageMemory,
} from "../../src/core/agent-plan.js";
import type { ImageSpec } from "../../src/core/api-records.js";

const NOW = 1_800_000_000_000;

function image(id: string, over: Partial<ImageSpec> = {}): ImageSpec {
  return { id, source: { http: { url: `http://origin/${id}.qcow2` } }, ...over };
}

function input(over: Partial<AgentPlanInput> = {}): AgentPlanInput {
  return { now: NOW, generation: 3, wanted: [], onDisk: new Map(), memory: {}, concurrency: 2, ...over };
}

const phaseOf = (plan: ReturnType<typeof planAgent>, id: string) => plan.status.images?.find((i) => i.id === id);

test("wanted images not on disk start, at most `concurrency` at a time, in spec order", () => {
  const plan = planAgent(input({ wanted: [image("a"), image("b"), image("c")] }));
  assert.deepEqual(plan.start.map((i) => i.id), ["a", "b"]);
  assert.deepEqual(plan.status.images?.map((i) => i.phase), ["Downloading", "Downloading", "Pending"]);
  assert.equal(plan.requeueAfterMs, undefined);
});

test("running fetches count against the concurrency", () => {
  const memory: Record<string, ImageMemory> = { a: { running: { fingerprint: imageFingerprint(image("a")), phase: "Converting", bytesDone: 10, bytesTotal: 10 } } };
  const plan = planAgent(input({ wanted: [image("a"), image("b"), image("c")], memory }));
  assert.deepEqual(plan.start.map((i) => i.id), ["b"]);
  assert.deepEqual(phaseOf(plan, "a"), { id: "a", base: baseNameFor("a"), phase: "Converting", bytesDone: 10, bytesTotal: 10, observedGeneration: 3, definition: imageDefinitionHash(image("a")) });
});

test("every status entry names the definition it reports on, and a changed definition changes it", () => {
  const plan = planAgent(input({ wanted: [image("a"), image("b", { checksum: `sha256:${"0".repeat(64)}` })] }));
  for (const i of plan.status.images ?? []) assert.match(i.definition ?? "", /^[0-9a-f]{16}$/);
  const variants = [image("a"), image("a", { source: { http: { url: "http://other/a.qcow2" } } }), image("a", { checksum: `sha256:${"1".repeat(64)}` }), image("a", { maxVirtualSize: "1Gi" }), image("a", { source: { registry: { image: "r.example/a:1" } } })];
  assert.equal(new Set(variants.map(imageDefinitionHash)).size, variants.length);
  assert.equal(imageDefinitionHash(image("a")), imageDefinitionHash(image("a")));
});

test("a base already on disk is adopted as Ready, not fetched again", () => {
  const plan = planAgent(input({ wanted: [image("a")], onDisk: new Map([[baseNameFor("a"), { virtualSize: 1 << 30 }]]) }));
  assert.deepEqual(plan.start, []);
  assert.equal(phaseOf(plan, "a")?.phase, "Ready");
  assert.equal(phaseOf(plan, "a")?.virtualSize, 1 << 30);
  assert.equal(plan.status.conditions?.[0]?.status, "True");
  assert.equal(plan.status.conditions?.[0]?.reason, "AllImagesReady");
});

test("a rejected image is not retried while its definition is unchanged", () => {
  const fp = imageFingerprint(image("a"));
  const memory = { a: { failure: { kind: "rejected" as const, reason: "backing-file", message: "Has a backing file", attempts: 1, fingerprint: fp, generation: 1 } } };
  const same = planAgent(input({ wanted: [image("a")], memory, generation: 9 }));
  assert.deepEqual(same.start, []);
  assert.deepEqual([phaseOf(same, "a")?.phase, phaseOf(same, "a")?.reason], ["Failed", "backing-file"]);
  assert.equal(same.status.conditions?.[0]?.reason, "ImagesFailed");
  assert.equal(same.requeueAfterMs, undefined);
  const changed = planAgent(input({ wanted: [image("a", { checksum: `sha256:${"0".repeat(64)}` })], memory }));
  assert.deepEqual(changed.start.map((i) => i.id), ["a"]);
});

test("a rejection remembered only by generation (after a restart) is retried when the generation changes", () => {
  const memory = { a: { failure: { kind: "rejected" as const, reason: "too-large", message: "m", attempts: 1, generation: 3 } } };
  assert.deepEqual(planAgent(input({ wanted: [image("a")], memory, generation: 3 })).start, []);
  assert.deepEqual(planAgent(input({ wanted: [image("a")], memory, generation: 4 })).start.map((i) => i.id), ["a"]);
});

test("a failed source waits for its retry time, then is fetched again", () => {
  const fp = imageFingerprint(image("a"));
  const failure = recordFailure(undefined, { kind: "failed", reason: "http-status", message: "Cannot fetch: HTTP 503" }, { now: NOW, generation: 3, fingerprint: fp, jitter: 0, policy: DefaultRetryPolicy });
  assert.equal(failure.retryAt, NOW + 2_500);
  const waiting = planAgent(input({ wanted: [image("a")], memory: { a: { failure } }, now: NOW + 1000 }));
  assert.deepEqual(waiting.start, []);
  assert.equal(waiting.requeueAfterMs, 1_500);
  assert.equal(phaseOf(waiting, "a")?.phase, "Failed");
  const due = planAgent(input({ wanted: [image("a")], memory: { a: { failure } }, now: NOW + 2_500 }));
  assert.deepEqual(due.start.map((i) => i.id), ["a"]);
});

test("backoff grows with attempts of the same definition and restarts for a new one", () => {
  const at = (fingerprint: string) => ({ now: NOW, generation: 1, fingerprint, jitter: 0.5, policy: DefaultRetryPolicy });
  const out = { kind: "failed" as const, reason: "unreachable", message: "x" };
  let f = recordFailure(undefined, out, at("one"));
  const delays = [f.retryAt! - NOW];
  for (let i = 0; i < 12; i++) {
    f = recordFailure(f, out, at("one"));
    delays.push(f.retryAt! - NOW);
  }
  for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!);
  assert.ok(delays.at(-1)! <= DefaultRetryPolicy.maxMs);
  assert.equal(f.attempts, 13);
  assert.equal(recordFailure(f, out, at("two")).attempts, 1);
});

test("running fetches of images no longer wanted, or of an old definition, are cancelled", () => {
  const memory = {
    gone: { running: { fingerprint: "x", phase: "Downloading" as const } },
    a: { running: { fingerprint: "old", phase: "Downloading" as const } },
  };
  const plan = planAgent(input({ wanted: [image("a")], memory }));
  assert.deepEqual(plan.cancel.sort(), ["a", "gone"]);
  assert.deepEqual(plan.start, []);
  assert.equal(phaseOf(plan, "a")?.phase, "Pending");
});

test("the Ready condition keeps its transition time while its status holds", () => {
  const first = planAgent(input({ wanted: [image("a")] }));
  const second = planAgent(input({ wanted: [image("a")], now: NOW + 60_000, prior: first.status }));
  assert.equal(second.status.conditions?.[0]?.lastTransitionTime, first.status.conditions?.[0]?.lastTransitionTime);
  const ready = planAgent(input({ wanted: [image("a")], now: NOW + 120_000, prior: second.status, onDisk: new Map([[baseNameFor("a"), {}]]) }));
  assert.equal(ready.status.conditions?.[0]?.lastTransitionTime, new Date(NOW + 120_000).toISOString());
});

test("no images wanted is Ready", () => {
  const plan = planAgent(input());
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
        for (const id of running) memory[id] = { running: { fingerprint: imageFingerprint(image(id)), phase: "Downloading" } };
        for (const id of rejected) memory[id] = { ...memory[id], failure: { kind: "rejected", reason: "corrupt", message: "m", attempts: 1, fingerprint: imageFingerprint(image(id)), generation: 3 } };
        const concurrency = 1 + (running.length % 3);
        const plan = planAgent(input({ wanted, memory, concurrency, onDisk: new Map(present.map((id) => [baseNameFor(id), {}])) }));
        const stillRunning = running.filter((id) => !plan.cancel.includes(id)).length;
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
  const fresh = planAgent(input({ wanted: [image("a"), image("b"), image("c")], onDisk }));
  assert.deepEqual(fresh.verify.map((i) => i.id), ["a"]);
  assert.deepEqual(fresh.start.map((i) => i.id), ["b", "c"]);
  assert.equal(phaseOf(fresh, "a")?.phase, "Ready");
  const checked = planAgent(input({ wanted: [image("a")], onDisk, memory: { a: { verified: imageFingerprint(image("a")) } } }));
  assert.deepEqual(checked.verify, []);
  const redefined = planAgent(input({ wanted: [image("a", { maxVirtualSize: "1Gi" })], onDisk, memory: { a: { verified: imageFingerprint(image("a")) } } }));
  assert.deepEqual(redefined.verify.map((i) => i.id), ["a"]);
});

test("a base on disk that its definition rejects (a checksum that does not match) is Failed, and kept", () => {
  const img = image("a", { checksum: `sha256:${"1".repeat(64)}` });
  const memory = { a: { failure: { kind: "rejected" as const, reason: "checksum-mismatch", message: "m", attempts: 1, fingerprint: imageFingerprint(img), generation: 3 } } };
  const plan = planAgent(input({ wanted: [img], onDisk: new Map([[baseNameFor("a"), {}]]), memory }));
  assert.deepEqual([phaseOf(plan, "a")?.phase, phaseOf(plan, "a")?.reason], ["Failed", "checksum-mismatch"]);
  assert.deepEqual([plan.start, plan.verify], [[], []]);
});

test("under a cache budget the status carries CacheWithinBudget, False only when GC can evict nothing more", () => {
  const none = planAgent(input());
  assert.equal(none.status.conditions?.find((c) => c.type === "CacheWithinBudget"), undefined);
  const within = planAgent(input({ budget: { overBudget: false, cacheBytes: 10, highBytes: 90 } }));
  assert.deepEqual(
    within.status.conditions?.filter((c) => c.type === "CacheWithinBudget").map((c) => [c.status, c.reason]),
    [["True", "WithinBudget"]],
  );
  const over = planAgent(input({ budget: { overBudget: true, cacheBytes: 100, highBytes: 90 }, prior: within.status, now: NOW + 1000 }));
  const c = over.status.conditions?.find((x) => x.type === "CacheWithinBudget");
  assert.deepEqual([c?.status, c?.reason, c?.lastTransitionTime], ["False", "OverBudget", new Date(NOW + 1000).toISOString()]);
  // Usage moving within the same verdict does not change the condition (no status write for it).
  const again = planAgent(input({ budget: { overBudget: true, cacheBytes: 120, highBytes: 90 }, prior: over.status, now: NOW + 5000 }));
  assert.deepEqual(again.status.conditions, over.status.conditions);
});
