/**
 * The fetch pipeline's decisions outside the image's own structure, as named rules in ordered chains
 * (core/verdict.ts): what a cached base must match to be reused, what an origin's announced size allows, what a
 * download served as a web page is, whether a downloaded image's checksum holds, and whether a conversion fits.
 * Facts are gathered by src/image/pipeline.ts and image-steps.ts; a refusal becomes an error there.
 */
import type { Checksum } from "./checksum.js";
import type { ImageLimits, ImageVerdict } from "./image-checks.js";
import { formatBytes } from "./quantity.js";
import type { RejectReason } from "./reject-reasons.js";
import { Accept, firstRefusal, refuse, type Verdict } from "./verdict.js";

/** A refusal of the image (a reject reason), or `disk-full`: the image may be fine, the node has no room for it. */
export type FetchVerdict = Verdict<RejectReason | "disk-full">;

/** What a request expects of an image. */
export interface Expectation extends ImageLimits {
  checksum?: Checksum;
}

/** A qcow2/vmdk/vhdx file may be a little larger than its virtual size (metadata), never by much. */
export function downloadCap(maxVirtualSize: number): number {
  return Math.ceil(maxVirtualSize * 1.05) + 64 * 1024 * 1024;
}

// --- A base already on disk, reused instead of fetched ---

/** What is known of a base found on disk: its size and the digests its sidecar recorded, if it has one. */
export interface CachedBase {
  sizeBytes: number;
  sha256?: string;
  sha512?: string;
}

/** A cached base with another digest than the one asked for is not this request's image (the base stays). */
export function refuseCachedDigest(b: CachedBase, want: Expectation): ImageVerdict {
  const c = want.checksum;
  if (!c) return Accept;
  const known = c.algorithm === "sha256" ? b.sha256 : b.sha512;
  if (known === undefined || known === c.hex) return Accept;
  return refuse("checksum-mismatch", `the cached base has ${c.algorithm} ${known}, expected ${c.hex}`);
}

/** A cached base larger than this request's limit is refused to it, though another request may use it. */
export function refuseCachedTooLarge(b: CachedBase, want: Expectation): ImageVerdict {
  if (want.maxVirtualSize === undefined || b.sizeBytes <= want.maxVirtualSize) return Accept;
  return refuse("too-large", `the cached base has a virtual size of ${b.sizeBytes} bytes, above the limit of ${want.maxVirtualSize}`);
}

export const CachedBaseChain = [refuseCachedDigest, refuseCachedTooLarge] as const;

/** Decides whether a base found on disk serves the request. */
export function evaluateCachedBase(b: CachedBase, want: Expectation): ImageVerdict {
  return firstRefusal(CachedBaseChain, b, want);
}

// --- What the origin announces before the body ---

/** The announced size of the body (Content-Length or the layer's size) and the free space it must fit. */
export interface Announcement {
  totalBytes?: number;
  /** Free bytes for us in the base dir's filesystem; gathered only when a size is announced. */
  freeBytes?: number;
}

/** An image larger than any image within the size limit can be is refused before its first byte. */
export function refuseAnnouncedTooLarge(a: Announcement, want: Expectation): FetchVerdict {
  if (a.totalBytes === undefined || want.maxVirtualSize === undefined || a.totalBytes <= downloadCap(want.maxVirtualSize)) return Accept;
  return refuse("too-large", `the origin announces ${a.totalBytes} bytes, more than an image within the limit of ${want.maxVirtualSize} bytes can hold`);
}

/** An image announced larger than the free space cannot be stored: disk-full, not the image's fault. */
export function refuseAnnouncedNoRoom(a: Announcement): FetchVerdict {
  if (a.totalBytes === undefined || a.freeBytes === undefined || a.totalBytes <= a.freeBytes) return Accept;
  return refuse("disk-full", `it is ${a.totalBytes} bytes (${formatBytes(a.totalBytes)}) and the base dir's filesystem has ${a.freeBytes} bytes (${formatBytes(a.freeBytes)}) free`);
}

export const AnnouncementChain = [refuseAnnouncedTooLarge, refuseAnnouncedNoRoom] as const;

/** Decides on what the origin announces, before the body is read. */
export function evaluateAnnouncement(a: Announcement, want: Expectation): FetchVerdict {
  return firstRefusal<[Announcement, Expectation], RejectReason | "disk-full">(AnnouncementChain, a, want);
}

// --- The finished download ---

/** The digests of the downloaded bytes. */
export interface DownloadDigests {
  sha256: string;
  /** The second digest, when a sha512 checksum asked for one. */
  sha512?: string;
}

/** The download's digest must be the declared checksum; this runs before any inspection reads the file. */
export function refuseChecksumMismatch(d: DownloadDigests, want: Expectation): ImageVerdict {
  const c = want.checksum;
  if (!c) return Accept;
  const got = c.algorithm === "sha256" ? d.sha256 : d.sha512;
  return got === c.hex ? Accept : refuse("checksum-mismatch", `${c.algorithm} is ${got ?? "unknown"}, expected ${c.hex}`);
}

export const ChecksumChain = [refuseChecksumMismatch] as const;

/** Decides whether the downloaded bytes are the declared image. */
export function evaluateChecksum(d: DownloadDigests, want: Expectation): ImageVerdict {
  return firstRefusal(ChecksumChain, d, want);
}

/** How the inspected download was served: the format our inspector found and the origin's Content-Type. */
export interface ServedAs {
  format: string;
  contentType?: string;
}

/** Bytes with no disk magic that the origin served as a web page are an error page, not a raw disk. */
export function refuseWebPageAsRaw(d: ServedAs): ImageVerdict {
  if (d.format !== "raw" || !/^text\/html\b/i.test(d.contentType ?? "")) return Accept;
  return refuse("not-a-disk", `the origin served it as ${d.contentType ?? ""}, a web page, not a raw disk`);
}

export const ServedAsChain = [refuseWebPageAsRaw] as const;

/** Decides on how the inspected download was served. */
export function evaluateServedAs(d: ServedAs): ImageVerdict {
  return firstRefusal(ServedAsChain, d);
}

// --- Room to convert ---

/** Expansion (data bytes over file bytes) beyond which an image that cannot fit is a compression bomb. */
export const CompressionBombRatio = 100;

/** The data the conversion will write (`qemu-img map`), the source file's size and the free space. */
export interface ConversionSpace {
  dataBytes: number;
  fileSize: number;
  freeBytes: number;
}

/** A small file that expands a hundredfold past the free space is a compression bomb, not a big image. */
export function refuseCompressionBomb(s: ConversionSpace): FetchVerdict {
  if (s.dataBytes <= s.freeBytes || s.dataBytes <= s.fileSize * CompressionBombRatio) return Accept;
  return refuse("compression-bomb", `its ${s.fileSize} bytes expand to ${s.dataBytes} bytes of data, more than the ${s.freeBytes} bytes free`);
}

/** Data that does not fit the free space: disk-full. */
export function refuseNoRoomToConvert(s: ConversionSpace): FetchVerdict {
  if (s.dataBytes <= s.freeBytes) return Accept;
  return refuse("disk-full", `it holds ${s.dataBytes} bytes (${formatBytes(s.dataBytes)}) of data and the base dir's filesystem has ${s.freeBytes} bytes (${formatBytes(s.freeBytes)}) free`);
}

export const ConversionSpaceChain = [refuseCompressionBomb, refuseNoRoomToConvert] as const;

/** Decides whether the converted base will fit. */
export function evaluateConversionSpace(s: ConversionSpace): FetchVerdict {
  return firstRefusal(ConversionSpaceChain, s);
}
