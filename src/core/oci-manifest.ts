/**
 * OCI and Docker schema2 manifests: parse a fetched document, pick a platform from an index, and decide which
 * layer holds the disk and how it is packed. Pure; every refusal is returned with a reason and a message.
 */
import { DigestPattern } from "./oci-ref.js";
import type { RejectReason } from "./reject-reasons.js";

/** Media types of manifests we accept, and of the layers we know. */
export const MediaType = {
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  OciIndex: "application/vnd.oci.image.index.v1+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  OciEmpty: "application/vnd.oci.empty.v1+json",
} as const;

/** The Accept header for manifest requests: every manifest type we can read. */
export const ManifestAccept = [MediaType.OciManifest, MediaType.OciIndex, MediaType.DockerManifest, MediaType.DockerManifestList].join(", ");

/** Largest manifest we read; the OCI distribution spec lets registries refuse anything above 4 MiB. */
export const MaxManifestBytes = 4 * 1024 * 1024;

/** The annotation ORAS and other artifact tools set to a layer's file name. */
export const TitleAnnotation = "org.opencontainers.image.title";
/** File name endings that mark a titled layer as the disk itself. */
export const DiskFileExtensions = [".qcow2", ".img", ".raw", ".vmdk", ".vhdx", ".vdi"] as const;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** A content descriptor, validated: the digest is `sha256:<hex>` and the size a non-negative integer. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
  platform?: Platform;
}

export type ManifestDocument =
  | { kind: "image"; mediaType: string; config: Descriptor; layers: Descriptor[] }
  | { kind: "index"; mediaType: string; manifests: Descriptor[] };

/** Why a manifest cannot give us a disk, with one of the refusal reasons of core/reject-reasons.ts. */
export interface ManifestProblem {
  reason: Extract<RejectReason, "not-a-disk" | "unsupported-format" | "corrupt">;
  message: string;
}

export type Decision<T> = { ok: true; value: T } | ({ ok: false } & ManifestProblem);

const problem = (reason: ManifestProblem["reason"], message: string): { ok: false } & ManifestProblem => ({ ok: false, reason, message });

const imageTypes: readonly string[] = [MediaType.OciManifest, MediaType.DockerManifest];
const indexTypes: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList];

/**
 * Parses a manifest body. The type comes from the body's `mediaType`, else from the Content-Type header, else
 * from its shape; a body and header that disagree are refused, so a registry cannot make us read one as the other.
 */
export function parseManifestDocument(body: string, contentType: string | undefined): Decision<ManifestDocument> {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return problem("corrupt", "the manifest is not valid JSON");
  }
  if (!isRecord(doc)) return problem("corrupt", "the manifest is not a JSON object");
  if (doc.schemaVersion !== 2) return problem("unsupported-format", `manifest schemaVersion ${JSON.stringify(doc.schemaVersion)} is not supported (only 2)`);
  const header = contentType?.split(";")[0]?.trim().toLowerCase();
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  const known = [...imageTypes, ...indexTypes];
  if (declared !== undefined && header !== undefined && known.includes(header) && header !== declared) {
    return problem("corrupt", `the manifest says it is "${declared}" but was served as "${header}"`);
  }
  const mediaType = declared ?? (header !== undefined && known.includes(header) ? header : undefined) ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (indexTypes.includes(mediaType)) {
    const manifests = parseDescriptors(doc.manifests, "manifests");
    return manifests.ok ? { ok: true, value: { kind: "index", mediaType, manifests: manifests.value } } : manifests;
  }
  if (!imageTypes.includes(mediaType)) return problem("unsupported-format", `manifest media type "${mediaType}" is not supported`);
  const config = parseDescriptor(doc.config, "config");
  if (!config.ok) return config;
  const layers = parseDescriptors(doc.layers, "layers");
  if (!layers.ok) return layers;
  return { ok: true, value: { kind: "image", mediaType, config: config.value, layers: layers.value } };
}

function parseDescriptors(value: unknown, field: string): Decision<Descriptor[]> {
  if (!Array.isArray(value)) return problem("corrupt", `the manifest has no "${field}" list`);
  const out: Descriptor[] = [];
  for (const [i, item] of value.entries()) {
    const d = parseDescriptor(item, `${field}[${i}]`);
    if (!d.ok) return d;
    out.push(d.value);
  }
  return { ok: true, value: out };
}

function parseDescriptor(value: unknown, field: string): Decision<Descriptor> {
  if (!isRecord(value)) return problem("corrupt", `manifest field "${field}" is not a descriptor`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== "string" || mediaType.length === 0) return problem("corrupt", `descriptor "${field}" has no mediaType`);
  // NOTE: the digest goes into a URL path, so anything but sha256 hex is refused rather than escaped.
  if (typeof digest !== "string" || !DigestPattern.test(digest)) return problem("unsupported-format", `descriptor "${field}" has digest ${JSON.stringify(digest)}, not sha256:<hex>`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) return problem("corrupt", `descriptor "${field}" has an invalid size`);
  const annotations: Record<string, string> = {};
  if (isRecord(value.annotations)) {
    for (const [k, v] of Object.entries(value.annotations)) if (typeof v === "string") annotations[k] = v;
  }
  const d: Descriptor = { mediaType, digest, size, annotations };
  const p = value.platform;
  if (isRecord(p) && typeof p.os === "string" && typeof p.architecture === "string") {
    d.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === "string" ? { variant: p.variant } : {}) };
  }
  return { ok: true, value: d };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Picks the manifest for `want` from an index: the first image manifest whose platform matches, skipping
 * attestations. An index whose entries carry no platform at all (an artifact index) may hold exactly one manifest.
 */
