// Keeps the records of src/core/api-records.ts in step with crds/*.yaml, both ways. Each row of `objects`
// names a schema object and its fields as "<required|optional> <type>"; the compiler checks each row against the
// record type (a field missing, extra, of another type or of another optionality fails typecheck), and the tests
// check it against the schema at run time. Every object and enum in the schemas must have its row, so a field
// added to a CRD alone fails here too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { ImagePhases, SelectorOperators, SumsAlgorithms } from "../../src/core/api-records.js";
import type {
  ChecksumFrom,
  ImageVersion,
  UpdatePolicy,
  VersionRecord,
  ChecksumSignature,
  ConfigMapKeyRef,
  DiskUsage,
  HttpSource,
  ImageCache,
  ImageCacheSpec,
  ImageCacheStatus,
  ImageCounts,
  ImageSource,
  ImageSpec,
  LabelSelector,
  LabelSelectorRequirement,
  NodeFailure,
  NodeImageCache,
  NodeImageCacheSpec,
  NodeImageCacheStatus,
  NodeImageStatus,
  PlacementSpec,
  PodUse,
  PodUsesAnswer,
  RegistrySource,
  RegistryVerify,
  WantedImage,
} from "../../src/core/api-records.js";
import { ConditionStatuses, type Condition } from "../../src/core/conditions.js";

type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];
type Kind<V> = V extends string ? "string" : V extends number ? "integer" : V extends boolean ? "boolean" : V extends readonly unknown[] ? "array" : "object";
/** Every field of T, as "<required|optional> <schema type>". */
type FieldMap<T> = { [K in keyof T]-?: `${K extends RequiredKeys<T> ? "required" : "optional"} ${Kind<NonNullable<T[K]>>}` };
type KeysOfUnion<U> = U extends unknown ? keyof U : never;
/** The members of a one-of union (exactly one set): every member's field, optional in the schema. */
type OneOfMap<U> = { [K in KeysOfUnion<U>]-?: `optional ${Kind<U extends unknown ? (K extends keyof U ? U[K] : never) : never>}` };
/**
 * A whole object: apiVersion and kind are in the schema but not in the records; metadata is the API server's,
 * optional in a CRD schema, and always set on an object it returns.
 */
type ObjectMap<T extends { metadata: unknown }> = FieldMap<Omit<T, "metadata"> & { apiVersion?: string; kind?: string; metadata?: T["metadata"] }>;

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: string[];
}

function schemaOf(file: string): Schema {
  const crd = parse(readFileSync(new URL(`../../crds/${file}`, import.meta.url), "utf8")) as { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } };
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}

const schemas = { ic: schemaOf("imagecaches.yaml"), nic: schemaOf("nodeimagecaches.yaml") };
type Crd = keyof typeof schemas;

function at(schema: Schema, path: string): Schema {
  let s = schema;
  for (const part of path === "" ? [] : path.split(".")) {
    const next = part === "[]" ? s.items : s.properties?.[part];
    assert.ok(next, `schema has no ${path} (at ${part})`);
    s = next;
  }
  return s;
}

/** Paths of every schema object with properties, and of every enum, in a schema. */
function walk(s: Schema, path: string, out: { objects: string[]; enums: string[] }): typeof out {
  if (s.properties) out.objects.push(path);
  if (s.enum) out.enums.push(path);
  for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, path === "" ? k : `${path}.${k}`, out);
  if (s.items) walk(s.items, path === "" ? "[]" : `${path}.[]`, out);
  return out;
}

