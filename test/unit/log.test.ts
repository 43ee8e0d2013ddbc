import { test } from "node:test";
import assert from "node:assert/strict";
import { serializeError } from "../../src/lib/log.js";
import { FetchError, ImageRejectedError, ToolError } from "../../src/lib/errors.js";
import { KubeApiError, toKubeApiError } from "../../src/kube/client.js";

const expected: [string, Error, Record<string, unknown>][] = [
  [
    "a refused image",
    new ImageRejectedError("backing-file", 'Refused image "x": it names a backing file'),
    { type: "ImageRejectedError", code: "IMAGE_REJECTED", message: 'Refused image "x": it names a backing file', reason: "backing-file" },
  ],
  [
    "an API refusal",
    new KubeApiError("Cannot list nodes: HTTP 429 TooManyRequests", 429, "TooManyRequests"),
    { type: "KubeApiError", code: "KUBE_API", message: "Cannot list nodes: HTTP 429 TooManyRequests", reason: "TooManyRequests", status: 429 },
  ],
  [
    "a failed source, with the network error behind it",
    new FetchError("unreachable", 'Cannot fetch "http://h/x": connection refused', { retryable: true }, { cause: new Error("connect ECONNREFUSED 127.0.0.1:1") }),
    { type: "FetchError", code: "FETCH_FAILED", message: 'Cannot fetch "http://h/x": connection refused', reason: "unreachable", details: { retryable: true }, cause: "connect ECONNREFUSED 127.0.0.1:1" },
  ],
  [
    "a failed tool",
    new ToolError("Cannot run qemu-img info: qemu-img exited 1", { tool: "qemu-img", exitCode: 1, timedOut: false, stderrTail: "bad" }),
    { type: "ToolError", code: "TOOL_FAILED", message: "Cannot run qemu-img info: qemu-img exited 1", details: { tool: "qemu-img", exitCode: 1, timedOut: false, stderrTail: "bad" } },
  ],
];
for (const [what, err, fields] of expected) {
  test(`${what} logs as one line of fields, without a stack`, () => assert.deepEqual(serializeError(err), fields));
}

test("a watch ended by a 429 logs without a stack once wrapped as the informer wraps it", () => {
  const raw = Object.assign(new Error("Too Many Requests"), { statusCode: 429 });
  const out = serializeError(toKubeApiError(raw, "Cannot watch nodes")) as Record<string, unknown>;
  assert.equal(out.stack, undefined);
  assert.equal(out.status, 429);
});

test("an unexpected error keeps its stack", () => {
  const out = serializeError(new TypeError("Cannot read properties of undefined")) as Record<string, unknown>;
  assert.equal(out.type, "TypeError");
  assert.match(String(out.stack), /TypeError: Cannot read properties of undefined\n\s+at /);
});
