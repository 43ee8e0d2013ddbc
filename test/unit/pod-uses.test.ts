import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { PodUsesAnswer } from "../../src/core/api-records.js";
import { baseNameFor } from "../../src/core/names.js";
import {
  judgePodUsesAnswer,
  MaxPodsPerUse,
  MaxPodUses,
  planPodUsesAnswer,
  planPodUsesFailure,
  podUsesAnswerDue,
  podUsesCondition,
  podUsesFrom,
  podUsesMatter,
  podUsesOfVersions,
  type PodRecord,
} from "../../src/core/pod-uses.js";

const at = "2026-12-02T10:00:00Z";

function pod(name: string, images?: string, namespace = "vms"): PodRecord {
  return { namespace, name, annotations: images === undefined ? {} : { "basecache.io/images": images } };
}

test("podUsesFrom gives one use per pod and distinct image, and ignores pods without the annotation", () => {
  const uses = podUsesFrom([pod("a", "img-1, img-2,img-1"), pod("b"), pod("c", " , ")]);
  assert.deepEqual(uses, [
    { base: baseNameFor("img-1"), by: "pod vms/a" },
    { base: baseNameFor("img-2"), by: "pod vms/a" },
  ]);
});

test("planPodUsesAnswer groups pods by base, sorted, with the token and time it answers", () => {
  const cases: { name: string; pods: PodRecord[]; uses: { id: string; pods: string[]; podCount: number }[] }[] = [
    { name: "no pods", pods: [], uses: [] },
    { name: "pods without the annotation", pods: [pod("a"), pod("b", "")], uses: [] },
    { name: "one pod, two images", pods: [pod("a", "x,y")], uses: [{ id: "x", pods: ["vms/a"], podCount: 1 }, { id: "y", pods: ["vms/a"], podCount: 1 }] },
    { name: "two pods share an image", pods: [pod("b", "x"), pod("a", "x", "other")], uses: [{ id: "x", pods: ["other/a", "vms/b"], podCount: 2 }] },
  ];
  for (const c of cases) {
    const answer = planPodUsesAnswer(c.pods, "tok", at);
    const want = c.uses.map((u) => ({ base: baseNameFor(u.id), imageId: u.id, pods: u.pods, podCount: u.podCount })).sort((a, b) => a.base.localeCompare(b.base));
    assert.deepEqual(answer, { token: "tok", observedAt: at, uses: want }, c.name);
  }
});

test("planPodUsesAnswer names at most MaxPodsPerUse pods per base but counts them all", () => {
  const pods = Array.from({ length: MaxPodsPerUse + 5 }, (_, i) => pod(`p${String(i).padStart(3, "0")}`, "shared"));
  const [use] = planPodUsesAnswer(pods, "tok", at).uses;
  assert.equal(use?.pods.length, MaxPodsPerUse);
  assert.equal(use?.podCount, MaxPodsPerUse + 5);
  const uses = judgePodUsesAnswer(planPodUsesAnswer(pods, "tok", at), "tok");
  assert.ok(uses.known && uses.uses.length === MaxPodsPerUse && uses.uses.every((u) => u.base === baseNameFor("shared")));
});

test("planPodUsesAnswer never truncates the bases: past MaxPodUses the answer is incomplete", () => {
  const pods = Array.from({ length: MaxPodUses + 1 }, (_, i) => pod(`p${i}`, `image-${i}`));
  const answer = planPodUsesAnswer(pods, "tok", at);
  assert.deepEqual(answer.uses, []);
  assert.match(answer.incomplete ?? "", /1025 distinct images/);
  assert.deepEqual(judgePodUsesAnswer(answer, "tok").known, false);
  assert.equal(planPodUsesAnswer(pods.slice(1), "tok", at).uses.length, MaxPodUses);
});

test("judgePodUsesAnswer trusts only a complete answer to the token asked with", () => {
  const good: PodUsesAnswer = planPodUsesAnswer([pod("a", "x")], "mine", at);
  const cases: { name: string; answer: PodUsesAnswer | undefined; token: string; known: boolean; why?: RegExp }[] = [
    { name: "no answer", answer: undefined, token: "mine", known: false, why: /no answer/ },
    { name: "an answer to an earlier request", answer: { ...good, token: "earlier" }, token: "mine", known: false, why: /another request/ },
    { name: "a forged answer", answer: { token: "forged", observedAt: at, uses: [] }, token: "mine", known: false, why: /another request/ },
    { name: "an incomplete answer", answer: planPodUsesFailure("mine", at, "Cannot list pods: HTTP 403"), token: "mine", known: false, why: /could not tell: Cannot list pods/ },
    { name: "the answer to this request", answer: good, token: "mine", known: true },
  ];
  for (const c of cases) {
    const v = judgePodUsesAnswer(c.answer, c.token);
    assert.equal(v.known, c.known, c.name);
    if (!v.known && c.why) assert.match(v.why, c.why, c.name);
    if (v.known) assert.deepEqual(v.uses, [{ base: baseNameFor("x"), by: "pod vms/a" }], c.name);
  }
});

