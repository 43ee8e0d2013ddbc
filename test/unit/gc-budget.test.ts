import { test } from "node:test";
import assert from "node:assert/strict";
import { cacheBytesAfter, planBudget, settleFollowers, type BudgetFacts } from "../../src/core/gc-budget.js";
import type { GcDecision } from "../../src/core/gc.js";

const NOW = 1_800_000_000_000;
const H = 3_600_000;

function base(name: string, over: Partial<GcDecision> = {}): GcDecision {
  return { name, kind: "base", base: name, action: "keep", reason: "WithinRetention", message: "Unused for 1h", bytes: 100, unusedSince: NOW - H, ...over };
}

function sidecar(of: string, over: Partial<GcDecision> = {}): GcDecision {
  return { name: `${of}.info.json`, kind: "sidecar", base: of, action: "keep", reason: "BaseKept", message: "Its base is kept", bytes: 10, ...over };
}

function facts(over: Partial<BudgetFacts> = {}): BudgetFacts {
  return { now: NOW, mtimes: new Map(), ...over };
}

const budget = (limitBytes: number, high = 1, low = 0.5) => ({ limitBytes, highWatermark: high, lowWatermark: low });

test("planBudget: usage and evictions for each budget", () => {
  const old = base("a", { unusedSince: NOW - 5 * H });
  const young = base("b", { unusedSince: NOW - H });
  const wanted = base("c", { reason: "Wanted" });
  const expired = base("d", { action: "delete", reason: "RetentionExpired" });
  const unknown: GcDecision = { name: "stray", kind: "unknown", action: "report", reason: "UnknownName", message: "Left alone", bytes: 1_000 };
  const all = [old, sidecar("a"), young, wanted, expired, sidecar("d"), unknown];
  // The cache's own bytes are 420 (the unknown file does not count); the expired base and its sidecar free 110.
  const table: { what: string; facts: BudgetFacts; evicted: string[]; usage: object }[] = [
    { what: "no budget", facts: facts(), evicted: [], usage: { cacheBytes: 420, afterBytes: 310, overBudget: false, fits: true } },
    { what: "under the high mark", facts: facts({ budget: budget(1_000) }), evicted: [], usage: { cacheBytes: 420, afterBytes: 310, highBytes: 1_000, lowBytes: 500, overBudget: false, fits: true } },
    { what: "over the high mark: the least recently used goes first, with its sidecar", facts: facts({ budget: budget(300, 1, 0.8) }), evicted: ["a"], usage: { cacheBytes: 420, afterBytes: 200, highBytes: 300, lowBytes: 240, overBudget: false, fits: true } },
    { what: "over, and only a wanted base left", facts: facts({ budget: budget(50, 1, 0) }), evicted: ["a", "b"], usage: { cacheBytes: 420, afterBytes: 100, highBytes: 50, lowBytes: 0, overBudget: true, fits: true } },
    { what: "a reserve that cannot fit evicts nothing", facts: facts({ budget: budget(400), reserveBytes: 1_000 }), evicted: [], usage: { cacheBytes: 420, afterBytes: 310, highBytes: 400, lowBytes: 200, overBudget: false, fits: false } },
  ];
  for (const t of table) {
    const before = structuredClone(all);
    const r = planBudget(all, t.facts);
    assert.deepEqual(r.decisions.filter((d) => d.reason === "Evicted").map((d) => d.name), t.evicted, t.what);
    assert.deepEqual(r.usage, t.usage, t.what);
    assert.deepEqual(all, before, `${t.what}: the input decisions are unchanged`);
    for (const d of r.decisions.filter((x) => x.reason === "Evicted")) assert.equal(d.action, "delete", t.what);
  }
});

test("planBudget: an equal unused time evicts the older file first", () => {
  const r = planBudget([base("x"), base("y")], facts({ budget: budget(150, 1, 1), mtimes: new Map([["x", 2], ["y", 1]]) }));
  assert.deepEqual(r.decisions.filter((d) => d.reason === "Evicted").map((d) => d.name), ["y"]);
});

test("settleFollowers: a removed base takes its kept sidecar and lock; others stay as they were", () => {
  const lock: GcDecision = { name: "a.lock", kind: "lock", base: "a", action: "keep", reason: "BaseKept", message: "Its base is kept", bytes: 0 };
  const table: { what: string; decisions: GcDecision[]; want: [string, string, string][] }[] = [
    { what: "base deleted", decisions: [base("a", { action: "delete", reason: "Evicted" }), sidecar("a"), lock], want: [["a", "delete", "Evicted"], ["a.info.json", "delete", "BaseRemoved"], ["a.lock", "delete", "BaseRemoved"]] },
    { what: "base kept", decisions: [base("a"), sidecar("a")], want: [["a", "keep", "WithinRetention"], ["a.info.json", "keep", "BaseKept"]] },
    { what: "held sidecar of a deleted base", decisions: [base("a", { action: "delete", reason: "RetentionExpired" }), sidecar("a", { reason: "Held", message: "A live process holds it" })], want: [["a", "delete", "RetentionExpired"], ["a.info.json", "keep", "Held"]] },
    { what: "another base's sidecar", decisions: [base("a", { action: "delete", reason: "RetentionExpired" }), sidecar("b")], want: [["a", "delete", "RetentionExpired"], ["b.info.json", "keep", "BaseKept"]] },
  ];
  for (const t of table) {
    const before = structuredClone(t.decisions);
    const got = settleFollowers(t.decisions).map((d): [string, string, string] => [d.name, d.action, d.reason]);
    assert.deepEqual(got, t.want, t.what);
    assert.deepEqual(t.decisions, before, `${t.what}: the input decisions are unchanged`);
  }
});

test("cacheBytesAfter: what the cache holds once the removed files are gone", () => {
  const table: [string, number, GcDecision[], number][] = [
    ["nothing removed", 420, [], 420],
    ["a base and its sidecar", 420, [base("a", { action: "delete", reason: "Evicted" }), sidecar("a", { action: "delete", reason: "BaseRemoved" })], 310],
    ["unknown files never count", 420, [{ name: "stray", kind: "unknown", action: "report", reason: "UnknownName", message: "Left alone", bytes: 1_000 }], 420],
  ];
  for (const [what, before, removed, want] of table) assert.equal(cacheBytesAfter(before, removed), want, what);
});
