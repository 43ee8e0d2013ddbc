import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "node:net";
import { execa } from "execa";
import { AuthenticationV1Api, CoreV1Api } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { eventually } from "../harness/eventually.js";

let cp: ControlPlane;
before(async () => {
  cp = await startControlPlane();
});
after(async () => {
  await cp?.stop();
});

function portOpen(server: string): Promise<boolean> {
  const url = new URL(server);
  return new Promise((resolve) => {
    const sock = connect(Number(url.port), url.hostname);
    sock.on("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.on("error", () => resolve(false));
  });
}

test("the admin kubeconfig is a cluster admin", async () => {
  const core = cp.adminConfig().makeApiClient(CoreV1Api);
  const names = (await core.listNamespace()).items.map((n) => n.metadata?.name);
  assert.ok(names.includes("default"));
  await core.createNode({ body: { metadata: { name: "admin-made-node" } } });
});

test("RBAC is on: a user without bindings cannot list nodes", async () => {
  const kc = await cp.userConfig("nobody", ["some-team"]);
  const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
  assert.equal(review.status?.userInfo?.username, "nobody");
  assert.ok(review.status?.userInfo?.groups?.includes("some-team"));
  await assert.rejects(kc.makeApiClient(CoreV1Api).listNode(), (err: { code?: number }) => err.code === 403);
});

test("a node-bound service-account token carries the node name in the user's extra", async () => {
  const core = cp.adminConfig().makeApiClient(CoreV1Api);
  await core.createNode({ body: { metadata: { name: "token-node" } } });
  const { kubeConfig, kubeconfigPath } = await cp.serviceAccountConfig("basecache-system", "agent", { nodeName: "token-node" });
  assert.ok(existsSync(kubeconfigPath));
  const review = await kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
  assert.equal(review.status?.userInfo?.username, "system:serviceaccount:basecache-system:agent");
  assert.deepEqual(review.status?.userInfo?.extra?.["authentication.kubernetes.io/node-name"], ["token-node"]);
});

test("a plain service-account token has no node name", async () => {
  const { kubeConfig } = await cp.serviceAccountConfig("basecache-system", "controller");
  const review = await kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
  assert.equal(review.status?.userInfo?.username, "system:serviceaccount:basecache-system:controller");
  assert.equal(review.status?.userInfo?.extra?.["authentication.kubernetes.io/node-name"], undefined);
});

test("stop kills the processes and removes the temp dir", async () => {
  const other = await startControlPlane({ log: () => {} });
  const dir = dirname(other.kubeconfigPath);
  assert.ok(existsSync(dir));
  assert.equal(await portOpen(other.server), true);
  await other.stop();
  assert.equal(existsSync(dir), false);
  assert.equal(await portOpen(other.server), false);
});

test("SIGINT to the process that started a control plane still tears it down", async () => {
  const script = join(dirname(fileURLToPath(import.meta.url)), "../harness/fixtures/hold-control-plane.ts");
  const child = execa("node", ["--import", "tsx", script], { reject: false, stdout: "pipe", buffer: { stdout: false } });
  const first = await new Promise<string>((resolve, reject) => {
    child.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString()));
    child.once("exit", () => reject(new Error("The child exited before starting a control plane")));
  });
  const { server, kubeconfigPath } = JSON.parse(first) as { server: string; kubeconfigPath: string };
  assert.equal(await portOpen(server), true);
  child.kill("SIGINT");
  await child;
  assert.equal(existsSync(dirname(kubeconfigPath)), false);
  await eventually(async () => assert.equal(await portOpen(server), false), { timeoutMs: 10_000 });
});