test("podUsesAnswerDue: a request is due until an answer carries its token", () => {
  const answer = (token: string): PodUsesAnswer => ({ token, observedAt: at, uses: [] });
  assert.equal(podUsesAnswerDue(undefined, undefined), false);
  assert.equal(podUsesAnswerDue("", answer("x")), false);
  assert.equal(podUsesAnswerDue("a", undefined), true);
  assert.equal(podUsesAnswerDue("a", answer("b")), true);
  assert.equal(podUsesAnswerDue("a", answer("a")), false);
});

test("podUsesMatter: only a base nobody wants could go, so only then is the controller asked", () => {
  const [a, b] = [baseNameFor("a"), baseNameFor("b")];
  const cases: { bases: string[]; wanted: string[] | undefined; matter: boolean }[] = [
    { bases: [], wanted: [], matter: false },
    { bases: [], wanted: undefined, matter: false },
    { bases: [a], wanted: [a], matter: false },
    { bases: [a], wanted: [a, b], matter: false },
    { bases: [a, b], wanted: [a], matter: true },
    { bases: [a], wanted: [], matter: true },
    { bases: [a], wanted: undefined, matter: true },
  ];
  for (const c of cases) assert.equal(podUsesMatter(c.bases, c.wanted), c.matter, JSON.stringify(c));
});

test("podUsesCondition says whether the last question was answered", () => {
  assert.deepEqual(podUsesCondition({ known: true, reason: "Answered", message: "m" }, 3), { type: "PodUsesKnown", status: "True", reason: "Answered", message: "m", observedGeneration: 3 });
  assert.equal(podUsesCondition({ known: false, reason: "NoAnswer", message: "m" }, 3).status, "False");
});

const arbPods = fc.array(
  fc.record({
    namespace: fc.constantFrom("a", "b"),
    name: fc.string({ minLength: 1, maxLength: 6 }),
    images: fc.option(fc.array(fc.constantFrom("i1", "i2", "i3", " ", "i1 "), { maxLength: 4 }).map((xs) => xs.join(","))),
  }),
  { maxLength: 20 },
);

test("property: the judged answer to one's own token holds exactly the bases the pods name", () => {
  fc.assert(
    fc.property(arbPods, (raw) => {
      const pods = raw.map((p) => pod(p.name, p.images ?? undefined, p.namespace));
      const v = judgePodUsesAnswer(planPodUsesAnswer(pods, "t", at), "t");
      assert.ok(v.known);
      assert.deepEqual(new Set(v.uses.map((u) => u.base)), new Set(podUsesFrom(pods).map((u) => u.base)));
    }),
  );
});

test("property: an answer is trusted by no token but its own", () => {
  fc.assert(
    fc.property(arbPods, fc.uuid(), fc.uuid(), (raw, asked, answered) => {
      fc.pre(asked !== answered);
      const pods = raw.map((p) => pod(p.name, p.images ?? undefined, p.namespace));
      assert.equal(judgePodUsesAnswer(planPodUsesAnswer(pods, answered, at), asked).known, false);
      assert.equal(podUsesAnswerDue(asked, planPodUsesAnswer(pods, answered, at)), true);
    }),
  );
});

test("a pod naming a tracked image protects every version of it stored on the node, and nothing else", () => {
  const uses = [{ base: baseNameFor("t"), by: "pod vms/a" }, { base: baseNameFor("p"), by: "pod vms/b" }];
  const versions = new Map([["t", [{ base: "v2base" }, { base: "v1base" }]], ["other", [{ base: "o1" }]]]);
  assert.deepEqual(podUsesOfVersions(uses, versions), [
    { base: baseNameFor("t"), by: "pod vms/a" },
    { base: "v2base", by: "pod vms/a" },
    { base: "v1base", by: "pod vms/a" },
    { base: baseNameFor("p"), by: "pod vms/b" },
  ]);
  assert.deepEqual(podUsesOfVersions(uses, new Map()), uses);
});
