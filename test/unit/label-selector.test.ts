import { test } from "node:test";
import assert from "node:assert/strict";
import type { LabelSelector } from "../../src/core/api-records.js";
import { selectorMatches, validateSelector } from "../../src/core/label-selector.js";

const labels = { zone: "a", tier: "gpu", empty: "" };

test("evaluates matchLabels and matchExpressions together", () => {
  const table: [string, LabelSelector | undefined, boolean][] = [
    ["absent selector matches every node", undefined, true],
    ["empty selector matches every node", {}, true],
    ["matchLabels equal", { matchLabels: { zone: "a" } }, true],
    ["matchLabels differ", { matchLabels: { zone: "b" } }, false],
    ["matchLabels key missing", { matchLabels: { rack: "1" } }, false],
    ["matchLabels empty value present", { matchLabels: { empty: "" } }, true],
    ["In hits", { matchExpressions: [{ key: "tier", operator: "In", values: ["cpu", "gpu"] }] }, true],
    ["In misses", { matchExpressions: [{ key: "tier", operator: "In", values: ["cpu"] }] }, false],
    ["In on missing key", { matchExpressions: [{ key: "rack", operator: "In", values: ["1"] }] }, false],
    ["NotIn on other value", { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["cpu"] }] }, true],
    ["NotIn on same value", { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["gpu"] }] }, false],
    ["NotIn on missing key", { matchExpressions: [{ key: "rack", operator: "NotIn", values: ["1"] }] }, true],
    ["Exists", { matchExpressions: [{ key: "empty", operator: "Exists" }] }, true],
    ["Exists missing", { matchExpressions: [{ key: "rack", operator: "Exists" }] }, false],
    ["DoesNotExist", { matchExpressions: [{ key: "rack", operator: "DoesNotExist" }] }, true],
    ["DoesNotExist present", { matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }, false],
    ["all terms must hold", { matchLabels: { zone: "a" }, matchExpressions: [{ key: "tier", operator: "In", values: ["cpu"] }] }, false],
    ["In with no values selects nothing", { matchExpressions: [{ key: "zone", operator: "In", values: [] }] }, false],
    ["inherited keys are not labels", { matchExpressions: [{ key: "toString", operator: "Exists" }] }, false],
  ];
  for (const [name, selector, want] of table) assert.equal(selectorMatches(selector, labels), want, name);
});

test("an unknown operator selects nothing and is reported invalid", () => {
  const selector = { matchExpressions: [{ key: "zone", operator: "Matches" as "In", values: ["a"] }] };
  assert.equal(selectorMatches(selector, labels), false);
  assert.equal(validateSelector(selector).length, 1);
});

test("validation reports values that do not fit the operator", () => {
  assert.deepEqual(validateSelector({ matchExpressions: [{ key: "a", operator: "Exists" }, { key: "b", operator: "In", values: ["x"] }] }), []);
  assert.equal(validateSelector({ matchExpressions: [{ key: "a", operator: "In" }] }).length, 1);
  assert.equal(validateSelector({ matchExpressions: [{ key: "a", operator: "DoesNotExist", values: ["x"] }] }).length, 1);
});
