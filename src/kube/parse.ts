/**
 * The edge where raw API JSON becomes the records of core/api-records.ts. The API server has validated our
 * objects against the CRD schemas, so a required field that is missing or of the wrong type is a TypeError that
 * names it; an optional one is left out. Defaults are filled here; core never sees `any`.
 */
import type {
  ChecksumFrom,
  ChecksumSignature,
  ConfigMapKeyRef,
  ImageCache,
  ImageCacheSpec,
  ImageCacheStatus,
  ImageCounts,
  ImageSource,
  ImageSpec,
  ImageVersion,
  LabelSelector,
  LabelSelectorRequirement,
  NodeFailure,
  NodeImageCache,
  NodeImageCacheStatus,
  NodeImageStatus,
  NodeInfo,
  ObjectMeta,
  RegistryVerify,
  VersionRecord,
  PodUse,
  PodUsesAnswer,
  WantedImage,
} from "./api-types.js";
import { ImagePhases, SelectorOperators, SumsAlgorithms } from "./api-types.js";
import { ConditionStatuses, type Condition } from "../core/conditions.js";
import type { RawObject } from "./client.js";

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  // client-node's typed clients turn timestamps into Dates.
  if (v instanceof Date) return v.toISOString().replace(/\.\d{3}Z$/, "Z");
  return undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function stringMap(v: unknown): Record<string, string> {
  if (!isRecord(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === "string") out[k] = val;
  return out;
}

function oneOf<T extends string>(allowed: readonly T[], v: unknown): T | undefined {
  return allowed.find((a) => a === v);
}

/** The entries of an array field, each parsed; absent or not an array is empty. */
function list<T>(v: unknown, path: string, parse: (item: unknown, path: string) => T): T[] {
  return Array.isArray(v) ? v.map((item, i) => parse(item, `${path}[${i}]`)) : [];
}

function required<T>(value: T | undefined, path: string): T {
  if (value === undefined) throw new TypeError(`Cannot parse object: ${path} is missing or malformed`);
  return value;
}

/** Copies the optional fields that are present and well typed, so records hold no `undefined` values. */
function optional<T extends object>(target: T, fields: { [K in keyof T]?: T[K] | undefined }): T {
  return Object.assign(target, Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)));
}

/** Reads metadata; throws TypeError when there is no name. */
export function parseMeta(raw: unknown): ObjectMeta {
  const m = isRecord(raw) && isRecord(raw.metadata) ? raw.metadata : undefined;
  const name = str(m?.name);
  if (!m || !name) throw new TypeError("Cannot parse object: metadata.name is missing");
  return optional<ObjectMeta>(
    { name, labels: stringMap(m.labels), annotations: stringMap(m.annotations) },
    {
      uid: str(m.uid) || undefined,
      generation: num(m.generation),
      resourceVersion: str(m.resourceVersion) || undefined,
      creationTimestamp: str(m.creationTimestamp) || undefined,
      deletionTimestamp: str(m.deletionTimestamp) || undefined,
    },
  );
}

function parseSource(v: unknown, path: string): ImageSource {
  const s = isRecord(v) ? v : {};
  const url = isRecord(s.http) ? str(s.http.url) : undefined;
  if (url !== undefined) return { http: { url } };
  const image = isRecord(s.registry) ? str(s.registry.image) : undefined;
  const verify = isRecord(s.registry) ? parseVerify(s.registry.verify, `${path}.registry.verify`) : undefined;
  return { registry: { image: required(image, `${path}.http.url or ${path}.registry.image`), ...(verify ? { verify } : {}) } };
}

function parseVerify(v: unknown, path: string): RegistryVerify | undefined {
  if (!isRecord(v)) return undefined;
  return optional<RegistryVerify>({ keys: { configMapRef: parseConfigMapRef(v.keys, `${path}.keys`) } }, { publicKeys: str(v.publicKeys) });
}

