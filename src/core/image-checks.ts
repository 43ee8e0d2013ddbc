/**
 * Decisions about an image: our header facts, `qemu-img info` and `qemu-img check` results and the limits go
 * in; accept, or reject with a stable reason and a message, comes out. Each rule is a tiny function; the chains
 * run in order and the first refusal wins, so the reason is the most specific one.
 */
import type { HeaderFacts, HeaderFormat } from "./image-header.js";
import { MaxTableBytes } from "./convert-limits.js";
import { formatBytes } from "./quantity.js";
import type { RejectReason } from "./reject-reasons.js";

/** Why an image was refused: one of the reasons in core/reject-reasons.ts. */
export type ImageRejectReason = RejectReason;

/** Accept, or refuse with a reason and a message that says what is wrong. */
export type ImageVerdict = { accept: true } | { accept: false; reason: ImageRejectReason; message: string };

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

const Accept: ImageVerdict = { accept: true };
const reject = (reason: ImageRejectReason, message: string): ImageVerdict => ({ accept: false, reason, message });

type HeaderRule = (f: HeaderFacts, l: ImageLimits) => ImageVerdict;

const headerRules: HeaderRule[] = [
  (f) => (f.fileSize === 0 ? reject("empty", "the file is empty") : Accept),
  (f) => (f.format === "luks" || f.encrypted ? reject("encrypted", `the ${f.format} image is encrypted`) : Accept),
  (f) => (AllowedFormats.includes(f.format) ? Accept : reject("unsupported-format", `format ${f.format} is not allowed (allowed: ${AllowedFormats.join(", ")})`)),
  (f) => (f.corrupt ? reject("corrupt", `the ${f.format} header is corrupt: ${f.corrupt}`) : Accept),
  (f) => (f.backingFile !== undefined ? reject("backing-file", `the ${f.format} image has a backing file ${quote(f.backingFile)}`) : Accept),
  (f) => (f.dataFile !== undefined ? reject("data-file", `the ${f.format} image has an external data file ${quote(f.dataFile)}`) : Accept),
  (f) => (f.badExtent ? reject("bad-extent", `the vmdk image is unsafe: ${f.badExtent}`) : Accept),
  (f) =>
    f.format === "vmdk" && !AllowedVmdkCreateTypes.includes(f.subformat ?? "")
      ? reject("unsupported-format", `vmdk create type "${f.subformat ?? ""}" is not allowed (allowed: ${AllowedVmdkCreateTypes.join(", ")})`)
      : Accept,
  (f) => (f.unknownFeatures ? reject("unknown-feature", `the ${f.format} image uses features we do not know: ${f.unknownFeatures}`) : Accept),
  (f) => clusterShape(f),
  (f) =>
    f.tableBytes !== undefined && f.tableBytes > MaxTableBytes
      ? reject("resource-limit", `the ${f.format} tables need ${f.tableBytes} bytes (${formatBytes(f.tableBytes)}) of memory, more than the ${formatBytes(MaxTableBytes)} any legitimate image needs`)
      : Accept,
  (f) => (f.format === "raw" && f.fileSize % 512 !== 0 ? reject("not-a-disk", `the raw file is ${f.fileSize} bytes, not a whole number of 512-byte sectors`) : Accept),
  (f) => (f.notADisk ? reject("not-a-disk", `the file is not a disk image: ${f.notADisk}`) : Accept),
  (f, l) => tooLarge(f.virtualSize, l),
];

function clusterShape(f: HeaderFacts): ImageVerdict {
  const range = ClusterRanges[f.format];
  const c = f.clusterBytes;
  if (!range || c === undefined) return Accept;
  const size = `the ${f.format} ${range.what} size is ${c} bytes (${formatBytes(c)})`;
  const allowed = `${formatBytes(range.min)} to ${formatBytes(range.max)}; ${range.tools}`;
  if (c > range.max) return reject("resource-limit", `${size}: converting it would need memory and time no legitimate image needs (allowed: ${allowed})`);
  if (c < range.min || (c & (c - 1)) !== 0) return reject("unsupported-format", `${size}, which no tool writes (allowed: powers of two from ${allowed})`);
  return Accept;
}

/** Decides on the facts our header inspector found, before qemu-img opens the file. */
export function evaluateHeader(facts: HeaderFacts, limits: ImageLimits): ImageVerdict {
  return firstRefusal(headerRules.map((rule) => () => rule(facts, limits)));
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

/** Decides on `qemu-img info` of the downloaded file: it must agree with our header inspector. */
export function evaluateQemuInfo(facts: HeaderFacts, info: QemuImageInfo, limits: ImageLimits): ImageVerdict {
  return firstRefusal([
    () => (info.format === facts.format ? Accept : reject("format-mismatch", `qemu-img reads format ${info.format}, our inspector found ${facts.format}`)),
    () => (info.backingFilename !== undefined ? reject("backing-file", `qemu-img reports a backing file ${quote(info.backingFilename)}`) : Accept),
    () => (info.dataFile !== undefined ? reject("data-file", `qemu-img reports an external data file ${quote(info.dataFile)}`) : Accept),
    () => (info.encrypted ? reject("encrypted", "qemu-img reports the image is encrypted") : Accept),
    () => (info.corrupt || info.dirty ? reject("corrupt", "qemu-img reports the image is marked corrupt or dirty") : Accept),
    () => sizesAgree(facts, info),
    () => tooLarge(info.virtualSize, limits),
  ]);
}

function sizesAgree(facts: HeaderFacts, info: QemuImageInfo): ImageVerdict {
  const ours = [facts.virtualSize, facts.altVirtualSize].filter((v): v is number => v !== undefined);
  if (ours.length === 0 || ours.includes(info.virtualSize)) return Accept;
  return reject("format-mismatch", `qemu-img reads a virtual size of ${info.virtualSize} bytes, our inspector found ${ours.join(" or ")}`);
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
  if (check.corruptions > 0) return reject("corrupt", `qemu-img check found ${check.corruptions} corruptions`);
  if (check.checkErrors > 0 || check.exitCode === 1) return reject("corrupt", "qemu-img check could not complete: the image structure is broken");
  if (check.exitCode !== 0 && check.exitCode !== 3) return reject("corrupt", `qemu-img check exited ${check.exitCode}`);
  return Accept;
}

/** Decides on `qemu-img info` of the converted output: raw, with the source's virtual size. */
export function evaluateConverted(info: QemuImageInfo, expectedVirtualSize: number): ImageVerdict {
  if (info.format !== "raw") return reject("inspect-failed", `the converted file reads as ${info.format}, not raw`);
  if (info.virtualSize !== expectedVirtualSize) {
    return reject("inspect-failed", `the converted file has ${info.virtualSize} bytes, the source's virtual size is ${expectedVirtualSize}`);
  }
  return Accept;
}

function tooLarge(size: number | undefined, limits: ImageLimits): ImageVerdict {
  if (size === undefined || limits.maxVirtualSize === undefined || size <= limits.maxVirtualSize) return Accept;
  return reject("too-large", `the virtual size ${size} bytes exceeds the limit of ${limits.maxVirtualSize} bytes`);
}

function firstRefusal(rules: (() => ImageVerdict)[]): ImageVerdict {
  for (const rule of rules) {
    const v = rule();
    if (!v.accept) return v;
  }
  return Accept;
}

function quote(s: string): string {
  return s.startsWith("(") ? s : JSON.stringify(s);
}
