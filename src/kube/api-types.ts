/**
 * basecache's API: the group, kinds and well-known keys, and the records of its objects. The records are
 * declared once, in core/api-records.ts (core plans with them and may not import kube); kube/parse.ts fills
 * them from raw API JSON.
 */
export type {
  ChecksumFrom,
  ChecksumSignature,
  ConfigMapKeyRef,
  DiskUsage,
  HttpSource,
  ImageCache,
  ImageCacheSpec,
  ImageCacheStatus,
  ImageCounts,
  ImagePhase,
  ImageSource,
  ImageSpec,
  LabelSelector,
  LabelSelectorRequirement,
  NodeFailure,
  NodeImageCache,
  NodeImageCacheSpec,
  NodeImageCacheStatus,
  NodeImageStatus,
  NodeInfo,
  ObjectMeta,
  PodUse,
  PodUsesAnswer,
  RegistrySource,
  RegistryVerify,
  ImageVersion,
  SelectorOperator,
  UpdatePolicy,
  VersionPin,
  VersionRecord,
  WantedImage,
} from "../core/api-records.js";
export { ImagePhases, SelectorOperators, SumsAlgorithms } from "../core/api-records.js";

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
