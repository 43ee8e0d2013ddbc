import { test } from "node:test";
import assert from "node:assert/strict";
import { orderLeastRecentlyUsed, planEvictions, validateBudget, type EvictionCandidate, type GcBudget } from "../../src/core/watermarks.js";

const budget: GcBudget = { limitBytes: 1000, highWatermark: 0.9, lowWatermark: 0.5 };

function candidate(base: string, over: Partial<EvictionCandidate> = {}): EvictionCandidate {
  return { base, bytes: 100, unusedSince: 0, mtimeMs: 0, ...over };
}

test("a cache budget needs a positive limit and 0 <= low <= high <= 1", () => {
  const ok = { limitBytes: 100, highWatermark: 0.9, lowWatermark: 0.8 };
  assert.deepEqual(validateBudget(ok), ok);
  assert.deepEqual(validateBudget({ limitBytes: 1, highWatermark: 1, lowWatermark: 0 }), { limitBytes: 1, highWatermark: 1, lowWatermark: 0 });
  for (const bad of [
    { ...ok, limitBytes: 0 },
    { ...ok, limitBytes: 1.5 },
    { ...ok, highWatermark: 0 },
    { ...ok, highWatermark: 1.1 },
    { ...ok, lowWatermark: 0.95 },
    { ...ok, lowWatermark: -0.1 },
    { ...ok, highWatermark: Number.NaN },
  ]) {
    assert.throws(() => validateBudget(bad), RangeError, JSON.stringify(bad));
  }
});

test("least recently used first: unused longest, then the oldest file, then by name", () => {
  const order = orderLeastRecentlyUsed([
    candidate("d", { unusedSince: 2 }),
    candidate("c", { unusedSince: 1, mtimeMs: 5 }),
    candidate("b", { unusedSince: 1, mtimeMs: 3 }),
    candidate("a", { unusedSince: 1, mtimeMs: 3 }),
  ]);
  assert.deepEqual(order.map((c) => c.base), ["a", "b", "c", "d"]);
});

test("evictions: each case of usage, candidates and a reserve", () => {
  const three = [candidate("old", { unusedSince: 1, bytes: 300 }), candidate("mid", { unusedSince: 2, bytes: 300 }), candidate("new", { unusedSince: 3, bytes: 300 })];
  const table: { what: string; used: number; candidates: EvictionCandidate[]; reserve?: number; want: Partial<ReturnType<typeof planEvictions>> }[] = [
    { what: "at the high mark nothing goes", used: 900, candidates: three, want: { evict: [], afterBytes: 900, overBudget: false, fits: true } },
    { what: "above it, down to the low mark", used: 1000, candidates: three, want: { evict: ["old", "mid"], afterBytes: 400, overBudget: false, fits: true } },
    { what: "too few candidates leave it over budget", used: 1000, candidates: three.slice(0, 1), want: { evict: ["old"], afterBytes: 700, overBudget: false, fits: true } },
    { what: "nothing to evict is over budget", used: 1000, candidates: [], want: { evict: [], afterBytes: 1000, overBudget: true, fits: true } },
    { what: "a reserve pushes over the high mark", used: 800, candidates: three, reserve: 200, want: { evict: ["old", "mid"], afterBytes: 200, fits: true } },
    { what: "a reserve that cannot fit evicts nothing", used: 1000, candidates: three.slice(0, 1), reserve: 900, want: { evict: [], afterBytes: 1000, overBudget: true, fits: false } },
  ];
  for (const t of table) {
    const got = planEvictions(budget, t.used, t.candidates, t.reserve);
    assert.deepEqual({ ...got, ...t.want }, got, t.what);
    assert.deepEqual([got.highBytes, got.lowBytes], [900, 500], t.what);
  }
});
