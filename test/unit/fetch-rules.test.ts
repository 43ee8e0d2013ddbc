import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  AnnouncementChain,
  CachedBaseChain,
  ChecksumChain,
  ConversionSpaceChain,
  downloadCap,
  evaluateAnnouncement,
  evaluateCachedBase,
  evaluateConversionSpace,
  evaluateServedAs,
  refuseAnnouncedNoRoom,
  refuseAnnouncedTooLarge,
  refuseCachedDigest,
  refuseCachedTooLarge,
  refuseChecksumMismatch,
  refuseCompressionBomb,
  refuseNoRoomToConvert,
  refuseWebPageAsRaw,
  ServedAsChain,
  type Expectation,
} from "../../src/core/fetch-rules.js";
import type { Verdict } from "../../src/core/verdict.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const a = "a".repeat(64);
const b = "b".repeat(64);
const sha256 = (hex: string): Expectation => ({ checksum: { algorithm: "sha256", hex } });
const sha512 = (hex: string): Expectation => ({ checksum: { algorithm: "sha512", hex } });
const outcome = (v: Verdict<string>): string => (v.accept ? "accept" : v.reason);

describe("refuseCachedDigest", () => {
  const table: [string, Parameters<typeof refuseCachedDigest>[0], Expectation, string][] = [
    ["no checksum asked", { sizeBytes: 1, sha256: a }, {}, "accept"],
    ["the same sha256", { sizeBytes: 1, sha256: a }, sha256(a), "accept"],
    ["another sha256", { sizeBytes: 1, sha256: a }, sha256(b), "checksum-mismatch"],
    ["a sidecar without the digest (an older base) is taken at its word", { sizeBytes: 1 }, sha256(b), "accept"],
    ["sha512 compared with the sidecar's sha512", { sizeBytes: 1, sha256: a, sha512: "c".repeat(128) }, sha512("d".repeat(128)), "checksum-mismatch"],
    ["sha512 with only a sha256 recorded", { sizeBytes: 1, sha256: a }, sha512("d".repeat(128)), "accept"],
  ];
  for (const [label, base, want, expected] of table) test(label, () => assert.equal(outcome(refuseCachedDigest(base, want)), expected));
  test("the message names both digests", () => {
    const v = refuseCachedDigest({ sizeBytes: 1, sha256: a }, sha256(b));
    assert.ok(!v.accept && v.message.includes(a) && v.message.includes(b));
  });
});

describe("refuseCachedTooLarge", () => {
  const table: [string, number, Expectation, string][] = [
    ["no limit", 100 * GiB, {}, "accept"],
    ["at the limit", GiB, { maxVirtualSize: GiB }, "accept"],
    ["above the limit", GiB + 1, { maxVirtualSize: GiB }, "too-large"],
  ];
  for (const [label, size, want, expected] of table) test(label, () => assert.equal(outcome(refuseCachedTooLarge({ sizeBytes: size }, want)), expected));
});

describe("evaluateCachedBase: the chain", () => {
  test("runs the digest rule before the size rule", () => assert.deepEqual(CachedBaseChain, [refuseCachedDigest, refuseCachedTooLarge]));
  test("both wrong: checksum-mismatch wins", () => assert.equal(outcome(evaluateCachedBase({ sizeBytes: 2 * GiB, sha256: a }, { ...sha256(b), maxVirtualSize: GiB })), "checksum-mismatch"));
});

describe("refuseAnnouncedTooLarge", () => {
  const cap = downloadCap(GiB);
  const table: [string, number | undefined, Expectation, string][] = [
    ["no size announced", undefined, { maxVirtualSize: GiB }, "accept"],
    ["no limit", 100 * GiB, {}, "accept"],
    ["at the cap for the limit", cap, { maxVirtualSize: GiB }, "accept"],
    ["one byte above the cap", cap + 1, { maxVirtualSize: GiB }, "too-large"],
  ];
  for (const [label, total, want, expected] of table) {
    test(label, () => assert.equal(outcome(refuseAnnouncedTooLarge(total === undefined ? {} : { totalBytes: total }, want)), expected));
  }
  test("the cap leaves room for metadata above the virtual size", () => assert.ok(downloadCap(GiB) > GiB * 1.05));
});

describe("refuseAnnouncedNoRoom", () => {
  const table: [string, number | undefined, number | undefined, string][] = [
    ["no size announced", undefined, 0, "accept"],
    ["free space unknown", 10 * GiB, undefined, "accept"],
    ["fits exactly", GiB, GiB, "accept"],
    ["one byte too many", GiB + 1, GiB, "disk-full"],
  ];
  for (const [label, total, free, expected] of table) {
    const a: Parameters<typeof refuseAnnouncedNoRoom>[0] = { ...(total === undefined ? {} : { totalBytes: total }), ...(free === undefined ? {} : { freeBytes: free }) };
    test(label, () => assert.equal(outcome(refuseAnnouncedNoRoom(a)), expected));
  }
  test("whole bytes in the message", () => {
    const v = refuseAnnouncedNoRoom({ totalBytes: 2 * GiB, freeBytes: GiB });
    assert.ok(!v.accept && v.message === `it is ${2 * GiB} bytes (2.0 GiB) and the base dir's filesystem has ${GiB} bytes (1.0 GiB) free`, v.accept ? "" : v.message);
  });
});

