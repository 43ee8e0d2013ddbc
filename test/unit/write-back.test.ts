import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DefaultWriteBackBytes,
  IdleWriteBack,
  planWriteBack,
  syncLanded,
  syncStarted,
  unsyncedBytes,
  writeBackPolicy,
  writeIssued,
  writeLanded,
  type WriteBackPolicy,
  type WriteBackState,
} from "../../src/core/write-back.js";

const MiB = 1024 * 1024;
const policy: WriteBackPolicy = { startBytes: 32 * MiB, limitBytes: 64 * MiB };
const state = (over: Partial<WriteBackState> = {}): WriteBackState => ({ ...IdleWriteBack, ...over });

describe("writeBackPolicy", () => {
  test("starts at the interval and holds writes at twice it", () => {
    assert.deepEqual(writeBackPolicy(DefaultWriteBackBytes), { startBytes: 32 * MiB, limitBytes: 64 * MiB });
    assert.deepEqual(writeBackPolicy(1), { startBytes: 1, limitBytes: 2 });
  });
  test("0 turns write-back off", () => {
    assert.equal(writeBackPolicy(0), undefined);
  });
  test("refuses a negative, fractional or unsafe interval", () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) assert.throws(() => writeBackPolicy(bad), RangeError);
  });
});

describe("planWriteBack", () => {
  test("below the interval nothing happens", () => {
    assert.deepEqual(planWriteBack(state({ landed: 32 * MiB - 1 }), policy, MiB), { startSync: false, wait: false });
  });
  test("at the interval a sync starts and the write goes on", () => {
    assert.deepEqual(planWriteBack(state({ landed: 32 * MiB }), policy, MiB), { startSync: true, wait: false });
    assert.deepEqual(planWriteBack(state({ landed: 32 * MiB }), policy, 0), { startSync: true, wait: false });
  });
  test("one sync at a time: landed bytes wait for the next one", () => {
    assert.deepEqual(planWriteBack(state({ landed: 40 * MiB, syncing: 10 * MiB, syncInFlight: true }), policy, MiB), { startSync: false, wait: false });
  });
  test("a write past the bound waits for the sync in flight", () => {
    assert.deepEqual(planWriteBack(state({ landed: 30 * MiB, syncing: 34 * MiB, syncInFlight: true }), policy, MiB), { startSync: false, wait: true });
  });
  test("exactly at the bound the write goes on", () => {
    assert.deepEqual(planWriteBack(state({ landed: 30 * MiB, syncing: 33 * MiB, syncInFlight: true }), policy, MiB), { startSync: false, wait: false });
  });
  test("past the bound with no sync in flight, one starts early, below the interval, and the write waits for it", () => {
    assert.deepEqual(planWriteBack(state({ landed: 8 * MiB, writing: 56 * MiB }), policy, MiB), { startSync: true, wait: true });
  });
  test("past the bound with nothing landed yet, the write waits for the writes in flight", () => {
    assert.deepEqual(planWriteBack(state({ writing: 64 * MiB }), policy, MiB), { startSync: false, wait: true });
  });
  test("a write larger than the bound alone goes through: holding it could not help", () => {
    assert.deepEqual(planWriteBack(IdleWriteBack, policy, 100 * MiB), { startSync: false, wait: false });
  });
  test("a sync in flight that covers nothing (a checkpoint over holes) still holds a write past the bound", () => {
    assert.deepEqual(planWriteBack(state({ writing: 64 * MiB, syncInFlight: true }), policy, MiB), { startSync: false, wait: true });
  });
});

describe("state changes", () => {
  test("a sync covers what landed, not what is being written", () => {
    const s = syncStarted(state({ writing: 3, landed: 5, syncing: 0 }));
    assert.deepEqual(s, { writing: 3, landed: 0, syncing: 5, syncInFlight: true });
    assert.deepEqual(syncLanded(s), { writing: 3, landed: 0, syncing: 0, syncInFlight: false });
  });
  test("a landed write counts the bytes that reached the file, not its zeros", () => {
    const s = writeLanded(writeIssued(IdleWriteBack, 10), 10, 4);
    assert.deepEqual(s, { writing: 0, landed: 4, syncing: 0, syncInFlight: false });
    assert.equal(unsyncedBytes(s), 4);
  });
});

/** One step of a simulated writer: issue a block, or let a write or the sync land. */
type Action = { kind: "write"; bytes: number; zeroFraction: number } | { kind: "land-write"; pick: number } | { kind: "land-sync" };

