/** What a fetch is asked to do and what it returns: the records of src/image/pipeline.ts's `fetchImage`. */
import type { ImageVersion } from "../core/api-records.js";
import type { Logger } from "../lib/log.js";
import type { ChecksumFromRequest } from "./checksum-from.js";
import type { RegistryVerifyRequest } from "./cosign-verify.js";
import type { RetryPolicy } from "./http-fetch.js";
import type { SourceSpec } from "./source.js";

/** Progress of a fetch, reported at most every few hundred milliseconds. */
export interface FetchProgress {
  phase: "Downloading" | "Converting";
  bytesDone: number;
  bytesTotal?: number;
}

/** What a fetch has learned so far, reported as it goes so that a failure can still say it (`fetch --json`). */
export interface FetchFacts {
  format?: string;
  virtualSize?: number;
  bytesDownloaded?: number;
  /** Bytes of a kept `.part` this fetch continues from (reported when the resume starts). */
  resumedBytes?: number;
  sha256?: string;
}

/** What to fetch and where. */
export interface FetchRequest {
  /** The `_base` directory; created when missing. */
  baseDir: string;
  /** The image id; the base is named by its sha1. */
  id: string;
  source: SourceSpec;
  /** `"sha256:<hex>"` or `"sha512:<hex>"` of the disk image: as served, or as decoded from a gzip/xz/zstd source, or the disk inside a tar. */
  checksum?: string;
  /** The checksum comes from the vendor's SUMS file (http sources only; not with `checksum`). */
  checksumFrom?: ChecksumFromRequest;
  /** Verify a registry source's cosign signature with these keys before any layer is downloaded (registry sources only). */
  registryVerify?: RegistryVerifyRequest;
  /** Largest virtual size accepted, in bytes. */
  maxVirtualSize?: number;
  /**
   * The version of a tracked image this fetch stores (core/versions.ts): the base is then named
   * `sha1(id@version)` (core/names.ts versionedBaseName) and the sidecar records the version.
   */
  version?: StoredVersion;
  /** Request headers that must hold for the download (If-Match, If-Unmodified-Since): an http source's version pin. */
  preconditions?: Record<string, string>;
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: (p: FetchProgress) => void;
  /** Called with each fact as it is learned: after the download, and once the header is read. */
  onFacts?: (f: FetchFacts) => void;
  retry?: RetryPolicy;
  /** No byte for this long counts as a stall (then resume or retry). */
  idleTimeoutMs?: number;
  /**
   * Page-cache discipline of the download (core/write-back.ts): a background fdatasync every this many bytes
   * written, and writes held while twice that is not yet durable. 0 turns it off; default DefaultWriteBackBytes (32 MiB).
   */
  writeBackBytes?: number;
}

/** What the download's write-back did: how the bound on its dirty pages was kept. */
export interface WriteBackReport {
  /** The most bytes allowed not durable at once; 0 when write-back was off. */
  limitBytes: number;
  /** fdatasyncs while writing (write-back and checkpoints share them). */
  syncs: number;
  /** Times the download waited for a sync to land before writing on. */
  holds: number;
  /** The most bytes written (or being written) and not yet durable at any moment. */
  peakUnsyncedBytes: number;
  /** Bytes written to the `.part` (zero blocks skipped). */
  writtenBytes: number;
}

/** A tracked image's version as its sidecar records it: what pins it, when it was found, where its checksum came from. */
export interface StoredVersion extends ImageVersion {
  /** The SUMS file the controller read the checksum from (its signature verified by `signedBy`). */
  checksumFromUrl?: string;
}

/** A ready base. */
export interface FetchResult {
  id: string;
  /** File name of the base: sha1 hex of the id (of `id@version` for a tracked image's version). */
  base: string;
  /** Absolute path of the base. */
  path: string;
  /** True when the base was already there (or another process fetched it while we waited): nothing downloaded. */
  cached: boolean;
  /** Format of the source image (the base itself is always raw). */
  format: string;
  virtualSize: number;
  /** Bytes this process received from the network. */
  bytesDownloaded: number;
  /** Bytes of a `.part` a previous process left that this fetch kept and continued (0: from zero). */
  resumedBytes: number;
  /** SHA-256 of the source image bytes. */
  sha256: string;
  seconds: number;
  /** Bytes the base occupies on disk (sparse). */
  allocatedBytes: number;
  /** What the download's write-back did; absent when nothing was downloaded. */
  writeBack?: WriteBackReport;
}
