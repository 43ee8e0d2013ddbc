import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { DiskFullError, FetchError, ForeignFileError, ImageRejectedError, ToolError } from "../../src/lib/errors.js";
import { describeOutcome, errorFromLockOutcome, lockOutcomeFor } from "../../src/image/outcome.js";

describe("how a fetch ended", () => {
  const table: [string, unknown, string, string][] = [
    ["rejected", new ImageRejectedError("backing-file", "m"), "rejected", "backing-file"],
    ["http error", new FetchError("http-status", "m", { status: 404, retryable: false }), "failed", "http-status"],
    ["bad redirect", new FetchError("bad-redirect", "m", { retryable: false }), "failed", "bad-redirect"],
    ["disk full", new DiskFullError("m"), "failed", "disk-full"],
    ["tool failure", new ToolError("m", { tool: "qemu-img", exitCode: 1, timedOut: false, stderrTail: "" }), "failed", "tool-failed"],
    ["a planted file at one of our names", new ForeignFileError("/b/x.lock", "a FIFO"), "failed", "foreign-file"],
    ["anything else", new Error("boom"), "failed", "internal"],
    ["a non-error", "boom", "failed", "internal"],
  ];
  for (const [label, err, status, reason] of table) {
    test(label, () => {
      const o = describeOutcome(err);
      assert.equal(o.status, status);
      assert.equal(o.reason, reason);
    });
  }
  test("a waiter of the same request rebuilds the holder's refusal with the same class and reason", () => {
    const e = errorFromLockOutcome(lockOutcomeFor(new ImageRejectedError("too-large", "big"), "k1"), "k1");
    assert.ok(e instanceof ImageRejectedError);
    assert.equal(e.reason, "too-large");
    assert.ok(errorFromLockOutcome(lockOutcomeFor(new DiskFullError("x"), "k1"), "k1") instanceof DiskFullError);
    assert.ok(errorFromLockOutcome(lockOutcomeFor(new FetchError("http-status", "x", { retryable: false }), "k1"), "k1") instanceof FetchError);
  });
  test("a waiter of another request never takes the holder's verdict", () => {
    for (const err of [new ImageRejectedError("checksum-mismatch", "m"), new DiskFullError("x"), new FetchError("http-status", "x", { retryable: false })]) {
      assert.equal(errorFromLockOutcome(lockOutcomeFor(err, "k1"), "k2"), undefined);
    }
    // An outcome that names no request (left by GC, cleanup, or an older basecache) is no one's verdict.
    assert.equal(errorFromLockOutcome({ status: "rejected", reason: "corrupt", message: "m", errorName: "ImageRejectedError" }, "k1"), undefined);
  });
  test("a holder that stopped for another reason makes the waiter try itself", () => {
    assert.equal(errorFromLockOutcome(lockOutcomeFor(new Error("Received SIGTERM"), "k1"), "k1"), undefined);
    assert.equal(errorFromLockOutcome(lockOutcomeFor(new ForeignFileError("/b/x", "a FIFO"), "k1"), "k1"), undefined);
  });
  test("a holder's reason this version does not know makes the waiter try itself", () => {
    assert.equal(errorFromLockOutcome({ status: "rejected", reason: "from-the-future", message: "m", errorName: "ImageRejectedError", request: "k1" }, "k1"), undefined);
    assert.equal(errorFromLockOutcome({ status: "failed", reason: "from-the-future", message: "m", errorName: "FetchError", request: "k1" }, "k1"), undefined);
  });
});
