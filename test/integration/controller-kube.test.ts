// The generic kube layer the controller and the agent share: the work queue's outcomes, an informer that
// recovers from a failing list, Events aggregated by reason, status written only on change.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { eventually } from "../harness/eventually.js";
import { Api, httpImage } from "../harness/kube-api.js";
import { TerminalError } from "../../src/lib/errors.js";
import { KubeApiError, makeClients, type RawObject } from "../../src/kube/client.js";
import { EventRecorder } from "../../src/kube/events.js";
import { Informer } from "../../src/kube/informer.js";
import { statusDiffers } from "../../src/kube/status.js";
import { WorkQueue, type Reconciler } from "../../src/kube/work-queue.js";
import { createQueueMetrics, createRegistry } from "../../src/lib/metrics.js";

function queueWith(reconcile: Reconciler) {
  const metrics = createQueueMetrics(createRegistry(), "test");
  const queue = new WorkQueue({ name: "test", reconcile, workers: 2, backoff: { baseMs: 5, maxMs: 50 }, metrics, kindOf: (key) => key });
  const stop = new AbortController();
  // Passes of `key` by outcome, as the queue's metrics count them.
  const outcomes = async (key: string) => {
    const counted = (await metrics.reconciles.get()).values.filter((v) => v.labels.kind === key && v.value > 0);
    return Object.fromEntries(counted.map((v) => [String(v.labels.outcome), v.value]));
  };
  return { queue, outcomes, stop, start: () => queue.start(stop.signal) };
}

test("a key queued many times before it runs is processed once", async () => {
  const seen: string[] = [];
  const q = queueWith(async (key) => void seen.push(key));
  for (let i = 0; i < 5; i++) q.queue.add("a");
  q.queue.add("b");
  q.start();
  await eventually(() => assert.deepEqual([...seen].sort(), ["a", "b"]));
  await q.queue.whenIdle();
  assert.equal(seen.length, 2);
  q.stop.abort();
  await q.queue.drain();
});

test("a key added while it is being processed runs again afterwards, never twice at once", async () => {
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  let release: () => void = () => {};
  const q = queueWith(async () => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    runs++;
    if (runs === 1) await new Promise<void>((r) => (release = r));
    running--;
  });
  q.queue.add("a");
  q.start();
  await eventually(() => assert.equal(runs, 1));
  q.queue.add("a");
  q.queue.add("a");
  release();
  await eventually(() => assert.equal(runs, 2));
  await q.queue.whenIdle();
  assert.equal(maxRunning, 1);
  q.stop.abort();
  await q.queue.drain();
});

test("errors are retried until success, a TerminalError is not, a conflict retries as a conflict, a delay polls", async () => {
  const attempts = new Map<string, number>();
  const q = queueWith(async (key) => {
    const n = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, n);
    if (key === "flaky" && n < 3) throw new Error("Cannot do it yet");
    if (key === "terminal") throw new TerminalError("Cannot ever do it");
    if (key === "conflict" && n < 2) throw new KubeApiError("Cannot patch: HTTP 409 Conflict", 409, "Conflict");
    if (key === "poll" && n < 3) return { requeueAfterMs: 5 };
  });
  for (const k of ["flaky", "terminal", "conflict", "poll"]) q.queue.add(k);
  q.start();
  await eventually(() => {
    assert.equal(attempts.get("flaky"), 3);
    assert.equal(attempts.get("conflict"), 2);
    assert.equal(attempts.get("poll"), 3);
  });
  await q.queue.whenIdle();
  assert.deepEqual(await q.outcomes("flaky"), { error: 2, success: 1 });
  assert.deepEqual(await q.outcomes("terminal"), { terminal: 1 });
  assert.deepEqual(await q.outcomes("conflict"), { conflict: 1, success: 1 });
  assert.deepEqual(await q.outcomes("poll"), { requeue: 2, success: 1 });
  q.stop.abort();
  await q.queue.drain();
  assert.equal(attempts.get("terminal"), 1);
});

let cp: ControlPlane;
before(async () => {
  cp = await startControlPlane();
});
after(async () => {
  await cp?.stop();
});

