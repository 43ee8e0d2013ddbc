import { test } from "node:test";
import assert from "node:assert/strict";
import { DefaultWritePolicy, canonical, decideStatusWrite, spaceFreed } from "../../src/core/progress.js";
import type { NodeImageCacheStatus, NodeImageStatus } from "../../src/core/api-records.js";

const T = 1_800_000_000_000;

function status(images: Partial<NodeImageStatus>[], over: Partial<NodeImageCacheStatus> = {}): NodeImageCacheStatus {
  return {
    observedGeneration: 1,
    images: images.map((i, n) => ({ id: `img${n}`, base: "b".repeat(40), phase: "Downloading", ...i })),
    conditions: [{ type: "Ready", status: "False", reason: "ImagesPending", message: "0 of 1 images ready", lastTransitionTime: "2026-01-01T00:00:00.000Z" }],
    ...over,
  };
}

test("the first status is written at once", () => {
  assert.deepEqual(decideStatusWrite(status([{}]), {}, T), { action: "write" });
});

test("nothing is written when nothing changed, however long ago the last write was", () => {
  const s = status([{ bytesDone: 5 }]);
  assert.deepEqual(decideStatusWrite(structuredClone(s), { written: s, writtenAt: T - 3_600_000 }, T), { action: "none" });
});

test("key order and undefined fields do not count as a change", () => {
  const a = { observedGeneration: 1, images: [{ id: "x", base: "b", phase: "Ready" as const, reason: undefined }] };
  const b = { images: [{ phase: "Ready" as const, base: "b", id: "x" }], observedGeneration: 1 };
  assert.equal(canonical(a), canonical(b));
  assert.deepEqual(decideStatusWrite(a, { written: b, writtenAt: T }, T), { action: "none" });
});

test("progress alone is written at most once per progress interval", () => {
  const written = status([{ bytesDone: 5, bytesTotal: 100 }], { disk: { cacheBytes: 5, filesystemBytes: 1000, filesystemFreeBytes: 900 } });
  const table: [string, NodeImageCacheStatus][] = [
    ["bytes", status([{ bytesDone: 50, bytesTotal: 100 }], { disk: written.disk! })],
    ["disk usage", status([{ bytesDone: 5, bytesTotal: 100 }], { disk: { cacheBytes: 50, filesystemBytes: 1000, filesystemFreeBytes: 850 } })],
    ["Downloading to Converting", status([{ phase: "Converting", bytesDone: 100, bytesTotal: 100 }], { disk: written.disk! })],
  ];
  for (const [what, wanted] of table) {
    assert.deepEqual(decideStatusWrite(wanted, { written, writtenAt: T - 3_000 }, T), { action: "wait", afterMs: 7_000 }, what);
    assert.deepEqual(decideStatusWrite(wanted, { written, writtenAt: T - 10_000 }, T), { action: "write" }, what);
  }
});

test("an outcome or a spec change is written within the urgent delay", () => {
  const written = status([{ bytesDone: 5, bytesTotal: 100 }]);
  const table: [string, NodeImageCacheStatus][] = [
    ["Ready", status([{ phase: "Ready", virtualSize: 100 }])],
    ["Failed", status([{ phase: "Failed", reason: "backing-file", message: "no" }])],
    ["new image", status([{ bytesDone: 5, bytesTotal: 100 }, { phase: "Pending" }])],
    ["image removed", status([])],
    ["generation", status([{ bytesDone: 5, bytesTotal: 100 }], { observedGeneration: 2 })],
  ];
  for (const [what, wanted] of table) {
    assert.deepEqual(decideStatusWrite(wanted, { written, writtenAt: T - 300 }, T), { action: "wait", afterMs: DefaultWritePolicy.urgentDelayMs - 300 }, what);
    assert.deepEqual(decideStatusWrite(wanted, { written, writtenAt: T - 1_000 }, T), { action: "write" }, what);
    assert.deepEqual(decideStatusWrite(wanted, { written, writtenAt: T - 20_000 }, T), { action: "write" }, what);
  }
});

test("a changed failure message is urgent but a changing in-flight message is progress", () => {
  const written = status([{ phase: "Failed", reason: "http-status", message: "attempt 1" }]);
  assert.equal(decideStatusWrite(status([{ phase: "Failed", reason: "http-status", message: "attempt 2" }]), { written, writtenAt: T - 2_000 }, T).action, "write");
  const pending = status([{ phase: "Pending", message: "a" }]);
  assert.equal(decideStatusWrite(status([{ phase: "Pending", message: "b" }]), { written: pending, writtenAt: T - 2_000 }, T).action, "wait");
});

test("a clock that went backwards waits a full interval instead of writing in a burst", () => {
  const written = status([{ bytesDone: 1 }]);
  assert.deepEqual(decideStatusWrite(status([{ bytesDone: 2 }]), { written, writtenAt: T + 5_000 }, T), { action: "wait", afterMs: 10_000 });
});

