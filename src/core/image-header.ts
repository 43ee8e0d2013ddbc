/**
 * Our own image header inspector: detects the format of an image from its bytes and reads the fields that
 * decide whether it is safe, before qemu-img ever opens the file. It reports facts; `image-checks.ts` decides.
 * Formats follow the public specs: qcow2 (qemu docs/interop/qcow2.txt), VMDK 1.1, VHDX 1.0, VHD (Microsoft
 * Virtual Hard Disk Image Format Specification), VDI (VirtualBox VDICore.h).
 */
import { ByteReader, NeedBytes, PastEnd, type ByteWindow } from "./byte-window.js";
import { parseQcow2 } from "./header-qcow2.js";
import { parseVmdk } from "./header-vmdk.js";
import { parseVhdx } from "./header-vhdx.js";
import { parseVdi, parseVpc, vpcFooterAtEnd } from "./header-misc.js";

/** Formats the inspector can name; only some of them are allowed (see image-checks.ts). */
export type HeaderFormat =
  | "raw"
  | "qcow2"
  | "qcow"
  | "qed"
  | "vmdk"
  | "vhdx"
  | "vpc"
  | "vdi"
  | "luks"
  | "parallels"
  | "bochs"
  | "cloop"
  | "dmg"
  | "gzip"
  | "xz"
  | "bzip2"
  | "zstd";

/** What the header says about an image. Absent fields mean "not present" (or not applicable). */
export interface HeaderFacts {
  format: HeaderFormat;
  fileSize: number;
  /** Virtual disk size in bytes as the header declares it (raw: the file size). */
  virtualSize?: number;
  /** VPC only: the size computed from the CHS geometry, which qemu uses for some creators. */
  altVirtualSize?: number;
  backingFile?: string;
  /** qcow2: the backing format named in the header extension, when present. */
  backingFormat?: string;
  dataFile?: string;
  encrypted?: boolean;
  /** Incompatible feature bits (or flags) this inspector does not know. */
  unknownFeatures?: string;
  /** A structural problem seen in the header: truncated tables, offsets outside the file, bad sizes. */
  corrupt?: string;
  /** VMDK create type, VPC/VDI disk type, qcow2 version: for messages and checks. */
  subformat?: string;
  /** VMDK: an extent that is not the file itself. */
  badExtent?: string;
  /** Raw only: why the bytes plainly are not a disk (text, HTML, JSON). */
  notADisk?: string;
  /** The allocation unit in bytes: qcow2 cluster, VMDK grain, VHDX/VHD/VDI block. */
  clusterBytes?: number;
  /** Bytes of tables qemu-img reads into memory at once: L1 + refcount table, grain directory, BAT, block map. */
  tableBytes?: number;
  /** qcow2: the compression type, when the header names one other than zlib. */
  compressionType?: string;
}

/** The result of one parsing pass: facts, or the byte range to read before trying again. */
export type HeaderParse = { done: true; facts: HeaderFacts } | { done: false; need: { offset: number; length: number } };

/** How many bytes from the start the edge should read before the first pass. */
export const HeaderProbeBytes = 64 * 1024;

/** Detects the format from the bytes of the window and parses its header. Never throws for hostile input. */
export function inspectHeader(window: ByteWindow): HeaderParse {
  const r = new ByteReader(window);
  try {
    return { done: true, facts: parseAny(r) };
  } catch (e) {
    if (e instanceof NeedBytes) return { done: false, need: { offset: e.offset, length: e.length } };
    if (e instanceof PastEnd) {
      return { done: true, facts: { format: detectFormat(r), fileSize: r.size, corrupt: `header field at ${e.offset} lies past the end of the file` } };
    }
    throw e;
  }
}

/** Names the format from magic bytes alone. */
export function detectFormat(r: ByteReader): HeaderFormat {
  const head = r.has(0, 8) ? r.bytes(0, 8) : r.bytes(0, r.size);
  const m = (s: string) => r.startsWith(0, s);
  if (m("QFI\xfb")) return r.has(4, 4) && r.u32be(4) === 1 ? "qcow" : "qcow2";
  if (m("QED\0")) return "qed";
  if (m("KDMV") || m("COWD") || looksLikeVmdkDescriptor(r)) return "vmdk";
  if (m("vhdxfile")) return "vhdx";
  if (m("conectix")) return "vpc";
  if (r.has(0x40, 4) && r.u32le(0x40) === 0xbeda107f) return "vdi";
  if (m("LUKS\xba\xbe")) return "luks";
  if (m("WithoutFreeSpace") || m("WithouFreSpacExt")) return "parallels";
  if (m("Bochs Virtual HD Image")) return "bochs";
  if (m("#!/bin/sh\n#V2.0 Format\nmodprobe cloop")) return "cloop";
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (m("\xfd7zXZ\0")) return "xz";
  if (m("BZh")) return "bzip2";
  if (m("\x28\xb5\x2f\xfd")) return "zstd";
  if (r.size >= 512 && r.startsWith(r.size - 512, "koly")) return "dmg";
  if (vpcFooterAtEnd(r)) return "vpc";
  return "raw";
}