describe("evaluateAnnouncement: the chain", () => {
  test("order: the image's size before the node's room", () => assert.deepEqual(AnnouncementChain, [refuseAnnouncedTooLarge, refuseAnnouncedNoRoom]));
  test("too large and no room: too-large (the image's fault) wins", () => {
    assert.equal(outcome(evaluateAnnouncement({ totalBytes: 10 * GiB, freeBytes: MiB }, { maxVirtualSize: GiB })), "too-large");
  });
});

describe("refuseChecksumMismatch", () => {
  const table: [string, Parameters<typeof refuseChecksumMismatch>[0], Expectation, string][] = [
    ["no checksum asked", { sha256: a }, {}, "accept"],
    ["sha256 matches", { sha256: a }, sha256(a), "accept"],
    ["sha256 differs", { sha256: a }, sha256(b), "checksum-mismatch"],
    ["sha512 matches", { sha256: a, sha512: "c".repeat(128) }, sha512("c".repeat(128)), "accept"],
    ["sha512 not computed", { sha256: a }, sha512("c".repeat(128)), "checksum-mismatch"],
  ];
  for (const [label, d, want, expected] of table) test(label, () => assert.equal(outcome(refuseChecksumMismatch(d, want)), expected));
  test("is the whole checksum chain", () => assert.deepEqual(ChecksumChain, [refuseChecksumMismatch]));
});

describe("refuseWebPageAsRaw", () => {
  const table: [string, Parameters<typeof refuseWebPageAsRaw>[0], string][] = [
    ["raw served as octet-stream", { format: "raw", contentType: "application/octet-stream" }, "accept"],
    ["raw with no content type", { format: "raw" }, "accept"],
    ["raw served as text/html", { format: "raw", contentType: "text/html; charset=utf-8" }, "not-a-disk"],
    ["raw served as TEXT/HTML", { format: "raw", contentType: "TEXT/HTML" }, "not-a-disk"],
    ["a qcow2 mislabelled as text/html is judged by its magic", { format: "qcow2", contentType: "text/html" }, "accept"],
    ["text/htmlx is not html", { format: "raw", contentType: "text/htmlx" }, "accept"],
    ["text/plain", { format: "raw", contentType: "text/plain" }, "accept"],
  ];
  for (const [label, d, expected] of table) test(label, () => assert.equal(outcome(refuseWebPageAsRaw(d)), expected));
  test("is the whole served-as chain", () => {
    assert.deepEqual(ServedAsChain, [refuseWebPageAsRaw]);
    assert.equal(outcome(evaluateServedAs({ format: "raw", contentType: "text/html" })), "not-a-disk");
  });
});

describe("refuseCompressionBomb and refuseNoRoomToConvert", () => {
  const table: [string, { dataBytes: number; fileSize: number; freeBytes: number }, string, string][] = [
    ["fits", { dataBytes: GiB, fileSize: MiB, freeBytes: 2 * GiB }, "accept", "accept"],
    ["fits exactly", { dataBytes: GiB, fileSize: MiB, freeBytes: GiB }, "accept", "accept"],
    ["does not fit, 100x expansion", { dataBytes: 100 * MiB, fileSize: MiB, freeBytes: MiB }, "accept", "disk-full"],
    ["does not fit, above 100x expansion", { dataBytes: 100 * MiB + 1, fileSize: MiB, freeBytes: MiB }, "compression-bomb", "disk-full"],
    ["expands 1000x but fits", { dataBytes: 1000 * MiB, fileSize: MiB, freeBytes: 2000 * MiB }, "accept", "accept"],
  ];
  for (const [label, s, bomb, room] of table) {
    test(label, () => {
      assert.equal(outcome(refuseCompressionBomb(s)), bomb);
      assert.equal(outcome(refuseNoRoomToConvert(s)), room);
    });
  }
  test("the chain: a bomb is named as such, before disk-full", () => {
    assert.deepEqual(ConversionSpaceChain, [refuseCompressionBomb, refuseNoRoomToConvert]);
    assert.equal(outcome(evaluateConversionSpace({ dataBytes: GiB, fileSize: MiB, freeBytes: MiB })), "compression-bomb");
    assert.equal(outcome(evaluateConversionSpace({ dataBytes: 2 * MiB, fileSize: MiB, freeBytes: MiB })), "disk-full");
  });
});
