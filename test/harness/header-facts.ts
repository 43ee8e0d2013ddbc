/** What core/image-header.ts's inspectHeader makes of a whole file's bytes, for the header unit tests. */
import assert from "node:assert/strict";
import { inspectHeader, type HeaderFacts } from "../../src/core/image-header.js";

/** The facts of `bytes` as the first `size` bytes of a file; fails the test when the parser asks for more. */
export function headerFacts(bytes: Buffer, size = bytes.length): HeaderFacts {
  const r = inspectHeader({ size, chunks: [{ offset: 0, data: bytes }] });
  assert.ok(r.done, `parser asked for more bytes: ${JSON.stringify(r.done ? {} : r.need)}`);
  return r.facts;
}
