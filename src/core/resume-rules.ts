/**
 * Whether a `.part` left by a fetch that died (kill -9, power loss, SIGTERM) can be resumed, as a named rule
 * chain (core/verdict.ts). The resume record `<base>.part.resume` sits under `_base`, so it is untrusted input:
 * it is parsed strictly here, and every fact it claims is checked against what the I/O gathered (the `.part`'s
 * size and owner) and what this fetch asks for (its request key and source). Any doubt restarts from zero;
 * resuming is only ever an optimisation, never a reason to trust bytes: the checksum still covers the whole file.
 * See docs/design/2026-12-02-resume.md.
 */
import { Accept, firstRefusal, refuse, type Verdict } from "./verdict.js";

/** Version of the resume record format. */
export const ResumeRecordVersion = 1;
/** Below this there is too little on disk to be worth a Range request: restart. */
export const MinResumeBytes = 1024 * 1024;
/** A resume record is a few hundred bytes; anything bigger is not one we wrote. */
export const MaxResumeRecordBytes = 4096;

/** What `<base>.part.resume` records, written only after the bytes it claims are durable. */
export interface ResumeRecord {
  version: typeof ResumeRecordVersion;
  /** The base (sha1 hex of the id) the `.part` is for. */
  base: string;
  /** The fetch's request key (core/request-key.ts): source, checksum and size limit, hashed. */
  request: string;
  /** The URL as shown (core/redact.ts): no userinfo, no signature. */
  url: string;
  /** The blob digest of a registry source, when there is one. */
  expectedDigest?: string;
  etag?: string;
  lastModified?: string;
  /** The Content-Length of the full body, as the origin announced it. */
  contentLength: number;
  /** Bytes from offset 0 that are on disk and durable (holes count as written zeros). */
  bytes: number;
}

/** What this fetch is, to compare a record with. */
export interface ResumeWant {
  base: string;
  request: string;
  url: string;
  expectedDigest?: string;
  /** Only plain downloads resume: an unpacked (tar, tar+gzip) `.part` holds disk bytes, not network bytes. */
  unpack: string;
}

/** What the I/O found beside the base: the record as read (text, or none) and the `.part`'s size and owner. */
export interface ResumeFacts {
  /** Text of the record; undefined when there is none. */
  recordText?: string;
  part?: { size: number; uid: number };
  /** Owner of the record file. */
  recordUid?: number;
  /** The uid this process runs as. */
  selfUid: number;
}

export type ResumeRestartReason =
  | "no-record"
  | "torn-record"
  | "no-part"
  | "foreign-owner"
  | "other-base"
  | "other-definition"
  | "other-source"
  | "unpacked-source"
  | "no-validator"
  | "too-little"
  | "part-shorter"
  | "beyond-length";

/** Resume from `offset` with `If-Range: validator`, or restart from zero with a reason. */
export type ResumeDecision =
  | { resume: true; offset: number; validator: string; record: ResumeRecord }
  | { resume: false; reason: ResumeRestartReason; message: string };

/** Facts with the record parsed: the input of the rules after the first. */
export interface ResumeCandidate {
  record: ResumeRecord;
  part: { size: number; uid: number };
  recordUid: number;
  selfUid: number;
}

/** Parses a record strictly: every field typed, no unknown version. Returns a message for what is wrong instead. */
export function parseResumeRecord(text: string): ResumeRecord | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return "it is not JSON (a torn write?)";
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "it is not a JSON object";
  const o = v as Record<string, unknown>;
  if (o.version !== ResumeRecordVersion) return `its version is ${JSON.stringify(o.version)}, not ${ResumeRecordVersion}`;
  for (const k of ["base", "request", "url"] as const) if (typeof o[k] !== "string" || o[k] === "") return `its ${k} is not a string`;
  for (const k of ["expectedDigest", "etag", "lastModified"] as const) if (o[k] !== undefined && (typeof o[k] !== "string" || o[k] === "")) return `its ${k} is not a string`;
  for (const k of ["contentLength", "bytes"] as const) if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) return `its ${k} is not a whole number`;
  return {
    version: ResumeRecordVersion,
    base: o.base as string,
    request: o.request as string,
    url: o.url as string,
    ...(o.expectedDigest !== undefined ? { expectedDigest: o.expectedDigest as string } : {}),
    ...(o.etag !== undefined ? { etag: o.etag as string } : {}),
    ...(o.lastModified !== undefined ? { lastModified: o.lastModified as string } : {}),
    contentLength: o.contentLength as number,
    bytes: o.bytes as number,
  };
}

/** The validator for If-Range: a strong ETag, else Last-Modified (a weak ETag may name other bytes). */
export function ifRangeValidator(r: Pick<ResumeRecord, "etag" | "lastModified">): string | undefined {
  return r.etag && !r.etag.startsWith("W/") ? r.etag : r.lastModified;
}

type ResumeVerdict = Verdict<ResumeRestartReason>;

