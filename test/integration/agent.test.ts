import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { AgentTestbed } from "../harness/agent-testbed.js";
import { eventually } from "../harness/eventually.js";
import type { AgentProcess, NodeDirs } from "../harness/agent-process.js";
import type { ImageDir } from "../harness/images.js";
import type { Api } from "../harness/kube-api.js";
import type { Origin } from "../harness/origin.js";
import { createNic, eventsAbout, imageStatus, setNicImages, type WantedImageInput } from "./agent-helpers.js";

let tb: AgentTestbed;
let admin: Api;
let origin: Origin;
let images: ImageDir;

before(async () => {
  tb = await AgentTestbed.start();
  ({ admin, origin, images } = tb);
});

after(async () => {
  await tb?.stop();
});

async function nodeWithAgent(name: string, wanted: WantedImageInput[], defaultAddrs = false): Promise<{ agent: AgentProcess; dirs: NodeDirs }> {
  const node = await tb.node(name);
  await createNic(admin, name, wanted);
  return { agent: tb.launch(node, { defaultAddrs }), dirs: node.dirs };
}

test("images arrive on several nodes, with progress in status, then Ready, and nothing half-written", async () => {
  const qcow2 = await images.qcow2("progress.qcow2", 32);
  const size = (await stat(qcow2)).size;
  // About 25 s of download, so that at least one progress write (every 10 s) lands while it runs.
  const slowUrl = origin.route("/slow.qcow2", { kind: "slow", chunkBytes: Math.ceil(size / 250), intervalMs: 100, body: { file: qcow2 } });
  const fastUrl = origin.serve("/fast.qcow2", { file: await images.qcow2("fast.qcow2", 8) });
  const wanted = [
    { id: "slow-image", url: slowUrl },
    { id: "fast-image", url: fastUrl },
  ];
  const nodes = ["node-a", "node-b"];
  const started = await Promise.all(nodes.map((n) => nodeWithAgent(n, wanted)));

  const seen = await eventually(
    async () => {
      const s = await imageStatus(admin, "node-a", "slow-image");
      assert.equal(s?.phase, "Downloading");
      assert.ok((s?.bytesDone ?? 0) > 0, `bytesDone ${s?.bytesDone}`);
      return s!;
    },
    { timeoutMs: 60_000, description: "a progress write while downloading" },
  );
  assert.ok(seen.bytesTotal === undefined || seen.bytesTotal >= seen.bytesDone!);

  for (const node of nodes) {
    await eventually(
      async () => {
        const nic = await admin.nic(node);
        assert.deepEqual(nic?.status?.images?.map((i) => [i.id, i.phase]), [
          ["slow-image", "Ready"],
          ["fast-image", "Ready"],
        ]);
        assert.equal(nic?.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
        assert.equal(nic?.status?.observedGeneration, nic?.metadata.generation);
        assert.ok((nic?.status?.disk?.cacheBytes ?? 0) > 0);
        assert.match(nic?.status?.disk?.cache ?? "", /^[0-9.]+ (KiB|MiB|GiB)$/, "the Cache column's human quantity");
      },
      { timeoutMs: 90_000, description: `${node} Ready` },
    );
  }
  for (const { dirs: d } of started) {
    const names = (await readdir(d.base)).sort();
    const expected = ["slow-image", "fast-image"].flatMap((id) => [baseNameFor(id), `${baseNameFor(id)}.info.json`]);
    assert.deepEqual(
      names.filter((n) => !n.startsWith(".basecache-gc")),
      expected.sort(),
    );
  }
  for (const path of ["/healthz", "/readyz"]) assert.equal((await fetch(`http://${await started[0]!.agent.address(path)}${path}`)).status, 200, path);
  const m = await started[0]!.agent.metrics();
  assert.ok((m.get('basecache_fetch_bytes_total{image_id="slow-image"}') ?? 0) >= size);
  assert.equal(m.get("basecache_bases"), 2);
  // Its queue's passes are counted as the controller's are, and its process metrics carry the same prefix.
  assert.ok((m.get('basecache_agent_reconcile_total{kind="node",outcome="success"}') ?? 0) > 0);
  assert.ok(m.has("basecache_process_cpu_seconds_total"));
  const events = await eventsAbout(admin, "node-a");
  // The recorder folds repeats of one reason into a series, so the note names the first image that was ready.
  assert.ok(events.some((e) => e.reason === "ImageReady" && e.type === "Normal"));
});

test("a rejected image is Failed with its reason and is not fetched again until its definition changes", async () => {
  const base = await images.raw("rejected-base.raw", 4);
  const badUrl = origin.serve("/backing.qcow2", { file: await images.withBacking("backing.qcow2", base, "raw") });
  const goodUrl = origin.serve("/good.qcow2", { file: await images.qcow2("good.qcow2", 8) });
  const { dirs: d } = await nodeWithAgent("node-c", [{ id: "bad-image", url: badUrl }]);

  await eventually(
    async () => {
      const s = await imageStatus(admin, "node-c", "bad-image");
      assert.deepEqual([s?.phase, s?.reason], ["Failed", "backing-file"]);
      const ready = (await admin.nic("node-c"))?.status?.conditions?.find((c) => c.type === "Ready");
      assert.deepEqual([ready?.status, ready?.reason], ["False", "ImagesFailed"]);
    },
    { timeoutMs: 60_000 },
  );
  const requests = origin.requestsTo("/backing.qcow2");
  assert.ok(requests >= 1);

  // A new generation that leaves the image's definition alone does not retry it.
  await setNicImages(admin, "node-c", [
    { id: "bad-image", url: badUrl },
    { id: "other-image", url: goodUrl },
  ]);
  await eventually(async () => assert.equal((await imageStatus(admin, "node-c", "other-image"))?.phase, "Ready"), { timeoutMs: 60_000 });
  assert.equal((await imageStatus(admin, "node-c", "bad-image"))?.phase, "Failed");
  assert.equal(origin.requestsTo("/backing.qcow2"), requests);
  assert.ok((await eventsAbout(admin, "node-c")).some((e) => e.reason === "ImageRejected" && e.note.includes("bad-image")));

  // A changed definition is fetched again.
  await setNicImages(admin, "node-c", [
    { id: "bad-image", url: goodUrl },
    { id: "other-image", url: goodUrl },
  ]);
  await eventually(async () => assert.equal((await imageStatus(admin, "node-c", "bad-image"))?.phase, "Ready"), { timeoutMs: 60_000 });
  assert.ok(!(await readdir(d.base)).some((n) => n.endsWith(".part") || n.endsWith(".converted") || n.endsWith(".lock")));
  assert.ok((await stat(join(d.base, baseNameFor("bad-image")))).isFile());
});

test("a failed source is retried with backoff until it serves", async () => {
  const url = origin.route("/flaky.qcow2", { kind: "fail-then-ok", failures: 8, code: 503, body: { file: await images.qcow2("flaky.qcow2", 8) } });
  await nodeWithAgent("node-d", [{ id: "flaky-image", url }]);
  await eventually(async () => assert.equal((await imageStatus(admin, "node-d", "flaky-image"))?.phase, "Failed"), { timeoutMs: 60_000 });
  await eventually(async () => assert.equal((await imageStatus(admin, "node-d", "flaky-image"))?.phase, "Ready"), { timeoutMs: 90_000 });
  assert.ok((await eventsAbout(admin, "node-d")).some((e) => e.reason === "FetchFailed"));
});

test("with no address flags the agent serves /metrics on :8080 and health on :8081, as its help says", async () => {
  // Another process on this host may hold a default port: then the agent serves on a free one instead.
  const taken = { metrics: !(await portIsFree(8080)), health: !(await portIsFree(8081)) };
  const { agent } = await nodeWithAgent("node-e", [], true);
  const port = (address: string) => Number(address.split(":").pop());
  const metricsAt = await agent.address("/metrics");
  const healthAt = await agent.address("/healthz");
  if (taken.metrics) assert.notEqual(port(metricsAt), 8080);
  else assert.equal(port(metricsAt), 8080);
  if (taken.health) assert.notEqual(port(healthAt), 8081);
  else assert.equal(port(healthAt), 8081);
  assert.equal((await fetch(`http://${metricsAt}/metrics`)).status, 200);
  await agent.ready();
  assert.equal((await fetch(`http://${healthAt}/healthz`)).status, 200);
});

// Whether a port can be bound on every interface right now, as the agent's default address is.
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "0.0.0.0", () => srv.close(() => resolve(true)));
  });
}
