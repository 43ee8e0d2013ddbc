/**
 * Decisions about an image: our header facts, `qemu-img info` and `qemu-img check` results and the limits go
 * in; accept, or reject with a stable reason and a message, comes out. Each rule is a tiny function; the chains
 * run in order and the first refusal wins, so the reason is the most specific one.
 */
import { HeaderProbeBytes, inspectHeader, type HeaderFacts, type HeaderFormat } from "./image-header.js";
import { MaxTableBytes } from "./convert-limits.js";
import { formatBytes } from "./quantity.js";
import { EarlyRejectReasons, type RejectReason } from "./reject-reasons.js";
import { Accept, firstRefusal, refuse, type Verdict } from "./verdict.js";

/** Why an image was refused: one of the reasons in core/reject-reasons.ts. */
export type ImageRejectReason = RejectReason;

/** Accept, or refuse with a reason and a message that says what is wrong. */
export type ImageVerdict = Verdict<ImageRejectReason>;

/** Limits an image must stay within. */
export interface ImageLimits {
  /** Largest virtual size accepted, in bytes; undefined means no limit. */
  maxVirtualSize?: number;
}

/** Formats we convert to raw bases. Everything else is refused. */
export const AllowedFormats: readonly HeaderFormat[] = ["raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi"];
/** VMDK create types we accept: both keep the data inside the one file. */
export const AllowedVmdkCreateTypes: readonly string[] = ["monolithicSparse", "streamOptimized"];
/** Formats whose qemu driver implements `qemu-img check`. */
export const CheckableFormats: readonly HeaderFormat[] = ["qcow2", "vmdk", "vhdx", "vdi"];

const KiB = 1024;
const MiB = 1024 * KiB;

/** An allocation unit the format's tools write, and what they write. */
interface ClusterRange {
  what: string;
  min: number;
  max: number;
  tools: string;
}

/**
 * The allocation units accepted, per format: what the formats' own tools write, with room to spare. Above the
 * range a unit costs the converter memory or time no legitimate image needs (qemu buffers whole compressed VMDK
 * grains); below it, or not a power of two, no tool writes it.
 */
export const ClusterRanges: Readonly<Partial<Record<HeaderFormat, ClusterRange>>> = {
  qcow2: { what: "cluster", min: 512, max: 2 * MiB, tools: "qemu-img writes 64 KiB by default and accepts 512 B to 2 MiB" },
  vmdk: { what: "grain", min: 4 * KiB, max: 1 * MiB, tools: "qemu-img and VMware write 64 KiB" },
  vhdx: { what: "block", min: 1 * MiB, max: 256 * MiB, tools: "the VHDX specification allows 1 MiB to 256 MiB" },
  vpc: { what: "block", min: 4 * KiB, max: 16 * MiB, tools: "qemu-img, Hyper-V and VirtualBox write 2 MiB" },
  vdi: { what: "block", min: 1 * MiB, max: 1 * MiB, tools: "VirtualBox and qemu-img write 1 MiB, and qemu reads no other" },
};

type HeaderRule = (f: HeaderFacts, l: ImageLimits) => ImageVerdict;

