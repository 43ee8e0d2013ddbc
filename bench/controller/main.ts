/**
 * bench/controller: the controller at 1,000 nodes x 50 images against a real control plane, with simulated
 * agents reporting as the agent will. Prints every figure docs/benchmarks.md records, as JSON on stdout.
 *
 *   node --import tsx bench/controller/main.ts [--nodes 1000] [--images 50] [--sample 50] [--calibration-images 5]
 *
 * Every node gets a simulated timeline. The first `--sample` nodes report all of it through the agent's real
 * coalescing policy; the others, whose writes would only repeat the same pattern at a cost of minutes of API
 * server CPU, write their final status once. The naive reporter's writes are counted on the same timelines, and
 * the count is checked against the API server's own request counter on a calibration node.
 */
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { request } from "node:https";
import { loadavg } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../../test/harness/control-plane.js";
import { startController, type ControllerProcess } from "../../test/harness/controller-process.js";
import { eventually } from "../../test/harness/eventually.js";
import { Api, type StoredNodeImageCache } from "../../test/harness/kube-api.js";
import { enableKeepAlive, mergePatchOptions as mergePatchOpts } from "../../src/kube/client.js";
import { definitionHash } from "../../src/core/image-definition.js";
import { benchImages, DefaultSim, SimNode } from "./sim-agent.js";

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "1000" },
    images: { type: "string", default: "50" },
    sample: { type: "string", default: "50" },
    "calibration-images": { type: "string", default: "5" },
  },
});
const N = Number(values.nodes);
const IMAGES = Number(values.images);
const SAMPLE = Math.min(N, Number(values.sample));
const CAL_IMAGES = Number(values["calibration-images"]);
const results: Record<string, unknown> = { nodes: N, images: IMAGES, sample: SAMPLE, loadAverageAtStart: loadavg()[0] };

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** Runs `fns` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The API server's own count of mutating requests per resource (kube-apiserver /metrics). */
async function apiserverWrites(kc: KubeConfig): Promise<Map<string, number>> {
  const server = kc.getCurrentCluster()!.server;
  const opts: Parameters<typeof request>[1] = { method: "GET" };
  await kc.applyToHTTPSOptions(opts);
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(new URL("/metrics", server), opts, (res) => {
      let t = "";
      res.on("data", (c: Buffer) => (t += c.toString()));
      res.on("end", () => resolve(t));
    });
    req.on("error", reject);
    req.end();
  });
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const verb = /verb="([A-Z]+)"/.exec(line)?.[1] ?? "";
    if (!["POST", "PUT", "PATCH", "DELETE"].includes(verb)) continue;
    const resource = /resource="([^"]*)"/.exec(line)?.[1] ?? "";
    const sub = /subresource="([^"]*)"/.exec(line)?.[1] ?? "";
    const key = sub ? `${resource}/${sub}` : resource;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return out;
}

