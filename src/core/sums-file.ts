/**
 * Checksums from the vendor: a SUMS file (GNU `sha256sum` output, BSD `SHA256 (name) = HASH` lines, Fedora's
 * CHECKSUM, which is BSD lines with `# name: size bytes` comments inside a clearsigned message) read into
 * entries, and the one entry for an image looked up. The edge (src/image/checksum-from.ts) fetches the file and
 * its signature and verifies the signature first; this module only decides on the text it is given.
 */
import type { Checksum, ChecksumAlgorithm } from "./checksum.js";
import { redactUrl } from "./redact.js";
import type { RejectReason } from "./reject-reasons.js";
import { Accept, firstRefusal, refuse, type Verdict } from "./verdict.js";

/** The largest SUMS file read: Ubuntu's and Fedora's are a few KiB; anything this big is not one. */
export const MaxSumsBytes = 1024 * 1024;

/** The largest detached signature read (an OpenPGP signature is a few hundred bytes, a few KiB with many). */
export const MaxSignatureBytes = 64 * 1024;

/** One `hash name` line. */
export interface SumsEntry {
  name: string;
  checksum: Checksum;
}

const hexLengths: Record<number, ChecksumAlgorithm> = { 64: "sha256", 128: "sha512" };
const bsdTags: Record<string, ChecksumAlgorithm> = { SHA256: "sha256", SHA512: "sha512" };

// GNU: `HASH  name` (text mode) or `HASH *name` (binary mode). coreutils escapes odd names with a leading `\`.
const gnuLine = /^\\?([0-9a-fA-F]+) [ *](.+)$/;
// BSD (`sha256sum --tag`, `shasum -a 256 --tag`, Fedora): `SHA256 (name) = HASH`.
const bsdLine = /^([A-Z0-9-]+) ?\((.+)\) ?= ?([0-9a-fA-F]+)$/;

/** A name as listed: `./` prefixes removed, so `./disk.img` and `disk.img` are one name. */
export function normalizeSumsName(name: string): string {
  let n = name;
  while (n.startsWith("./")) n = n.slice(2);
  return n;
}

/** Parses one line into an entry; undefined for comments, blank lines and lines of other algorithms (MD5, SHA1). */
export function parseSumsLine(line: string): SumsEntry | undefined {
  const text = line.replace(/\r$/, "");
  if (text.trim() === "" || text.startsWith("#")) return undefined;
  const bsd = bsdLine.exec(text);
  if (bsd) {
    const algorithm = bsdTags[bsd[1] ?? ""];
    const hex = (bsd[3] ?? "").toLowerCase();
    if (!algorithm || hexLengths[hex.length] !== algorithm) return undefined;
    return { name: normalizeSumsName(bsd[2] ?? ""), checksum: { algorithm, hex } };
  }
  const gnu = gnuLine.exec(text);
  if (gnu) {
    const hex = (gnu[1] ?? "").toLowerCase();
    const algorithm = hexLengths[hex.length];
    if (!algorithm) return undefined;
    return { name: normalizeSumsName(gnu[2] ?? ""), checksum: { algorithm, hex } };
  }
  return undefined;
}

/**
 * The body of a clearsigned message without checking its signature: for a SUMS file no signature was asked of.
 * A file with a signature to check never comes here; its text is what gpgv verified (gpgv --output).
 */
export function stripClearsign(text: string): string {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.replace(/\r$/, "") === "-----BEGIN PGP SIGNED MESSAGE-----");
  if (start < 0) return text;
  const blank = lines.findIndex((l, i) => i > start && l.replace(/\r$/, "") === "");
  const end = lines.findIndex((l, i) => i > blank && l.replace(/\r$/, "") === "-----BEGIN PGP SIGNATURE-----");
  const body = lines.slice(blank + 1, end < 0 ? lines.length : end);
  // RFC 4880 §7.1: lines starting with "-" are dash-escaped as "- ".
  return body.map((l) => (l.startsWith("- ") ? l.slice(2) : l)).join("\n");
}