function parseConfigMapRef(keys: unknown, path: string): ConfigMapKeyRef {
  const ref = isRecord(keys) && isRecord(keys.configMapRef) ? keys.configMapRef : {};
  return { name: required(str(ref.name), `${path}.configMapRef.name`), key: required(str(ref.key), `${path}.configMapRef.key`) };
}

function parseSignature(v: unknown, path: string): ChecksumSignature | undefined {
  if (!isRecord(v)) return undefined;
  return optional<ChecksumSignature>({ keys: { configMapRef: parseConfigMapRef(v.keys, `${path}.keys`) } }, { url: str(v.url), publicKeys: str(v.publicKeys) });
}

function parseChecksumFrom(v: unknown, path: string): ChecksumFrom | undefined {
  if (!isRecord(v)) return undefined;
  return optional<ChecksumFrom>(
    { url: required(str(v.url), `${path}.url`) },
    { name: str(v.name), algorithm: oneOf(SumsAlgorithms, v.algorithm), signature: parseSignature(v.signature, `${path}.signature`) },
  );
}

function parseVersion(v: unknown, path: string): ImageVersion | undefined {
  if (!isRecord(v)) return undefined;
  return optional<ImageVersion>(
    { name: required(str(v.name), `${path}.name`), resolvedAt: str(v.resolvedAt) ?? "" },
    { digest: str(v.digest), checksum: str(v.checksum), etag: str(v.etag), lastModified: str(v.lastModified), signedBy: str(v.signedBy) },
  );
}

function parseVersionRecord(v: unknown, path: string): VersionRecord {
  const r = isRecord(v) ? v : {};
  return optional<VersionRecord>(
    { id: required(str(r.id), `${path}.id`), definition: str(r.definition) ?? "" },
    {
      current: parseVersion(r.current, `${path}.current`),
      previous: Array.isArray(r.previous) ? r.previous.filter((p): p is string => typeof p === "string") : undefined,
      checkedAt: str(r.checkedAt),
      message: str(r.message),
    },
  );
}

function parseImageSpec(v: unknown, path: string): ImageSpec {
  const i = isRecord(v) ? v : {};
  const spec: ImageSpec = { id: required(str(i.id), `${path}.id`), source: parseSource(i.source, `${path}.source`) };
  const checksumFrom = parseChecksumFrom(i.checksumFrom, `${path}.checksumFrom`);
  // The CRD's CEL rules refuse both; an object that got past them (an older CRD) is malformed, not a guess.
  if (checksumFrom && i.checksum !== undefined) throw new TypeError(`Cannot parse object: ${path} has both checksum and checksumFrom`);
  if (checksumFrom && !("http" in spec.source)) throw new TypeError(`Cannot parse object: ${path}.checksumFrom needs source.http`);
  const interval = isRecord(i.updatePolicy) ? str(i.updatePolicy.interval) : undefined;
  return optional(spec, {
    checksum: str(i.checksum),
    checksumFrom,
    maxVirtualSize: str(i.maxVirtualSize),
    updatePolicy: interval === undefined ? undefined : { interval },
    version: parseVersion(i.version, `${path}.version`),
  });
}

function parseWantedImage(v: unknown, path: string): WantedImage {
  const i = isRecord(v) ? v : {};
  const wantedBy = Array.isArray(i.wantedBy) ? i.wantedBy.filter((w): w is string => typeof w === "string") : [];
  return optional<WantedImage>({ ...parseImageSpec(v, path), wantedBy }, { unusedFor: str(i.unusedFor) });
}

function parseRequirement(v: unknown, path: string): LabelSelectorRequirement {
  const r = isRecord(v) ? v : {};
  const req: LabelSelectorRequirement = { key: required(str(r.key), `${path}.key`), operator: required(oneOf(SelectorOperators, r.operator), `${path}.operator`) };
  return optional(req, { values: Array.isArray(r.values) ? r.values.filter((x): x is string => typeof x === "string") : undefined });
}

