import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { DiskFullError, FetchError, ForeignFileError, ImageRejectedError, ToolError } from "../../src/lib/errors.js";
import { ExitCode, exitCodeFor } from "../../src/lib/exit.js";
import { describeOutcome, errorFromLockOutcome, lockOutcomeFor } from "../../src/image/outcome.js";
import { parseByteQuantity } from "../../src/core/quantity.js";
import { parseFetchFlags } from "../../src/cli/commands/fetch.js";
import { ConfigError } from "../../src/lib/errors.js";

describe("outcomes and exit codes", () => {
  const table: [string, unknown, string, string, number][] = [
    ["rejected", new ImageRejectedError("backing-file", "m"), "rejected", "backing-file", ExitCode.Rejected],
    ["http error", new FetchError("http-status", "m", { status: 404, retryable: false }), "failed", "http-status", ExitCode.SourceFailed],
    ["bad redirect", new FetchError("bad-redirect", "m", { retryable: false }), "failed", "bad-redirect", ExitCode.SourceFailed],
    ["disk full", new DiskFullError("m"), "failed", "disk-full", ExitCode.DiskFull],
    ["tool failure", new ToolError("m", { tool: "qemu-img", exitCode: 1, timedOut: false, stderrTail: "" }), "failed", "tool-failed", ExitCode.Internal],
    ["a planted file at one of our names", new ForeignFileError("/b/x.lock", "a FIFO"), "failed", "foreign-file", ExitCode.Usage],
    ["anything else", new Error("boom"), "failed", "internal", ExitCode.Internal],
    ["a non-error", "boom", "failed", "internal", ExitCode.Internal],
  ];
  for (const [label, err, status, reason, code] of table) {
    test(label, () => {
      const o = describeOutcome(err);
      assert.equal(o.status, status);
      assert.equal(o.reason, reason);
      assert.equal(exitCodeFor(err), code);
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
});

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

describe("basecache fetch flags", () => {
  const ok = ["--base-dir", "/b", "--id", "x", "--url", "http://h/x"];
  test("parses the contract's flags", () => {
    const f = parseFetchFlags([...ok, "--checksum", `sha256:${"a".repeat(64)}`, "--max-virtual-size", "1Gi", "--json"], {});
    assert.ok(f !== "help");
    assert.equal(f.json, true);
    assert.equal(f.request.maxVirtualSize, 1024 ** 3);
    assert.deepEqual(f.request.source, { http: { url: "http://h/x" } });
  });
  test("takes --registry-image instead of --url", () => {
    const f = parseFetchFlags(["--base-dir", "/b", "--id", "x", "--registry-image", "r.local/os/debian:12"], {});
    assert.ok(f !== "help");
    assert.deepEqual(f.request.source, { registry: { image: "r.local/os/debian:12" } });
  });
  const bad: [string, string[]][] = [
    ["no base dir", ["--id", "x", "--url", "http://h/x"]],
    ["no id", ["--base-dir", "/b", "--url", "http://h/x"]],
    ["no source", ["--base-dir", "/b", "--id", "x"]],
    ["two sources", [...ok, "--registry-image", "r/x:1"]],
    ["a file URL", ["--base-dir", "/b", "--id", "x", "--url", "file:///etc/passwd"]],
    ["a bad checksum", [...ok, "--checksum", "md5:00"]],
    ["a bad size", [...ok, "--max-virtual-size", "lots"]],
    ["an unknown flag", [...ok, "--force"]],
    ["a positional", [...ok, "extra"]],
  ];
  for (const [label, argv] of bad) test(`refuses ${label} as a usage error`, () => assert.throws(() => parseFetchFlags(argv, {}), ConfigError));
  test("refuses a bad tuning variable", () => assert.throws(() => parseFetchFlags(ok, { BASECACHE_FETCH_ATTEMPTS: "0" }), ConfigError));
});
