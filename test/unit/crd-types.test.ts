// Keeps src/kube/api-types.ts in step with crds/*.yaml: every TypeScript field exists in the schema and
// vice versa, and the schema's required fields are exactly the non-optional ones. The field maps below are
// checked against the types by the compiler, the schemas at run time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import type { Condition } from "../../src/core/conditions.js";
import type { NodeWantedImage, ImageDefinition } from "../../src/core/desired.js";
import type { FailureView, ImageCountsView, NodeImagePhase, NodeImageReport } from "../../src/core/rollup.js";
import type {
  ImageCacheSpec,
  ImageCacheStatus,
  ImageCounts,
  ImagePhase,
  ImageSpec,
  LabelSelector,
  LabelSelectorRequirement,
  NodeFailure,
  NodeImageCacheSpec,
  NodeImageCacheStatus,
  NodeImageStatus,
  PlacementSpec,
  WantedImage,
} from "../../src/kube/api-types.js";

type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];
type FieldMap<T> = { [K in keyof T]-?: K extends RequiredKeys<T> ? "required" : "optional" };

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

function at(schema: Schema, path: string): Schema {
  let s = schema;
  for (const part of path.split(".")) {
    const next = part === "[]" ? s.items : s.properties?.[part];
    assert.ok(next, `schema has no ${path} (at ${part})`);
    s = next;
  }
  return s;
}

function assertMatches(schema: Schema, path: string, fields: Record<string, "required" | "optional">): void {
  const s = at(schema, path);
  assert.deepEqual(Object.keys(s.properties ?? {}).sort(), Object.keys(fields).sort(), `fields of ${path}`);
  const required = Object.entries(fields).filter(([, v]) => v === "required").map(([k]) => k).sort();
  assert.deepEqual([...(s.required ?? [])].sort(), required, `required fields of ${path}`);
}

const ic = schemaOf("imagecaches.yaml");
const nic = schemaOf("nodeimagecaches.yaml");

const imageSpec = { id: "required", source: "required", checksum: "optional", maxVirtualSize: "optional" } satisfies FieldMap<ImageSpec>;
const wantedImage = { ...imageSpec, wantedBy: "required", unusedFor: "optional" } satisfies FieldMap<WantedImage>;
const condition = { type: "required", status: "required", reason: "required", message: "required", lastTransitionTime: "required", observedGeneration: "optional" } satisfies FieldMap<Condition>;

test("ImageCache spec fields match the schema", () => {
  assertMatches(ic, "spec", { nodeSelector: "optional", images: "required", retention: "optional", placement: "optional" } satisfies FieldMap<ImageCacheSpec>);
  assertMatches(ic, "spec.placement", { taintUntilReady: "optional" } satisfies FieldMap<PlacementSpec>);
  assertMatches(ic, "spec.images.[]", imageSpec);
  assertMatches(ic, "spec.nodeSelector", { matchLabels: "optional", matchExpressions: "optional" } satisfies FieldMap<LabelSelector>);
  assertMatches(ic, "spec.nodeSelector.matchExpressions.[]", { key: "required", operator: "required", values: "optional" } satisfies FieldMap<LabelSelectorRequirement>);
  assert.deepEqual(at(ic, "spec.nodeSelector.matchExpressions.[].operator").enum, ["In", "NotIn", "Exists", "DoesNotExist"] satisfies LabelSelectorRequirement["operator"][]);
  assert.deepEqual(Object.keys(at(ic, "spec.images.[].source").properties ?? {}).sort(), ["http", "registry"]);
});

test("ImageCache status fields match the schema", () => {
  assertMatches(
    ic,
    "status",
    {
      observedGeneration: "optional",
      desiredNodes: "optional",
      readyNodes: "optional",
      ready: "optional",
      failedCount: "optional",
      images: "optional",
      failures: "optional",
      failuresTruncated: "optional",
      nodeLabel: "optional",
      conditions: "optional",
    } satisfies FieldMap<ImageCacheStatus>,
  );
  assertMatches(ic, "status.images.[]", { id: "required", ready: "required", pending: "required", failed: "required" } satisfies FieldMap<ImageCounts>);
  assertMatches(ic, "status.failures.[]", { node: "required", id: "required", reason: "required", message: "required" } satisfies FieldMap<NodeFailure>);
  assertMatches(ic, "status.conditions.[]", condition);
});

test("NodeImageCache spec and status fields match the schema", () => {
  assertMatches(nic, "spec", { nodeName: "required", images: "required" } satisfies FieldMap<NodeImageCacheSpec>);
  assertMatches(nic, "spec.images.[]", wantedImage);
  assertMatches(nic, "status", { observedGeneration: "optional", images: "optional", disk: "optional", conditions: "optional" } satisfies FieldMap<NodeImageCacheStatus>);
  assertMatches(
    nic,
    "status.images.[]",
    {
      id: "required",
      base: "required",
      phase: "required",
      bytesDone: "optional",
      bytesTotal: "optional",
      virtualSize: "optional",
      reason: "optional",
      message: "optional",
      observedGeneration: "optional",
      definition: "optional",
    } satisfies FieldMap<NodeImageStatus>,
  );
  const phases = ["Pending", "Downloading", "Converting", "Ready", "Failed"] as const satisfies readonly ImagePhase[];
  const allPhases: Exclude<ImagePhase, (typeof phases)[number]> extends never ? true : false = true;
  assert.ok(allPhases);
  assert.deepEqual(at(nic, "status.images.[].phase").enum, [...phases]);
  assertMatches(nic, "status.conditions.[]", condition);
  assert.deepEqual(Object.keys(at(nic, "status.disk").properties ?? {}).sort(), ["cache", "cacheBytes", "filesystemBytes", "filesystemFreeBytes"]);
});

test("core's plain records and the API types are assignable both ways", () => {
  // Compile-time checks: a failing assignment here breaks typecheck, not this test.
  const wanted: WantedImage = {} as NodeWantedImage;
  const def: ImageDefinition = {} as ImageSpec;
  const spec: ImageSpec = {} as ImageDefinition;
  const counts: ImageCounts = {} as ImageCountsView;
  const failure: NodeFailure = {} as FailureView;
  const report: NodeImageReport = {} as NodeImageStatus;
  const phase: ImagePhase = "Ready" as NodeImagePhase;
  assert.ok([wanted, def, spec, counts, failure, report, phase]);
});