export function refuseEmpty(f: HeaderFacts): ImageVerdict {
  return f.fileSize === 0 ? refuse("empty", "the file is empty") : Accept;
}
export function refuseEncrypted(f: HeaderFacts): ImageVerdict {
  return f.format === "luks" || f.encrypted ? refuse("encrypted", `the ${f.format} image is encrypted`) : Accept;
}
export function refuseDisallowedFormat(f: HeaderFacts): ImageVerdict {
  return AllowedFormats.includes(f.format) ? Accept : refuse("unsupported-format", `format ${f.format} is not allowed (allowed: ${AllowedFormats.join(", ")})`);
}
export function refuseCorruptHeader(f: HeaderFacts): ImageVerdict {
  return f.corrupt ? refuse("corrupt", `the ${f.format} header is corrupt: ${f.corrupt}`) : Accept;
}
export function refuseBackingFile(f: HeaderFacts): ImageVerdict {
  return f.backingFile !== undefined ? refuse("backing-file", `the ${f.format} image has a backing file ${quote(f.backingFile)}`) : Accept;
}
export function refuseDataFile(f: HeaderFacts): ImageVerdict {
  return f.dataFile !== undefined ? refuse("data-file", `the ${f.format} image has an external data file ${quote(f.dataFile)}`) : Accept;
}
export function refuseBadExtent(f: HeaderFacts): ImageVerdict {
  return f.badExtent ? refuse("bad-extent", `the vmdk image is unsafe: ${f.badExtent}`) : Accept;
}
export function refuseVmdkCreateType(f: HeaderFacts): ImageVerdict {
  if (f.format !== "vmdk" || AllowedVmdkCreateTypes.includes(f.subformat ?? "")) return Accept;
  return refuse("unsupported-format", `vmdk create type "${f.subformat ?? ""}" is not allowed (allowed: ${AllowedVmdkCreateTypes.join(", ")})`);
}
export function refuseUnknownFeature(f: HeaderFacts): ImageVerdict {
  return f.unknownFeatures ? refuse("unknown-feature", `the ${f.format} image uses features we do not know: ${f.unknownFeatures}`) : Accept;
}
/** Allocation units outside what the format's tools write: too large costs the converter, too small no tool writes. */
export function refuseClusterShape(f: HeaderFacts): ImageVerdict {
  const range = ClusterRanges[f.format];
  const c = f.clusterBytes;
  if (!range || c === undefined) return Accept;
  const size = `the ${f.format} ${range.what} size is ${c} bytes (${formatBytes(c)})`;
  const allowed = `${formatBytes(range.min)} to ${formatBytes(range.max)}; ${range.tools}`;
  if (c > range.max) return refuse("resource-limit", `${size}: converting it would need memory and time no legitimate image needs (allowed: ${allowed})`);
  if (c < range.min || (c & (c - 1)) !== 0) return refuse("unsupported-format", `${size}, which no tool writes (allowed: powers of two from ${allowed})`);
  return Accept;
}
/** Tables (L1/refcount, grain directory, BAT) that would need more memory than any legitimate image. */
export function refuseHugeTables(f: HeaderFacts): ImageVerdict {
  if (f.tableBytes === undefined || f.tableBytes <= MaxTableBytes) return Accept;
  return refuse("resource-limit", `the ${f.format} tables need ${f.tableBytes} bytes (${formatBytes(f.tableBytes)}) of memory, more than the ${formatBytes(MaxTableBytes)} any legitimate image needs`);
}
export function refuseUnalignedRaw(f: HeaderFacts): ImageVerdict {
  return f.format === "raw" && f.fileSize % 512 !== 0 ? refuse("not-a-disk", `the raw file is ${f.fileSize} bytes, not a whole number of 512-byte sectors`) : Accept;
}
export function refuseNotADisk(f: HeaderFacts): ImageVerdict {
  return f.notADisk ? refuse("not-a-disk", `the file is not a disk image: ${f.notADisk}`) : Accept;
}
export function refuseHeaderTooLarge(f: HeaderFacts, l: ImageLimits): ImageVerdict {
  return tooLarge(f.virtualSize, l);
}

/** What our header inspector's facts must pass, in order: the first refusal names the most specific reason. */
export const HeaderChain: readonly HeaderRule[] = [
  refuseEmpty,
  refuseEncrypted,
  refuseDisallowedFormat,
  refuseCorruptHeader,
  refuseBackingFile,
  refuseDataFile,
  refuseBadExtent,
  refuseVmdkCreateType,
  refuseUnknownFeature,
  refuseClusterShape,
  refuseHugeTables,
  refuseUnalignedRaw,
  refuseNotADisk,
  refuseHeaderTooLarge,
];

/** Decides on the facts our header inspector found, before qemu-img opens the file. */
export function evaluateHeader(facts: HeaderFacts, limits: ImageLimits): ImageVerdict {
  return firstRefusal(HeaderChain, facts, limits);
}

/**
 * Decides from the first bytes of a download whose total size is announced: refuses only what is final from the
 * header alone (EarlyRejectReasons), so a hostile image is not downloaded in full. An unfinished parse accepts.
 */
export function evaluateEarlyHeader(head: Uint8Array, total: number | undefined, limits: ImageLimits): ImageVerdict {
  if (total === undefined) return Accept;
  const parse = inspectHeader({ size: total, chunks: [{ offset: 0, data: head.subarray(0, Math.min(head.length, HeaderProbeBytes)) }] });
  if (!parse.done) return Accept;
  const v = evaluateHeader(parse.facts, limits);
  return !v.accept && EarlyRejectReasons.includes(v.reason) ? v : Accept;
}

/** The fields of `qemu-img info --output=json` that the checks read. */
export interface QemuImageInfo {
  format: string;
  virtualSize: number;
  actualSize?: number;
  backingFilename?: string;
  backingFormat?: string;
  dataFile?: string;
  encrypted: boolean;
  corrupt: boolean;
  dirty: boolean;
}

/**
 * Parses the JSON printed by `qemu-img info --output=json`.
 * @throws TypeError when it is not an object with a format and a virtual size
 */
export function parseQemuInfo(json: unknown): QemuImageInfo {
  if (typeof json !== "object" || json === null) throw new TypeError("qemu-img info printed no JSON object");
  const o = json as Record<string, unknown>;
  const spec = (o["format-specific"] as { data?: Record<string, unknown> } | undefined)?.data ?? {};
  if (typeof o.format !== "string" || typeof o["virtual-size"] !== "number") throw new TypeError("qemu-img info printed no format or virtual-size");
  const info: QemuImageInfo = {
    format: o.format,
    virtualSize: o["virtual-size"],
    encrypted: o.encrypted === true || spec.encrypt !== undefined,
    corrupt: spec.corrupt === true,
    dirty: o["dirty-flag"] === true,
  };
  if (typeof o["actual-size"] === "number") info.actualSize = o["actual-size"];
  const backing = o["full-backing-filename"] ?? o["backing-filename"];
  if (typeof backing === "string") info.backingFilename = backing;
  if (typeof o["backing-filename-format"] === "string") info.backingFormat = o["backing-filename-format"];
  if (typeof spec["data-file"] === "string") info.dataFile = spec["data-file"];
  return info;
}

