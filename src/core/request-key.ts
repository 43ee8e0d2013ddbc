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
  maxVirtualSize?: number;
}

/**
 * A short, stable key of a request (hex SHA-256 of its parts, so that a URL's credentials are never written
 * into a lock file). A resolved source's headers are left out: a registry token changes on every request.
 */
export function requestKey(r: RequestParts): string {
  const s = r.source;
  const source = "http" in s ? ["http", s.http.url] : "registry" in s ? ["registry", s.registry.image] : ["resolved", s.url, s.unpack ?? "none", s.expectedDigest?.toLowerCase() ?? ""];
  const parts = [source, r.checksum?.toLowerCase() ?? "", r.maxVirtualSize ?? ""];
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
}
