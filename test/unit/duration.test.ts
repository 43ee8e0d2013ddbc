import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { formatAge, formatDuration, isDuration, parseDuration } from "../../src/core/duration.js";

test("parses hours, minutes and seconds in that order", () => {
  const table: [string, number][] = [
    ["24h", 24 * 3600_000],
    ["90m", 90 * 60_000],
    ["1h30m", 90 * 60_000],
    ["45s", 45_000],
    ["1h2m3s", 3723_000],
    ["0s", 0],
  ];
  for (const [text, ms] of table) assert.equal(parseDuration(text), ms, text);
});

test("refuses empty text, other units, wrong order and signs", () => {
  for (const text of ["", "h", "1d", "30m1h", "-1h", "1.5h", " 1h", "1h ", "1H", "10ms"]) {
    assert.throws(() => parseDuration(text), RangeError, text);
    assert.equal(isDuration(text), false, text);
  }
});

test("formats canonically, and parsing the format gives back the seconds", () => {
  assert.equal(formatDuration(90 * 60_000), "1h30m");
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(24 * 3600_000), "24h");
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10 ** 12 }), (ms) => {
      assert.equal(parseDuration(formatDuration(ms)), Math.floor(ms / 1000) * 1000);
    }),
  );
});

test("formatAge writes seconds, minutes and seconds, or hours and minutes", () => {
  const table: [number, string][] = [
    [0, "0s"],
    [59_999, "59s"],
    [60_000, "1m0s"],
    [200_000, "3m20s"],
    [3_599_000, "59m59s"],
    [3_600_000, "1h0m"],
    [25 * 3_600_000 + 61_000, "25h1m"],
  ];
  for (const [ms, text] of table) assert.equal(formatAge(ms), text, String(ms));
});