function delta(after: Map<string, number>, before: Map<string, number>, key: string): number {
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

async function controllerWrites(ctl: ControllerProcess, resource: string): Promise<number> {
  let n = 0;
  for (const [k, v] of await ctl.metrics()) if (k.startsWith("basecache_controller_writes_total") && k.includes(`resource="${resource}"`)) n += v;
  return n;
}

function jsonSize(obj: unknown): number {
  return Buffer.byteLength(JSON.stringify(obj));
}

function withoutManagedFields<T extends { metadata: object }>(o: T): T {
  const { managedFields: _m, ...meta } = o.metadata as { managedFields?: unknown };
  return { ...o, metadata: meta };
}

async function main(): Promise<void> {
  const cp = await startControlPlane({ log });
  let ctl: ControllerProcess | undefined;
  try {
    await run(cp, (c) => (ctl = c));
  } finally {
    await ctl?.stop();
    await cp.stop();
  }
}

async function run(cp: ControlPlane, setCtl: (c: ControllerProcess) => void): Promise<void> {
  await cp.applyCrds();
  const admin = enableKeepAlive(cp.adminConfig());
  const api = new Api(admin);
  const names = Array.from({ length: N }, (_, i) => `node-${String(i).padStart(5, "0")}`);
  let t = performance.now();
  await pool([...names, "calibration-0"], 32, (n) => api.createNode(n, { pool: n.startsWith("calibration") ? "calibration" : "bench", "topology.kubernetes.io/zone": `zone-${n.length % 3}` }));
  log(`Created ${N + 1} nodes in ${Math.round(performance.now() - t)} ms`);

  let ctl = startController(cp.kubeconfigPath, ["--workers", "4"], { BASECACHE_LOG_LEVEL: "info" });
  setCtl(ctl);
  await ctl.leading();
  const images = benchImages(IMAGES);
  const before0 = await apiserverWrites(admin);

  // 1. Fan-out: one ImageCache selecting every bench node.
  const cpu0 = (await ctl.metrics()).get("basecache_process_cpu_seconds_total") ?? 0;
  t = performance.now();
  await api.createImageCache("bench", { nodeSelector: { matchLabels: { pool: "bench" } }, images, retention: { unusedFor: "24h" } });
  // Completion is watched through the controller's own write counter: listing 1,000 NodeImageCaches every
  // second would load the API server more than the controller does. One list then confirms it.
  await eventually(async () => {
    if ((await controllerWrites(ctl, "nodeimagecaches")) < N) throw new Error("fan-out under way");
  }, { timeoutMs: 600_000, intervalMs: 100 });
  const nics = await eventually(
    async () => {
      const list = (await api.listNics()).filter((n) => n.metadata.name.startsWith("node-"));
      if (list.length !== N || list.some((n) => n.spec.images.length !== IMAGES)) throw new Error(`${list.length} NodeImageCaches so far`);
      return list;
    },
    { timeoutMs: 600_000, intervalMs: 2000 },
  );
  results.fanoutMs = Math.round(performance.now() - t);
  results.fanoutControllerWrites = await controllerWrites(ctl, "nodeimagecaches");
  results.fanoutControllerCpuSeconds = Math.round(((await ctl.metrics()).get("basecache_process_cpu_seconds_total") ?? 0) - cpu0);
  log(`Fan-out converged in ${results.fanoutMs} ms with ${results.fanoutControllerWrites} NodeImageCache writes`);

  // 2. Simulated agents. The sample reports everything through the agent's coalescing policy, for real.
  const generation = new Map(nics.map((n) => [n.metadata.name, (n.metadata as { generation?: number }).generation ?? 1]));
  const definitions = new Map(images.map((x) => [x.id, definitionHash(x)]));
  const sims = names.map((n, i) => new SimNode(n, images.map((x) => x.id), i + 1, DefaultSim, definitions));
  const sample = sims.slice(0, SAMPLE);
  const beforeAgents = await apiserverWrites(admin);
  t = performance.now();
  let tick = 0;
  for (; ; tick++) {
    const batch: [string, object][] = [];
    for (const s of sims) s.step(tick);
    for (const s of sample) {
      const w = s.coalescedWrite(generation.get(s.name) ?? 1, tick * 1000);
      if (w) batch.push([s.name, w]);
    }
    await pool(batch, 16, ([name, status]) => api.writeNicStatus(name, status));
    if (sims.every((s) => s.finished) && batch.length === 0) {
      // A write the policy is holding back would be due within its interval.
      if (sample.every((s) => s.coalescedWrite(generation.get(s.name) ?? 1, (tick + 11) * 1000) === undefined)) break;
    }
    if (tick % 60 === 0) log(`Simulated ${tick} s: ${sample.reduce((n, s) => n + s.coalescedWrites, 0)} status writes so far, ${sample.filter((s) => s.finished).length} sample nodes done`);
  }
  const afterAgents = await apiserverWrites(admin);
  results.simulatedSeconds = tick;
  results.sampleReplayMs = Math.round(performance.now() - t);
  const coalesced = sample.reduce((n, s) => n + s.coalescedWrites, 0);
  const naiveSample = sample.reduce((n, s) => n + s.naiveCount, 0);
  results.sampleWritesCoalesced = coalesced;
  results.sampleWritesMeasuredByApiserver = delta(afterAgents, beforeAgents, "nodeimagecaches/status");
  results.sampleWritesNaive = naiveSample;
  results.agentWriteRatio = coalesced / naiveSample;
  results.coalescedWritesPerNode = coalesced / SAMPLE;
  results.naiveWritesPerNodeAllNodes = sims.reduce((n, s) => n + s.naiveCount, 0) / N;
  log(`Sample agents wrote ${coalesced} times; a naive reporter would have written ${naiveSample} times`);

  // 3. The other nodes report their final status once; then how long the roll-up takes to say so.
  t = performance.now();
  await pool(sims.slice(SAMPLE), 16, (s) => api.writeNicStatus(s.name, s.status(generation.get(s.name) ?? 1)));
  const lastWriteAt = performance.now();
  results.finalStatusWritesMs = Math.round(lastWriteAt - t);
  const readyNodes = sims.filter((s) => s.readyAll).length;
  const failed = sims.reduce((n, s) => n + s.images.filter((i) => i.phase === "Failed").length, 0);
  await eventually(
    async () => {
      const st = (await api.imageCache("bench")).status;
      if (st?.readyNodes !== readyNodes || st.failedCount !== failed || st.images?.some((i) => i.pending !== 0)) throw new Error(`status ${st?.ready} failed=${st?.failedCount}`);
    },
    { timeoutMs: 300_000, intervalMs: 100 },
  );
  results.rollupLagMs = Math.round(performance.now() - lastWriteAt);
  const ic = await api.imageCache("bench");
  results.rollup = `${ic.status?.ready} ready; ${failed} failed images, ${ic.status?.failures?.length} listed, truncated=${ic.status?.failuresTruncated}`;
  results.statusWritesImageCache = await controllerWrites(ctl, "imagecaches/status");
  log(`Roll-up caught up ${results.rollupLagMs} ms after the last agent write: ${results.rollup}`);

  // 4. Object sizes, as stored.
  const allNics = (await api.listNics()).filter((n) => n.metadata.name.startsWith("node-"));
  const largest = allNics.reduce((a, b) => (jsonSize(a) >= jsonSize(b) ? a : b));
  results.largestNodeImageCacheBytes = jsonSize(largest);
  results.largestNodeImageCacheBytesWithoutManagedFields = jsonSize(withoutManagedFields(largest));
  results.imageCacheBytes = jsonSize(await api.imageCache("bench"));
  log(`Largest NodeImageCache ${results.largestNodeImageCacheBytes} B; ImageCache ${results.imageCacheBytes} B`);

  // 5. Calibration: the naive reporter for real on one node, to check that counting its writes matches the
  // API server's own request counter (a smaller image list keeps this from taking minutes).
  const calImages = images.slice(0, CAL_IMAGES);
  await api.createImageCache("calibration", { nodeSelector: { matchLabels: { pool: "calibration" } }, images: calImages });
  await eventually(async () => {
    if ((await api.nicImageIds("calibration-0"))?.length !== calImages.length) throw new Error("calibration NodeImageCache not ready");
  });
  const cal = new SimNode("calibration-0", calImages.map((x) => x.id), 1, DefaultSim, definitions);
  const beforeCal = await apiserverWrites(admin);
  // Ticks of 20 ms (at most 1.1 MB, under 1% of the smallest image), so every whole percent is its own write.
  for (let k = 0; !cal.finished; k++) {
    cal.step(k, 0.02);
    const w = cal.naiveWrite(1);
    if (w) await api.writeNicStatus(cal.name, w);
  }
  const afterCal = await apiserverWrites(admin);
  results.calibrationNaiveCounted = cal.naiveCount;
  results.calibrationNaiveMeasured = delta(afterCal, beforeCal, "nodeimagecaches/status");
  // Counting overstates slightly (events in one tick share a write); scale the naive count down by what was seen.
  results.agentWriteRatioCalibrated = coalesced / (naiveSample * (Number(results.calibrationNaiveMeasured) / cal.naiveCount));
  log(`Calibration: counted ${cal.naiveCount} naive writes, the API server saw ${results.calibrationNaiveMeasured}`);

  // 6. A change every NodeImageCache must follow: one image's source moves.
  const generations = async () => new Map((await api.listNics()).map((n) => [n.metadata.name, (n.metadata as { generation?: number }).generation ?? 0]));
  const g0 = await generations();
  const w0 = await controllerWrites(ctl, "nodeimagecaches");
  const movedId = images[0]!.id;
  const moved = images.map((x) => (x.id === movedId ? { ...x, source: { http: { url: `${x.source.http.url}?mirror=2` } } } : x));
  t = performance.now();
  await api.patchImageCache("bench", { images: moved });
  await eventually(async () => {
    if ((await controllerWrites(ctl, "nodeimagecaches")) - w0 < N) throw new Error("change under way");
  }, { timeoutMs: 600_000, intervalMs: 100 });
  await eventually(
    async () => {
      const list = (await api.listNics()).filter((n) => n.metadata.name.startsWith("node-"));
      const behind = list.filter((n: StoredNodeImageCache) => {
        const src = n.spec.images.find((i) => i.id === movedId)?.source;
        return !(src && "http" in src && src.http.url.endsWith("?mirror=2"));
      });
      if (behind.length) throw new Error(`${behind.length} behind`);
    },
    { timeoutMs: 300_000, intervalMs: 2000 },
  );
  results.changeFanoutMs = Math.round(performance.now() - t);
  await eventually(async () => assertIdle(ctl));
  // Every NodeImageCache whose spec changed (the calibration node's too: its older copy of the image now conflicts).
  const g1 = await generations();
  const changed = [...g1].filter(([k, v]) => g0.get(k) !== v).length;
  results.nodeImageCachesChanged = changed;
  results.writesPerChangedObject = ((await controllerWrites(ctl, "nodeimagecaches")) - w0) / changed;
  log(`Source change reached all nodes in ${results.changeFanoutMs} ms; ${results.writesPerChangedObject} writes per NodeImageCache`);

  // 7. Label change on a tenth of the nodes: only their NodeImageCaches change.
  const moving = names.filter((_, i) => i % 10 === 0);
  const w1 = await controllerWrites(ctl, "nodeimagecaches");
  await pool(moving, 16, (n) => api.setNodeLabels(n, { pool: "drained" }));
  await eventually(async () => {
    if ((await controllerWrites(ctl, "nodeimagecaches")) - w1 < moving.length) throw new Error("relabel under way");
  }, { timeoutMs: 300_000, intervalMs: 100 });
  await eventually(async () => {
    const list = await api.listNics();
    const left = list.filter((n) => moving.includes(n.metadata.name) && n.spec.images.length > 0);
    if (left.length) throw new Error(`${left.length} still hold images`);
  }, { timeoutMs: 300_000, intervalMs: 2000 });
  await eventually(async () => assertIdle(ctl));
  results.writesPerRelabelledNode = ((await controllerWrites(ctl, "nodeimagecaches")) - w1) / moving.length;

  // 8. Nothing changed: node updates that do not touch labels, then a restart with a full resync.
  const w2 = await controllerWrites(ctl, "nodeimagecaches");
  const s2 = await controllerWrites(ctl, "imagecaches/status");
  await pool(names, 16, (n) => api.core.patchNode({ name: n, body: { metadata: { annotations: { "bench.basecache.io/touched": "yes" } } } }, mergePatchOpts));
  await eventually(async () => assertIdle(ctl));
  results.writesAfterIrrelevantNodeUpdates = (await controllerWrites(ctl, "nodeimagecaches")) - w2 + ((await controllerWrites(ctl, "imagecaches/status")) - s2);
  const versions = async () => new Map([...(await api.listNics()), ...(await api.listImageCaches())].map((o) => [o.metadata.name, o.metadata.resourceVersion]));
  await ctl.stop();
  const rvBefore = await versions();
  const beforeRestart = await apiserverWrites(admin);
  ctl = startController(cp.kubeconfigPath, ["--workers", "4"], { BASECACHE_LOG_LEVEL: "info" });
  setCtl(ctl);
  await ctl.leading();
  const keys = N + 1 + 2;
  await eventually(async () => {
    const m = await ctl.metrics();
    if (passes(m) < keys || m.get("basecache_controller_queue_depth") !== 0) throw new Error(`${passes(m)} passes`);
  }, { timeoutMs: 300_000 });
  await eventually(async () => assertIdle(ctl));
  const afterRestart = await apiserverWrites(admin);
  const rvAfter = await versions();
  results.writesAfterRestart = (await controllerWrites(ctl, "nodeimagecaches")) + (await controllerWrites(ctl, "imagecaches/status"));
  results.apiserverWritesAfterRestart = delta(afterRestart, beforeRestart, "nodeimagecaches") + delta(afterRestart, beforeRestart, "imagecaches/status");
  results.objectsChangedByRestart = [...rvAfter].filter(([k, v]) => rvBefore.get(k) !== v).length;
  // 9. Baselines in the same run, with the controller stopped: a plain client doing the same writes at the
  // same concurrency (4, the controller's --workers). Creating fresh objects like the fan-out did, and patching
  // the bench NodeImageCaches (with their statuses, as the change above did).
  await ctl.stop();
  // names[1]: every tenth node (names[0] among them) was drained above and holds nothing.
  const wanted = (await api.nic(names[1]!))!.spec.images;
  if (wanted.length !== IMAGES) throw new Error(`Cannot take the baseline's images from "${names[1]}": it holds ${wanted.length}`);
  t = performance.now();
  await pool(names, 4, (n) =>
    api.custom.createClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", body: { apiVersion: "basecache.io/v1alpha1", kind: "NodeImageCache", metadata: { name: `b-${n}` }, spec: { nodeName: `b-${n}`, images: wanted } } }),
  );
  results.baselineCreateMs = Math.round(performance.now() - t);
  results.fanoutVsBaseline = Number(results.fanoutMs) / Number(results.baselineCreateMs);
  const rewritten = wanted.map((i) => (i.id === movedId ? { ...i, source: { http: { url: `${images[0]!.source.http.url}?mirror=3` } } } : i));
  t = performance.now();
  await pool(names.filter((_, i) => i % 10 !== 0), 4, (n) => api.custom.patchClusterCustomObject({ group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches", name: n, body: { spec: { images: rewritten } } }, mergePatchOpts));
  results.baselinePatchMs = Math.round(((performance.now() - t) * N) / (N - moving.length));
  results.changeFanoutVsBaseline = Number(results.changeFanoutMs) / Number(results.baselinePatchMs);
  log(`Baselines: create ${results.baselineCreateMs} ms, patch ${results.baselinePatchMs} ms for ${N} objects`);

  const end = await apiserverWrites(admin);
  results.apiserverWritesTotal = Object.fromEntries([...end].map(([k, v]) => [k, v - (before0.get(k) ?? 0)]).filter(([, v]) => (v as number) > 0));
  results.loadAverageAtEnd = loadavg()[0];
  log(`Restart: ${results.writesAfterRestart} controller writes, ${results.objectsChangedByRestart} objects changed`);

  process.stdout.write(JSON.stringify(results, null, 2) + "\n");
}


function passes(m: Map<string, number>): number {
  return [...m].filter(([k]) => k.startsWith("basecache_controller_reconcile_total")).reduce((n, [, v]) => n + v, 0);
}

/** Throws unless the controller's queue is empty and no pass ran for longer than its status interval (2 s). */
async function assertIdle(ctl: ControllerProcess): Promise<void> {
  const m = await ctl.metrics();
  if (m.get("basecache_controller_queue_depth") !== 0) throw new Error("queue not empty");
  await new Promise((r) => setTimeout(r, 2_500));
  if (passes(await ctl.metrics()) !== passes(m)) throw new Error("still reconciling");
}

await main();
