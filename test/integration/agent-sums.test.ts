/**
 * checksumFrom through the cluster: an ImageCache names a vendor's SUMS file, its signature and a ConfigMap of
 * public keys; the real controller, as its own ServiceAccount under deploy/'s RBAC, copies the keys into the
 * NodeImageCache; the real agent, as its ServiceAccount (no ConfigMap access), fetches and verifies with gpgv.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChecksumFrom } from "../../src/core/api-records.js";
import { baseNameFor } from "../../src/core/names.js";
import { dearmorPublicKeys } from "../../src/core/openpgp-armor.js";
import { agentKubeconfig, applyAgentIdentity, makeNodeDirs, removeNodeDirs, startAgent, type AgentProcess, type NodeDirs } from "../harness/agent-process.js";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { startController, type ControllerProcess } from "../harness/controller-process.js";
import { eventually } from "../harness/eventually.js";
import { filesStartingWith } from "../harness/fetch-cli.js";
import { TestSigner } from "../harness/gpg.js";
import { ImageDir } from "../harness/images.js";
import { Api } from "../harness/kube-api.js";
import { applyObjects, readManifests } from "../harness/manifests.js";
import { Origin } from "../harness/origin.js";
import { imageStatus } from "./agent-helpers.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const ns = "basecache-system";
const node = "sums-node";

let cp: ControlPlane;
let admin: Api;
let origin: Origin;
let images: ImageDir;
let vendor: TestSigner;
let stranger: TestSigner;
let ctl: ControllerProcess;
let agent: AgentProcess;
let dirs: NodeDirs;

before(async () => {
  cp = await startControlPlane();
  await cp.applyCrds();
  await applyAgentIdentity(cp);
  await applyObjects(cp.adminConfig(), await readManifests(["10-controller-rbac.yaml"].map((f) => join(repoRoot, "deploy", f))));
  admin = new Api(cp.adminConfig());
  origin = await Origin.start();
  images = await ImageDir.create();
  [vendor, stranger] = await Promise.all([TestSigner.create("Cloud Vendor <release@vendor.example>"), TestSigner.create("Someone Else <else@example>")]);
  await admin.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "vendor-keys" }, data: { "vendor.asc": (await vendor.publicKey()).toString("utf8"), "notes.txt": "password=hunter2\n" } } });
  const sa = await cp.serviceAccountConfig(ns, "basecache-controller");
  ctl = startController(sa.kubeconfigPath, ["--status-interval", "0s"], { POD_NAMESPACE: ns });
  await ctl.leading();
  await admin.createNode(node);
  dirs = await makeNodeDirs(node);
  agent = startAgent({ node, dirs, kubeconfigPath: await agentKubeconfig(cp, node, dirs.root), args: [], defaultAddrs: false });
});

after(async () => {
  await agent?.stop();
  await ctl?.stop();
  await origin?.close();
  await images?.cleanup();
  await Promise.all([vendor?.close(), stranger?.close()]);
  await cp?.stop();
  if (dirs) await removeNodeDirs(dirs);
});

const keys = (key: string) => ({ configMapRef: { name: "vendor-keys", key } });

test("a vendor-signed SUMS file makes the base Ready; a tampered one, a stranger's signature and missing keys are each refused with their reason", async () => {
  const qcow2 = await images.qcow2("cloud.qcow2", 8);
  const sha256 = createHash("sha256").update(await readFile(qcow2)).digest("hex");
  const sums = Buffer.from(`${sha256}  cloud.qcow2\n`);
  const imageUrl = (dir: string) => origin.serve(`/${dir}/cloud.qcow2`, { file: qcow2 });
  const signedBy = async (dir: string, signer: TestSigner, signedBytes = sums) => ({
    url: origin.serve(`/${dir}/SHA256SUMS`, sums),
    signature: { url: origin.serve(`/${dir}/SHA256SUMS.gpg`, await signer.detachSign(signedBytes)), keys: keys("vendor.asc") },
  });
  const image = async (id: string, dir: string, from: ChecksumFrom) => ({ id, source: { http: { url: imageUrl(dir) } }, checksumFrom: from });
  await admin.createImageCache("vendor", {
    images: [
      await image("good", "good", await signedBy("good", vendor)),
      await image("tampered", "tampered", await signedBy("tampered", vendor, Buffer.from(`${"1".repeat(64)}  cloud.qcow2\n`))),
      await image("stranger", "stranger", await signedBy("stranger", stranger)),
      await image("no-keys", "no-keys", { ...(await signedBy("no-keys", vendor)), signature: { url: origin.url("/no-keys/SHA256SUMS.gpg"), keys: keys("notes.txt") } }),
    ],
  });

  const nic = await eventually(async () => {
    const n = await admin.nic(node);
    assert.equal(n?.spec.images.length, 4);
    return n!;
  });
  const copied = (id: string) => nic.spec.images.find((i) => i.id === id)?.checksumFrom?.signature?.publicKeys;
  assert.deepEqual(dearmorPublicKeys(copied("good") ?? ""), dearmorPublicKeys((await vendor.publicKey()).toString("utf8")), "the controller copied the vendor's key");
  assert.equal(copied("no-keys"), undefined, "text that is no public key is not copied");
  assert.doesNotMatch(JSON.stringify(nic), /hunter2/);

  const want: [string, string, string | undefined][] = [
    ["good", "Ready", undefined],
    ["tampered", "Failed", "signature-invalid"],
    ["stranger", "Failed", "signature-unknown-key"],
    ["no-keys", "Failed", "signature-no-keys"],
  ];
  for (const [id, phase, reason] of want) {
    await eventually(
      async () => {
        const s = await imageStatus(admin, node, id);
        assert.deepEqual([s?.phase, s?.reason], [phase, reason], s?.message);
      },
      { timeoutMs: 90_000, description: `${id} ${phase}` },
    );
    if (phase === "Failed") {
      assert.deepEqual(await filesStartingWith(dirs.base, baseNameFor(id)), [], `nothing left for ${id}`);
      assert.equal(origin.seen.get(`/${id}/cloud.qcow2`), undefined, `the image ${id} was never requested`);
    }
  }
  // The ImageCache counts the node's Ready report: it compares with the definition the node was given, keys included.
  await eventually(async () => {
    const counts = ((await admin.imageCache("vendor")) as { status?: { images?: { id: string; ready: number; failed: number }[] } }).status?.images ?? [];
    assert.deepEqual(counts.map((c) => [c.id, c.ready, c.failed]), [["good", 1, 0], ["tampered", 0, 1], ["stranger", 0, 1], ["no-keys", 0, 1]]);
  });
  const sidecar = JSON.parse(await readFile(join(dirs.base, `${baseNameFor("good")}.info.json`), "utf8")) as { checksumFrom?: { signedBy?: string } };
  assert.equal(sidecar.checksumFrom?.signedBy, vendor.fingerprint);
});
