import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConvertEnv, ConvertSizing, parseConvertOverrides, planConvertLimits } from "../../src/core/convert-limits.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test("the wall-clock bound is a base plus the data at the slow rate plus the holes at the fast one", () => {
  const table: [string, number, number, number][] = [
    ["an empty 1 GiB disk", GiB, 0, 60 + 2],
    ["1 GiB of data in a 2 GiB disk", 2 * GiB, GiB, 60 + 128 + 2],
    ["3 GiB of data in a 20 GiB disk", 20 * GiB, 3 * GiB, 60 + 384 + 34],
    ["data bytes above the virtual size count as the virtual size", GiB, 2 * GiB, 60 + 128],
  ];
  for (const [what, virtualSize, dataBytes, seconds] of table) {
    const l = planConvertLimits({ virtualSize, dataBytes });
    assert.equal(l.timeoutMs, seconds * 1000, what);
    assert.equal(l.cpuSeconds, seconds, what);
    assert.equal(l.addressSpaceBytes, ConvertSizing.addressSpaceBytes, what);
  }
});

test("the bounds grow with the work and never fall below the base", () => {
  fc.assert(
    fc.property(fc.nat({ max: 2 ** 44 }), fc.nat({ max: 2 ** 44 }), fc.nat({ max: 2 ** 40 }), (virtualSize, dataBytes, more) => {
      const a = planConvertLimits({ virtualSize, dataBytes });
      const b = planConvertLimits({ virtualSize: virtualSize + more, dataBytes: dataBytes + more });
      assert.ok(a.timeoutMs >= ConvertSizing.baseSeconds * 1000);
      assert.ok(b.timeoutMs >= a.timeoutMs);
      assert.ok(Number.isInteger(a.cpuSeconds) && a.timeoutMs === a.cpuSeconds * 1000);
    }),
  );
});

test("overrides replace the sizing", () => {
  const l = planConvertLimits({ virtualSize: 20 * GiB, dataBytes: GiB }, { addressSpaceBytes: 100 * MiB, seconds: 2 });
  assert.deepEqual(l, { addressSpaceBytes: 100 * MiB, cpuSeconds: 2, timeoutMs: 2000 });
});

test("the environment overrides are whole numbers, or a message says what is wrong", () => {
  assert.deepEqual(parseConvertOverrides({}), {});
  assert.deepEqual(parseConvertOverrides({ [ConvertEnv.memory]: "", [ConvertEnv.seconds]: "" }), {});
  assert.deepEqual(parseConvertOverrides({ [ConvertEnv.memory]: String(100 * MiB), [ConvertEnv.seconds]: "5" }), { addressSpaceBytes: 100 * MiB, seconds: 5 });
  const bad: [string, Record<string, string>][] = [
    ["a unit suffix", { [ConvertEnv.memory]: "1Gi" }],
    ["too little memory to start qemu-img", { [ConvertEnv.memory]: "1024" }],
    ["zero seconds", { [ConvertEnv.seconds]: "0" }],
    ["a fraction", { [ConvertEnv.seconds]: "1.5" }],
  ];
  for (const [what, env] of bad) {
    const r = parseConvertOverrides(env);
    assert.ok("error" in r && r.error.includes(Object.keys(env)[0] ?? "?"), what);
  }
});