function parseSelector(v: unknown, path: string): LabelSelector | undefined {
  if (!isRecord(v)) return undefined;
  return optional<LabelSelector>(
    {},
    {
      matchLabels: isRecord(v.matchLabels) ? stringMap(v.matchLabels) : undefined,
      matchExpressions: Array.isArray(v.matchExpressions) ? list(v.matchExpressions, `${path}.matchExpressions`, parseRequirement) : undefined,
    },
  );
}

function parseCondition(v: unknown, path: string): Condition {
  const c = isRecord(v) ? v : {};
  const condition: Condition = {
    type: required(str(c.type), `${path}.type`),
    status: required(oneOf(ConditionStatuses, c.status), `${path}.status`),
    reason: str(c.reason) ?? "",
    message: str(c.message) ?? "",
    lastTransitionTime: str(c.lastTransitionTime) ?? "",
  };
  return optional(condition, { observedGeneration: num(c.observedGeneration) });
}

function parseImageCounts(v: unknown, path: string): ImageCounts {
  const c = isRecord(v) ? v : {};
  return { id: required(str(c.id), `${path}.id`), ready: num(c.ready) ?? 0, pending: num(c.pending) ?? 0, failed: num(c.failed) ?? 0 };
}

function parseNodeFailure(v: unknown, path: string): NodeFailure {
  const f = isRecord(v) ? v : {};
  return { node: required(str(f.node), `${path}.node`), id: required(str(f.id), `${path}.id`), reason: str(f.reason) ?? "", message: str(f.message) ?? "" };
}

/** Parses an ImageCache status (an empty one when `raw` is not an object). */
export function parseImageCacheStatus(raw: unknown): ImageCacheStatus {
  const s: Json = isRecord(raw) ? raw : {};
  return optional<ImageCacheStatus>(
    {},
    {
      observedGeneration: num(s.observedGeneration),
      desiredNodes: num(s.desiredNodes),
      readyNodes: num(s.readyNodes),
      ready: str(s.ready),
      failedCount: num(s.failedCount),
      images: Array.isArray(s.images) ? list(s.images, "status.images", parseImageCounts) : undefined,
      failures: Array.isArray(s.failures) ? list(s.failures, "status.failures", parseNodeFailure) : undefined,
      failuresTruncated: typeof s.failuresTruncated === "boolean" ? s.failuresTruncated : undefined,
      conditions: Array.isArray(s.conditions) ? list(s.conditions, "status.conditions", parseCondition) : undefined,
      nodeLabel: str(s.nodeLabel),
      versions: Array.isArray(s.versions) ? list(s.versions, "status.versions", parseVersionRecord) : undefined,
    },
  );
}

function parseNodeImageStatus(v: unknown, path: string): NodeImageStatus {
  const i = isRecord(v) ? v : {};
  const entry: NodeImageStatus = { id: required(str(i.id), `${path}.id`), base: str(i.base) ?? "", phase: required(oneOf(ImagePhases, i.phase), `${path}.phase`) };
  return optional(entry, {
    bytesDone: num(i.bytesDone),
    bytesTotal: num(i.bytesTotal),
    virtualSize: num(i.virtualSize),
    reason: str(i.reason),
    message: str(i.message),
    observedGeneration: num(i.observedGeneration),
    definition: str(i.definition),
    version: str(i.version),
    previousVersions: Array.isArray(i.previousVersions)
      ? i.previousVersions.filter(isRecord).flatMap((p) => {
          const version = str(p.version);
          const base = str(p.base);
          return version !== undefined && base !== undefined ? [{ version, base }] : [];
        })
      : undefined,
  });
}

