/**
 * Where the bytes of an image come from, once any indirection (an OCI registry, a redirecting catalogue) has
 * been resolved to one HTTP(S) URL. The fetch pipeline downloads `url` and never guesses anything else.
 */
import type { HttpSource, ImageSource } from "../core/api-records.js";
import { redactUrl } from "../core/redact.js";
import type { CosignProvenance } from "./cosign-verify.js";

export interface ResolvedSource {
  /** The http: or https: URL of the bytes to download. */
  url: string;
  /** Extra request headers, such as a registry bearer token. Never logged. */
  headers?: Record<string, string>;
  /**
   * `"sha256:<hex>"` of the bytes at `url` (the network bytes, before any unpacking), verified while
   * downloading; a mismatch rejects the image with reason checksum-mismatch.
   */
  expectedDigest?: string;
  /**
   * How the disk sits inside the network bytes: as is (`"none"`, the default), or as the one disk file of a
   * tar archive (`"tar"`, `"tar+gzip"`, `"tar+zstd"`: the media type's word; the compression itself is read from
   * the magic bytes, as for any source). Unpacked and compressed downloads restart rather than resume.
   */
  unpack?: "none" | "tar" | "tar+gzip" | "tar+zstd";
  /** A short human description for logs and messages, e.g. `registry.local/os/debian:12 (layer sha256:ab12…)`. */
  description: string;
  /** The cosign signature that was verified before this source was downloaded (a registry source with `verify`). */
  signature?: CosignProvenance;
}

/** The source of a fetch request: already resolved, or an ImageCache source (a plain URL or an OCI image reference). */
export type SourceSpec = ResolvedSource | ImageSource;

/** Turns a plain `{http:{url}}` spec into a ResolvedSource; other specs pass through. */
export function resolvedFromHttp(spec: HttpSource): ResolvedSource {
  // The description is what logs, errors and the sidecar show: never the URL's password or signature.
  return { url: spec.http.url, unpack: "none", description: redactUrl(spec.http.url) };
}