const actions = fc.array(
  fc.oneof(
    fc.record({ kind: fc.constant("write" as const), bytes: fc.integer({ min: 1, max: 3 * MiB }), zeroFraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
    fc.record({ kind: fc.constant("land-write" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("land-sync" as const) }),
  ),
  { maxLength: 400 },
);
const policies = fc.integer({ min: 1, max: 16 * MiB }).map((n) => writeBackPolicy(n) as WriteBackPolicy);

/**
 * Runs a writer that follows the policy through any order of events the file system may produce, checking at
 * every step that the bound holds, that a held write always has an event to wait for, and that no byte is lost
 * or counted twice between the counters.
 */
function simulate(p: WriteBackPolicy, steps: Action[]): { syncs: number; holds: number } {
  let s: WriteBackState = IdleWriteBack;
  const writes: { issued: number; written: number }[] = [];
  let durable = 0;
  let total = 0;
  let syncCovers = 0;
  let syncs = 0;
  let holds = 0;
  let held: { bytes: number; zeroFraction: number } | undefined;
  const check = () => {
    for (const v of [s.writing, s.landed, s.syncing]) assert.ok(v >= 0, "a counter went negative");
    assert.equal(s.writing, writes.reduce((a, w) => a + w.issued, 0));
    if (!s.syncInFlight) assert.equal(s.syncing, 0);
    assert.equal(durable + s.landed + s.syncing + writes.reduce((a, w) => a + w.written, 0), total, "bytes lost or counted twice");
    // With the policy followed no sync stays owed: one is in flight whenever the interval has landed.
    if (!s.syncInFlight) assert.ok(s.landed < p.startBytes, "a sync was owed and not started");
  };
  const startSyncIfAsked = (bytes: number) => {
    const step = planWriteBack(s, p, bytes);
    if (step.startSync) {
      assert.equal(s.syncInFlight, false, "a second sync started while one is in flight");
      syncCovers = s.landed;
      s = syncStarted(s);
      syncs++;
    }
    return step;
  };
  // Offers the held block (or a new one) to the policy: issues it unless it must wait.
  const tryWrite = (w: { bytes: number; zeroFraction: number }) => {
    const step = startSyncIfAsked(w.bytes);
    const again = step.startSync ? planWriteBack(s, p, w.bytes) : step;
    if (again.wait) {
      assert.ok(s.syncInFlight || s.writing > 0, "held with nothing in flight to wait for: the writer would hang");
      if (held === undefined) holds++;
      held = w;
      return;
    }
    held = undefined;
    const before = unsyncedBytes(s);
    const written = Math.floor(w.bytes * (1 - w.zeroFraction));
    s = writeIssued(s, w.bytes);
    writes.push({ issued: w.bytes, written });
    total += written;
    assert.ok(unsyncedBytes(s) <= p.limitBytes || before === 0, `unsynced ${unsyncedBytes(s)} past the bound ${p.limitBytes}`);
  };
  const event = () => {
    // After any landing, the writer asks again: first for a sync, then for the held block.
    if (held) tryWrite(held);
    else startSyncIfAsked(0);
  };
  for (const a of steps) {
    if (a.kind === "write") {
      if (held) continue; // the download is paused while a block is held
      tryWrite(a);
    } else if (a.kind === "land-write") {
      if (writes.length === 0) continue;
      const [w] = writes.splice(a.pick % writes.length, 1);
      if (!w) continue;
      s = writeLanded(s, w.issued, w.written);
      event();
    } else {
      if (!s.syncInFlight) continue;
      assert.equal(s.syncing, syncCovers, "the sync covers exactly what had landed when it started");
      durable += s.syncing;
      s = syncLanded(s);
      event();
    }
    check();
  }
  // Liveness: letting everything in flight land always frees a held block.
  for (let guard = 0; held && guard < 10_000; guard++) {
    const w = writes.shift();
    if (w) s = writeLanded(s, w.issued, w.written);
    else if (s.syncInFlight) {
      durable += s.syncing;
      s = syncLanded(s);
    } else assert.fail("held with nothing in flight");
    event();
    check();
  }
  assert.equal(held, undefined, "a held write was never let through");
  return { syncs, holds };
}

describe("a writer following the policy", () => {
  test("never has more than the bound unsynced, never hangs, loses no byte, whatever the order of events", () => {
    fc.assert(fc.property(policies, actions, (p, steps) => void simulate(p, steps)), { numRuns: 500 });
  });
  test("on a disk slower than the network it holds writes instead of letting dirty bytes grow", () => {
    // The network delivers 1 MiB blocks as fast as it can; the disk lands a write only every few blocks and a sync rarely.
    const steps: Action[] = [];
    for (let i = 0; i < 2000; i++) {
      steps.push({ kind: "write", bytes: MiB, zeroFraction: 0 });
      if (i % 3 === 0) steps.push({ kind: "land-write", pick: 0 });
      if (i % 97 === 0) steps.push({ kind: "land-sync" });
    }
    const { syncs, holds } = simulate(policy, steps);
    assert.ok(holds > 0, "the slow disk never held a write");
    assert.ok(syncs > 0);
  });
  test("a disk keeping up is never held", () => {
    const steps: Action[] = [];
    for (let i = 0; i < 1000; i++) steps.push({ kind: "write", bytes: MiB, zeroFraction: 0 }, { kind: "land-write", pick: 0 }, { kind: "land-sync" });
    const { syncs, holds } = simulate(policy, steps);
    assert.equal(holds, 0);
    // One sync per interval of landed bytes: 1000 MiB at 32 MiB.
    assert.equal(syncs, Math.floor(1000 / 32));
  });
  test("zero blocks left as holes cost no sync", () => {
    const steps: Action[] = [];
    for (let i = 0; i < 500; i++) steps.push({ kind: "write", bytes: MiB, zeroFraction: 1 }, { kind: "land-write", pick: 0 });
    assert.deepEqual(simulate(policy, steps), { syncs: 0, holds: 0 });
  });
});
