/**
 * What makes two fetches of one image id the same request: the source, the expected checksum and the size
 * limit. A coalesced waiter takes the verdict of the fetch it waited for only when both keys are equal.
 */
import { createHash } from "node:crypto";

/** The parts of a fetch request its verdict depends on. */
export interface RequestParts {
  /** `{http:{url}}`, `{registry:{image}}` or a resolved source (`url`, `unpack`, `expectedDigest`). */
  source: { http: { url: string } } | { registry: { image: string } } | { url: string; unpack?: string; expectedDigest?: string };
  checksum?: string;
  /** A checksum from a SUMS file: its URL, the name looked up, the algorithm, the signature and the keys trusted. */
  checksumFrom?: { url: string; name?: string; algorithm?: string; signature?: { url?: string; keys: Uint8Array } };
  maxVirtualSize?: number;
  /** A registry image's cosign verification: the keys trusted. */
  registryVerify?: { publicKeys: string };
}

/**
 * A short, stable key of a request (hex SHA-256 of its parts, so that a URL's credentials are never written
 * into a lock file). A resolved source's headers are left out: a registry token changes on every request.
 */
export function requestKey(r: RequestParts): string {
  const s = r.source;
  const source = "http" in s ? ["http", s.http.url] : "registry" in s ? ["registry", s.registry.image] : ["resolved", s.url, s.unpack ?? "none", s.expectedDigest?.toLowerCase() ?? ""];
  const parts: unknown[] = [source, r.checksum?.toLowerCase() ?? "", r.maxVirtualSize ?? ""];
  // A registry image verified with keys is another request than the same image unverified, or with other keys.
  if (r.registryVerify) parts.push({ verify: createHash("sha256").update(r.registryVerify.publicKeys).digest("hex") });
  const from = r.checksumFrom;
  // Appended only when present, so the keys of requests without it stay as they were.
  if (from) {
    const keys = from.signature ? createHash("sha256").update(from.signature.keys).digest("hex") : "";
    parts.push([from.url, from.name ?? "", from.algorithm ?? "", from.signature?.url ?? "", keys]);
  }
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
}
