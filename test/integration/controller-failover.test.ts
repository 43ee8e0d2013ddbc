// Leader election with real controller processes: one acts, the standby takes over when the leader dies or
// stops, and a leader that loses its Lease exits so that a fresh process starts over.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { startController, type ControllerProcess } from "../harness/controller-process.js";
import { eventually } from "../harness/eventually.js";
import { Api, httpImage } from "../harness/kube-api.js";
import { microTime } from "../../src/kube/lease.js";

let cp: ControlPlane;
let api: Api;
const running: ControllerProcess[] = [];
/** The process that should hold the Lease after the previous test. */
let current: ControllerProcess | undefined;
const leaseSeconds = 6;
const electArgs = ["--leader-elect", "--lease-namespace", "default", "--lease-duration", `${leaseSeconds}s`];

before(async () => {
  cp = await startControlPlane();
  await cp.applyCrds();
  api = new Api(cp.adminConfig());
});
after(async () => {
  await Promise.all(running.map((c) => c.stop()));
  await cp?.stop();
});

function start(): ControllerProcess {
  const c = startController(cp.kubeconfigPath, [...electArgs]);
  running.push(c);
  return c;
}

/** Whether `c` says it holds the Lease, from its `basecache_controller_is_leader` gauge. */
async function isLeader(c: ControllerProcess): Promise<boolean> {
  return (await c.metrics()).get("basecache_controller_is_leader") === 1;
}

async function leaseHolder(): Promise<string | undefined> {
  const custom = cp.adminConfig().makeApiClient(CustomObjectsApi);
  const lease = (await custom.getNamespacedCustomObject({ group: "coordination.k8s.io", version: "v1", namespace: "default", plural: "leases", name: "basecache-controller" })) as {
    spec?: { holderIdentity?: string };
  };
  return lease.spec?.holderIdentity ?? undefined;
}

/** Waits until exactly one of `candidates` leads, and returns [leader, the others]. */
async function electedAmong(candidates: ControllerProcess[]): Promise<[ControllerProcess, ControllerProcess[]]> {
  return eventually(
    async () => {
      const leading = await Promise.all(candidates.map(isLeader));
      const leaders = candidates.filter((_, i) => leading[i]);
      assert.equal(leaders.length, 1, "exactly one leader");
      return [leaders[0]!, candidates.filter((c) => c !== leaders[0])] as [ControllerProcess, ControllerProcess[]];
    },
    { timeoutMs: 60_000 },
  );
}

test("of two controllers one acts; when it is killed the other takes over", async () => {
  const a = start();
  const b = start();
  const [leader, [standby]] = await electedAmong([a, b]);
  const first = await leaseHolder();
  assert.ok(first, "the Lease names a holder");

  await api.createNode("fo-1", { pool: "fo" });
  await api.createImageCache("fo", { nodeSelector: { matchLabels: { pool: "fo" } }, images: [httpImage("fo-img")] });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("fo-1"), ["fo-img"]));
  // The standby has not started its informers, so it cannot have acted: it exports no cache series.
  const standbyMetrics = await standby!.metrics();
  assert.equal(standbyMetrics.get("basecache_controller_is_leader"), 0);
  assert.deepEqual([...standbyMetrics.keys()].filter((k) => k.startsWith("basecache_imagecache_")), []);

  leader.kill("SIGKILL");
  const killedAt = Date.now();
  await leader.exited;
  await api.createNode("fo-2", { pool: "fo" });
  await eventually(async () => assert.ok(await isLeader(standby!)), { timeoutMs: 60_000 });
  const takeoverMs = Date.now() - killedAt;
  await eventually(async () => assert.deepEqual(await api.nicImageIds("fo-2"), ["fo-img"]));
  const second = await leaseHolder();
  assert.ok(second && second !== first, "the standby holds the Lease under its own identity");
  // Reported, not asserted on: the takeover takes about one lease duration plus a retry period.
  process.stderr.write(`takeover after SIGKILL: ${takeoverMs} ms (lease ${leaseSeconds}s)\n`);
  current = standby;
});

test("a leader stopped with SIGTERM releases the Lease and a standby takes over at once", async () => {
  const leader = current!;
  assert.ok(await isLeader(leader));
  const held = await leaseHolder();
  const standby = start();
  await eventually(async () => assert.equal((await standby.metrics()).get("basecache_controller_is_leader"), 0));
  assert.equal(await leader.stop(), 0);
  assert.notEqual(await leaseHolder(), held, "the stopped leader released the Lease");
  await eventually(async () => assert.ok(await isLeader(standby)), { timeoutMs: 60_000 });
  assert.ok(await leaseHolder());
  await api.createNode("fo-3", { pool: "fo" });
  await eventually(async () => assert.deepEqual(await api.nicImageIds("fo-3"), ["fo-img"]));
  current = standby;
});

test("a leader whose Lease is taken away stops acting and exits 1", async () => {
  const leader = current!;
  assert.ok(await isLeader(leader));
  const custom = cp.adminConfig().makeApiClient(CustomObjectsApi);
  const steal = async () => {
    const lease = (await custom.getNamespacedCustomObject({ group: "coordination.k8s.io", version: "v1", namespace: "default", plural: "leases", name: "basecache-controller" })) as {
      spec: Record<string, unknown>;
    };
    lease.spec.holderIdentity = "intruder";
    lease.spec.renewTime = microTime(Date.now());
    lease.spec.leaseDurationSeconds = 3600;
    await custom.replaceNamespacedCustomObject({ group: "coordination.k8s.io", version: "v1", namespace: "default", plural: "leases", name: "basecache-controller", body: lease });
  };
  await eventually(steal, { timeoutMs: 10_000 });
  assert.equal(await leader.exited, 1);
  assert.equal(await leaseHolder(), "intruder");
});
