/**
 * The edge where raw API JSON becomes the typed records of api-types.ts. The API server has validated our
 * objects against the CRD schemas, so this checks shape only as far as a wrong guess would hurt, and fills
 * defaults; core never sees `any`.
 */
import type { ImageCache, NodeImageCache, NodeInfo, ObjectMeta } from "./api-types.js";
import type { RawObject } from "./client.js";

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  // client-node's typed clients turn timestamps into Dates.
  if (v instanceof Date) return v.toISOString().replace(/\.\d{3}Z$/, "Z");
  return undefined;
}

function stringMap(v: unknown): Record<string, string> {
  if (!isRecord(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === "string") out[k] = val;
  return out;
}

/** Reads metadata; throws TypeError when there is no name. */
export function parseMeta(raw: unknown): ObjectMeta {
  const m = isRecord(raw) && isRecord(raw.metadata) ? raw.metadata : undefined;
  const name = str(m?.name);
  if (!m || !name) throw new TypeError("Cannot parse object: metadata.name is missing");
  const meta: ObjectMeta = { name, labels: stringMap(m.labels), annotations: stringMap(m.annotations) };
  const uid = str(m.uid);
  if (uid) meta.uid = uid;
  if (typeof m.generation === "number") meta.generation = m.generation;
  const rv = str(m.resourceVersion);
  if (rv) meta.resourceVersion = rv;
  const created = str(m.creationTimestamp);
  if (created) meta.creationTimestamp = created;
  const deleted = str(m.deletionTimestamp);
  if (deleted) meta.deletionTimestamp = deleted;
  return meta;
}

/** Parses an ImageCache; `spec.images` defaults to empty and retention to the schema's default. */
export function parseImageCache(raw: RawObject): ImageCache {
  const spec = isRecord(raw.spec) ? raw.spec : {};
  const ic: ImageCache = {
    metadata: parseMeta(raw),
    spec: {
      images: Array.isArray(spec.images) ? (spec.images as ImageCache["spec"]["images"]) : [],
      retention: { unusedFor: (isRecord(spec.retention) && str(spec.retention.unusedFor)) || "24h" },
    },
  };
  if (isRecord(spec.nodeSelector)) ic.spec.nodeSelector = spec.nodeSelector as ImageCache["spec"]["nodeSelector"] & object;
  if (isRecord(spec.placement)) ic.spec.placement = { taintUntilReady: spec.placement.taintUntilReady === true };
  if (isRecord(raw.status)) ic.status = raw.status as ImageCache["status"];
  return ic;
}

/** Parses a NodeImageCache. */
export function parseNodeImageCache(raw: RawObject): NodeImageCache {
  const meta = parseMeta(raw);
  const spec = isRecord(raw.spec) ? raw.spec : {};
  const nic: NodeImageCache = {
    metadata: meta,
    spec: { nodeName: str(spec.nodeName) ?? meta.name, images: Array.isArray(spec.images) ? (spec.images as NodeImageCache["spec"]["images"]) : [] },
  };
  if (isRecord(raw.status)) nic.status = raw.status as NodeImageCache["status"];
  return nic;
}

/** Reads what the controller needs of a Node. */
export function parseNode(raw: unknown): NodeInfo {
  const meta = parseMeta(raw);
  return { name: meta.name, uid: meta.uid ?? "", labels: meta.labels ?? {} };
}

/** The owner references of a raw object, as written. */
export function ownerReferencesOf(raw: RawObject): { apiVersion: string; kind: string; name: string; uid: string }[] {
  const refs = isRecord(raw.metadata) ? raw.metadata.ownerReferences : undefined;
  return Array.isArray(refs) ? (refs as { apiVersion: string; kind: string; name: string; uid: string }[]) : [];
}
