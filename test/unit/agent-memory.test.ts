import { test } from "node:test";
import assert from "node:assert/strict";
import { DefaultRetryPolicy, recordFailure } from "../../src/core/agent-memory.js";

const NOW = 1_800_000_000_000;

test("a rejection waits for a new definition; a failed source retries after backoff counted per definition", () => {
  const at = { now: NOW, generation: 2, definitionKey: "one", jitter: 0, policy: DefaultRetryPolicy };
  const table: { what: string; prior?: Parameters<typeof recordFailure>[0]; kind: "rejected" | "failed"; definitionKey: string; want: object }[] = [
    { what: "first rejection", kind: "rejected", definitionKey: "one", want: { kind: "rejected", reason: "r", message: "m", attempts: 1, definitionKey: "one", generation: 2 } },
    { what: "first failure", kind: "failed", definitionKey: "one", want: { kind: "failed", reason: "r", attempts: 1, definitionKey: "one", generation: 2, retryAt: NOW + 2_500 } },
    {
      what: "second failure of the same definition",
      prior: { kind: "failed", reason: "r", message: "m", attempts: 1, definitionKey: "one", generation: 2, retryAt: NOW },
      kind: "failed",
      definitionKey: "one",
      want: { attempts: 2, retryAt: NOW + 5_000 },
    },
    {
      what: "a failure of a new definition starts over",
      prior: { kind: "failed", reason: "r", message: "m", attempts: 4, definitionKey: "one", generation: 2, retryAt: NOW },
      kind: "failed",
      definitionKey: "two",
      want: { attempts: 1, definitionKey: "two", retryAt: NOW + 2_500 },
    },
  ];
  for (const t of table) {
    const got = recordFailure(t.prior, { kind: t.kind, reason: "r", message: "m" }, { ...at, definitionKey: t.definitionKey });
    for (const [k, v] of Object.entries(t.want)) assert.deepEqual(got[k as keyof typeof got], v, `${t.what}: ${k}`);
    if (t.kind === "failed") assert.match(got.message, /^m \(attempt \d+; next at \d{4}-/, t.what);
  }
});

test("backoff grows with attempts of the same definition and restarts for a new one", () => {
  const at = (definitionKey: string) => ({ now: NOW, generation: 1, definitionKey, jitter: 0.5, policy: DefaultRetryPolicy });
  const out = { kind: "failed" as const, reason: "unreachable", message: "x" };
  let f = recordFailure(undefined, out, at("one"));
  const delays = [f.retryAt! - NOW];
  for (let i = 0; i < 12; i++) {
    f = recordFailure(f, out, at("one"));
    delays.push(f.retryAt! - NOW);
  }
  for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!);
  assert.ok(delays.at(-1)! <= DefaultRetryPolicy.maxMs);
  assert.equal(f.attempts, 13);
  assert.equal(recordFailure(f, out, at("two")).attempts, 1);
});
