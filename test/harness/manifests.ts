/**
 * Reads Kubernetes manifests (files, directories, or rendered text such as `helm template` output) into
 * plain objects, and applies them to a control plane with server-side apply, optionally as a dry run.
 * Used by the manifest, chart and RBAC tests and by the demo.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { KubernetesObjectApi, PatchStrategy, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";

/** A parsed manifest object that names its kind and name (the only ones we accept). */
export interface ManifestObject extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } & Record<string, unknown>;
  [key: string]: unknown;
}

/** Parses every non-empty YAML document in `text`. @throws Error when a document is not valid YAML or lacks kind/name. */
export function parseManifests(text: string, origin = "manifest"): ManifestObject[] {
  const out: ManifestObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`Cannot parse ${origin}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
    const obj = doc.toJS() as unknown;
    if (obj === null || obj === undefined) continue;
    const o = obj as Partial<ManifestObject>;
    if (typeof o.apiVersion !== "string" || typeof o.kind !== "string" || typeof o.metadata?.name !== "string") {
      throw new Error(`Cannot use a document in ${origin}: it has no apiVersion, kind or metadata.name`);
    }
    out.push(o as ManifestObject);
  }
  return out;
}

/** Reads manifests from files and from directories (their *.yaml and *.yml files, in name order, not recursive). */
export async function readManifests(paths: string[]): Promise<ManifestObject[]> {
  const out: ManifestObject[] = [];
  for (const p of paths) {
    const files = (await stat(p)).isDirectory()
      ? (await readdir(p))
          .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
          .sort()
          .map((f) => join(p, f))
      : [p];
    for (const f of files) out.push(...parseManifests(await readFile(f, "utf8"), f));
  }
  return out;
}

/** `Kind namespace/name` (or `Kind name` when cluster-scoped), for messages and maps. */
export function objectKey(o: ManifestObject): string {
  return o.metadata.namespace ? `${o.kind} ${o.metadata.namespace}/${o.metadata.name}` : `${o.kind} ${o.metadata.name}`;
}

export interface ApplyOptions {
  /** Server-side dry run (`dryRun=All`): the API server validates and admits but stores nothing. */
  dryRun?: boolean;
  fieldManager?: string;
}

/** Applies each object in order with server-side apply and returns what the API server answered. */
export async function applyObjects(kc: KubeConfig, objects: ManifestObject[], opts: ApplyOptions = {}): Promise<KubernetesObject[]> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const results: KubernetesObject[] = [];
  for (const o of objects) {
    try {
      results.push(await api.patch(o, undefined, opts.dryRun ? "All" : undefined, opts.fieldManager ?? "basecache-test", true, PatchStrategy.ServerSideApply));
    } catch (err) {
      throw new Error(`Cannot apply ${objectKey(o)}${opts.dryRun ? " (dry run)" : ""}: ${describeApiError(err)}`, { cause: err });
    }
  }
  return results;
}

/** The HTTP code and the API server's message of a client error, without dumping the whole body. */
export function describeApiError(err: unknown): string {
  if (typeof err === "object" && err !== null && "code" in err) {
    const e = err as { code: unknown; body?: unknown };
    let message = "";
    if (typeof e.body === "string") {
      try {
        message = String((JSON.parse(e.body) as { message?: unknown }).message ?? "");
      } catch {
        message = e.body.slice(0, 300);
      }
    } else if (typeof e.body === "object" && e.body !== null && "message" in e.body) {
      message = String((e.body as { message: unknown }).message);
    }
    return `HTTP ${String(e.code)}${message ? `: ${message}` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * The args of `container` in a workload's pod template, with `$(VAR)` references expanded as the kubelet
 * does, from `values` (for env entries that come from the downward API) and the container's literal env.
 */
export function expandedArgs(workload: ManifestObject, container: string, values: Record<string, string>): string[] {
  const spec = (workload.spec as { template?: { spec?: { containers?: { name: string; args?: string[]; env?: { name: string; value?: string }[] }[] } } }).template?.spec;
  const c = spec?.containers?.find((x) => x.name === container);
  if (!c) throw new Error(`Cannot find container "${container}" in ${objectKey(workload)}`);
  const env: Record<string, string> = { ...values };
  for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
  return (c.args ?? []).map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole));
}
