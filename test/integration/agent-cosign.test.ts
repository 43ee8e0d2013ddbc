/**
 * `source.registry.verify` through the cluster: an ImageCache names cosign public keys in a ConfigMap; the real
 * controller, as its ServiceAccount under deploy/'s RBAC, copies only the PEM public key blocks into the
 * NodeImageCache and checks a tracked tag's signature; the real agent, as its ServiceAccount (no ConfigMap
 * access), verifies with the copied keys before it fetches. Signatures are made by the real cosign.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { VersionRecord } from "../../src/core/api-records.js";
import { pemPublicKeyBlocks } from "../../src/core/cosign.js";
import { baseNameFor, versionedBaseName } from "../../src/core/names.js";
import { keyFingerprint } from "../../src/image/cosign-verify.js";
import { AgentTestbed } from "../harness/agent-testbed.js";
import type { NodeDirs } from "../harness/agent-process.js";
import { CosignSigner } from "../harness/cosign.js";
import { eventually } from "../harness/eventually.js";
import { filesStartingWith } from "../harness/fetch-cli.js";
import { pushArtifact, startRegistry, type Pushed, type TestRegistry } from "../harness/registry.js";
import { eventsAbout, imageStatus } from "./agent-helpers.js";

const ns = "basecache-system";
const node = "cosign-node";
const QcowType = "application/vnd.qemu.qcow2";

let bed: AgentTestbed;
let reg: TestRegistry;
let publisher: CosignSigner;
let stranger: CosignSigner;
let dirs: NodeDirs;

before(async () => {
  bed = await AgentTestbed.start();
  reg = await startRegistry();
  bed.onStop(() => reg.stop());
  [publisher, stranger] = await Promise.all([CosignSigner.create(), CosignSigner.create()]);
  bed.onStop(() => Promise.all([publisher.close(), stranger.close()]));
  const keys = `# release key\n${await publisher.publicKey()}password=hunter2\n`;
  await bed.admin.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "vendor-keys" }, data: { "cosign.pub": keys, "notes.txt": "password=hunter2\n" } } });
  await bed.controller();
  const n = await bed.node(node);
  dirs = n.dirs;
  bed.launch(n);
});

after(async () => {
  await bed?.stop();
});

const verify = (key = "cosign.pub") => ({ keys: { configMapRef: { name: "vendor-keys", key } } });
const byDigest = (p: Pushed) => `${p.ref.replace(/:[^:/]+$/, "")}@${p.manifest.digest}`;
async function push(repo: string, tag: string, pattern: number): Promise<Pushed> {
  return pushArtifact(reg, repo, tag, [{ data: await readFile(await bed.images.qcow2(`${repo.replace(/\//g, "-")}-${pattern}.qcow2`, pattern)), mediaType: QcowType, title: "disk.qcow2" }]);
}

test("a publisher-signed image becomes Ready; unsigned, a stranger's signature and missing keys are each refused with their reason", async () => {
  const signed = await push("vm/signed", "1", 31);
  const unsigned = await push("vm/unsigned", "1", 32);
  const strangers = await push("vm/strangers", "1", 33);
  await publisher.sign(byDigest(signed));
  await stranger.sign(byDigest(strangers));
  await bed.admin.createImageCache("signed", {
    images: [
      { id: "good", source: { registry: { image: signed.ref, verify: verify() } } },
      { id: "unsigned", source: { registry: { image: unsigned.ref, verify: verify() } } },
      { id: "stranger", source: { registry: { image: strangers.ref, verify: verify() } } },
      { id: "no-keys", source: { registry: { image: signed.ref, verify: verify("notes.txt") } } },
    ],
  });

  const nic = await eventually(async () => {
    const n = await bed.admin.nic(node);
    assert.equal(n?.spec.images.length, 4);
    return n!;
  });
  const copied = (id: string) => {
    const src = nic.spec.images.find((i) => i.id === id)?.source;
    return src && "registry" in src ? src.registry.verify?.publicKeys : undefined;
  };
  assert.deepEqual(pemPublicKeyBlocks(copied("good") ?? ""), pemPublicKeyBlocks(await publisher.publicKey()), "the controller copied the publisher's key");
  assert.equal(copied("no-keys"), undefined, "text that is no public key is not copied");
  assert.doesNotMatch(JSON.stringify(nic), /hunter2/);

  const want: [string, string, string | undefined][] = [
    ["good", "Ready", undefined],
    ["unsigned", "Failed", "image-unsigned"],
    ["stranger", "Failed", "signature-invalid"],
    ["no-keys", "Failed", "signature-no-keys"],
  ];
  for (const [id, phase, reason] of want) {
    await eventually(
      async () => {
        const s = await imageStatus(bed.admin, node, id);
        assert.deepEqual([s?.phase, s?.reason], [phase, reason], s?.message);
      },
      { timeoutMs: 90_000, description: `${id} ${phase}` },
    );
    if (phase === "Failed") assert.deepEqual(await filesStartingWith(dirs.base, baseNameFor(id)), [], `nothing left for ${id}`);
  }
  // The ImageCache counts the node's Ready report: it compares with the definition the node was given, keys included.
  await eventually(async () => {
    const counts = ((await bed.admin.imageCache("signed")) as { status?: { images?: { id: string; ready: number; failed: number }[] } }).status?.images ?? [];
    assert.deepEqual(counts.map((c) => [c.id, c.ready, c.failed]), [["good", 1, 0], ["unsigned", 0, 1], ["stranger", 0, 1], ["no-keys", 0, 1]]);
  });
  const events = await eventsAbout(bed.admin, node);
  // Events of one reason on one node are aggregated: one of the cosign refusals is there, with what it is about.
  assert.ok(events.some((e) => e.reason === "ImageRejected" && /no cosign signature for manifest|none of the 1 cosign signature|no public key to check the cosign signature/.test(e.note)), JSON.stringify(events.map((e) => e.note)));
  const sidecar = JSON.parse(await readFile(join(dirs.base, `${baseNameFor("good")}.info.json`), "utf8")) as { signature?: { digest: string; signedBy: string } };
  assert.deepEqual(sidecar.signature && [sidecar.signature.digest, sidecar.signature.signedBy], [signed.manifest.digest, keyFingerprint(createPublicKey(await publisher.publicKey()))]);
});

test("a tracked, verified tag: the signed digest is a version with its signer; an unsigned push under the tag is not", async () => {
  const first = await push("vm/tracked", "stable", 34);
  await publisher.sign(byDigest(first));
  await bed.admin.createImageCache("tracked", { images: [{ id: "tracked", source: { registry: { image: first.ref, verify: verify() } }, updatePolicy: { interval: "1m" } }] });
  const publisherKey = keyFingerprint(createPublicKey(await publisher.publicKey()));
  const versionOf = async () => ((await bed.admin.imageCache("tracked")) as { status?: { versions?: VersionRecord[] } }).status?.versions?.[0];
  const v1 = await eventually(
    async () => {
      const v = await versionOf();
      assert.equal(v?.current?.digest, first.manifest.digest, JSON.stringify(v));
      assert.equal(v?.current?.signedBy, publisherKey);
      const s = await imageStatus(bed.admin, node, "tracked");
      assert.equal(s?.phase, "Ready", s?.message);
      return v!.current!;
    },
    { timeoutMs: 120_000, description: "the signed first version Ready" },
  );
  assert.equal((await imageStatus(bed.admin, node, "tracked"))?.base, versionedBaseName("tracked", v1.name));

  // An unsigned push under the tag: the next check (at most the 1m interval away) fails with the reason, and the
  // signed version stays current.
  await push("vm/tracked", "stable", 35);
  await eventually(
    async () => {
      const v = await versionOf();
      assert.match(v?.message ?? "", /no cosign signature for manifest/, JSON.stringify(v));
      assert.equal(v?.current?.name, v1.name);
    },
    { timeoutMs: 150_000, description: "the unsigned digest refused by the version check" },
  );
  assert.equal((await imageStatus(bed.admin, node, "tracked"))?.phase, "Ready");
});
