/**
 * The fan-out plan for one node: from the node, every ImageCache and the node's NodeImageCache as last seen,
 * what to write: create it, patch its spec, labels or owner, delete it (the node is gone), wait, or nothing.
 *
 * Shapes mirror src/kube/api-types.ts structurally (core may not import kube); the edge builds the objects.
 */
import { isDeepStrictEqual } from "node:util";
import { capImages, findConflicts, lostDefinitions, planNodeImages, selectingImageCaches, type ImageCacheView, type NodeWantedImage } from "./desired.js";
import { normalizeJson } from "./json.js";

/** Label on every NodeImageCache the controller manages. */
export const ManagedByLabel = "app.kubernetes.io/managed-by";
export const ManagedByValue = "basecache-controller";
/** The longest label value the API server accepts. */
const MaxLabelValue = 63;

export interface OwnerRef {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** What the plan needs of a Node. */
export interface FanoutNode {
  name: string;
  uid: string;
  labels: Readonly<Record<string, string>>;
}

/** What the plan needs of the node's NodeImageCache. */
export interface FanoutCurrent {
  uid?: string;
  deletionTimestamp?: string;
  labels: Readonly<Record<string, string>>;
  /** Its spec's images as stored, compared with the planned ones. */
  images: readonly object[];
  owners: readonly OwnerRef[];
}

export interface FanoutInput {
  /** Undefined once the node is gone. */
  node: FanoutNode | undefined;
  /** Every ImageCache not being deleted. */
  imageCaches: readonly ImageCacheView[];
  /** The NodeImageCache as last seen (cache, or our own newer write). */
  current: FanoutCurrent | undefined;
  /** The label key naming a NodeImageCache's node. */
  nodeLabel: string;
}

export type FanoutPlan =
  | { action: "none"; reason: string }
  | { action: "create"; labels: Record<string, string>; owner: OwnerRef; images: NodeWantedImage[] }
  | { action: "patch"; patch: { metadata: { labels: Record<string, string>; ownerReferences: OwnerRef[] }; spec?: { images: NodeWantedImage[] } }; images: NodeWantedImage[] }
  | { action: "delete"; uid: string | undefined }
  | { action: "wait"; reason: string };

/** The labels a node's NodeImageCache carries; a node name too long for a label value goes without the node label. */
export function planFanoutLabels(nodeName: string, nodeLabel: string): Record<string, string> {
  return nodeName.length <= MaxLabelValue ? { [ManagedByLabel]: ManagedByValue, [nodeLabel]: nodeName } : { [ManagedByLabel]: ManagedByValue };
}

/** Decides what to write for one node's NodeImageCache. */
export function planFanout(input: FanoutInput): FanoutPlan {
  const { node, current } = input;
  if (!node) return current ? { action: "delete", uid: current.uid } : { action: "none", reason: "node and NodeImageCache are both gone" };
  if (current?.deletionTimestamp) return { action: "wait", reason: "NodeImageCache is being deleted" };
  const lost = lostDefinitions(findConflicts(input.imageCaches));
  const { kept } = capImages(planNodeImages(selectingImageCaches(input.imageCaches, node.labels), lost));
  const images = normalizeJson(kept);
  const owner: OwnerRef = { apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid };
  const labels = planFanoutLabels(node.name, input.nodeLabel);
  if (!current) return images.length === 0 ? { action: "none", reason: "no ImageCache selects the node" } : { action: "create", labels, owner, images };
  const sameImages = isDeepStrictEqual(normalizeJson(current.images), images);
  const sameOwner = current.owners.length === 1 && isDeepStrictEqual(normalizeJson(current.owners[0]), owner);
  const sameLabels = Object.entries(labels).every(([k, v]) => current.labels[k] === v);
  if (sameImages && sameOwner && sameLabels) return { action: "none", reason: "up to date" };
  return { action: "patch", patch: { metadata: { labels, ownerReferences: [owner] }, ...(sameImages ? {} : { spec: { images } }) }, images };
}