test("an informer whose list fails keeps retrying, then syncs and follows adds, updates and deletes", async (t) => {
  const clients = makeClients(cp.adminConfig());
  const events: string[] = [];
  const informer = new Informer<RawObject>({ name: "imagecaches", kc: clients.kc, path: clients.imageCaches.path, list: (o) => clients.imageCaches.list(o), backoff: { baseMs: 50, maxMs: 500 } });
  informer.on("add", (o) => events.push(`add ${o.metadata?.name}`));
  informer.on("update", (o) => events.push(`update ${o.metadata?.name}`));
  informer.on("delete", (o) => events.push(`delete ${o.metadata?.name}`));
  const stop = new AbortController();
  // Stopped even when an assertion fails, or its retries would keep the test process alive.
  t.after(() => stop.abort());
  // The CRDs are not installed yet: the list answers 404 until they are.
  informer.start(stop.signal);
  await eventually(() => assert.equal(informer.hasSynced, false));
  await cp.applyCrds();
  await eventually(() => assert.ok(informer.hasSynced, "the informer recovered from the failed lists"));
  const api = new Api(cp.adminConfig());
  await api.createImageCache("watched", { images: [httpImage("w")] });
  await eventually(() => assert.ok(informer.get("watched")));
  await api.patchImageCache("watched", { images: [httpImage("w2")] });
  await eventually(() => assert.equal((informer.get("watched")?.spec as { images: { id: string }[] }).images[0]?.id, "w2"));
  await api.deleteImageCache("watched");
  await eventually(() => assert.equal(informer.get("watched"), undefined));
  assert.deepEqual(events, ["add watched", "update watched", "delete watched"]);
  stop.abort();
  await informer.stopped();
});

test("a status equals what the server stores of it, whatever its key order and undefined fields", async () => {
  await cp.applyCrds();
  const clients = makeClients(cp.adminConfig());
  const api = new Api(cp.adminConfig());
  await api.createImageCache("status-once", { images: [httpImage("s")] });
  const status = { desiredNodes: 2, readyNodes: 1, ready: "1/2", failuresTruncated: false };
  assert.ok(statusDiffers(undefined, status));
  await clients.imageCaches.replaceStatus("status-once", status, "test");
  const stored = await api.imageCache("status-once");
  assert.equal(statusDiffers(stored.status, { ready: "1/2", readyNodes: 1, desiredNodes: 2, failuresTruncated: false, failures: undefined }), false);
  assert.ok(statusDiffers(stored.status, { ready: "2/2" }));
  // A field left out of the wanted status is removed, not merged.
  await clients.imageCaches.replaceStatus("status-once", { ready: "2/2" }, "test");
  assert.deepEqual((await api.imageCache("status-once")).status, { ready: "2/2" });
});

test("repeated Events of one reason are one Event with a series count", async () => {
  const clients = makeClients(cp.adminConfig());
  const recorder = new EventRecorder({ events: clients.events, controller: "basecache.io/test", instance: "test-1", seriesFlushMs: 0 });
  const subject = { apiVersion: "basecache.io/v1alpha1", kind: "ImageCache", name: "evented", uid: "0000-1111" };
  for (let i = 0; i < 3; i++) {
    recorder.record(subject, "Warning", "ConflictingDefinition", "Reconcile", "Image \"x\" is defined differently");
    await eventually(async () => {
      const list = (await clients.custom.listNamespacedCustomObject({ group: "events.k8s.io", version: "v1", namespace: "default", plural: "events" })) as {
        items: { reason: string; regarding: { name: string }; series?: { count: number } }[];
      };
      const mine = list.items.filter((e) => e.regarding.name === "evented");
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.reason, "ConflictingDefinition");
      assert.equal(mine[0]!.series?.count ?? 1, i + 1);
    });
  }
  recorder.record(subject, "Normal", "AllNodesReady", "Reconcile", "All nodes hold every image");
  await eventually(async () => {
    const list = (await clients.custom.listNamespacedCustomObject({ group: "events.k8s.io", version: "v1", namespace: "default", plural: "events" })) as { items: { regarding: { name: string } }[] };
    assert.equal(list.items.filter((e) => e.regarding.name === "evented").length, 2);
  });
});
