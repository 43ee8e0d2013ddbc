/**
 * The agent under its memory limit on the real node: with the DaemonSet's limit set to 256Mi it fetches an
 * image four times that size, of random (incompressible) data, and is never OOM-killed (importer pods of
 * CDI were, by dirty page cache under cgroup limits: CDI PR 3017). The pod's peak memory, from its cgroup
 * (v1 memory.max_usage_in_bytes, page cache included), is printed for docs/real-node.md.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { unavailableReason } from "../harness/node/node.js";
import { installDeploy, startNodeTestbed, stopNodeTestbed, type NodeTestbed } from "../harness/node/testbed.js";
import { basePath, componentPods, fileFacts, imageCache, Namespace, podMemoryCgroup, readyAgent, waitImageCacheReady } from "../harness/node/workloads.js";

const skip = await unavailableReason();
const MiB = 1024 * 1024;
const LimitMiB = 256;
const ImageId = "limits-test-image";
const ImagePath = "/images/big.raw";

describe("the agent under a 256Mi memory limit on the real node", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let tb: NodeTestbed;

  before(async () => {
    tb = await startNodeTestbed();
    // Four times the limit of random bytes: neither compression nor sparseness makes it small.
    const big = tb.images.path("big.raw");
    const fh = await open(big, "w");
    for (let i = 0; i < 4 * LimitMiB; i++) await fh.write(randomBytes(MiB));
    await fh.close();
    tb.origin.serve(ImagePath, { file: big });
  });

  after(() => stopNodeTestbed(tb));

  test(`a ${4 * LimitMiB} MiB image of random data is fetched with no OOM kill`, async () => {
    await installDeploy(tb, async () => {
      await tb.node.kubectl(["set", "resources", "-n", Namespace, "daemonset/basecache-agent", "-c", "agent", `--limits=memory=${LimitMiB}Mi`, "--requests=memory=128Mi"]);
    });
    const agent = await readyAgent(tb.node);
    const spec = JSON.parse(await tb.node.kubectl(["get", "pod", "-n", Namespace, agent.name, "-o", "json"])) as { spec: { containers: { name: string; resources: { limits: { memory: string } } }[] } };
    assert.equal(spec.spec.containers.find((c) => c.name === "agent")?.resources.limits.memory, `${LimitMiB}Mi`);
    const cgroup = await podMemoryCgroup(agent.uid);
    const limit = Number((await readFile(join(cgroup, "memory.limit_in_bytes"), "utf8")).trim());
    assert.ok(limit <= (LimitMiB + 64) * MiB, `the pod's cgroup is limited (${limit} bytes)`);

    await tb.node.kubectl(["apply", "-f", await writeImageCache()]);
    await waitImageCacheReady(tb.node, "limits-test", 600_000);
    assert.equal((await fileFacts(basePath(ImageId))).size, 4 * LimitMiB * MiB);
    const [after] = (await componentPods(tb.node, "agent")).filter((p) => p.uid === agent.uid);
    assert.ok(after, "the same agent pod");
    assert.equal(after.restarts, 0, "no container restarted");
    assert.deepEqual(after.lastTerminations, [], "no container was terminated (OOMKilled)");
    assert.ok(after.ready);
    const peak = Number((await readFile(join(cgroup, "memory.max_usage_in_bytes"), "utf8")).trim());
    process.stderr.write(`limits.test: agent pod peak memory ${(peak / MiB).toFixed(1)} MiB (limit ${LimitMiB} MiB, image ${4 * LimitMiB} MiB)\n`);
    assert.ok(peak <= limit, "the peak stayed within the limit");
  });

  async function writeImageCache(): Promise<string> {
    const p = join(tb.dir, "imagecache.json");
    await writeFile(p, JSON.stringify(imageCache("limits-test", ImageId, tb.origin.url(ImagePath))));
    return p;
  }
});