function looksLikeVmdkDescriptor(r: ByteReader): boolean {
  const n = Math.min(r.size, 1024);
  if (n === 0) return false;
  const text = r.ascii(0, n);
  return /^# Disk DescriptorFile/m.test(text) || /^\s*createType\s*=/m.test(text);
}

function parseAny(r: ByteReader): HeaderFacts {
  const format = detectFormat(r);
  const base: HeaderFacts = { format, fileSize: r.size };
  switch (format) {
    case "qcow2":
      return parseQcow2(r, base);
    case "vmdk":
      return parseVmdk(r, base);
    case "vhdx":
      return parseVhdx(r, base);
    case "vpc":
      return parseVpc(r, base);
    case "vdi":
      return parseVdi(r, base);
    case "luks":
      return { ...base, encrypted: true };
    case "raw":
      return parseRaw(r, base);
    default:
      return base;
  }
}

function parseRaw(r: ByteReader, base: HeaderFacts): HeaderFacts {
  const facts: HeaderFacts = { ...base, virtualSize: r.size };
  const why = archiveKind(r) ?? textualContent(r);
  if (why) facts.notADisk = why;
  return facts;
}

/** Archive magics: an archive holds files, so storing it as a disk would give a VM a disk of tar or zip bytes. */
const ArchiveMagics: readonly { offset: number; magic: string; what: string }[] = [
  { offset: 257, magic: "ustar", what: "a tar archive (an OVA is one)" },
  { offset: 0, magic: "PK\x03\x04", what: "a zip archive" },
  { offset: 0, magic: "PK\x05\x06", what: "an empty zip archive" },
  { offset: 0, magic: "7z\xbc\xaf\x27\x1c", what: "a 7-Zip archive" },
  { offset: 0, magic: "Rar!\x1a\x07", what: "a RAR archive" },
  { offset: 0, magic: "xar!", what: "a xar archive" },
  { offset: 0, magic: "!<arch>\n", what: "an ar archive" },
  { offset: 0, magic: "070701", what: "a cpio archive" },
  { offset: 0, magic: "070702", what: "a cpio archive" },
  { offset: 0, magic: "070707", what: "a cpio archive" },
  { offset: 0, magic: "\xc7\x71", what: "a cpio archive" },
  { offset: 0, magic: "\x71\xc7", what: "a cpio archive" },
];

/** Why a raw file is an archive rather than a disk, or undefined. basecache does not unpack archives. */
export function archiveKind(r: ByteReader): string | undefined {
  const hit = ArchiveMagics.find((m) => r.startsWith(m.offset, m.magic));
  return hit ? `it is ${hit.what}, not a disk image; basecache does not unpack archives: serve the disk image inside it` : undefined;
}

const textSample = 4096;

/** Why the start of a raw file looks like a document rather than a disk, or undefined. */
export function textualContent(r: ByteReader): string | undefined {
  const n = Math.min(r.size, textSample);
  if (n === 0) return undefined;
  const b = r.bytes(0, n);
  if (b.includes(0)) return undefined;
  const lead = r.ascii(0, Math.min(n, 512)).trimStart().toLowerCase();
  if (lead.startsWith("<!doctype html") || lead.startsWith("<html") || lead.startsWith("<head") || lead.startsWith("<body")) {
    return "it is an HTML page";
  }
  if (lead.startsWith("<?xml")) return "it is an XML document";
  if (lead.startsWith("{") || lead.startsWith("[")) return "it looks like a JSON document";
  // Plain text: only printable bytes, several distinct ones, and some line structure. A fill pattern ("AAAA")
  // is printable too, but it is a disk, not a document.
  let printable = 0;
  let spaces = 0;
  const distinct = new Set<number>();
  for (const c of b) {
    if (c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127) || c >= 0x80) printable++;
    if (c === 10 || c === 32) spaces++;
    distinct.add(c);
  }
  if (printable === n && distinct.size >= 8 && spaces * 50 >= n) return `its first ${n} bytes are text with no zero byte`;
  return undefined;
}