export function choosePlatformManifest(manifests: readonly Descriptor[], want: Platform): Decision<Descriptor> {
  const images = manifests.filter((d) => imageTypes.includes(d.mediaType) && d.annotations["vnd.docker.reference.type"] !== "attestation-manifest");
  const match = images.find(
    (d) => d.platform?.os === want.os && d.platform.architecture === want.architecture && (want.variant === undefined || d.platform.variant === want.variant),
  );
  if (match) return { ok: true, value: match };
  const unplatformed = images.filter((d) => d.platform === undefined);
  if (unplatformed.length === 1 && images.length === 1) return { ok: true, value: unplatformed[0] as Descriptor };
  const offered = images.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}` : "unspecified")).join(", ") || "none";
  return problem("not-a-disk", `the index has no image manifest for ${want.os}/${want.architecture} (offered: ${offered})`);
}

/**
 * How the chosen layer holds the disk: as its bytes, or as the disk file of a tar, plain or compressed. The
 * media type says only whether it is a tar: the compression is read from the layer's magic bytes when it is
 * downloaded (core/compression.ts), as for an HTTP source, so a mislabelled layer is decoded by what it is.
 * zstd is `application/vnd.oci.image.layer.v1.tar+zstd` (and its nondistributable twin) and containerd's
 * `application/vnd.docker.image.rootfs.diff.tar.zstd`; no registry media type names xz, so none is invented.
 */
export type Unpack = "none" | "tar" | "tar+gzip" | "tar+zstd";

export interface DiskChoice {
  layer: Descriptor;
  unpack: Unpack;
  /** Why this layer, for logs. */
  why: string;
}

/** How a layer's bytes are packed, from its media type alone. */
export function layerPacking(mediaType: string): Unpack {
  const t = mediaType.toLowerCase();
  if (t.endsWith(".tar") || t === "application/x-tar") return "tar";
  if (t.endsWith("tar+gzip") || t.endsWith("tar.gzip") || t.endsWith("tar.gz")) return "tar+gzip";
  if (t.endsWith("tar+zstd") || t.endsWith("tar.zstd")) return "tar+zstd";
  return "none";
}

function isDiskTitle(title: string | undefined): boolean {
  const t = title?.toLowerCase();
  return t !== undefined && DiskFileExtensions.some((ext) => t.endsWith(ext) && t.length > ext.length);
}

/**
 * Decides which layer of an image manifest is the disk:
 * 1. the one layer titled `*.qcow2|img|raw|vmdk|vhdx|vdi` (an artifact pushed by ORAS and the like): its bytes
 *    are the disk, whatever tar type tools label files with;
 * 2. else the only layer: a disk blob, or a tar (KubeVirt containerDisk) holding the disk under `disk/`;
 * 3. else, when every layer is a tar, the largest one (a containerDisk built on a small base layer).
 * Empty layers are ignored. Several titled disks or several untitled blobs are refused.
 */
export function chooseDiskLayer(layers: readonly Descriptor[]): Decision<DiskChoice> {
  const real = layers.filter((l) => l.size > 0 && l.mediaType !== MediaType.OciEmpty);
  if (real.length === 0) return problem("not-a-disk", "the image has no layers with content");
  const titled = real.filter((l) => isDiskTitle(l.annotations[TitleAnnotation]));
  if (titled.length > 1) {
    const names = titled.map((l) => `"${l.annotations[TitleAnnotation]}"`).join(", ");
    return problem("not-a-disk", `the image has several disk layers (${names}); cannot tell which is the disk`);
  }
  if (titled.length === 1) {
    const layer = titled[0] as Descriptor;
    return withPacking(layer, "none", `the layer titled "${layer.annotations[TitleAnnotation]}"`);
  }
  if (real.length === 1) {
    const layer = real[0] as Descriptor;
    return withPacking(layer, layerPacking(layer.mediaType), "the only layer");
  }
  const packings = real.map((l) => layerPacking(l.mediaType));
  if (packings.some((p) => p === "none")) {
    return problem("not-a-disk", `the image has ${real.length} layers and none is titled as a disk; cannot tell which is the disk`);
  }
  const sorted = [...real].sort((a, b) => b.size - a.size);
  const [largest, second] = sorted as [Descriptor, Descriptor];
  if (largest.size === second.size) return problem("not-a-disk", `the image has several tar layers of the same largest size; cannot tell which holds the disk`);
  return withPacking(largest, layerPacking(largest.mediaType), `the largest of ${real.length} tar layers`);
}

function withPacking(layer: Descriptor, packing: Unpack, why: string): Decision<DiskChoice> {
  return { ok: true, value: { layer, unpack: packing, why } };
}
