import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { ImageSpec, VersionRecord } from "../../src/core/api-records.js";
import { definitionHash } from "../../src/core/image-definition.js";
import { baseNameFor, baseNameOfImage, classifyBaseFileName, versionedBaseName } from "../../src/core/names.js";
import { keptVersionRecords, MaxPreviousVersions, nextVersionRecord, pinImageReference, pinVersions, planVersionChecks, trackedDefinition, updateIntervalMs, versionedFetchOf, versionNameOf } from "../../src/core/versions.js";

const t0 = Date.parse("2026-12-04T10:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

function tracked(id: string, interval = "1h", extra: Partial<ImageSpec> = {}): ImageSpec {
  return { id, source: { http: { url: `https://images.example/${id}.qcow2` } }, updatePolicy: { interval }, ...extra };
}
function record(image: ImageSpec, checkedAtMs: number, name = "aaaaaaaaaaaa", extra: Partial<VersionRecord> = {}): VersionRecord {
  return { id: image.id, definition: trackedDefinition(image), current: { name, resolvedAt: iso(checkedAtMs), etag: '"1"' }, checkedAt: iso(checkedAtMs), ...extra };
}

test("a pinned image is never checked; a tracked one is due at once, then one interval after its last check", () => {
  const pinned: ImageSpec = { id: "p", source: { http: { url: "https://images.example/p.qcow2" } } };
  const img = tracked("t", "1h");
  assert.deepEqual(planVersionChecks([pinned, img], [], t0), { due: ["t"], nextInMs: undefined });
  const rec = record(img, t0);
  assert.deepEqual(planVersionChecks([pinned, img], [rec], t0 + 10 * 60_000), { due: [], nextInMs: 50 * 60_000 });
  assert.deepEqual(planVersionChecks([img], [rec], t0 + 60 * 60_000).due, ["t"]);
});

test("a record of another definition, or without a check time, makes the image due", () => {
  const img = tracked("t");
  const old = record(tracked("t", "1h", { source: { http: { url: "https://elsewhere.example/t.qcow2" } } }), t0);
  assert.deepEqual(planVersionChecks([img], [old], t0 + 1000).due, ["t"]);
  const { checkedAt: _c, ...noTime } = record(img, t0);
  assert.deepEqual(planVersionChecks([img], [noTime], t0 + 1000).due, ["t"]);
});

test("a clock that went back waits no longer than one interval; intervals below the minimum are raised to it", () => {
  const img = tracked("t", "1h");
  assert.equal(planVersionChecks([img], [record(img, t0)], t0 - 5 * 3600_000).nextInMs, 3600_000);
  assert.equal(updateIntervalMs(tracked("t", "5s")), 60_000);
  assert.equal(updateIntervalMs({ updatePolicy: { interval: "not a duration" } }), undefined);
});

test("version names are 12 hex, equal for equal pins and different for any changed field", () => {
  const base = { etag: '"a"', lastModified: "Tue, 01 Dec 2026 10:00:00 GMT" };
  assert.match(versionNameOf(base), /^[0-9a-f]{12}$/);
  assert.equal(versionNameOf(base), versionNameOf({ ...base }));
  for (const changed of [{ ...base, etag: '"b"' }, { ...base, lastModified: "Wed, 02 Dec 2026 10:00:00 GMT" }, { digest: "sha256:" + "1".repeat(64) }, { checksum: "sha256:" + "2".repeat(64) }]) {
    assert.notEqual(versionNameOf(changed), versionNameOf(base));
  }
  // signedBy says who vouched, not which bytes: the same checksum signed by another key is the same version.
  assert.equal(versionNameOf({ checksum: "sha256:" + "2".repeat(64), signedBy: "A" }), versionNameOf({ checksum: "sha256:" + "2".repeat(64), signedBy: "B" }));
});

test("a new pin becomes current and the old one moves to previous; the same pin keeps its version", () => {
  const img = tracked("t");
  const first = nextVersionRecord(undefined, img, { ok: true, pin: { etag: '"1"' } }, iso(t0));
  assert.equal(first.current?.name, versionNameOf({ etag: '"1"' }));
  assert.equal(first.current?.resolvedAt, iso(t0));
  assert.equal(first.previous, undefined);
  const again = nextVersionRecord(first, img, { ok: true, pin: { etag: '"1"' } }, iso(t0 + 3600_000));
  assert.deepEqual(again.current, first.current);
  assert.equal(again.checkedAt, iso(t0 + 3600_000));
  const second = nextVersionRecord(again, img, { ok: true, pin: { etag: '"2"' } }, iso(t0 + 7200_000));
  assert.equal(second.current?.etag, '"2"');
  assert.equal(second.current?.resolvedAt, iso(t0 + 7200_000));
  assert.deepEqual(second.previous, [first.current!.name]);
});

test("a failed check keeps the current version, says why and counts as checked", () => {
  const img = tracked("t");
  const first = nextVersionRecord(undefined, img, { ok: true, pin: { etag: '"1"' } }, iso(t0));
  const failed = nextVersionRecord(first, img, { ok: false, message: "origin said 503" }, iso(t0 + 3600_000));
  assert.deepEqual(failed.current, first.current);
  assert.equal(failed.message, "origin said 503");
  assert.equal(failed.checkedAt, iso(t0 + 3600_000));
  assert.deepEqual(planVersionChecks([img], [failed], t0 + 3600_000 + 1000).due, []);
  const recovered = nextVersionRecord(failed, img, { ok: true, pin: { etag: '"1"' } }, iso(t0 + 7200_000));
  assert.equal(recovered.message, undefined);
});

test("a record of an older definition is not carried into the new one", () => {
  const old = nextVersionRecord(undefined, tracked("t", "1h", { source: { http: { url: "https://old.example/t" } } }), { ok: true, pin: { etag: '"1"' } }, iso(t0));
  const next = nextVersionRecord(old, tracked("t"), { ok: true, pin: { etag: '"2"' } }, iso(t0 + 1000));
  assert.equal(next.previous, undefined);
  assert.equal(next.definition, trackedDefinition(tracked("t")));
});

test("property: previous holds distinct names, never the current one, newest first, at most MaxPreviousVersions", () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h"), fc.constant(undefined)), { maxLength: 40 }), (etags) => {
      const img = tracked("t");
      let rec: VersionRecord | undefined;
      const seen: string[] = [];
      etags.forEach((etag, i) => {
        const result = etag === undefined ? ({ ok: false, message: "down" } as const) : ({ ok: true, pin: { etag } } as const);
        rec = nextVersionRecord(rec, img, result, iso(t0 + i * 1000));
        if (etag !== undefined) {
          const name = versionNameOf({ etag });
          if (seen[0] !== name) seen.unshift(name);
        }
      });
      const prev = rec?.previous ?? [];
      assert.ok(prev.length <= MaxPreviousVersions);
      assert.equal(new Set(prev).size, prev.length);
      if (rec?.current) assert.ok(!prev.includes(rec.current.name));
      // Newest first: previous is the order in which names stopped being current, deduplicated.
      const expected = [...new Set(seen.slice(1))].filter((n) => n !== rec?.current?.name).slice(0, MaxPreviousVersions);
      assert.deepEqual(prev, expected);
    }),
  );
});

