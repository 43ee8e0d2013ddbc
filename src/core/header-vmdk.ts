import type { ByteReader } from "./byte-window.js";
import type { HeaderFacts } from "./image-header.js";

/** The largest embedded descriptor we read (qemu reads at most 1 MiB too). */
const MaxDescriptorBytes = 1024 * 1024;

/** One extent line of a VMDK descriptor. */
export interface VmdkExtent {
  access: string;
  sectors: number;
  type: string;
  file?: string;
}

/** The fields of a VMDK descriptor that decide safety. */
export interface VmdkDescriptor {
  createType?: string;
  parentCid?: string;
  parentHint?: string;
  extents: VmdkExtent[];
}

/** Parses the text of a VMDK descriptor. */
export function parseVmdkDescriptor(text: string): VmdkDescriptor {
  const d: VmdkDescriptor = { extents: [] };
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const kv = /^([A-Za-z0-9_.]+)\s*=\s*"?([^"]*)"?\s*$/.exec(line);
    if (kv) {
      const [, key = "", value = ""] = kv;
      if (key === "createType") d.createType = value;
      else if (key === "parentCID") d.parentCid = value;
      else if (key === "parentFileNameHint") d.parentHint = value;
      continue;
    }
    const ext = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)")?/.exec(line);
    if (ext) {
      const [, access = "", sectors = "0", type = "", file] = ext;
      d.extents.push({ access, sectors: Number(sectors), type: type.toUpperCase(), ...(file === undefined ? {} : { file }) });
    }
  }
  return d;
}

/** Parses a VMDK: a hosted sparse extent (KDMV) with its embedded descriptor, or a text descriptor. */
export function parseVmdk(r: ByteReader, base: HeaderFacts): HeaderFacts {
  if (r.startsWith(0, "COWD")) return { ...base, subformat: "vmfsSparse (COWD)", badExtent: "ESX COWD extents are not supported" };
  if (!r.startsWith(0, "KDMV")) {
    // A text descriptor: every extent it names is another file on the host.
    const d = parseVmdkDescriptor(r.ascii(0, Math.min(r.size, MaxDescriptorBytes)));
    const names = d.extents.map((e) => e.file ?? "?").join(", ");
    return { ...base, subformat: d.createType ?? "descriptor", badExtent: `the descriptor names extents in other files (${names || "none"})` };
  }
  const facts: HeaderFacts = { ...base };
  const capacity = r.u64le(12);
  const descOffset = r.u64le(28);
  const descSectors = r.u64le(36);
  facts.virtualSize = capacity * 512;
  readGrainShape(r, facts, capacity);
  if (capacity === 0) {
    // NOTE: qemu then opens the embedded descriptor's extents as separate files (vmdk_open_vmdk4).
    return { ...facts, subformat: "sparse with zero capacity", badExtent: "a zero-capacity sparse header defers to its descriptor's extents" };
  }
  if (descOffset === 0 || descSectors === 0) return { ...facts, subformat: "sparse without descriptor", corrupt: "the sparse header has no embedded descriptor" };
  const start = descOffset * 512;
  const length = descSectors * 512;
  if (length > MaxDescriptorBytes || start + length > r.size) return { ...facts, corrupt: `the embedded descriptor (${length} bytes at ${start}) lies outside the file` };
  const text = r.ascii(start, length).split("\0")[0] ?? "";
  const d = parseVmdkDescriptor(text);
  facts.subformat = d.createType ?? "unknown";
  if (d.parentCid !== undefined && d.parentCid.toLowerCase() !== "ffffffff") facts.backingFile = d.parentHint ?? `(parent CID ${d.parentCid})`;
  else if (d.parentHint) facts.backingFile = d.parentHint;
  const problem = extentProblem(d.extents, capacity);
  if (problem) facts.badExtent = problem;
  return facts;
}

/** The grain size and the bytes of grain directory and grain-table cache qemu holds for it. */
function readGrainShape(r: ByteReader, facts: HeaderFacts, capacity: number): void {
  const grainSectors = r.u64le(20);
  const gtesPerGt = r.u32le(44);
  facts.clusterBytes = grainSectors * 512;
  // qemu refuses more than 512 entries per grain table; VMware and qemu-img write exactly 512.
  if (gtesPerGt === 0 || gtesPerGt > 512) facts.corrupt = `the sparse header declares ${gtesPerGt} entries per grain table`;
  else if (grainSectors > 0) facts.tableBytes = Math.ceil(capacity / (grainSectors * gtesPerGt)) * 4 + 16 * gtesPerGt * 4;
}

function extentProblem(extents: VmdkExtent[], capacity: number): string | undefined {
  if (extents.length !== 1) return `the descriptor names ${extents.length} extents, expected exactly one`;
  const [e] = extents as [VmdkExtent];
  if (e.type !== "SPARSE") return `the extent has type ${e.type}, expected SPARSE`;
  if (!e.file || /[/\\]/.test(e.file) || e.file.startsWith(".")) return `the extent names the file "${e.file ?? ""}", which is not this file`;
  if (e.sectors !== capacity) return `the extent covers ${e.sectors} sectors but the header declares ${capacity}`;
  return undefined;
}
