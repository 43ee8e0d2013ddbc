/**
 * The Helm chart: lint, render, server-side dry-run of every rendered object against a real API server,
 * CRDs kept identical to crds/, and the default rendering kept identical to deploy/, object by object.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiextensionsV1Api, AppsV1Api, CoreV1Api, type KubeConfig, type V1PodSpec } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { chartDir, helm, renderChart } from "../harness/helm.js";
import { applyObjects, expandedArgs, objectKey, parseManifests, readManifests, type ManifestObject } from "../harness/manifests.js";
import { parseAgentFlags } from "../../src/cli/commands/agent.js";
import { containerUser, refusedSteps, shellScript } from "../harness/file-privileges.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
/** Labels only Helm adds; everything else must match deploy/ exactly. */
const helmOnlyLabels = ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"];

function withoutHelmLabels(o: ManifestObject): ManifestObject {
  const copy = structuredClone(o);
  const labels = copy.metadata.labels;
  if (labels) for (const key of helmOnlyLabels) delete labels[key];
  return copy;
}

function byKey(objects: ManifestObject[]): Map<string, ManifestObject> {
  const map = new Map<string, ManifestObject>();
  for (const o of objects) {
    const key = objectKey(o);
    assert.ok(!map.has(key), `${key} appears twice`);
    map.set(key, o);
  }
  return map;
}

async function expectNotFound(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.equal((err as { code?: unknown }).code, 404);
    return;
  }
  assert.fail("expected HTTP 404, but the object exists");
}