test("nodes get a tracked image pinned to its current version; one not checked yet waits; pinned images pass as they are", () => {
  const pinned: ImageSpec = { id: "p", source: { registry: { image: "registry.example/vm/p:1" } } };
  const a = tracked("a");
  const b = tracked("b");
  const rec = record(a, t0, "0123456789ab");
  const { images, waiting } = pinVersions([pinned, a, b], [rec]);
  assert.deepEqual(images, [pinned, { ...a, version: rec.current }]);
  assert.deepEqual(waiting, ["b"]);
  // A record for an older definition of the id does not pin the new one.
  const changed = tracked("a", "2h");
  assert.deepEqual(pinVersions([changed], [rec]), { images: [], waiting: ["a"] });
});

test("each version is its own definition and its own base; a pinned image keeps Nova's name", () => {
  const a = tracked("a");
  const v1 = { ...a, version: { name: "111111111111", resolvedAt: iso(t0) } };
  const v2 = { ...a, version: { name: "222222222222", resolvedAt: iso(t0) } };
  assert.notEqual(definitionHash(v1), definitionHash(v2));
  assert.notEqual(definitionHash(a), definitionHash({ ...a, updatePolicy: undefined }));
  assert.equal(baseNameOfImage({ id: "a" }), baseNameFor("a"));
  assert.equal(baseNameOfImage(v1), versionedBaseName("a", "111111111111"));
  assert.notEqual(baseNameOfImage(v1), baseNameOfImage(v2));
  assert.equal(classifyBaseFileName(baseNameOfImage(v1)).kind, "base");
  // The version's own fields do not change which definition is tracked.
  assert.equal(trackedDefinition(v1), trackedDefinition(a));
});

test("records of ids no longer tracked are dropped, the rest kept in spec order", () => {
  const a = tracked("a");
  const b = tracked("b");
  const gone = tracked("gone");
  const recs = [record(gone, t0), record(b, t0), record(a, t0)];
  assert.deepEqual(keptVersionRecords([a, { id: "p", source: { http: { url: "https://x.example/p" } } }, b], recs).map((r) => r.id), ["a", "b"]);
});

test("a node fetches exactly the version found: a tag becomes its digest, a SUMS entry the checksum, a validator a precondition", () => {
  const digest = `sha256:${"d".repeat(64)}`;
  const v = (pin: object) => ({ name: "0123456789ab", resolvedAt: iso(t0), ...pin });
  const reg: ImageSpec = { id: "r", source: { registry: { image: "registry.local:5000/os/debian:12" } }, updatePolicy: { interval: "1h" } };
  assert.deepEqual(versionedFetchOf({ ...reg, version: v({ digest }) }), { source: { registry: { image: `registry.local:5000/os/debian:12@${digest}` } } });
  assert.equal(pinImageReference("registry.local:5000/os/debian@" + digest, digest), `registry.local:5000/os/debian@${digest}`);
  const sums = tracked("s", "1h", { checksumFrom: { url: "https://images.example/SHA256SUMS" } });
  const checksum = `sha256:${"a".repeat(64)}`;
  assert.deepEqual(versionedFetchOf({ ...sums, version: v({ checksum, signedBy: "ABCD" }) }), { source: sums.source, checksum });
  const plain = tracked("p");
  assert.deepEqual(versionedFetchOf({ ...plain, version: v({ etag: '"x1"' }) }), { source: plain.source, preconditions: { "if-match": '"x1"' } });
  const lm = "Wed, 01 Jan 2025 00:00:00 GMT";
  assert.deepEqual(versionedFetchOf({ ...plain, version: v({ lastModified: lm }) }), { source: plain.source, preconditions: { "if-unmodified-since": lm } });
  // A pinned image, and a tracked one the controller has not pinned yet, fetch as written.
  const fixed: ImageSpec = { id: "f", source: plain.source, checksum };
  assert.deepEqual(versionedFetchOf(fixed), { source: plain.source, checksum });
  assert.deepEqual(versionedFetchOf(sums), { source: sums.source, checksumFrom: sums.checksumFrom });
});
