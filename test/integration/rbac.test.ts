/**
 * Least privilege, proved against a real API server with RBAC on: the ServiceAccounts, roles and
 * admission policy of deploy/, and clients that act as the agent (with a token bound to a pod on a node,
 * so the API server puts the node's name into the user's extra) and as the controller.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AuthorizationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { eventually } from "../harness/eventually.js";
import { applyObjects, describeApiError, readManifests } from "../harness/manifests.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const ns = "basecache-system";
const group = "basecache.io";
const version = "v1alpha1";
const plural = "nodeimagecaches";
const agentUser = `system:serviceaccount:${ns}:basecache-agent`;
const controllerUser = `system:serviceaccount:${ns}:basecache-controller`;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

let cp: ControlPlane;
let admin: KubeConfig;
/** The agent as it runs on node "rbac-node-a". */
let agentA: KubeConfig;
/** The agent's ServiceAccount with a token not bound to any pod (so no node name in its extra). */
let agentUnbound: KubeConfig;
let controller: KubeConfig;

function nodeImageCache(node: string) {
  return {
    apiVersion: `${group}/${version}`,
    kind: "NodeImageCache",
    metadata: { name: node },
    spec: { nodeName: node, images: [{ id: "rbac-image", source: { http: { url: "http://127.0.0.1:9/rbac.img" } }, wantedBy: ["rbac"] }] },
  };
}

function statusPatch(id: string, phase: string) {
  return { status: { images: [{ id, base: "0".repeat(40), phase }] } };
}

async function patchStatus(kc: KubeConfig, name: string, body: object, dryRun = false) {
  return kc.makeApiClient(CustomObjectsApi).patchClusterCustomObjectStatus({ group, version, plural, name, body, ...(dryRun ? { dryRun: "All" } : {}) }, mergePatch);
}

/** Runs `fn`, which must fail with `code`; returns the API server's message. */
async function expectStatus(code: number, fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    const described = describeApiError(err);
    assert.ok(described.startsWith(`HTTP ${code}`), `expected HTTP ${code}, got ${described}`);
    return described;
  }
  assert.fail(`expected HTTP ${code}, but the request succeeded`);
}

async function statusPhase(name: string): Promise<string | undefined> {
  const obj = (await admin.makeApiClient(CustomObjectsApi).getClusterCustomObject({ group, version, plural, name })) as { status?: { images?: { phase: string }[] } };
  return obj.status?.images?.[0]?.phase;
}

before(async () => {
  cp = await startControlPlane();
  admin = cp.adminConfig();
  await cp.applyCrds();
  const manifests = await readManifests(["00-namespace.yaml", "10-controller-rbac.yaml", "11-agent-rbac.yaml", "12-agent-admission-policy.yaml", "13-events-rbac.yaml", "14-user-roles.yaml"].map((f) => join(repoRoot, "deploy", f)));
  await applyObjects(admin, manifests);
  const core = admin.makeApiClient(CoreV1Api);
  for (const node of ["rbac-node-a", "rbac-node-b"]) {
    await core.createNode({ body: { metadata: { name: node, labels: { "kubernetes.io/hostname": node } } } });
    await admin.makeApiClient(CustomObjectsApi).createClusterCustomObject({ group, version, plural, body: nodeImageCache(node) });
  }
  agentA = (await cp.serviceAccountConfig(ns, "basecache-agent", { nodeName: "rbac-node-a" })).kubeConfig;
  agentUnbound = (await cp.serviceAccountConfig(ns, "basecache-agent")).kubeConfig;
  controller = (await cp.serviceAccountConfig(ns, "basecache-controller")).kubeConfig;
  // The admission policy takes effect once the API server has compiled it: wait until a dry-run write
  // to another node's status is refused by it (dry runs pass through admission but store nothing).
  await eventually(
    async () => {
      const msg = await expectStatus(403, () => patchStatus(agentA, "rbac-node-b", statusPatch("rbac-image", "Ready"), true));
      assert.match(msg, /ValidatingAdmissionPolicy/);
    },
    { timeoutMs: 60_000, intervalMs: 250, description: "admission policy in force" },
  );
});

after(async () => {
  await cp?.stop();
});