// The ImageCache declares the update policy; only the NodeImageCache carries the version (pinned by the controller).
const icImageSpec = { id: "required string", source: "required object", checksum: "optional string", checksumFrom: "optional object", maxVirtualSize: "optional string", updatePolicy: "optional object" } satisfies FieldMap<Omit<ImageSpec, "version">>;
const imageSpec = { ...icImageSpec, version: "optional object" } satisfies FieldMap<ImageSpec>;
const updatePolicy = { interval: "required string" } satisfies FieldMap<UpdatePolicy>;
const imageVersion = {
  name: "required string",
  resolvedAt: "required string",
  digest: "optional string",
  checksum: "optional string",
  etag: "optional string",
  lastModified: "optional string",
  signedBy: "optional string",
} satisfies FieldMap<ImageVersion>;
const checksumFrom = { url: "required string", name: "optional string", algorithm: "optional string", signature: "optional object" } satisfies FieldMap<ChecksumFrom>;
// The ImageCache names the keys; only the NodeImageCache carries them (publicKeys, copied by the controller).
const icSignature = { url: "optional string", keys: "required object" } satisfies FieldMap<Omit<ChecksumSignature, "publicKeys">>;
const nicSignature = { ...icSignature, publicKeys: "optional string" } satisfies FieldMap<ChecksumSignature>;
const keys = { configMapRef: "required object" } satisfies FieldMap<ChecksumSignature["keys"]>;
const configMapRef = { name: "required string", key: "required string" } satisfies FieldMap<ConfigMapKeyRef>;
const source = { http: "optional object", registry: "optional object" } satisfies OneOfMap<ImageSource>;
const http = { url: "required string" } satisfies FieldMap<HttpSource["http"]>;
const registry = { image: "required string", verify: "optional object" } satisfies FieldMap<RegistrySource["registry"]>;
const icVerify = { keys: "required object" } satisfies FieldMap<Omit<RegistryVerify, "publicKeys">>;
const nicVerify = { ...icVerify, publicKeys: "optional string" } satisfies FieldMap<RegistryVerify>;
const condition = {
  type: "required string",
  status: "required string",
  reason: "required string",
  message: "required string",
  lastTransitionTime: "required string",
  observedGeneration: "optional integer",
} satisfies FieldMap<Condition>;
const meta = { apiVersion: "optional string", kind: "optional string", metadata: "optional object" } as const;

const objects: [Crd, string, Record<string, string>][] = [
  ["ic", "", { ...meta, spec: "required object", status: "optional object" } satisfies ObjectMap<ImageCache>],
  ["ic", "spec", { nodeSelector: "optional object", images: "required array", retention: "optional object", placement: "optional object" } satisfies FieldMap<ImageCacheSpec>],
  ["ic", "spec.placement", { taintUntilReady: "optional boolean" } satisfies FieldMap<PlacementSpec>],
  ["ic", "spec.nodeSelector", { matchLabels: "optional object", matchExpressions: "optional array" } satisfies FieldMap<LabelSelector>],
  ["ic", "spec.nodeSelector.matchExpressions.[]", { key: "required string", operator: "required string", values: "optional array" } satisfies FieldMap<LabelSelectorRequirement>],
  ["ic", "spec.images.[]", icImageSpec],
  ["ic", "spec.images.[].updatePolicy", updatePolicy],
  ["ic", "spec.images.[].source", source],
  ["ic", "spec.images.[].source.http", http],
  ["ic", "spec.images.[].source.registry", registry],
  ["ic", "spec.images.[].source.registry.verify", icVerify],
  ["ic", "spec.images.[].source.registry.verify.keys", keys],
  ["ic", "spec.images.[].source.registry.verify.keys.configMapRef", configMapRef],
  ["ic", "spec.images.[].checksumFrom", checksumFrom],
  ["ic", "spec.images.[].checksumFrom.signature", icSignature],
  ["ic", "spec.images.[].checksumFrom.signature.keys", keys],
  ["ic", "spec.images.[].checksumFrom.signature.keys.configMapRef", configMapRef],
  ["ic", "spec.retention", { unusedFor: "optional string" } satisfies FieldMap<NonNullable<ImageCacheSpec["retention"]>>],
  [
    "ic",
    "status",
    {
      observedGeneration: "optional integer",
      desiredNodes: "optional integer",
      readyNodes: "optional integer",
      ready: "optional string",
      failedCount: "optional integer",
      images: "optional array",
      failures: "optional array",
      failuresTruncated: "optional boolean",
      conditions: "optional array",
      nodeLabel: "optional string",
      versions: "optional array",
    } satisfies FieldMap<ImageCacheStatus>,
  ],
  ["ic", "status.versions.[]", { id: "required string", definition: "required string", current: "optional object", previous: "optional array", checkedAt: "optional string", message: "optional string" } satisfies FieldMap<VersionRecord>],
  ["ic", "status.versions.[].current", imageVersion],
  ["ic", "status.images.[]", { id: "required string", ready: "required integer", pending: "required integer", failed: "required integer" } satisfies FieldMap<ImageCounts>],
  ["ic", "status.failures.[]", { node: "required string", id: "required string", reason: "required string", message: "required string" } satisfies FieldMap<NodeFailure>],
  ["ic", "status.conditions.[]", condition],
  ["nic", "", { ...meta, spec: "required object", status: "optional object" } satisfies ObjectMap<NodeImageCache>],
  ["nic", "spec", { nodeName: "required string", images: "required array", podUses: "optional object" } satisfies FieldMap<NodeImageCacheSpec>],
  ["nic", "spec.podUses", { token: "required string", observedAt: "required string", uses: "required array", incomplete: "optional string" } satisfies FieldMap<PodUsesAnswer>],
  ["nic", "spec.podUses.uses.[]", { base: "required string", imageId: "required string", pods: "required array", podCount: "required integer" } satisfies FieldMap<PodUse>],
  ["nic", "spec.images.[]", { ...imageSpec, wantedBy: "required array", unusedFor: "optional string" } satisfies FieldMap<WantedImage>],
  ["nic", "spec.images.[].updatePolicy", updatePolicy],
  ["nic", "spec.images.[].version", imageVersion],
  ["nic", "spec.images.[].source", source],
  ["nic", "spec.images.[].source.http", http],
  ["nic", "spec.images.[].source.registry", registry],
  ["nic", "spec.images.[].source.registry.verify", nicVerify],
  ["nic", "spec.images.[].source.registry.verify.keys", keys],
  ["nic", "spec.images.[].source.registry.verify.keys.configMapRef", configMapRef],
  ["nic", "spec.images.[].checksumFrom", checksumFrom],
  ["nic", "spec.images.[].checksumFrom.signature", nicSignature],
  ["nic", "spec.images.[].checksumFrom.signature.keys", keys],
  ["nic", "spec.images.[].checksumFrom.signature.keys.configMapRef", configMapRef],
  [
    "nic",
    "status",
    { observedGeneration: "optional integer", images: "optional array", disk: "optional object", conditions: "optional array", podUsesRequest: "optional string" } satisfies FieldMap<NodeImageCacheStatus>,
  ],
  [
    "nic",
    "status.images.[]",
    {
      id: "required string",
      base: "required string",
      phase: "required string",
      bytesDone: "optional integer",
      bytesTotal: "optional integer",
      virtualSize: "optional integer",
      reason: "optional string",
      message: "optional string",
      observedGeneration: "optional integer",
      definition: "optional string",
      version: "optional string",
      previousVersions: "optional array",
    } satisfies FieldMap<NodeImageStatus>,
  ],
  ["nic", "status.images.[].previousVersions.[]", { version: "required string", base: "required string" } satisfies FieldMap<NonNullable<NodeImageStatus["previousVersions"]>[number]>],
  ["nic", "status.disk", { cacheBytes: "required integer", cache: "optional string", filesystemBytes: "required integer", filesystemFreeBytes: "required integer" } satisfies FieldMap<DiskUsage>],
  ["nic", "status.conditions.[]", condition],
];

