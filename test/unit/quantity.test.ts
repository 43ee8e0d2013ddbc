import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseByteQuantity } from "../../src/core/quantity.js";

describe("sizes", () => {
  const table: [string, number][] = [
    ["1073741824", 1073741824],
    ["1Gi", 1024 ** 3],
    ["500M", 500_000_000],
    ["1.5Gi", 1.5 * 1024 ** 3],
    ["0", 0],
    ["1k", 1000],
    ["0.1", 1],
  ];
  for (const [text, bytes] of table) test(`"${text}" is ${bytes} bytes`, () => assert.equal(parseByteQuantity(text), bytes));
  for (const bad of ["", "1GB", "-1Gi", "1 Gi", "Gi", "1e9", "100Ei"]) test(`"${bad}" is refused`, () => assert.throws(() => parseByteQuantity(bad), RangeError));
});
