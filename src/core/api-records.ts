/**
 * The one declaration of basecache's API objects as plain records: kube/parse.ts turns raw API JSON into these,
 * kube/api-types.ts re-exports them beside the API constants, and core plans with them. Kept in step with
 * crds/*.yaml by test/unit/crd-types.test.ts.
 */
import type { Condition } from "./conditions.js";

/** An image's bytes come from one HTTP(S) URL. */
export interface HttpSource {
  http: { url: string };
}

/** An image's bytes come from an OCI image in a registry. */
export interface RegistrySource {
  registry: { image: string; verify?: RegistryVerify };
}

/** A registry image's cosign signature, checked against public keys before any layer is downloaded. */
export interface RegistryVerify {
  /** PEM public keys (cosign.pub), one or more blocks. */
  keys: { configMapRef: ConfigMapKeyRef };
  /** NodeImageCaches only: the PEM keys the controller read from `keys.configMapRef`. */
  publicKeys?: string;
}

/** Where an image comes from: exactly one of http or registry (the CRD enforces it). */
export type ImageSource = HttpSource | RegistrySource;

/** A key of a ConfigMap in basecache's own namespace. */
export interface ConfigMapKeyRef {
  name: string;
  key: string;
}

/** The OpenPGP signature of a checksum file, and the keys to check it against. */
export interface ChecksumSignature {
  /** A detached signature; absent when the checksum file is clearsigned. */
  url?: string;
  keys: { configMapRef: ConfigMapKeyRef };
  /** NodeImageCaches only: the armored keys the controller read from `keys.configMapRef`. */
  publicKeys?: string;
}

/** The algorithms a checksumFrom may be limited to, as the CRDs' enum lists them. */
export const SumsAlgorithms = ["sha256", "sha512"] as const;

/** The expected checksum comes from the vendor's checksum file (core/sums-file.ts). */
export interface ChecksumFrom {
  url: string;
  /** The name the image is listed under; default the last path segment of the image URL. */
  name?: string;
  algorithm?: (typeof SumsAlgorithms)[number];
  signature?: ChecksumSignature;
}

/** An opt-in update policy: the tracked source is checked again every `interval` (core/versions.ts). */
export interface UpdatePolicy {
  /** A duration such as `6h`; checks never repeat faster than core/versions.ts MinUpdateInterval. */
  interval: string;
}

/** What pins one version of a tracked source: one or more of these, as the check found them. */
export interface VersionPin {
  /** A registry source: the manifest digest the tag named. */
  digest?: string;
  /** An http source with checksumFrom: the checksum the (verified) SUMS file lists. */
  checksum?: string;
  /** An http source without a checksum: the origin's validators, sent back as preconditions. */
  etag?: string;
  lastModified?: string;
  /** The key that signed the SUMS file, or the registry image's cosign signature, when it is signed. */
  signedBy?: string;
}

/** One version of a tracked image. */
export interface ImageVersion extends VersionPin {
  /** 12 hex, core/versions.ts versionNameOf. */
  name: string;
  /** When a check first found it (RFC 3339). */
  resolvedAt: string;
}

/** What the controller's checks found for one tracked image, in its ImageCache's status. */
export interface VersionRecord {
  id: string;
  /** core/versions.ts trackedDefinition of the spec this record is about. */
  definition: string;
  current?: ImageVersion;
  /** Names of older versions, newest first. */
  previous?: string[];
  checkedAt?: string;
  /** Why the last check failed; absent after one that worked. */
  message?: string;
}

/** One image as an ImageCache declares it. */
export interface ImageSpec {
  id: string;
  source: ImageSource;
  /** `sha256:<64 hex>` */
  checksum?: string;
  /** Not with `checksum`; only with an http source (the CRD enforces both). */
  checksumFrom?: ChecksumFrom;
  /** A byte quantity such as `20Gi`. */
  maxVirtualSize?: string;
  updatePolicy?: UpdatePolicy;
  /** NodeImageCaches only: the version of a tracked image the node should hold. */
  version?: ImageVersion;
}

/** The operators of a label selector requirement, as the CRD's enum lists them. */
export const SelectorOperators = ["In", "NotIn", "Exists", "DoesNotExist"] as const;
export type SelectorOperator = (typeof SelectorOperators)[number];

