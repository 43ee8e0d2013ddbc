import { test } from "node:test";
import assert from "node:assert/strict";
import { FetchFailReasons } from "../../src/core/fetch-fail-reasons.js";
import { EarlyRejectReasons, isRejectReason, RejectReasonRows, RejectReasons } from "../../src/core/reject-reasons.js";

test("each refusal reason is a distinct kebab-case string", () => {
  assert.equal(new Set(RejectReasons).size, RejectReasons.length);
  for (const r of RejectReasons) assert.match(r, /^[a-z]+(-[a-z]+)*$/, r);
});

test("each refusal reason says what it means in one line, in the house wording", () => {
  for (const { reason, doc } of RejectReasonRows) {
    assert.match(doc, /^[A-Z][^\n]*[^.\s]$/, reason);
    assert.ok(doc.length <= 120, `${reason}: a one-line doc`);
  }
});

test("a refusal is never spelled like a source failure, so a Failed entry's reason tells which it was", () => {
  const fetch = new Set<string>(FetchFailReasons);
  for (const r of RejectReasons) assert.ok(!fetch.has(r), r);
});

test("the reasons refused before the download are the ones the header alone decides", () => {
  assert.deepEqual([...EarlyRejectReasons].sort(), ["backing-file", "bad-extent", "data-file", "encrypted", "resource-limit", "too-large", "unknown-feature", "unsupported-format"]);
});

test("isRejectReason knows exactly the listed reasons", () => {
  for (const r of RejectReasons) assert.equal(isRejectReason(r), true, r);
  const table: [string, unknown][] = [
    ["a source failure", "http-status"],
    ["a CamelCase condition reason", "BackingFileRefused"],
    ["another case", "Backing-File"],
    ["a disk failure", "disk-full"],
    ["a key every object has", "toString"],
    ["a prototype key", "__proto__"],
    ["the empty string", ""],
    ["a non-string", 1],
    ["nothing", undefined],
  ];
  for (const [what, x] of table) assert.equal(isRejectReason(x), false, what);
});