describe("the agent, acting as the agent on its node", () => {
  test("writes the status of its own node's NodeImageCache", async () => {
    await patchStatus(agentA, "rbac-node-a", statusPatch("rbac-image", "Downloading"));
    assert.equal(await statusPhase("rbac-node-a"), "Downloading");
  });

  test("is refused by the admission policy when writing another node's status, which stays unchanged", async () => {
    const msg = await expectStatus(403, () => patchStatus(agentA, "rbac-node-b", statusPatch("rbac-image", "Ready")));
    assert.match(msg, /basecache-agent-own-node/);
    assert.match(msg, /on node rbac-node-a may not write the NodeImageCache of rbac-node-b/);
    assert.equal(await statusPhase("rbac-node-b"), undefined);
  });

  test("replaces its own node's status with a full update, but not another node's", async () => {
    const api = agentA.makeApiClient(CustomObjectsApi);
    const own = (await api.getClusterCustomObject({ group, version, plural, name: "rbac-node-a" })) as Record<string, unknown>;
    await api.replaceClusterCustomObjectStatus({ group, version, plural, name: "rbac-node-a", body: { ...own, ...statusPatch("rbac-image", "Downloading") } });
    const other = (await api.getClusterCustomObject({ group, version, plural, name: "rbac-node-b" })) as Record<string, unknown>;
    const msg = await expectStatus(403, () => api.replaceClusterCustomObjectStatus({ group, version, plural, name: "rbac-node-b", body: { ...other, ...statusPatch("rbac-image", "Ready") } }));
    assert.match(msg, /basecache-agent-own-node/);
    assert.equal(await statusPhase("rbac-node-b"), undefined);
  });

  test("cannot write status with a token that is not bound to a pod on a node", async () => {
    const msg = await expectStatus(403, () => patchStatus(agentUnbound, "rbac-node-a", statusPatch("rbac-image", "Failed")));
    assert.match(msg, /must use a token bound to a pod on a node/);
    assert.equal(await statusPhase("rbac-node-a"), "Downloading");
  });

  test("cannot create a NodeImageCache", async () => {
    await expectStatus(403, () => agentA.makeApiClient(CustomObjectsApi).createClusterCustomObject({ group, version, plural, body: nodeImageCache("rbac-node-c") }));
  });

  test("cannot delete a NodeImageCache, not even its own", async () => {
    const api = agentA.makeApiClient(CustomObjectsApi);
    await expectStatus(403, () => api.deleteClusterCustomObject({ group, version, plural, name: "rbac-node-a" }));
    await expectStatus(403, () => api.deleteClusterCustomObject({ group, version, plural, name: "rbac-node-b" }));
  });

  test("cannot change the spec of its own NodeImageCache", async () => {
    const body = { spec: { images: [{ id: "smuggled", source: { http: { url: "http://127.0.0.1:9/x.img" } }, wantedBy: ["agent"] }] } };
    await expectStatus(403, () => agentA.makeApiClient(CustomObjectsApi).patchClusterCustomObject({ group, version, plural, name: "rbac-node-a", body }, mergePatch));
  });

  test("cannot read Secrets", async () => {
    const core = agentA.makeApiClient(CoreV1Api);
    await expectStatus(403, () => core.listNamespacedSecret({ namespace: ns }));
    await expectStatus(403, () => core.listSecretForAllNamespaces());
    await expectStatus(403, () => core.readNamespacedSecret({ namespace: "kube-system", name: "anything" }));
  });

  test("reads NodeImageCaches", async () => {
    const obj = (await agentA.makeApiClient(CustomObjectsApi).getClusterCustomObject({ group, version, plural, name: "rbac-node-a" })) as { metadata: { name: string } };
    assert.equal(obj.metadata.name, "rbac-node-a");
  });

  test("cannot list, watch or get pods, not even those of its own node", async () => {
    const core = agentA.makeApiClient(CoreV1Api);
    for (const fieldSelector of ["spec.nodeName=rbac-node-a", "spec.nodeName=rbac-node-b", undefined]) {
      const sel = fieldSelector ? { fieldSelector } : {};
      await expectStatus(403, () => core.listPodForAllNamespaces(sel));
      await expectStatus(403, () => core.listPodForAllNamespaces({ ...sel, watch: true, timeoutSeconds: 1 }));
      await expectStatus(403, () => core.listNamespacedPod({ namespace: ns, ...sel }));
    }
    await expectStatus(403, () => core.readNamespacedPod({ namespace: ns, name: "agent-on-rbac-node-a" }));
  });

  test("asks for pod uses in its own node's status only, and cannot write the answer", async () => {
    await patchStatus(agentA, "rbac-node-a", { status: { podUsesRequest: "rbac-token-1" } });
    const own = (await admin.makeApiClient(CustomObjectsApi).getClusterCustomObject({ group, version, plural, name: "rbac-node-a" })) as { status?: { podUsesRequest?: string } };
    assert.equal(own.status?.podUsesRequest, "rbac-token-1");
    const msg = await expectStatus(403, () => patchStatus(agentA, "rbac-node-b", { status: { podUsesRequest: "rbac-token-2" } }));
    assert.match(msg, /may not write the NodeImageCache of rbac-node-b/);
    const forged = { spec: { podUses: { token: "rbac-token-1", observedAt: new Date().toISOString(), uses: [] } } };
    await expectStatus(403, () => agentA.makeApiClient(CustomObjectsApi).patchClusterCustomObject({ group, version, plural, name: "rbac-node-a", body: forged }, mergePatch));
  });

  test("records an Event about its NodeImageCache in \"default\", and nowhere else", async () => {
    // Raw JSON: client-node's typed Event model cannot serialise MicroTime (eventTime) as the API wants it.
    const event = (namespace: string) => ({
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { generateName: "rbac-node-a-", namespace },
      eventTime: new Date().toISOString().replace(/Z$/, "000Z"),
      reportingController: "basecache.io/agent",
      reportingInstance: "rbac-node-a",
      action: "Fetch",
      reason: "ImageReady",
      note: 'Cached image "rbac-image"',
      type: "Normal",
      regarding: { apiVersion: `${group}/${version}`, kind: "NodeImageCache", name: "rbac-node-a" },
    });
    const api = agentA.makeApiClient(CustomObjectsApi);
    const create = (namespace: string) => api.createNamespacedCustomObject({ group: "events.k8s.io", version: "v1", plural: "events", namespace, body: event(namespace) });
    await create("default");
    await expectStatus(403, () => create("kube-system"));
  });
});