function parseNodeImageCacheStatus(s: Json): NodeImageCacheStatus {
  const d = isRecord(s.disk) ? s.disk : undefined;
  const cache = d ? str(d.cache) : undefined;
  const disk = d ? { cacheBytes: num(d.cacheBytes) ?? 0, ...(cache === undefined ? {} : { cache }), filesystemBytes: num(d.filesystemBytes) ?? 0, filesystemFreeBytes: num(d.filesystemFreeBytes) ?? 0 } : undefined;
  return optional<NodeImageCacheStatus>(
    {},
    {
      observedGeneration: num(s.observedGeneration),
      images: Array.isArray(s.images) ? list(s.images, "status.images", parseNodeImageStatus) : undefined,
      disk,
      conditions: Array.isArray(s.conditions) ? list(s.conditions, "status.conditions", parseCondition) : undefined,
      podUsesRequest: str(s.podUsesRequest),
    },
  );
}

function parsePodUse(v: unknown, path: string): PodUse {
  const u = isRecord(v) ? v : {};
  return { base: required(str(u.base), `${path}.base`), imageId: str(u.imageId) ?? "", pods: Array.isArray(u.pods) ? u.pods.filter((p): p is string => typeof p === "string") : [], podCount: num(u.podCount) ?? 0 };
}

function parsePodUses(v: unknown): PodUsesAnswer | undefined {
  if (!isRecord(v)) return undefined;
  const answer: PodUsesAnswer = { token: required(str(v.token), "spec.podUses.token"), observedAt: str(v.observedAt) ?? "", uses: list(v.uses, "spec.podUses.uses", parsePodUse) };
  return optional(answer, { incomplete: str(v.incomplete) });
}

/** Parses an ImageCache; `spec.images` defaults to empty and retention to the schema's default. */
export function parseImageCache(raw: RawObject): ImageCache {
  const spec: Json = isRecord(raw.spec) ? raw.spec : {};
  const icSpec: ImageCacheSpec = {
    images: list(spec.images, "spec.images", parseImageSpec),
    retention: { unusedFor: (isRecord(spec.retention) && str(spec.retention.unusedFor)) || "24h" },
  };
  const ic: ImageCache = { metadata: parseMeta(raw), spec: optional(icSpec, { nodeSelector: parseSelector(spec.nodeSelector, "spec.nodeSelector"), placement: isRecord(spec.placement) ? { taintUntilReady: spec.placement.taintUntilReady === true } : undefined }) };
  return optional(ic, { status: isRecord(raw.status) ? parseImageCacheStatus(raw.status) : undefined });
}

/** Parses a NodeImageCache. */
export function parseNodeImageCache(raw: RawObject): NodeImageCache {
  const meta = parseMeta(raw);
  const spec: Json = isRecord(raw.spec) ? raw.spec : {};
  const nicSpec = optional<NodeImageCache["spec"]>({ nodeName: str(spec.nodeName) ?? meta.name, images: list(spec.images, "spec.images", parseWantedImage) }, { podUses: parsePodUses(spec.podUses) });
  const nic: NodeImageCache = { metadata: meta, spec: nicSpec };
  return optional(nic, { status: isRecord(raw.status) ? parseNodeImageCacheStatus(raw.status) : undefined });
}

/** Reads what the controller needs of a Node. */
export function parseNode(raw: unknown): NodeInfo {
  const meta = parseMeta(raw);
  return { name: meta.name, uid: meta.uid ?? "", labels: meta.labels ?? {} };
}

/** An owner reference as written; `controller` and `blockOwnerDeletion` only when set. */
export interface WrittenOwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** The owner references of a raw object, as written (so a comparison sees every field); malformed entries are left out. */
export function ownerReferencesOf(raw: RawObject): WrittenOwnerReference[] {
  const refs = isRecord(raw.metadata) ? raw.metadata.ownerReferences : undefined;
  if (!Array.isArray(refs)) return [];
  return refs.filter(isRecord).map((r) =>
    optional<WrittenOwnerReference>(
      { apiVersion: str(r.apiVersion) ?? "", kind: str(r.kind) ?? "", name: str(r.name) ?? "", uid: str(r.uid) ?? "" },
      { controller: typeof r.controller === "boolean" ? r.controller : undefined, blockOwnerDeletion: typeof r.blockOwnerDeletion === "boolean" ? r.blockOwnerDeletion : undefined },
    ),
  );
}
