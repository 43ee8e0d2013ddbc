/**
 * Least privilege on the real node, with the agent pod's own ServiceAccount token read inside the pod:
 * from inside the agent container (node's https, the mounted token and CA, the `kubernetes` Service) it
 * may patch its own node's NodeImageCache status, and may not write another node's NodeImageCache, read
 * Secrets, or list pods (the agent reads no pods at all: RBAC cannot scope a pod list to one node).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eventually } from "../harness/eventually.js";
import { unavailableReason } from "../harness/node/node.js";
import { installDeploy, startNodeTestbed, stopNodeTestbed, type NodeTestbed } from "../harness/node/testbed.js";
import { imageCache, Namespace, readyAgent, waitImageCacheReady } from "../harness/node/workloads.js";

const skip = await unavailableReason();
const Api = "/apis/basecache.io/v1alpha1/nodeimagecaches";

/** Runs in the agent container: each [method, path, body] with the pod's token; prints the status codes. */
const InPod = `
const https = require("node:https"); const fs = require("node:fs");
const sa = "/var/run/secrets/kubernetes.io/serviceaccount/";
const token = fs.readFileSync(sa + "token", "utf8"); const ca = fs.readFileSync(sa + "ca.crt");
const call = ([method, path, body]) => new Promise((res, rej) => {
  const req = https.request({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, servername: "kubernetes.default.svc", ca, method, path,
    headers: { authorization: "Bearer " + token, "content-type": method === "PATCH" ? "application/merge-patch+json" : "application/json" }, timeout: 10000 },
    (r) => { r.resume(); r.on("end", () => res(r.statusCode)); });
  req.on("error", rej); req.on("timeout", () => req.destroy(new Error("timeout"))); if (body) req.write(JSON.stringify(body)); req.end();
});
(async () => { const out = []; for (const c of JSON.parse(process.argv[1])) out.push(await call(c)); console.log(JSON.stringify(out)); })().catch((e) => { console.error(e.message); process.exit(1); });
`;

describe("least privilege of the agent pod's own token on the real node", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let tb: NodeTestbed;

  before(async () => {
    tb = await startNodeTestbed();
    tb.origin.serve("/img.qcow2", { file: await tb.images.qcow2("img.qcow2", 8) });
    await installDeploy(tb);
    await writeFile(join(tb.dir, "ic.json"), JSON.stringify(imageCache("privilege-test", "privilege-image", tb.origin.url("/img.qcow2"))));
    await tb.node.kubectl(["apply", "-f", join(tb.dir, "ic.json")]);
    await waitImageCacheReady(tb.node, "privilege-test");
    // Another node (a Node object with no kubelet): the controller writes its NodeImageCache, and keeps it.
    await writeFile(join(tb.dir, "other.json"), JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "other-node" } }));
    await tb.node.kubectl(["apply", "-f", join(tb.dir, "other.json")]);
    await eventually(async () => void (await tb.node.kubectl(["get", "nodeimagecache", "other-node"])), { timeoutMs: 60_000, intervalMs: 1000, description: "the other node's NodeImageCache" });
  });

  after(() => stopNodeTestbed(tb));

  test("inside the agent pod, its token may patch its node's status and nothing of the list below", async () => {
    const agent = await readyAgent(tb.node);
    const calls: [string, string, unknown?][] = [
      ["PATCH", `${Api}/${tb.node.nodeName}/status`, { metadata: {} }],
      ["PATCH", `${Api}/other-node/status`, { status: { images: [] } }],
      ["PATCH", `${Api}/other-node`, { spec: { images: [] } }],
      ["POST", Api, { apiVersion: "basecache.io/v1alpha1", kind: "NodeImageCache", metadata: { name: "fake-node" }, spec: { nodeName: "fake-node", images: [] } }],
      ["DELETE", `${Api}/other-node`],
      ["GET", `/api/v1/namespaces/${Namespace}/secrets`],
      ["GET", "/api/v1/secrets"],
      ["GET", "/api/v1/pods"],
      ["GET", `/api/v1/pods?fieldSelector=spec.nodeName%3D${tb.node.nodeName}`],
    ];
    const codes = await eventually(async () => JSON.parse(await tb.node.kubectl(["exec", "-n", Namespace, agent.name, "-c", "agent", "--", "node", "-e", InPod, JSON.stringify(calls)])) as number[], {
      timeoutMs: 30_000,
      intervalMs: 1000,
      description: "the in-pod API calls",
    });
    const got = Object.fromEntries(calls.map(([m, p], i) => [`${m} ${p}`, codes[i]]));
    assert.equal(got[`PATCH ${Api}/${tb.node.nodeName}/status`], 200, JSON.stringify(got));
    for (const [k, v] of Object.entries(got).slice(1)) assert.equal(v, 403, `${k} is forbidden: ${JSON.stringify(got)}`);
  });
});
