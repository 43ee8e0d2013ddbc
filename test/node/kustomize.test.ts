/**
 * `kubectl apply -k` of deploy/ on the real node, as a user runs it: a kustomization of their own that uses
 * deploy/ as a base and only points the image at their registry. The agent and the controller run as pods
 * and become Ready, one controller leads, an ImageCache becomes Ready with its base in the node's hostPath;
 * then the agent pod deleted, the DaemonSet rolled, and the whole install deleted and applied again on the
 * same disk: each time a new agent comes back Ready and adopts the base without downloading it again.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eventually } from "../harness/eventually.js";
import { unavailableReason } from "../harness/node/node.js";
import { installDeploy, startNodeTestbed, stopNodeTestbed, type NodeTestbed } from "../harness/node/testbed.js";
import { basePath, componentPods, fileFacts, imageCache, metricSum, Namespace, podMetrics, readyAgent, waitImageCacheReady, waitInstalled, type PodFacts } from "../harness/node/workloads.js";

const skip = await unavailableReason();
const ImageId = "kustomize-test-image";
const ImagePath = "/images/test.qcow2";

describe("kubectl apply -k of deploy/ on the real node", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let tb: NodeTestbed;
  let base: { ino: number; size: number; mtimeMs: number };
  let agent: PodFacts;

  before(async () => {
    tb = await startNodeTestbed();
    tb.origin.serve(ImagePath, { file: await tb.images.qcow2("test.qcow2", 32) });
    await writeFile(join(tb.dir, "imagecache.json"), JSON.stringify(imageCache("kustomize-test", ImageId, tb.origin.url(ImagePath))));
  });

  after(() => stopNodeTestbed(tb));

  /** A new agent (not `previous`) is Ready, counts the base as complete, and fetched nothing. */
  async function adoptedWithoutDownload(previous: PodFacts): Promise<PodFacts> {
    const next = await readyAgent(tb.node, previous.uid);
    await eventually(
      async () => {
        const m = await podMetrics(next.ip);
        assert.equal(metricSum(m, "basecache_bases"), 1, "the new agent counts the base");
        assert.equal(metricSum(m, "basecache_fetch_bytes_total"), 0, "the new agent downloaded nothing");
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "the new agent adopted the base" },
    );
    await waitImageCacheReady(tb.node, "kustomize-test");
    assert.equal(tb.origin.requestsTo(ImagePath), 1, "one request to the origin in all");
    assert.deepEqual(await fileFacts(basePath(ImageId)), base, "the same base file, never rewritten");
    return next;
  }

  test("the CRDs and the kustomization apply; the agent and two controllers become Ready; one controller leads", async () => {
    await installDeploy(tb);
    const controllers = await componentPods(tb.node, "controller");
    assert.equal(controllers.length, 2);
    await eventually(
      async () => {
        const leaders = await Promise.all(controllers.map(async (c) => metricSum(await podMetrics(c.ip), "basecache_controller_is_leader")));
        assert.deepEqual([...leaders].sort(), [0, 1], "exactly one controller leads");
        const lease = JSON.parse(await tb.node.kubectl(["get", "lease", "-n", Namespace, "basecache-controller", "-o", "json"])) as { spec: { holderIdentity?: string } };
        const leader = controllers[leaders.indexOf(1)];
        assert.ok(leader && lease.spec.holderIdentity?.includes(leader.name), `the Lease names the leading pod: ${lease.spec.holderIdentity ?? "none"} vs ${leader?.name ?? "?"}`);
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "one controller holds the Lease" },
    );
    agent = await readyAgent(tb.node);
  });

  test("an ImageCache becomes Ready and its base is in the node's hostPath", async () => {
    await tb.node.kubectl(["apply", "-f", join(tb.dir, "imagecache.json")]);
    await waitImageCacheReady(tb.node, "kustomize-test");
    base = await fileFacts(basePath(ImageId));
    assert.equal(base.size, 32 * 1024 * 1024, "the raw base has the image's virtual size");
    assert.equal(tb.origin.requestsTo(ImagePath), 1);
  });

  test("the agent pod deleted: a new one is Ready and adopts the base without downloading it", async () => {
    await tb.node.kubectl(["delete", "pod", "-n", Namespace, agent.name, "--wait=false"]);
    agent = await adoptedWithoutDownload(agent);
  });

  test("the DaemonSet rolled by an env change: the new agent adopts the base", async () => {
    await tb.node.kubectl(["set", "env", "-n", Namespace, "daemonset/basecache-agent", "BASECACHE_ROLL=1"]);
    await tb.node.kubectl(["rollout", "status", "-n", Namespace, "daemonset/basecache-agent", "--timeout=240s"]);
    agent = await adoptedWithoutDownload(agent);
  });

  test("the install deleted and applied again on the same disk: the agent adopts the base", async () => {
    await tb.node.kubectl(["delete", "-k", tb.dir, "--wait=true", "--timeout=180s"]);
    assert.deepEqual(await componentPods(tb.node, "agent").catch(() => []), []);
    await tb.node.kubectl(["apply", "-k", tb.dir]);
    await waitInstalled(tb.node);
    agent = await adoptedWithoutDownload(agent);
  });
});