type QemuInfoRule = (facts: HeaderFacts, info: QemuImageInfo, limits: ImageLimits) => ImageVerdict;

export function refuseFormatDisagreement(facts: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  return info.format === facts.format ? Accept : refuse("format-mismatch", `qemu-img reads format ${info.format}, our inspector found ${facts.format}`);
}
export function refuseQemuBackingFile(_f: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  return info.backingFilename !== undefined ? refuse("backing-file", `qemu-img reports a backing file ${quote(info.backingFilename)}`) : Accept;
}
export function refuseQemuDataFile(_f: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  return info.dataFile !== undefined ? refuse("data-file", `qemu-img reports an external data file ${quote(info.dataFile)}`) : Accept;
}
export function refuseQemuEncrypted(_f: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  return info.encrypted ? refuse("encrypted", "qemu-img reports the image is encrypted") : Accept;
}
export function refuseQemuCorrupt(_f: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  return info.corrupt || info.dirty ? refuse("corrupt", "qemu-img reports the image is marked corrupt or dirty") : Accept;
}
export function refuseSizeDisagreement(facts: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  const ours = [facts.virtualSize, facts.altVirtualSize].filter((v): v is number => v !== undefined);
  if (ours.length === 0 || ours.includes(info.virtualSize)) return Accept;
  return refuse("format-mismatch", `qemu-img reads a virtual size of ${info.virtualSize} bytes, our inspector found ${ours.join(" or ")}`);
}
export function refuseQemuTooLarge(_f: HeaderFacts, info: QemuImageInfo, limits: ImageLimits): ImageVerdict {
  return tooLarge(info.virtualSize, limits);
}

/** What `qemu-img info` of the downloaded file must pass: it agrees with our inspector and finds nothing unsafe. */
export const QemuInfoChain: readonly QemuInfoRule[] = [
  refuseFormatDisagreement,
  refuseQemuBackingFile,
  refuseQemuDataFile,
  refuseQemuEncrypted,
  refuseQemuCorrupt,
  refuseSizeDisagreement,
  refuseQemuTooLarge,
];

/** Decides on `qemu-img info` of the downloaded file: it must agree with our header inspector. */
export function evaluateQemuInfo(facts: HeaderFacts, info: QemuImageInfo, limits: ImageLimits): ImageVerdict {
  return firstRefusal(QemuInfoChain, facts, info, limits);
}

/** What `qemu-img check --output=json` found. */
export interface QemuCheckResult {
  /** Exit code: 0 clean, 2 corruptions, 3 leaks only, 1 check failed, 63 not supported. */
  exitCode: number;
  corruptions: number;
  leaks: number;
  checkErrors: number;
}

/** Decides on `qemu-img check`: leaked clusters are harmless, anything else is corruption. */
export function evaluateQemuCheck(check: QemuCheckResult): ImageVerdict {
  if (check.exitCode === 63) return Accept;
  if (check.corruptions > 0) return refuse("corrupt", `qemu-img check found ${check.corruptions} corruptions`);
  if (check.checkErrors > 0 || check.exitCode === 1) return refuse("corrupt", "qemu-img check could not complete: the image structure is broken");
  if (check.exitCode !== 0 && check.exitCode !== 3) return refuse("corrupt", `qemu-img check exited ${check.exitCode}`);
  return Accept;
}

export function refuseConvertedNotRaw(info: QemuImageInfo): ImageVerdict {
  return info.format === "raw" ? Accept : refuse("inspect-failed", `the converted file reads as ${info.format}, not raw`);
}
export function refuseConvertedSizeChange(info: QemuImageInfo, expectedVirtualSize: number): ImageVerdict {
  if (info.virtualSize === expectedVirtualSize) return Accept;
  return refuse("inspect-failed", `the converted file has ${info.virtualSize} bytes, the source's virtual size is ${expectedVirtualSize}`);
}

/** What the converted output must pass: raw, with the source's virtual size. */
export const ConvertedChain: readonly ((info: QemuImageInfo, expectedVirtualSize: number) => ImageVerdict)[] = [refuseConvertedNotRaw, refuseConvertedSizeChange];

/** Decides on `qemu-img info` of the converted output. */
export function evaluateConverted(info: QemuImageInfo, expectedVirtualSize: number): ImageVerdict {
  return firstRefusal(ConvertedChain, info, expectedVirtualSize);
}

function tooLarge(size: number | undefined, limits: ImageLimits): ImageVerdict {
  if (size === undefined || limits.maxVirtualSize === undefined || size <= limits.maxVirtualSize) return Accept;
  return refuse("too-large", `the virtual size ${size} bytes exceeds the limit of ${limits.maxVirtualSize} bytes`);
}

function quote(s: string): string {
  return s.startsWith("(") ? s : JSON.stringify(s);
}
