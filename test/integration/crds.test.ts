// The CRDs as the real API server enforces them: invalid objects are refused with a reason, defaults are
// filled in, and kubectl's printer columns and short names work.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { Api, httpImage, sha } from "../harness/kube-api.js";
import type { ImageCacheSpec } from "../../src/kube/api-types.js";

let cp: ControlPlane;
let api: Api;

before(async () => {
  cp = await startControlPlane();
  await cp.applyCrds();
  api = new Api(cp.adminConfig());
});
after(async () => {
  await cp?.stop();
});

let counter = 0;
async function rejection(spec: unknown): Promise<string> {
  const name = `invalid-${++counter}`;
  try {
    await api.createImageCache(name, spec as ImageCacheSpec);
  } catch (err) {
    const e = err as { code?: number; body?: unknown };
    assert.equal(e.code, 422, `expected 422 Invalid, got ${e.code}`);
    const body = typeof e.body === "string" ? (JSON.parse(e.body) as { message: string }) : (e.body as { message: string });
    return body.message;
  }
  assert.fail(`The API server accepted ${JSON.stringify(spec)}`);
}

test("refuses invalid ImageCaches, saying why", async () => {
  const table: [string, unknown, RegExp][] = [
    ["bad checksum", { images: [{ ...httpImage("a"), checksum: "sha256:abc" }] }, /checksum/],
    ["checksum of another algorithm", { images: [{ ...httpImage("a"), checksum: `md5:${"a".repeat(32)}` }] }, /checksum/],
    ["two sources", { images: [{ id: "a", source: { http: { url: "https://x.example/a" }, registry: { image: "registry.example/vm/a:1" } } }] }, /exactly one of source.http or source.registry/],
    ["no source", { images: [{ id: "a", source: {} }] }, /exactly one of source.http or source.registry/],
    ["ftp URL", { images: [httpImage("a", "ftp://x.example/a")] }, /source\.http\.url/],
    ["file URL", { images: [httpImage("a", "file:///etc/passwd")] }, /source\.http\.url/],
    ["duplicate ids", { images: [httpImage("a"), httpImage("a", "https://x.example/other")] }, /Duplicate value/],
    ["id with a slash", { images: [httpImage("../etc")] }, /spec\.images\[0\]\.id/],
    ["id with a comma", { images: [httpImage("a,b")] }, /spec\.images\[0\]\.id/],
    ["id too long", { images: [httpImage("a".repeat(129))] }, /spec\.images\[0\]\.id/],
    ["bad quantity", { images: [{ ...httpImage("a"), maxVirtualSize: "20 gigs" }] }, /maxVirtualSize/],
    ["bad duration", { images: [httpImage("a")], retention: { unusedFor: "1 day" } }, /unusedFor/],
    ["no images", { images: [] }, /spec\.images/],
    ["In without values", { images: [httpImage("a")], nodeSelector: { matchExpressions: [{ key: "zone", operator: "In" }] } }, /values must be non-empty/],
    ["checksum and checksumFrom", { images: [{ ...httpImage("a"), checksum: sha("0"), checksumFrom: { url: "https://x.example/SHA256SUMS" } }] }, /give checksum or checksumFrom, not both/],
    ["checksumFrom with a registry source", { images: [{ id: "a", source: { registry: { image: "registry.example/vm/a:1" } }, checksumFrom: { url: "https://x.example/SHA256SUMS" } }] }, /checksumFrom needs source.http/],
    ["checksumFrom with a file URL", { images: [{ ...httpImage("a"), checksumFrom: { url: "file:///etc/SHA256SUMS" } }] }, /checksumFrom\.url/],
    ["checksumFrom of another algorithm", { images: [{ ...httpImage("a"), checksumFrom: { url: "https://x.example/MD5SUMS", algorithm: "md5" } }] }, /algorithm/],
    ["a signature without keys", { images: [{ ...httpImage("a"), checksumFrom: { url: "https://x.example/SHA256SUMS", signature: { url: "https://x.example/SHA256SUMS.gpg" } } }] }, /keys/],
    ["a keys ConfigMap without a key", { images: [{ ...httpImage("a"), checksumFrom: { url: "https://x.example/SHA256SUMS", signature: { keys: { configMapRef: { name: "vendor-keys" } } } } }] }, /key/],
    ["unknown operator", { images: [httpImage("a")], nodeSelector: { matchExpressions: [{ key: "zone", operator: "Like", values: ["a"] }] } }, /operator/],
  ];
  for (const [name, spec, why] of table) assert.match(await rejection(spec), why, name);
});

test("accepts a valid ImageCache and fills in the default retention", async () => {
  const ic = await api.createImageCache("valid", {
    nodeSelector: { matchExpressions: [{ key: "zone", operator: "Exists" }] },
    images: [
      { ...httpImage("ubuntu-24.04"), checksum: sha("0"), maxVirtualSize: "20Gi" },
      { id: "fedora:41", source: { registry: { image: "registry.example:5000/vm/fedora@sha256:" + "b".repeat(64) } } },
      {
        ...httpImage("noble"),
        checksumFrom: { url: "https://x.example/SHA256SUMS", name: "noble.img", algorithm: "sha256", signature: { url: "https://x.example/SHA256SUMS.gpg", keys: { configMapRef: { name: "vendor-keys", key: "ubuntu.asc" } } } },
      },
      { ...httpImage("fedora-cloud"), checksumFrom: { url: "https://x.example/CHECKSUM", signature: { keys: { configMapRef: { name: "vendor-keys", key: "fedora.asc" } } } } },
    ],
  });
  assert.deepEqual(ic.spec.retention, { unusedFor: "24h" });
});