// Each list is the one the record's type is derived from, so the compiler keeps it complete.
const enums: [Crd, string, readonly string[]][] = [
  ["ic", "spec.nodeSelector.matchExpressions.[].operator", SelectorOperators],
  ["ic", "spec.images.[].checksumFrom.algorithm", SumsAlgorithms],
  ["nic", "spec.images.[].checksumFrom.algorithm", SumsAlgorithms],
  ["ic", "status.conditions.[].status", ConditionStatuses],
  ["nic", "status.images.[].phase", ImagePhases],
  ["nic", "status.conditions.[].status", ConditionStatuses],
];

/** What a row says of a schema object, in the row's own terms, for one deepEqual. */
function describeSchema(s: Schema): Record<string, string> {
  const required = new Set(s.required ?? []);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.properties ?? {})) out[k] = `${required.has(k) ? "required" : "optional"} ${v.type ?? "untyped"}`;
  for (const k of required) out[k] ??= "required (not a property)";
  return out;
}

test("every object in the schemas has the record's fields, with the same types and the same required ones", () => {
  for (const [crd, path, fields] of objects) {
    assert.deepEqual(describeSchema(at(schemas[crd], path)), fields, `${crd} ${path === "" ? "(root)" : path}`);
  }
});

test("every enum in the schemas lists exactly the values of the record's type, in order", () => {
  for (const [crd, path, values] of enums) assert.deepEqual(at(schemas[crd], path).enum, [...values], `${crd} ${path}`);
});

test("every object and every enum in the schemas is checked above", () => {
  for (const crd of Object.keys(schemas) as Crd[]) {
    const found = walk(schemas[crd], "", { objects: [], enums: [] });
    assert.deepEqual(found.objects.sort(), objects.filter(([c]) => c === crd).map(([, p]) => p).sort(), `objects of ${crd}`);
    assert.deepEqual(found.enums.sort(), enums.filter(([c]) => c === crd).map(([, p]) => p).sort(), `enums of ${crd}`);
  }
});
