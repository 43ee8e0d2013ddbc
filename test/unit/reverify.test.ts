import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { corruptMessage, planReverify, type StoredBaseFacts } from "../../src/core/reverify.js";

const H = 3_600_000;
const NOW = 1_800_000_000_000;
const base = (name: string, over: Partial<StoredBaseFacts> = {}, lastVerifiedAt = NOW - H): StoredBaseFacts => ({
  base: name,
  sizeBytes: 100,
  mtimeMs: 5,
  corrupt: false,
  recorded: { rawSha256: "ab".repeat(32), sizeBytes: 100, mtimeMs: 5, lastVerifiedAt },
  ...over,
});

test("a base is due once the interval passed since its last verification, the longest unverified first", () => {
  const plan = planReverify([base("b", {}, NOW - 30 * H), base("a", {}, NOW - 2 * H), base("c", {}, NOW - 25 * H)], NOW, 24 * H);
  assert.deepEqual(plan.due, [{ base: "b", why: "due" }, { base: "c", why: "due" }]);
  assert.equal(plan.nextInMs, 22 * H, "a is due in 22h");
});

test("a changed size or mtime is due at once, before the periodic ones, also with periodic checks off", () => {
  const bases = [base("old", {}, NOW - 30 * H), base("grown", { sizeBytes: 101 }), base("touched", { mtimeMs: 6 })];
  assert.deepEqual(planReverify(bases, NOW, 24 * H).due, [{ base: "grown", why: "changed" }, { base: "touched", why: "changed" }, { base: "old", why: "due" }]);
  const off = planReverify(bases, NOW, 0);
  assert.deepEqual(off.due.map((d) => d.why), ["changed", "changed"]);
  assert.equal(off.nextInMs, undefined);
});

test("bases with no recorded digest, or already found corrupt, are never hashed", () => {
  const { recorded: _r, ...bare } = base("bare", { sizeBytes: 1 });
  const plan = planReverify([bare, base("bad", { corrupt: true, sizeBytes: 7 }, 0)], NOW, H);
  assert.deepEqual(plan, { due: [] });
});

test("a clock that went back counts the last verification as just made", () => {
  const plan = planReverify([base("future", {}, NOW + 5 * H)], NOW, 24 * H);
  assert.deepEqual(plan, { due: [], nextInMs: 24 * H });
});

test("every unchanged recorded base is either due or waits less than the interval; nothing is due twice", () => {
  fc.assert(
    fc.property(fc.array(fc.record({ age: fc.integer({ min: -H, max: 100 * H }), changed: fc.boolean(), corrupt: fc.boolean() }), { maxLength: 20 }), fc.integer({ min: 1, max: 48 * H }), (rows, interval) => {
      const bases = rows.map((r, i) => base(`b${i}`, { corrupt: r.corrupt, ...(r.changed ? { mtimeMs: 9 } : {}) }, NOW - r.age));
      const plan = planReverify(bases, NOW, interval);
      assert.equal(new Set(plan.due.map((d) => d.base)).size, plan.due.length);
      for (const [i, r] of rows.entries()) {
        const due = plan.due.find((d) => d.base === `b${i}`);
        if (r.corrupt) assert.equal(due, undefined);
        else if (r.changed) assert.equal(due?.why, "changed");
        else assert.equal(due !== undefined, Math.max(0, r.age) >= interval);
      }
      if (plan.nextInMs !== undefined) assert.ok(plan.nextInMs > 0 && plan.nextInMs <= interval);
    }),
  );
});

test("the message names the path and both digests, shortened", () => {
  const m = corruptMessage({ path: "/var/lib/basecache/_base/abc", expected: "1".repeat(64), actual: "2".repeat(64) });
  assert.match(m, /"\/var\/lib\/basecache\/_base\/abc"/);
  assert.match(m, /111111111111…/);
  assert.match(m, /222222222222…/);
});
