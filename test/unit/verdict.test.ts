import { test } from "node:test";
import assert from "node:assert/strict";
import { Accept, firstRefusal, refuse, type Verdict } from "../../src/core/verdict.js";

const odd = (n: number): Verdict<"odd"> => (n % 2 === 1 ? refuse("odd", `${n} is odd`) : Accept);
const big = (n: number): Verdict<"big"> => (n > 10 ? refuse("big", `${n} is above 10`) : Accept);

test("an empty chain accepts", () => assert.deepEqual(firstRefusal([], 1), Accept));
test("every rule accepting accepts", () => assert.deepEqual(firstRefusal<[number], string>([odd, big], 4), Accept));
test("the first refusal wins, in chain order", () => {
  assert.deepEqual(firstRefusal<[number], string>([odd, big], 11), { accept: false, reason: "odd", message: "11 is odd" });
  assert.deepEqual(firstRefusal<[number], string>([big, odd], 11), { accept: false, reason: "big", message: "11 is above 10" });
});
test("later rules do not run after a refusal", () => {
  let ran = false;
  const spy = (): Verdict<"x"> => {
    ran = true;
    return Accept;
  };
  firstRefusal<[number], string>([odd, spy], 3);
  assert.equal(ran, false);
});