/**
 * PATCHes the status of NodeImageCache `name` as the admin impersonating the agent's ServiceAccount, with
 * `nodeName` (if any) as the `authentication.kubernetes.io/node-name` extra: how `kubectl --as ...
 * --as-user-extra` probes the policy. Resolves the HTTP status and the API server's message.
 */
async function patchStatusImpersonating(name: string, nodeName: string | undefined, body: object): Promise<{ status: number; message: string }> {
  const url = new URL(`/apis/${group}/${version}/${plural}/${name}/status`, cp.server);
  const opts: RequestOptions = {
    method: "PATCH",
    headers: {
      "Content-Type": "application/merge-patch+json",
      "Impersonate-User": agentUser,
      "Impersonate-Group": ["system:serviceaccounts", `system:serviceaccounts:${ns}`, "system:authenticated"],
      ...(nodeName ? { "Impersonate-Extra-authentication.kubernetes.io%2fnode-name": nodeName } : {}),
    },
  };
  await admin.applyToHTTPSOptions(opts);
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest(url, opts, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, message: String((JSON.parse(text) as { message?: unknown }).message ?? "") }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

describe("the agent, impersonated with the node-name extra as kubectl --as does", () => {
  test("may write its own node's status", async () => {
    const r = await patchStatusImpersonating("rbac-node-a", "rbac-node-a", statusPatch("rbac-image", "Converting"));
    assert.equal(r.status, 200, r.message);
    assert.equal(await statusPhase("rbac-node-a"), "Converting");
  });

  test("may not write another node's status", async () => {
    const r = await patchStatusImpersonating("rbac-node-b", "rbac-node-a", statusPatch("rbac-image", "Ready"));
    assert.equal(r.status, 403);
    assert.match(r.message, /on node rbac-node-a may not write the NodeImageCache of rbac-node-b/);
    assert.equal(await statusPhase("rbac-node-b"), undefined);
  });

  test("may not write any status without a node name", async () => {
    const r = await patchStatusImpersonating("rbac-node-a", undefined, statusPatch("rbac-image", "Failed"));
    assert.equal(r.status, 403, r.message);
    assert.match(r.message, /must use a token bound to a pod on a node/);
  });
});

describe("the controller's identity", () => {
  test("creates, updates and deletes NodeImageCaches, which the agent's policy does not hinder", async () => {
    const api = controller.makeApiClient(CustomObjectsApi);
    await api.createClusterCustomObject({ group, version, plural, body: nodeImageCache("rbac-node-c") });
    await api.patchClusterCustomObject({ group, version, plural, name: "rbac-node-c", body: { spec: { images: [] } } }, mergePatch);
    await api.deleteClusterCustomObject({ group, version, plural, name: "rbac-node-c" });
  });

  test("writes ImageCache status but not ImageCache spec", async () => {
    const body = { apiVersion: `${group}/${version}`, kind: "ImageCache", metadata: { name: "rbac-cache" }, spec: { images: [{ id: "rbac-image", source: { http: { url: "http://127.0.0.1:9/rbac.img" } } }] } };
    await admin.makeApiClient(CustomObjectsApi).createClusterCustomObject({ group, version, plural: "imagecaches", body });
    const api = controller.makeApiClient(CustomObjectsApi);
    await api.patchClusterCustomObjectStatus({ group, version, plural: "imagecaches", name: "rbac-cache", body: { status: { observedGeneration: 1, desiredNodes: 0, readyNodes: 0 } } }, mergePatch);
    const patch = { spec: { images: [{ id: "other", source: { http: { url: "http://127.0.0.1:9/other.img" } } }] } };
    await expectStatus(403, () => api.patchClusterCustomObject({ group, version, plural: "imagecaches", name: "rbac-cache", body: patch }, mergePatch));
  });

  test("lists one node's pods and answers its agent in the spec, but cannot watch or get pods", async () => {
    const core = controller.makeApiClient(CoreV1Api);
    const pods = await core.listPodForAllNamespaces({ fieldSelector: "spec.nodeName=rbac-node-a" });
    assert.ok(pods.items.length >= 1 && pods.items.every((p) => p.spec?.nodeName === "rbac-node-a"), "the pod the agent's token is bound to runs on rbac-node-a");
    await expectStatus(403, () => core.listPodForAllNamespaces({ fieldSelector: "spec.nodeName=rbac-node-a", watch: true, timeoutSeconds: 1 }));
    const name = pods.items[0]?.metadata?.name ?? "";
    await expectStatus(403, () => core.readNamespacedPod({ namespace: pods.items[0]?.metadata?.namespace ?? ns, name }));
    const answer = { spec: { podUses: { token: "rbac-token-1", observedAt: "2026-12-02T00:00:00Z", uses: [{ base: "0".repeat(40), imageId: "rbac-image", pods: [`${ns}/${name}`], podCount: 1 }] } } };
    await controller.makeApiClient(CustomObjectsApi).patchClusterCustomObject({ group, version, plural, name: "rbac-node-a", body: answer }, mergePatch);
  });

  test("cannot write NodeImageCache status, which belongs to the agents", async () => {
    await expectStatus(403, () => patchStatus(controller, "rbac-node-a", statusPatch("rbac-image", "Ready")));
  });

  test("holds its Lease in its own namespace only", async () => {
    const coord = controller.makeApiClient(CoordinationV1Api);
    const lease = { metadata: { name: "basecache-controller" }, spec: { holderIdentity: "rbac-test", leaseDurationSeconds: 15 } };
    await coord.createNamespacedLease({ namespace: ns, body: lease });
    const got = await coord.readNamespacedLease({ namespace: ns, name: "basecache-controller" });
    await coord.replaceNamespacedLease({ namespace: ns, name: "basecache-controller", body: { ...got, spec: { ...got.spec, holderIdentity: "rbac-test-2" } } });
    await expectStatus(403, () => coord.createNamespacedLease({ namespace: "default", body: lease }));
    await expectStatus(403, () => coord.deleteNamespacedLease({ namespace: ns, name: "basecache-controller" }));
  });

  test("cannot read Secrets, nor watch pods", async () => {
    const core = controller.makeApiClient(CoreV1Api);
    await expectStatus(403, () => core.listSecretForAllNamespaces());
    await expectStatus(403, () => core.listPodForAllNamespaces({ watch: true, timeoutSeconds: 1 }));
  });
});

describe("the roles for people", () => {
  async function userBoundTo(role: string, user: string): Promise<KubeConfig> {
    await applyObjects(admin, [
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: `${role}-${user}` },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: user }],
      },
    ]);
    return cp.userConfig(user);
  }

  test("basecache-editor manages ImageCaches but writes no status and no NodeImageCache", async () => {
    const alice = await userBoundTo("basecache-editor", "alice");
    const api = alice.makeApiClient(CustomObjectsApi);
    const body = { apiVersion: `${group}/${version}`, kind: "ImageCache", metadata: { name: "alice-cache" }, spec: { images: [{ id: "alice-image", source: { http: { url: "http://127.0.0.1:9/a.img" } } }] } };
    await api.createClusterCustomObject({ group, version, plural: "imagecaches", body });
    await api.patchClusterCustomObject({ group, version, plural: "imagecaches", name: "alice-cache", body: { spec: { retention: { unusedFor: "1h" } } } }, mergePatch);
    await expectStatus(403, () => api.patchClusterCustomObjectStatus({ group, version, plural: "imagecaches", name: "alice-cache", body: { status: { readyNodes: 99 } } }, mergePatch));
    await api.getClusterCustomObject({ group, version, plural, name: "rbac-node-a" });
    await expectStatus(403, () => api.createClusterCustomObject({ group, version, plural, body: nodeImageCache("alice-node") }));
    await expectStatus(403, () => patchStatus(alice, "rbac-node-a", statusPatch("rbac-image", "Ready")));
    await api.deleteClusterCustomObject({ group, version, plural: "imagecaches", name: "alice-cache" });
  });

  test("basecache-viewer only reads", async () => {
    const api = (await userBoundTo("basecache-viewer", "bob")).makeApiClient(CustomObjectsApi);
    await api.listClusterCustomObject({ group, version, plural: "imagecaches" });
    await api.getClusterCustomObject({ group, version, plural, name: "rbac-node-a" });
    const body = { apiVersion: `${group}/${version}`, kind: "ImageCache", metadata: { name: "bob-cache" }, spec: { images: [{ id: "bob-image", source: { http: { url: "http://127.0.0.1:9/b.img" } } }] } };
    await expectStatus(403, () => api.createClusterCustomObject({ group, version, plural: "imagecaches", body }));
  });
});