test("a change confined to disk usage is written only when the cache's bytes or free bytes moved enough", () => {
  const MiB = 2 ** 20;
  const GiB = 2 ** 30;
  const disk = (cacheBytes: number, filesystemBytes: number, filesystemFreeBytes: number) => ({ cacheBytes, filesystemBytes, filesystemFreeBytes });
  const small = disk(5 * GiB, 50 * GiB, 20 * GiB); // threshold 1 % of the filesystem: 0.5 GiB
  const large = disk(5 * GiB, 1000 * GiB, 400 * GiB); // threshold capped at 1 GiB
  const progress = { action: "wait", afterMs: 7_000 };
  const urgent = { action: "wait", afterMs: DefaultWritePolicy.urgentDelayMs - 300 };
  const table: { what: string; written: NodeImageCacheStatus; wanted: NodeImageCacheStatus; ago: number; want: unknown }[] = [
    { what: "small drift on a small filesystem", written: status([{}], { disk: small }), wanted: status([{}], { disk: disk(5 * GiB, 50 * GiB, 20 * GiB - 400 * MiB) }), ago: 60_000, want: { action: "none" } },
    { what: "drift of 1 % on a small filesystem", written: status([{}], { disk: small }), wanted: status([{}], { disk: disk(5 * GiB, 50 * GiB, 20 * GiB + 512 * MiB) }), ago: 3_000, want: progress },
    { what: "drift of 1 % on a large filesystem, under the cap", written: status([{}], { disk: large }), wanted: status([{}], { disk: disk(5 * GiB, 1000 * GiB, 400 * GiB - 900 * MiB) }), ago: 60_000, want: { action: "none" } },
    { what: "drift past the cap on a large filesystem", written: status([{}], { disk: large }), wanted: status([{}], { disk: disk(5 * GiB, 1000 * GiB, 400 * GiB - GiB) }), ago: 3_000, want: progress },
    { what: "drift past the cap, interval passed", written: status([{}], { disk: large }), wanted: status([{}], { disk: disk(5 * GiB, 1000 * GiB, 402 * GiB) }), ago: 10_000, want: { action: "write" } },
    { what: "cache bytes grew by one byte", written: status([{}], { disk: large }), wanted: status([{}], { disk: disk(5 * GiB + 1, 1000 * GiB, 400 * GiB) }), ago: 3_000, want: progress },
    { what: "cache bytes fell: GC freed space", written: status([{}], { disk: large }), wanted: status([{}], { disk: disk(4 * GiB, 1000 * GiB, 401 * GiB) }), ago: 300, want: urgent },
    { what: "cache bytes fell by one byte, delay passed", written: status([{}], { disk: large }), wanted: status([{}], { disk: disk(5 * GiB - 1, 1000 * GiB, 400 * GiB) }), ago: 1_000, want: { action: "write" } },
    { what: "filesystem resized", written: status([{}], { disk: small }), wanted: status([{}], { disk: disk(5 * GiB, 60 * GiB, 20 * GiB) }), ago: 3_000, want: progress },
    { what: "disk usage first reported", written: status([{}]), wanted: status([{}], { disk: small }), ago: 3_000, want: progress },
    { what: "small drift with an outcome", written: status([{}], { disk: small }), wanted: status([{ phase: "Ready", virtualSize: 100 }], { disk: disk(5 * GiB, 50 * GiB, 20 * GiB - 1) }), ago: 300, want: urgent },
    { what: "small drift with an outcome, delay passed", written: status([{}], { disk: small }), wanted: status([{ phase: "Failed", reason: "http-status" }], { disk: disk(5 * GiB, 50 * GiB, 20 * GiB - 1) }), ago: 1_000, want: { action: "write" } },
    { what: "small drift with bytes progress", written: status([{ bytesDone: 1 }], { disk: small }), wanted: status([{ bytesDone: 2 }], { disk: disk(5 * GiB, 50 * GiB, 20 * GiB - 1) }), ago: 3_000, want: progress },
  ];
  for (const { what, written, wanted, ago, want } of table) {
    assert.deepEqual(decideStatusWrite(wanted, { written, writtenAt: T - ago }, T), want, what);
  }
});

test("free bytes drift is measured from the last written status, so slow drift adds up", () => {
  const written = status([{}], { disk: { cacheBytes: 10, filesystemBytes: 100_000, filesystemFreeBytes: 50_000 } });
  const after = (free: number) => decideStatusWrite(status([{}], { disk: { cacheBytes: 10, filesystemBytes: 100_000, filesystemFreeBytes: free } }), { written, writtenAt: T - 60_000 }, T);
  // Each step of 500 bytes is under the 1 % threshold on its own; two of them since the last write are not.
  assert.deepEqual(after(49_500), { action: "none" });
  assert.deepEqual(after(49_000), { action: "write" });
});

test("the drift threshold is taken from the policy", () => {
  const written = status([{}], { disk: { cacheBytes: 10, filesystemBytes: 100_000, filesystemFreeBytes: 50_000 } });
  const wanted = status([{}], { disk: { cacheBytes: 10, filesystemBytes: 100_000, filesystemFreeBytes: 49_990 } });
  const state = { written, writtenAt: T - 60_000 };
  assert.deepEqual(decideStatusWrite(wanted, state, T), { action: "none" });
  assert.deepEqual(decideStatusWrite(wanted, state, T, { ...DefaultWritePolicy, freeBytesDriftMaxBytes: 10 }), { action: "write" });
  assert.deepEqual(decideStatusWrite(wanted, state, T, { ...DefaultWritePolicy, freeBytesDriftFraction: 0 }), { action: "write" });
});

test("spaceFreed: only a drop of the cache's own bytes against the written status", () => {
  const d = (cacheBytes: number, filesystemFreeBytes = 50) => ({ cacheBytes, filesystemBytes: 100, filesystemFreeBytes });
  const table: [string, ReturnType<typeof d> | undefined, ReturnType<typeof d> | undefined, boolean][] = [
    ["fell", d(9), d(10), true],
    ["same", d(10), d(10), false],
    ["grew", d(11), d(10), false],
    ["free bytes alone rose", d(10, 90), d(10), false],
    ["nothing written yet", d(9), undefined, false],
    ["no usage wanted", undefined, d(10), false],
  ];
  for (const [what, wanted, written, want] of table) assert.equal(spaceFreed(wanted, written), want, what);
});