function find(objects: ManifestObject[], kind: string, name: string): ManifestObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind} ${name} is rendered`);
  return o;
}

describe("the chart, rendered", () => {
  test("passes helm lint --strict", async () => {
    const out = await helm(["lint", "--strict", chartDir]);
    assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test("ships CRDs identical to crds/", async () => {
    const want = (await readdir(join(repoRoot, "crds"))).filter((f) => f.endsWith(".yaml")).sort();
    const got = (await readdir(join(chartDir, "crds"))).sort();
    assert.deepEqual(got, want, "the chart's crds/ holds the same files as crds/");
    for (const f of want) {
      const a = await readFile(join(repoRoot, "crds", f), "utf8");
      const b = await readFile(join(chartDir, "crds", f), "utf8");
      assert.ok(a === b, `charts/basecache/crds/${f} differs from crds/${f}; run hack/sync-chart-crds.sh`);
    }
  });

  test("with default values renders the same objects as deploy/, modulo Helm's labels and the Namespace", async () => {
    const rendered = byKey(parseManifests(await renderChart(), "helm template").map(withoutHelmLabels));
    const deploy = byKey((await readManifests([join(repoRoot, "deploy")])).filter((o) => o.kind !== "Namespace"));
    assert.deepEqual([...rendered.keys()].sort(), [...deploy.keys()].sort(), "the same kinds and names");
    for (const [key, want] of deploy) assert.deepEqual(rendered.get(key), want, `${key} is the same in the chart and in deploy/`);
  });

  test("puts the base and instances paths everywhere the agent uses them", async () => {
    const objects = parseManifests(await renderChart("elsewhere", ["agent.paths.baseDir=/srv/vm/_base", "agent.paths.instancesDir=/srv/vm/instances"]));
    const text = JSON.stringify(find(objects, "DaemonSet", "basecache-agent"));
    assert.ok(!text.includes("/var/lib/basecache"), "no default path is left");
    for (const needle of ["--base-dir=/srv/vm/_base", "--instances-dir=/srv/vm/instances", '"path":"/srv/vm/_base"', '"mountPath":"/srv/vm/_base"', "chown 65532:65532 /srv/vm/_base"]) {
      assert.ok(text.includes(needle), `the DaemonSet has ${needle}`);
    }
    const vap = JSON.stringify(find(objects, "ValidatingAdmissionPolicy", "basecache-agent-own-node"));
    assert.ok(vap.includes("system:serviceaccount:elsewhere:basecache-agent"), "the admission policy names the agent of the release namespace");
  });

  test("prepare-dirs takes the base dir back before its chmod, for any base dir and agent user, so restarts work", async () => {
    const objects = parseManifests(await renderChart("elsewhere", ["agent.paths.baseDir=/srv/vm/_base", "agent.runAsUser=1000", "agent.runAsGroup=1000"]));
    const ds = find(objects, "DaemonSet", "basecache-agent");
    const spec = (ds.spec as { template: { spec: V1PodSpec } }).template.spec;
    const init = spec.initContainers?.find((c) => c.name === "prepare-dirs");
    assert.ok(init, "the DaemonSet has prepare-dirs");
    const script = shellScript(init) ?? "";
    assert.match(script, /chown 1000:1000 \/srv\/vm\/_base$/);
    assert.deepEqual(refusedSteps(script, containerUser(init, spec.securityContext)), []);
  });

  test("renders a ServiceMonitor only when asked, and the image from one value", async () => {
    assert.equal(parseManifests(await renderChart()).filter((o) => o.kind === "ServiceMonitor").length, 0);
    const objects = parseManifests(await renderChart("basecache-system", ["metrics.serviceMonitor.enabled=true", "image.repository=registry.example/basecache", "image.tag=9.9.9"]));
    find(objects, "ServiceMonitor", "basecache");
    const images = JSON.stringify(objects).match(/"image":"[^"]*"/g) ?? [];
    assert.equal(images.length, 3, "controller, agent and its init container");
    assert.ok(images.every((i) => i === '"image":"registry.example/basecache:9.9.9"'), images.join(", "));
  });

  test("passes the cache budget, GC interval, retention and pod-uses timeout to the agent", async () => {
    const argsOf = async (set: string[]) => {
      const ds = find(parseManifests(await renderChart("basecache-system", set)), "DaemonSet", "basecache-agent");
      return ((ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]?.args ?? []).join(" ");
    };
    const defaults = await argsOf([]);
    assert.match(defaults, /--gc-interval=40m --retention=24h --pod-uses-timeout=30s/);
    assert.doesNotMatch(defaults, /--cache-budget|--dry-run-gc/);
    const set = ["agent.gc.cacheBudget.size=500Gi", "agent.gc.cacheBudget.lowWatermark=0.5", "agent.gc.interval=10m", "agent.gc.retention=2h", "agent.concurrency=4", "agent.gc.dryRun=true", "agent.gc.podUsesTimeout=5s", "agent.verifyInterval=6h"];
    const tuned = await argsOf(set);
    assert.match(tuned, /--concurrency=4 --gc-interval=10m --retention=2h --pod-uses-timeout=5s --cache-budget=500Gi --high-watermark=0.9 --low-watermark=0.5 --dry-run-gc/);
    // The agent itself accepts them and reads them as meant.
    const ds = find(parseManifests(await renderChart("basecache-system", set)), "DaemonSet", "basecache-agent");
    const agent = parseAgentFlags(expandedArgs(ds, "agent", {}).slice(1), { NODE_NAME: "node-1" });
    assert.ok(agent !== "help");
    assert.deepEqual(
      { concurrency: agent.concurrency, gcIntervalMs: agent.gcIntervalMs, retentionMs: agent.defaultRetentionMs, podUsesTimeoutMs: agent.podUsesTimeoutMs, budget: agent.budget, dryRun: agent.dryRunGc, verifyIntervalMs: agent.verifyIntervalMs },
      { concurrency: 4, gcIntervalMs: 600_000, retentionMs: 7_200_000, podUsesTimeoutMs: 5000, budget: { limitBytes: 500 * 1024 ** 3, highWatermark: 0.9, lowWatermark: 0.5 }, dryRun: true, verifyIntervalMs: 21_600_000 },
    );
  });

  test("refuses values its schema does not allow: a misspelt key, a bad duration, a relative path", async () => {
    for (const set of ["agent.paths.basedir=/srv", "agent.gc.interval=soon", "agent.paths.baseDir=var/lib/x", "controller.replicas=0"]) {
      await assert.rejects(renderChart("basecache-system", [set]), /values don't meet the specifications of the schema/, set);
    }
  });

  test("without leader election drops the Lease role and the flag", async () => {
    const objects = parseManifests(await renderChart("basecache-system", ["controller.leaderElection=false"]));
    // The public-keys Role (checksumFrom's ConfigMaps) stays: it has nothing to do with the Lease.
    assert.deepEqual(objects.filter((o) => o.kind === "Role").map((o) => o.metadata?.name), ["basecache-controller-public-keys"]);
    assert.ok(!JSON.stringify(find(objects, "Deployment", "basecache-controller")).includes("--leader-elect"));
  });
});

describe("the chart, applied to a real API server", () => {
  let cp: ControlPlane;
  let admin: KubeConfig;

  before(async () => {
    cp = await startControlPlane();
    admin = cp.adminConfig();
    await cp.applyCrds(join(chartDir, "crds"));
    for (const name of ["basecache-system", "tuned"]) await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  });

  after(async () => {
    await cp?.stop();
  });

  test("every object of the default rendering passes a server-side dry run", async () => {
    const objects = parseManifests(await renderChart());
    const answered = await applyObjects(admin, objects, { dryRun: true });
    assert.equal(answered.length, objects.length);
  });

  test("every object of a tuned rendering passes a server-side dry run", async () => {
    const set = [
      "agent.tolerations[0].key=node-role.example/vm",
      "agent.tolerations[0].operator=Exists",
      "agent.tolerations[0].effect=NoSchedule",
      "agent.nodeSelector.kubevirt\\.io/schedulable=true",
      "agent.supplementalGroups[0]=107",
      "agent.priorityClassName=system-node-critical",
      "controller.replicas=3",
      "controller.extraArgs[0]=--log-format=json",
    ];
    // The ServiceMonitor needs the Prometheus Operator's CRD, which this API server does not serve.
    const objects = parseManifests(await renderChart("tuned", set)).filter((o) => o.kind !== "ServiceMonitor");
    await applyObjects(admin, objects, { dryRun: true });
  });

  test("a dry run stores nothing", async () => {
    const ds = await admin.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: "basecache-system" });
    assert.equal(ds.items.length, 0);
    const sas = await admin.makeApiClient(CoreV1Api).listNamespacedServiceAccount({ namespace: "basecache-system" });
    assert.ok(!sas.items.some((s) => s.metadata?.name?.startsWith("basecache-")));
  });
});

describe("helm install on a fresh API server", () => {
  let fresh: ControlPlane;
  let freshAdmin: KubeConfig;

  before(async () => {
    fresh = await startControlPlane();
    freshAdmin = fresh.adminConfig();
  });

  after(async () => {
    await fresh?.stop();
  });

  test("installs with helm itself, CRDs from the chart included, and uninstalls", async () => {
    const kube = ["--kubeconfig", fresh.kubeconfigPath];
    await helm(["install", "basecache", chartDir, "--namespace", "helm-install", "--create-namespace", "--wait=false", ...kube]);
    const ds = await freshAdmin.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ namespace: "helm-install", name: "basecache-agent" });
    assert.equal(ds.metadata?.labels?.["app.kubernetes.io/managed-by"], "Helm");
    const status = await helm(["status", "basecache", "--namespace", "helm-install", ...kube]);
    assert.match(status, /STATUS: deployed/);
    await helm(["uninstall", "basecache", "--namespace", "helm-install", "--wait=false", ...kube]);
    await expectNotFound(() => freshAdmin.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ namespace: "helm-install", name: "basecache-agent" }));
    // Helm keeps CRDs on uninstall, so ImageCaches survive a reinstall.
    await freshAdmin.makeApiClient(ApiextensionsV1Api).readCustomResourceDefinition({ name: "imagecaches.basecache.io" });
  });
});
