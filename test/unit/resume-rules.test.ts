import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  decideResume,
  evaluatePartialAnswer,
  ifRangeValidator,
  MinResumeBytes,
  parseResumeRecord,
  refuseBeyondLength,
  refuseForeignOwner,
  refuseNoValidator,
  refuseOtherBase,
  refuseOtherDefinition,
  refuseOtherSource,
  refusePartShorter,
  refuseTooLittle,
  refuseUnpackedSource,
  ResumeChain,
  type ResumeFacts,
  type ResumeRecord,
  type ResumeWant,
} from "../../src/core/resume-rules.js";

const MiB = 1024 ** 2;
const base = "a".repeat(40);
const want = (over: Partial<ResumeWant> = {}): ResumeWant => ({ base, request: "k1", url: "http://origin/img.qcow2", unpack: "none", ...over });
const record = (over: Partial<ResumeRecord> = {}): ResumeRecord => ({
  version: 1,
  base,
  request: "k1",
  url: "http://origin/img.qcow2",
  etag: '"v1"',
  lastModified: "Wed, 01 Jan 2025 00:00:00 GMT",
  contentLength: 100 * MiB,
  bytes: 32 * MiB,
  ...over,
});
const facts = (r: unknown, over: Partial<ResumeFacts> = {}): ResumeFacts => ({
  recordText: typeof r === "string" ? r : JSON.stringify(r),
  part: { size: 40 * MiB, uid: 1000 },
  recordUid: 1000,
  selfUid: 1000,
  ...over,
});
const outcome = (f: ResumeFacts, w: ResumeWant = want()): string => {
  const d = decideResume(f, w);
  return d.resume ? `resume@${d.offset}` : d.reason;
};

