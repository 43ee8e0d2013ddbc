import { test } from "node:test";
import assert from "node:assert/strict";
import { FetchFailReasonRows, FetchFailReasons, isFetchFailReason } from "../../src/core/fetch-fail-reasons.js";

test("each source-failure reason is a distinct kebab-case string", () => {
  assert.equal(new Set(FetchFailReasons).size, FetchFailReasons.length);
  for (const r of FetchFailReasons) assert.match(r, /^[a-z]+(-[a-z]+)*$/, r);
});

test("each source-failure reason says what it means in one line, in the house wording", () => {
  for (const { reason, doc } of FetchFailReasonRows) {
    assert.match(doc, /^[A-Z][^\n]*[^.\s]$/, reason);
    assert.ok(doc.length <= 120, `${reason}: a one-line doc`);
  }
});

test("isFetchFailReason knows exactly the listed reasons", () => {
  for (const r of FetchFailReasons) assert.equal(isFetchFailReason(r), true, r);
  const table: [string, unknown][] = [
    ["a refusal", "backing-file"],
    ["a CamelCase condition reason", "FetchFailed"],
    ["a disk failure", "disk-full"],
    ["what describeOutcome reports for a tool", "tool-failed"],
    ["a key every object has", "constructor"],
    ["the empty string", ""],
    ["a non-string", null],
  ];
  for (const [what, x] of table) assert.equal(isFetchFailReason(x), false, what);
});
