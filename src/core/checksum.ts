/** Checksum algorithms `--checksum` accepts. */
export type ChecksumAlgorithm = "sha256" | "sha512";

/** An expected digest: algorithm and lowercase hex. */
export interface Checksum {
  algorithm: ChecksumAlgorithm;
  hex: string;
}

const lengths: Record<ChecksumAlgorithm, number> = { sha256: 64, sha512: 128 };

/**
 * Parses `ALGO:HEX` (sha256 or sha512, hex of the right length, any case).
 * @throws RangeError when the text is not such a checksum
 */
export function parseChecksum(text: string): Checksum {
  const m = /^(sha256|sha512):([0-9a-fA-F]+)$/.exec(text.trim());
  if (!m) throw new RangeError(`Cannot parse checksum "${text}": expected sha256:<hex> or sha512:<hex>`);
  const algorithm = m[1] as ChecksumAlgorithm;
  const hex = (m[2] ?? "").toLowerCase();
  if (hex.length !== lengths[algorithm]) {
    throw new RangeError(`Cannot parse checksum "${text}": ${algorithm} needs ${lengths[algorithm]} hex digits, got ${hex.length}`);
  }
  return { algorithm, hex };
}

/** Formats a checksum as `ALGO:HEX`. */
export function formatChecksum(c: Checksum): string {
  return `${c.algorithm}:${c.hex}`;
}