describe("decideResume: resume or restart, and why", () => {
  const { etag: _e, ...noEtag } = record();
  const table: [string, ResumeFacts, ResumeWant, string][] = [
    ["a valid record for the same definition resumes at its durable bytes", facts(record()), want(), `resume@${32 * MiB}`],
    ["a .part exactly as long as the record resumes", facts(record(), { part: { size: 32 * MiB, uid: 1000 } }), want(), `resume@${32 * MiB}`],
    ["only Last-Modified resumes too", facts(noEtag), want(), `resume@${32 * MiB}`],
    ["a registry blob of the same digest resumes", facts(record({ expectedDigest: "sha256:ab" })), want({ expectedDigest: "sha256:ab" }), `resume@${32 * MiB}`],
    ["no record", { selfUid: 1000, part: { size: 1, uid: 1000 } }, want(), "no-record"],
    ["a torn record (cut mid-write)", facts(JSON.stringify(record()).slice(0, 40)), want(), "torn-record"],
    ["an empty record", facts(""), want(), "torn-record"],
    ["a record of another version", facts(record({ version: 2 as 1 })), want(), "torn-record"],
    ["a record with a negative byte count", facts(record({ bytes: -1 })), want(), "torn-record"],
    ["a record with a fractional length", facts(record({ contentLength: 1.5 })), want(), "torn-record"],
    ["a record that is an array", facts("[1,2]"), want(), "torn-record"],
    ["a record with an etag that is not a string", facts({ ...record(), etag: 7 }), want(), "torn-record"],
    ["a record without its .part", facts(record(), { part: undefined }), want(), "no-part"],
    ["a .part of another user", facts(record(), { part: { size: 40 * MiB, uid: 0 } }), want(), "foreign-owner"],
    ["a record of another user", facts(record(), { recordUid: 0 }), want(), "foreign-owner"],
    ["a record whose owner is unknown", facts(record(), { recordUid: undefined }), want(), "foreign-owner"],
    ["a record copied from another base", facts(record({ base: "b".repeat(40) })), want(), "other-base"],
    ["another definition (checksum, limit or URL changed)", facts(record({ request: "k2" })), want(), "other-definition"],
    ["another URL shown", facts(record({ url: "http://origin/other.qcow2" })), want(), "other-source"],
    ["a registry tag that moved to another blob", facts(record({ expectedDigest: "sha256:ab" })), want({ expectedDigest: "sha256:cd" }), "other-source"],
    ["a record with a digest for a source without one", facts(record({ expectedDigest: "sha256:ab" })), want(), "other-source"],
    ["a tar layer cannot continue mid-stream", facts(record()), want({ unpack: "tar" }), "unpacked-source"],
    ["a gzip tar layer cannot either", facts(record()), want({ unpack: "tar+gzip" }), "unpacked-source"],
    ["only a weak ETag: no validator", facts(record({ etag: 'W/"v1"', lastModified: undefined })), want(), "no-validator"],
    ["no validator at all", facts({ ...record(), etag: undefined, lastModified: undefined }), want(), "no-validator"],
    ["too little kept", facts(record({ bytes: MinResumeBytes - 1 })), want(), "too-little"],
    ["a .part shorter than the record claims", facts(record(), { part: { size: 32 * MiB - 1, uid: 1000 } }), want(), "part-shorter"],
    ["a record claiming the whole body", facts(record({ bytes: 100 * MiB }), { part: { size: 100 * MiB, uid: 1000 } }), want(), "beyond-length"],
    ["a record claiming more than the body", facts(record({ bytes: 200 * MiB }), { part: { size: 200 * MiB, uid: 1000 } }), want(), "beyond-length"],
  ];
  for (const [label, f, w, expected] of table) test(label, () => assert.equal(outcome(f, w), expected));

  test("the validator is the strong ETag when there is one", () => {
    const d = decideResume(facts(record()), want());
    assert.ok(d.resume && d.validator === '"v1"');
  });
  test("a weak ETag gives way to Last-Modified", () => {
    assert.equal(ifRangeValidator({ etag: 'W/"v1"', lastModified: "Wed, 01 Jan 2025 00:00:00 GMT" }), "Wed, 01 Jan 2025 00:00:00 GMT");
  });
  test("a refusal's message says what is wrong, with the numbers", () => {
    const d = decideResume(facts(record(), { part: { size: 5, uid: 1000 } }), want());
    assert.ok(!d.resume && d.message.includes("5") && d.message.includes(String(32 * MiB)));
  });
  test("the chain checks who owns the files before trusting anything they say", () => {
    assert.deepEqual(ResumeChain, [refuseForeignOwner, refuseOtherBase, refuseOtherDefinition, refuseOtherSource, refuseUnpackedSource, refuseNoValidator, refuseTooLittle, refusePartShorter, refuseBeyondLength]);
  });
  test("owner and definition both wrong: the owner is the reason", () => {
    assert.equal(outcome(facts(record({ request: "k2" }), { recordUid: 0 })), "foreign-owner");
  });
});

describe("parseResumeRecord", () => {
  test("keeps exactly the known fields", () => {
    const r = parseResumeRecord(JSON.stringify({ ...record(), extra: "x" }));
    assert.deepEqual(r, record());
  });
  test("refuses a missing url with a message", () => {
    const { url: _u, ...rest } = record();
    assert.equal(typeof parseResumeRecord(JSON.stringify(rest)), "string");
  });
});

describe("evaluatePartialAnswer: a 206 must continue exactly where the .part ends", () => {
  const table: [string, string | undefined, number, number | undefined, boolean][] = [
    ["the range from the offset to the end", "bytes 100-999/1000", 100, 1000, true],
    ["an unknown total when none is recorded", "bytes 100-999/*", 100, undefined, true],
    ["another start", "bytes 0-999/1000", 100, 1000, false],
    ["another total: the file changed", "bytes 100-1999/2000", 100, 1000, false],
    ["not up to the end", "bytes 100-499/1000", 100, 1000, false],
    ["no Content-Range", undefined, 100, 1000, false],
    ["garbage", "items 1-2/3", 100, 1000, false],
  ];
  for (const [label, cr, offset, total, ok] of table) test(label, () => assert.equal(evaluatePartialAnswer(cr, offset, total).accept, ok));
});