/** Both files must belong to this process's user: one planted by another user is not our download. */
export function refuseForeignOwner(c: ResumeCandidate): ResumeVerdict {
  if (c.part.uid === c.selfUid && c.recordUid === c.selfUid) return Accept;
  return refuse("foreign-owner", `the .part (uid ${c.part.uid}) or its record (uid ${c.recordUid}) is not owned by uid ${c.selfUid}`);
}

/** A record copied from another base describes other bytes. */
export function refuseOtherBase(c: ResumeCandidate, w: ResumeWant): ResumeVerdict {
  return c.record.base === w.base ? Accept : refuse("other-base", `the record is for base ${c.record.base}`);
}

/** Another checksum, size limit or source URL is another definition: its bytes are not ours to continue. */
export function refuseOtherDefinition(c: ResumeCandidate, w: ResumeWant): ResumeVerdict {
  return c.record.request === w.request ? Accept : refuse("other-definition", "the record was written for another definition of the image (source, checksum or size limit)");
}

/** The URL shown and, for a registry, the blob digest must be the same: a moved tag is another blob. */
export function refuseOtherSource(c: ResumeCandidate, w: ResumeWant): ResumeVerdict {
  if (c.record.url !== w.url) return refuse("other-source", `the record is for "${c.record.url}"`);
  if ((c.record.expectedDigest ?? "") !== (w.expectedDigest ?? "")) return refuse("other-source", `the record is for blob ${c.record.expectedDigest ?? "(none)"}, this fetch wants ${w.expectedDigest ?? "(none)"}`);
  return Accept;
}

/** A tar or gzip stream cannot be continued mid-way: the decoder's state is not on disk. */
export function refuseUnpackedSource(_c: ResumeCandidate, w: ResumeWant): ResumeVerdict {
  return w.unpack === "none" ? Accept : refuse("unpacked-source", `the disk is unpacked from a ${w.unpack} stream, which cannot be continued mid-way`);
}

/** Without a strong ETag or a Last-Modified there is nothing for If-Range, so a change upstream would go unseen. */
export function refuseNoValidator(c: ResumeCandidate): ResumeVerdict {
  return ifRangeValidator(c.record) ? Accept : refuse("no-validator", "the origin gave no strong ETag and no Last-Modified");
}

/** Too little to resume is cheaper to fetch again. */
export function refuseTooLittle(c: ResumeCandidate): ResumeVerdict {
  return c.record.bytes >= MinResumeBytes ? Accept : refuse("too-little", `only ${c.record.bytes} bytes were recorded, less than ${MinResumeBytes}`);
}

/** A `.part` shorter than the record claims lost bytes the record says are durable: nothing of it is trusted. */
export function refusePartShorter(c: ResumeCandidate): ResumeVerdict {
  return c.part.size >= c.record.bytes ? Accept : refuse("part-shorter", `the .part has ${c.part.size} bytes, the record claims ${c.record.bytes}`);
}

/** A record claiming the whole body (or more) is not a download in progress. */
export function refuseBeyondLength(c: ResumeCandidate): ResumeVerdict {
  return c.record.bytes < c.record.contentLength ? Accept : refuse("beyond-length", `the record claims ${c.record.bytes} of ${c.record.contentLength} bytes`);
}

export const ResumeChain = [
  refuseForeignOwner,
  refuseOtherBase,
  refuseOtherDefinition,
  refuseOtherSource,
  refuseUnpackedSource,
  refuseNoValidator,
  refuseTooLittle,
  refusePartShorter,
  refuseBeyondLength,
] as const;

/** Decides whether to resume the `.part` beside the base, or to remove it and its record and start over. */
export function decideResume(f: ResumeFacts, w: ResumeWant): ResumeDecision {
  if (f.recordText === undefined) return { resume: false, reason: "no-record", message: "no resume record beside the .part" };
  const record = parseResumeRecord(f.recordText);
  if (typeof record === "string") return { resume: false, reason: "torn-record", message: `the resume record is unusable: ${record}` };
  if (!f.part) return { resume: false, reason: "no-part", message: "the record has no .part beside it" };
  const c: ResumeCandidate = { record, part: f.part, recordUid: f.recordUid ?? -1, selfUid: f.selfUid };
  const v = firstRefusal<[ResumeCandidate, ResumeWant], ResumeRestartReason>(ResumeChain, c, w);
  if (!v.accept) return { resume: false, reason: v.reason, message: v.message };
  return { resume: true, offset: record.bytes, validator: ifRangeValidator(record) ?? "", record };
}

/** What a 206 answer to `Range: bytes=<offset>-` must say: it starts at the offset, and the total is unchanged. */
export function evaluatePartialAnswer(contentRange: string | undefined, offset: number, total: number | undefined): Verdict<"bad-range"> {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? "");
  if (!m || Number(m[1]) !== offset) return refuse("bad-range", `the origin sent range "${contentRange ?? ""}" for offset ${offset}`);
  if (total !== undefined && m[3] !== "*" && Number(m[3]) !== total) return refuse("bad-range", `the origin's length is now ${m[3]}, it was ${total}`);
  if (total !== undefined && Number(m[2]) !== total - 1) return refuse("bad-range", `the origin sent range "${contentRange ?? ""}", not up to the end`);
  return Accept;
}
