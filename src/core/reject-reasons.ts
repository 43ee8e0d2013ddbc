/**
 * The one list of reasons an image is refused: the `reason` of an `ImageRejectedError`, of `--json` output and
 * of a `Failed` status entry (the agent writes it as is, there is no second spelling). Each row says what the
 * reason means; docs/operations.md explains the same reasons to an operator. Adding a reason is one row.
 */

/** One refusal reason and what it means. */
export interface RejectReasonRow {
  readonly reason: string;
  /** What the image is, in one line. */
  readonly doc: string;
  /** Final from the header alone: `evaluateEarlyHeader` refuses it from the first 64 KiB, before downloading the rest. */
  readonly early?: true;
}

/** Every refusal reason, most specific first, as the image checks try them. */
export const RejectReasonRows = [
  { reason: "backing-file", early: true, doc: "The image names a backing file: reading it would read another file on the node" },
  { reason: "data-file", early: true, doc: "A qcow2 image with an external data file, the same risk as a backing file" },
  { reason: "encrypted", early: true, doc: "The image is encrypted" },
  { reason: "unknown-feature", early: true, doc: "A qcow2 image sets incompatible feature bits we do not know" },
  { reason: "too-large", early: true, doc: "The virtual size (or an archive member) is above the size limit" },
  { reason: "corrupt", doc: "The image, its manifest, its archive or its gzip/xz/zstd stream is damaged or truncated" },
  { reason: "unsupported-format", early: true, doc: "Not raw, qcow2, vmdk, vhdx, vpc or vdi, or a variant of them we refuse" },
  { reason: "not-a-disk", doc: "Not a disk image at all: an HTML error page served with 200, or an archive (tar/OVA, zip, 7z, RAR, cpio)" },
  { reason: "empty", doc: "No bytes, or a size that is not whole sectors" },
  { reason: "checksum-mismatch", doc: "The download's SHA-256 differs from the declared checksum" },
  { reason: "sums-too-large", doc: "The checksum file (checksumFrom) is larger than 1 MiB: no vendor's is" },
  { reason: "sums-malformed", doc: "The checksum file (checksumFrom) has no sha256 or sha512 checksum line" },
  { reason: "checksum-not-listed", doc: "The checksum file (checksumFrom) does not list the image's name" },
  { reason: "checksum-ambiguous", doc: "The checksum file lists the image's name twice with different checksums" },
  { reason: "signature-invalid", doc: "A bad, missing or unreadable OpenPGP signature (gpgv BADSIG, ERRSIG), or no cosign signature verifies with the keys" },
  { reason: "signature-no-keys", doc: "No public key to check the signature with: the ConfigMap, its key or a key block in it is missing" },
  { reason: "signature-unknown-key", doc: "The checksum file is signed by a key that is not among the keys supplied" },
  { reason: "signature-key-expired", doc: "The checksum file is signed by a supplied key that has expired" },
  { reason: "signature-key-revoked", doc: "The checksum file is signed by a supplied key that is revoked" },
  { reason: "signature-expired", doc: "The checksum file's signature has expired" },
  { reason: "image-unsigned", doc: "A registry image to verify has no cosign signature for its manifest digest" },
  { reason: "signature-wrong-image", doc: "A cosign signature verifies but signs another manifest digest (copied from another image)" },
  { reason: "format-mismatch", doc: "Our header inspector and qemu-img disagree on the format" },
  { reason: "compression-bomb", doc: "A gzip/xz/zstd stream or a compressed qcow2/VMDK would expand beyond the size limit" },
  { reason: "bad-extent", early: true, doc: "A VMDK whose extents point outside the file" },
  { reason: "resource-limit", early: true, doc: "A grain, cluster, table or xz/zstd window too large for a legitimate image, or a tool stopped by its limits" },
  { reason: "base-corrupt", doc: "A stored base no longer matches the digest recorded when it was stored (bit rot or tampering)" },
  { reason: "inspect-failed", doc: "The image could not be inspected safely, or the converted file did not read back as the raw disk expected" },
] as const satisfies readonly RejectReasonRow[];

/** Every refusal reason, in the order of `RejectReasonRows`. */
export const RejectReasons = RejectReasonRows.map((r) => r.reason);

/** A stable, machine-readable reason for a refused image. */
export type RejectReason = (typeof RejectReasons)[number];

/** The reasons `evaluateEarlyHeader` may refuse from the header before the download ends. */
export const EarlyRejectReasons: readonly RejectReason[] = RejectReasonRows.filter((r: RejectReasonRow) => r.early === true).map((r) => r.reason);

const known: ReadonlySet<string> = new Set(RejectReasons);

/** True when `x` is one of the refusal reasons (e.g. a `Failed` entry's reason read back from status). */
export function isRejectReason(x: unknown): x is RejectReason {
  return typeof x === "string" && known.has(x);
}
