/**
 * `kubectl apply -k` of deploy/ on the real node, as a user runs it: a kustomization of their own that uses
 * deploy/ as a base and only points the image at their registry. The agent and the controller run as pods
 * and become Ready, one controller leads, an ImageCache becomes Ready with its base in the node's hostPath;
 * then the agent pod deleted, the DaemonSet rolled, and the whole install deleted and applied again on the
 * same disk: each time a new agent comes back Ready and adopts the base without downloading it again.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { eventually } from "../harness/eventually.js";
import { ImageDir } from "../harness/images.js";
import { ensureAgentImage } from "../harness/node/images.js";
import { NodeIp } from "../harness/node/layout.js";
import { down, leftovers, unavailableReason, up, type TestNode } from "../harness/node/node.js";
import { basePath, componentPods, fileFacts, imageCache, metricSum, Namespace, podMetrics, readyAgent, waitImageCacheReady, waitInstalled, type PodFacts } from "../harness/node/workloads.js";
import { Origin } from "../harness/origin.js";

const skip = await unavailableReason();
const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const ImageId = "kustomize-test-image";
const ImagePath = "/images/test.qcow2";

describe("kubectl apply -k of deploy/ on the real node", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let node: TestNode;
  let origin: Origin;
  let images: ImageDir;
  let dir: string;
  let base: { ino: number; size: number; mtimeMs: number };
  let agent: PodFacts;

  before(async () => {
    await down();
    const image = await ensureAgentImage();
    node = await up({ images: [{ archive: image.archive, name: "basecache/basecache:test" }] });
    // Pods reach the host only on the bridge address.
    origin = await Origin.start(NodeIp);
    images = await ImageDir.create();
    origin.serve(ImagePath, { file: await images.qcow2("test.qcow2", 32) });
    dir = await mkdtemp(join(tmpdir(), "basecache-kustomize-"));
    const ref = node.images["basecache/basecache:test"] ?? "";
    const [newName, newTag] = [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)];
    // What a user writes: deploy/ as the base, their own registry's copy of the image, nothing else.
    await writeFile(
      join(dir, "kustomization.yaml"),
      ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "resources:", `  - ${relative(dir, join(repoRoot, "deploy"))}`, "images:", "  - name: localhost/basecache", `    newName: ${newName}`, `    newTag: "${newTag}"`, ""].join("\n"),
    );
    await writeFile(join(dir, "imagecache.json"), JSON.stringify(imageCache("kustomize-test", ImageId, origin.url(ImagePath))));
  });

  after(async () => {
    await down();
    await origin?.close();
    await images?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    assert.deepEqual(await leftovers(), []);
  });

  /** A new agent (not `previous`) is Ready, counts the base as complete, and fetched nothing. */
  async function adoptedWithoutDownload(previous: PodFacts): Promise<PodFacts> {
    const next = await readyAgent(node, previous.uid);
    await eventually(
      async () => {
        const m = await podMetrics(next.ip);
        assert.equal(metricSum(m, "basecache_bases"), 1, "the new agent counts the base");
        assert.equal(metricSum(m, "basecache_fetch_bytes_total"), 0, "the new agent downloaded nothing");
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "the new agent adopted the base" },
    );
    await waitImageCacheReady(node, "kustomize-test");
    assert.equal(origin.requestsTo(ImagePath), 1, "one request to the origin in all");
    assert.deepEqual(await fileFacts(basePath(ImageId)), base, "the same base file, never rewritten");
    return next;
  }

  test("the CRDs and the kustomization apply; the agent and two controllers become Ready; one controller leads", async () => {
    await node.kubectl(["apply", "-f", join(repoRoot, "crds")]);
    await node.kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/imagecaches.basecache.io", "crd/nodeimagecaches.basecache.io"]);
    await node.kubectl(["apply", "-k", dir]);
    await waitInstalled(node);
    const controllers = await componentPods(node, "controller");
    assert.equal(controllers.length, 2);
    await eventually(
      async () => {
        const leaders = await Promise.all(controllers.map(async (c) => metricSum(await podMetrics(c.ip), "basecache_controller_is_leader")));
        assert.deepEqual([...leaders].sort(), [0, 1], "exactly one controller leads");
        const lease = JSON.parse(await node.kubectl(["get", "lease", "-n", Namespace, "basecache-controller", "-o", "json"])) as { spec: { holderIdentity?: string } };
        const leader = controllers[leaders.indexOf(1)];
        assert.ok(leader && lease.spec.holderIdentity?.includes(leader.name), `the Lease names the leading pod: ${lease.spec.holderIdentity ?? "none"} vs ${leader?.name ?? "?"}`);
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "one controller holds the Lease" },
    );
    agent = await readyAgent(node);
  });

  test("an ImageCache becomes Ready and its base is in the node's hostPath", async () => {
    await node.kubectl(["apply", "-f", join(dir, "imagecache.json")]);
    await waitImageCacheReady(node, "kustomize-test");
    base = await fileFacts(basePath(ImageId));
    assert.equal(base.size, 32 * 1024 * 1024, "the raw base has the image's virtual size");
    assert.equal(origin.requestsTo(ImagePath), 1);
  });

  test("the agent pod deleted: a new one is Ready and adopts the base without downloading it", async () => {
    await node.kubectl(["delete", "pod", "-n", Namespace, agent.name, "--wait=false"]);
    agent = await adoptedWithoutDownload(agent);
  });

  test("the DaemonSet rolled by an env change: the new agent adopts the base", async () => {
    await node.kubectl(["set", "env", "-n", Namespace, "daemonset/basecache-agent", "BASECACHE_ROLL=1"]);
    await node.kubectl(["rollout", "status", "-n", Namespace, "daemonset/basecache-agent", "--timeout=240s"]);
    agent = await adoptedWithoutDownload(agent);
  });

  test("the install deleted and applied again on the same disk: the agent adopts the base", async () => {
    await node.kubectl(["delete", "-k", dir, "--wait=true", "--timeout=180s"]);
    assert.deepEqual(await componentPods(node, "agent").catch(() => []), []);
    await node.kubectl(["apply", "-k", dir]);
    await waitInstalled(node);
    agent = await adoptedWithoutDownload(agent);
  });
});