/** Every entry of a SUMS file, in file order. */
export function parseSumsFile(text: string): SumsEntry[] {
  return text.split("\n").flatMap((l) => parseSumsLine(l) ?? []);
}

/** The default name to look up: the last path segment of the image URL, percent-decoded. */
export function defaultSumsName(imageUrl: string): string {
  let path: string;
  try {
    path = new URL(imageUrl).pathname;
  } catch {
    path = imageUrl;
  }
  const last = path.split("/").filter((s) => s !== "").pop() ?? "";
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** What the lookup is given: the file as fetched (its size, and its text once verified) and what to find in it. */
export interface SumsLookup {
  /** The SUMS file's URL, as given (redacted in every message). */
  url: string;
  /** Bytes of the file as fetched; more than MaxSumsBytes means the edge stopped reading. */
  sizeBytes: number;
  /** The text to read: the verified text of a signed file, the whole file otherwise. */
  text: string;
  /** The name the image is listed under. */
  name: string;
  /** Only entries of this algorithm count; without it, sha512 is taken over sha256 when both are listed. */
  algorithm?: ChecksumAlgorithm;
}

type SumsVerdict = Verdict<RejectReason>;

/** A SUMS file larger than any vendor's is refused unread. */
export function refuseSumsTooLarge(l: SumsLookup): SumsVerdict {
  if (l.sizeBytes <= MaxSumsBytes) return Accept;
  return refuse("sums-too-large", `the checksum file "${redactUrl(l.url)}" is larger than ${MaxSumsBytes} bytes`);
}

/** A file without a single checksum line is not a SUMS file (an error page, the wrong URL). */
export function refuseSumsMalformed(l: SumsLookup): SumsVerdict {
  if (parseSumsFile(l.text).length > 0) return Accept;
  return refuse("sums-malformed", `the checksum file "${redactUrl(l.url)}" has no sha256 or sha512 checksum line`);
}

function entriesFor(l: SumsLookup): SumsEntry[] {
  const name = normalizeSumsName(l.name);
  return parseSumsFile(l.text).filter((e) => e.name === name && (l.algorithm === undefined || e.checksum.algorithm === l.algorithm));
}

/** The image must be listed (under its name, for the algorithm asked). */
export function refuseNotListed(l: SumsLookup): SumsVerdict {
  if (entriesFor(l).length > 0) return Accept;
  const what = l.algorithm ? `a ${l.algorithm} checksum for "${l.name}"` : `"${l.name}"`;
  return refuse("checksum-not-listed", `the checksum file "${redactUrl(l.url)}" does not list ${what}`);
}

/** Two lines for one name and algorithm that disagree: which one the vendor meant is a guess, so neither is used. */
export function refuseDisagreeingEntries(l: SumsLookup): SumsVerdict {
  for (const algorithm of ["sha256", "sha512"] as const) {
    const hexes = new Set(entriesFor(l).filter((e) => e.checksum.algorithm === algorithm).map((e) => e.checksum.hex));
    if (hexes.size > 1) return refuse("checksum-ambiguous", `the checksum file "${redactUrl(l.url)}" lists "${l.name}" with ${hexes.size} different ${algorithm} checksums`);
  }
  return Accept;
}

export const SumsLookupChain = [refuseSumsTooLarge, refuseSumsMalformed, refuseNotListed, refuseDisagreeingEntries] as const;

/** The checksum the SUMS file gives the image, or the refusal. */
export function decideSumsChecksum(l: SumsLookup): { accept: true; checksum: Checksum } | { accept: false; reason: RejectReason; message: string } {
  const v = firstRefusal(SumsLookupChain, l);
  if (!v.accept) return v;
  const entries = entriesFor(l);
  const chosen = entries.find((e) => e.checksum.algorithm === "sha512") ?? entries[0];
  // The chain accepted, so an entry exists.
  return { accept: true, checksum: (chosen as SumsEntry).checksum };
}