export interface LabelSelectorRequirement {
  key: string;
  operator: SelectorOperator;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** How the controller marks nodes holding the images (core/node-placement.ts). */
export interface PlacementSpec {
  /** Hold the basecache.io/warming NoSchedule taint on each selected node until its first sync. */
  taintUntilReady?: boolean;
}

export interface ImageCacheSpec {
  nodeSelector?: LabelSelector;
  images: ImageSpec[];
  retention?: { unusedFor?: string };
  placement?: PlacementSpec;
}

/** How many selected nodes hold one image Ready, are still working on it, or failed it. */
export interface ImageCounts {
  id: string;
  ready: number;
  pending: number;
  failed: number;
}

/** One failing (node, image) pair in an ImageCache's status. */
export interface NodeFailure {
  node: string;
  id: string;
  reason: string;
  message: string;
}

export interface ImageCacheStatus {
  observedGeneration?: number;
  /** Nodes the selector matches. */
  desiredNodes?: number;
  /** Matching nodes whose NodeImageCache reports every image of this ImageCache Ready. */
  readyNodes?: number;
  /** `readyNodes/desiredNodes`, for the READY printer column. */
  ready?: string;
  /** All failing (node, image) pairs, including those beyond the listed 20. */
  failedCount?: number;
  images?: ImageCounts[];
  /** At most 20, sorted by node then id. */
  failures?: NodeFailure[];
  failuresTruncated?: boolean;
  conditions?: Condition[];
  /** The Node label `<nodeLabel>=ready` marks the nodes where this ImageCache is Ready. */
  nodeLabel?: string;
  /** One per image with an updatePolicy that has been checked. */
  versions?: VersionRecord[];
}

export interface ObjectMeta {
  name: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

export interface ImageCache {
  metadata: ObjectMeta;
  spec: ImageCacheSpec;
  status?: ImageCacheStatus;
}

/** One image a node should hold: the union over ImageCaches, with the names that want it. */
export interface WantedImage extends ImageSpec {
  wantedBy: string[];
  /** The shortest retention among the ImageCaches that want it, as a duration string. */
  unusedFor?: string;
}

/** One base the pods on a node use, as the controller answers it. */
export interface PodUse {
  /** SHA-1 hex of the image id. */
  base: string;
  imageId: string;
  /** `namespace/name` of the first few pods (core/pod-uses.ts MaxPodsPerUse). */
  pods: string[];
  podCount: number;
}

/** The controller's answer to an agent's pod-uses request: what the node's pods use, listed after the request. */
export interface PodUsesAnswer {
  /** The request token this answers (status.podUsesRequest). */
  token: string;
  /** When the controller listed the pods (RFC 3339). */
  observedAt: string;
  uses: PodUse[];
  /** Set when the uses could not be determined (the list failed, or too many images): GC keeps every base. */
  incomplete?: string;
}

export interface NodeImageCacheSpec {
  nodeName: string;
  images: WantedImage[];
  /** Written by the controller only, in answer to status.podUsesRequest. */
  podUses?: PodUsesAnswer;
}

/** The phases of an image on a node, in the order a fetch goes through them, as the CRD's enum lists them. */
export const ImagePhases = ["Pending", "Downloading", "Converting", "Ready", "Failed"] as const;
export type ImagePhase = (typeof ImagePhases)[number];

/** One image's entry in a NodeImageCache status. */
export interface NodeImageStatus {
  id: string;
  base: string;
  phase: ImagePhase;
  bytesDone?: number;
  bytesTotal?: number;
  virtualSize?: number;
  reason?: string;
  message?: string;
  /** Generation of the spec this entry was computed for, so a changed spec retries a rejected image. */
  observedGeneration?: number;
  /** Hash of the image definition this entry reports on (definitionHash in core/agent-plan.ts). */
  definition?: string;
  /** A tracked image: the version this entry reports on. */
  version?: string;
  /** A tracked image: bases of its older versions still on the node, newest first. */
  previousVersions?: { version: string; base: string }[];
}

/** The cache's own allocated bytes, and the size and free bytes of the filesystem it is on. */
export interface DiskUsage {
  cacheBytes: number;
  /** cacheBytes for humans ("24.0 MiB"), for kubectl's Cache column, which cannot format a number. */
  cache?: string;
  filesystemBytes: number;
  filesystemFreeBytes: number;
}

/** The NodeImageCache status the agent writes. */
export interface NodeImageCacheStatus {
  observedGeneration?: number;
  images?: NodeImageStatus[];
  disk?: DiskUsage;
  conditions?: Condition[];
  /** A fresh random token: the agent asks the controller which bases the node's pods use (answer in spec.podUses). */
  podUsesRequest?: string;
}

export interface NodeImageCache {
  metadata: ObjectMeta;
  spec: NodeImageCacheSpec;
  status?: NodeImageCacheStatus;
}

/** What the controller needs of a Node. */
export interface NodeInfo {
  name: string;
  uid: string;
  labels: Record<string, string>;
}
