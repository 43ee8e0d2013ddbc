import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { DiskFullError, FetchError, ForeignFileError, ImageRejectedError, ToolError } from "../../src/lib/errors.js";
import { ExitCode, exitCodeFor } from "../../src/lib/exit.js";

describe("exit codes", () => {
  const table: [string, unknown, number][] = [
    ["rejected", new ImageRejectedError("backing-file", "m"), ExitCode.Rejected],
    ["http error", new FetchError("http-status", "m", { status: 404, retryable: false }), ExitCode.SourceFailed],
    ["bad redirect", new FetchError("bad-redirect", "m", { retryable: false }), ExitCode.SourceFailed],
    ["disk full", new DiskFullError("m"), ExitCode.DiskFull],
    ["tool failure", new ToolError("m", { tool: "qemu-img", exitCode: 1, timedOut: false, stderrTail: "" }), ExitCode.Internal],
    ["a planted file at one of our names", new ForeignFileError("/b/x.lock", "a FIFO"), ExitCode.Usage],
    ["anything else", new Error("boom"), ExitCode.Internal],
    ["a non-error", "boom", ExitCode.Internal],
  ];
  for (const [label, err, code] of table) test(`${label} exits ${code}`, () => assert.equal(exitCodeFor(err), code));
});