test("refuses a NodeImageCache whose name is not its node's, and a change of nodeName", async () => {
  const body = (name: string, nodeName: string) => ({ apiVersion: "basecache.io/v1alpha1", kind: "NodeImageCache", metadata: { name }, spec: { nodeName, images: [] } });
  const create = (name: string, nodeName: string) => api.custom.createClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", body: body(name, nodeName) });
  await assert.rejects(create("node-a", "node-b"), (e: { code?: number; body?: string }) => e.code === 422 && /metadata.name must equal spec.nodeName/.test(String(e.body)));
  await create("node-a", "node-a");
  await assert.rejects(
    api.custom.patchClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", name: "node-a", body: [{ op: "replace", path: "/spec/nodeName", value: "node-c" }] }),
    (e: { code?: number }) => e.code === 422,
  );
  const bad = { id: "a", source: { http: { url: "https://x.example/a" } }, wantedBy: ["x"] };
  await assert.rejects(
    api.custom.patchClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", name: "node-a", body: [{ op: "replace", path: "/spec/images", value: [bad, bad] }] }),
    (e: { code?: number }) => e.code === 422,
  );
  await assert.rejects(
    api.writeNicStatus("node-a", { images: [{ id: "a", base: "not-a-sha1", phase: "Ready" }] }),
    (e: { code?: number }) => e.code === 422,
  );
  await assert.rejects(
    api.writeNicStatus("node-a", { images: [{ id: "a", base: "a".repeat(40), phase: "Done" as "Ready" }] }),
    (e: { code?: number }) => e.code === 422,
  );
});

/** GETs `path` as kubectl does for `kubectl get`: a server-side Table. */
async function getTable(kc: KubeConfig, path: string): Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }> {
  const server = kc.getCurrentCluster()!.server;
  const opts: Parameters<typeof request>[1] = { method: "GET", headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" } };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server), opts, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve(JSON.parse(text) as never));
    });
    req.on("error", reject);
    req.end();
  });
}

test("kubectl get shows READY as readyNodes/desiredNodes, and short names are served", async () => {
  await api.createImageCache("printed", { images: [httpImage("p")] });
  await api.custom.patchClusterCustomObjectStatus({
    group: "basecache.io",
    version: "v1alpha1",
    plural: "imagecaches",
    name: "printed",
    body: [{ op: "add", path: "/status", value: { desiredNodes: 5, readyNodes: 3, ready: "3/5", conditions: [{ type: "Ready", status: "False", reason: "NodesNotReady", message: "3 of 5 nodes hold every image", lastTransitionTime: "2026-01-01T00:00:00Z" }] } }],
  });
  const table = await getTable(cp.adminConfig(), "/apis/basecache.io/v1alpha1/imagecaches/printed");
  const columns = table.columnDefinitions.map((c) => c.name);
  assert.deepEqual(columns.slice(0, 3), ["Name", "Ready", "Status"]);
  assert.deepEqual(table.rows[0]!.cells.slice(0, 3), ["printed", "3/5", "NodesNotReady"]);
  const discovery = (await api.custom.getAPIResources({ group: "basecache.io", version: "v1alpha1" })) as { resources: { name: string; shortNames?: string[]; namespaced: boolean }[] };
  const byName = new Map(discovery.resources.map((r) => [r.name, r]));
  assert.deepEqual(byName.get("imagecaches")?.shortNames, ["ic", "imgcache"]);
  assert.deepEqual(byName.get("nodeimagecaches")?.shortNames, ["nic"]);
  assert.equal(byName.get("imagecaches")?.namespaced, false);
  assert.ok(byName.has("imagecaches/status") && byName.has("nodeimagecaches/status"));
});

test("kubectl get -o wide shows a NodeImageCache's CACHE as a human quantity, not raw bytes", async () => {
  await api.custom.createClusterCustomObject({
    group: "basecache.io",
    version: "v1alpha1",
    plural: "nodeimagecaches",
    body: { apiVersion: "basecache.io/v1alpha1", kind: "NodeImageCache", metadata: { name: "printed-node" }, spec: { nodeName: "printed-node", images: [] } },
  });
  await api.writeNicStatus("printed-node", { disk: { cacheBytes: 25_174_016, cache: "24.0 MiB", filesystemBytes: 1024 ** 3, filesystemFreeBytes: 1024 ** 2 } });
  const table = await getTable(cp.adminConfig(), "/apis/basecache.io/v1alpha1/nodeimagecaches/printed-node");
  const cache = table.columnDefinitions.findIndex((c) => c.name === "Cache");
  assert.ok(cache > 0, "a Cache column");
  assert.equal(table.rows[0]!.cells[cache], "24.0 MiB");
});
