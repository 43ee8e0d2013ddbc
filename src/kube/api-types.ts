/**
 * Plain records for basecache's API objects, parsed once at the edge (see `parse*` below in later modules)
 * so that `core` never sees `any`. Kept in step with `crds/` by test/unit/crd-types.test.ts.
 */
import type { Condition } from "../core/conditions.js";

export const Group = "basecache.io";
export const Version = "v1alpha1";
export const ApiVersion = `${Group}/${Version}`;
export const ImageCacheKind = "ImageCache";
export const ImageCachePlural = "imagecaches";
export const NodeImageCacheKind = "NodeImageCache";
export const NodeImageCachePlural = "nodeimagecaches";

/** Pod annotation listing the image ids a pod uses on its node, comma separated. */
export const ImagesAnnotation = `${Group}/images`;
/** Label on a NodeImageCache naming its node. */
export const NodeLabel = `${Group}/node`;

export interface HttpSource {
  http: { url: string };
}
export interface RegistrySource {
  registry: { image: string };
}
export type ImageSource = HttpSource | RegistrySource;

/** One image as an ImageCache declares it. */
export interface ImageSpec {
  id: string;
  source: ImageSource;
  /** `sha256:<64 hex>` */
  checksum?: string;
  /** A byte quantity such as `20Gi`. */
  maxVirtualSize?: string;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
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

export interface ImageCounts {
  id: string;
  ready: number;
  pending: number;
  failed: number;
}

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

export interface NodeImageCacheSpec {
  nodeName: string;
  images: WantedImage[];
}

export type ImagePhase = "Pending" | "Downloading" | "Converting" | "Ready" | "Failed";

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
  /** Hash of the image definition this entry reports on (imageDefinitionHash in core/agent-plan.ts). */
  definition?: string;
}

export interface NodeImageCacheStatus {
  observedGeneration?: number;
  images?: NodeImageStatus[];
  /** `cache` is cacheBytes for humans ("24.0 MiB"), for kubectl's Cache column, which cannot format a number. */
  disk?: { cacheBytes: number; cache?: string; filesystemBytes: number; filesystemFreeBytes: number };
  conditions?: Condition[];
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