interface Access {
  group?: string;
  resource: string;
  subresource?: string;
  verb: string;
  namespace?: string;
  name?: string;
}

function describeAccess(a: Access): string {
  const res = `${a.resource}${a.subresource ? `/${a.subresource}` : ""}${a.group ? `.${a.group}` : ""}`;
  return `${a.verb} ${res}${a.namespace ? ` in ${a.namespace}` : ""}${a.name ? ` named ${a.name}` : ""}`;
}

async function allowed(user: string, a: Access): Promise<boolean> {
  const review = await admin.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
    body: {
      spec: {
        user,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${ns}`, "system:authenticated"],
        resourceAttributes: { group: a.group ?? "", resource: a.resource, subresource: a.subresource ?? "", verb: a.verb, namespace: a.namespace ?? "", name: a.name ?? "" },
      },
    },
  });
  return review.status?.allowed === true;
}

const every = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
const bc = "basecache.io";

/** Expands (resource, verbs) into accesses. */
function accesses(base: Omit<Access, "verb">, verbs: string[]): Access[] {
  return verbs.map((verb) => ({ ...base, verb }));
}

/** What each identity may do, and a wide sample of what it may not: RBAC as deploy/ grants it. */
const matrix: { user: string; allow: Access[]; deny: Access[] }[] = [
  {
    user: agentUser,
    allow: [
      ...accesses({ group: bc, resource: "nodeimagecaches" }, ["get", "list", "watch"]),
      ...accesses({ group: bc, resource: "nodeimagecaches", subresource: "status" }, ["patch", "update"]),
      ...accesses({ group: "events.k8s.io", resource: "events", namespace: "default" }, ["create", "patch"]),
    ],
    deny: [
      ...accesses({ group: bc, resource: "nodeimagecaches" }, ["create", "update", "patch", "delete", "deletecollection"]),
      ...accesses({ group: bc, resource: "imagecaches" }, every),
      ...accesses({ group: bc, resource: "imagecaches", subresource: "status" }, ["update", "patch"]),
      ...accesses({ resource: "pods" }, every),
      ...accesses({ resource: "pods", namespace: ns }, every),
      ...accesses({ resource: "pods", subresource: "exec" }, ["create", "get"]),
      ...accesses({ resource: "pods", subresource: "log" }, ["get"]),
      ...accesses({ resource: "secrets" }, ["get", "list", "watch"]),
      ...accesses({ resource: "configmaps" }, ["get", "list"]),
      ...accesses({ resource: "configmaps", namespace: ns }, ["get", "list", "watch"]),
      ...accesses({ resource: "nodes" }, ["get", "list", "update", "patch"]),
      ...accesses({ resource: "nodes", subresource: "status" }, ["patch"]),
      ...accesses({ resource: "serviceaccounts", subresource: "token", namespace: ns }, ["create"]),
      ...accesses({ resource: "events", namespace: "default" }, ["create", "patch", "delete", "list"]),
      ...accesses({ group: "events.k8s.io", resource: "events", namespace: "default" }, ["delete", "list", "get"]),
      ...accesses({ group: "events.k8s.io", resource: "events", namespace: "kube-system" }, ["create", "patch"]),
      ...accesses({ group: "events.k8s.io", resource: "events", namespace: ns }, ["create", "patch"]),
      ...accesses({ group: "coordination.k8s.io", resource: "leases", namespace: ns }, ["create", "get", "update"]),
    ],
  },
  {
    user: controllerUser,
    allow: [
      ...accesses({ group: bc, resource: "imagecaches" }, ["get", "list", "watch"]),
      ...accesses({ group: bc, resource: "imagecaches", subresource: "status" }, ["patch"]),
      ...accesses({ group: bc, resource: "nodeimagecaches" }, ["get", "list", "watch", "create", "patch", "delete"]),
      // patch: its placement labels and warming taint only, which the node admission policy enforces
      // (test/integration/placement.test.ts).
      ...accesses({ resource: "nodes" }, ["get", "list", "watch", "patch"]),
      // list only: a fresh list of one node's pods when its agent asks which bases they use.
      ...accesses({ resource: "pods" }, ["list"]),
      ...accesses({ group: "events.k8s.io", resource: "events", namespace: "default" }, ["create", "patch"]),
      ...accesses({ group: "coordination.k8s.io", resource: "leases", namespace: ns }, ["create"]),
      ...accesses({ group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "basecache-controller" }, ["get", "update"]),
      // checksumFrom's public keys, copied into NodeImageCaches: ConfigMaps of its own namespace only.
      ...accesses({ resource: "configmaps", namespace: ns }, ["get", "list", "watch"]),
    ],
    deny: [
      ...accesses({ resource: "configmaps", namespace: ns }, ["create", "update", "patch", "delete"]),
      ...accesses({ resource: "configmaps", namespace: "default" }, ["get", "list", "watch"]),
      ...accesses({ resource: "secrets", namespace: ns }, ["get", "list", "watch"]),
      ...accesses({ group: bc, resource: "imagecaches" }, ["create", "update", "patch", "delete", "deletecollection"]),
      ...accesses({ group: bc, resource: "imagecaches", subresource: "status" }, ["update"]),
      ...accesses({ group: bc, resource: "nodeimagecaches" }, ["update", "deletecollection"]),
      ...accesses({ group: bc, resource: "nodeimagecaches", subresource: "status" }, ["update", "patch"]),
      ...accesses({ resource: "nodes" }, ["create", "update", "delete", "deletecollection"]),
      ...accesses({ resource: "nodes", subresource: "status" }, ["update", "patch"]),
      ...accesses({ resource: "pods" }, ["get", "watch", "create", "update", "patch", "delete"]),
      ...accesses({ resource: "pods", subresource: "exec" }, ["create", "get"]),
      ...accesses({ resource: "pods", subresource: "log" }, ["get"]),
      ...accesses({ resource: "secrets" }, ["get", "list", "watch"]),
      ...accesses({ resource: "configmaps" }, ["get", "list"]),
      ...accesses({ group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "someone-else" }, ["get", "update"]),
      ...accesses({ group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "basecache-controller" }, ["delete"]),
      ...accesses({ group: "coordination.k8s.io", resource: "leases", namespace: "kube-system" }, ["create", "get", "update"]),
      ...accesses({ resource: "serviceaccounts", subresource: "token", namespace: ns }, ["create"]),
      ...accesses({ resource: "events", namespace: "default" }, ["create", "patch"]),
      ...accesses({ group: "events.k8s.io", resource: "events", namespace: "kube-system" }, ["create", "patch"]),
    ],
  },
];

describe("RBAC grants exactly what the matrix says", () => {
  for (const row of matrix) {
    const who = row.user.split(":").at(-1) ?? row.user;
    test(`${who} is allowed what it needs`, async () => {
      const refused: string[] = [];
      for (const a of row.allow) if (!(await allowed(row.user, a))) refused.push(describeAccess(a));
      assert.deepEqual(refused, [], `${who} lacks permissions it needs`);
    });
    test(`${who} is denied everything else in the sample`, async () => {
      const granted: string[] = [];
      for (const a of row.deny) if (await allowed(row.user, a)) granted.push(describeAccess(a));
      assert.deepEqual(granted, [], `${who} has permissions it should not`);
    });
  }
});
