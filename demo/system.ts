/**
 * The whole system, locally: a real control plane, an origin on loopback, three Node objects, the
 * controller and one agent per node as local processes (each node with its own directories, each
 * process with its own ServiceAccount under deploy/'s RBAC and admission policy), the example ImageCache
 * from deploy/examples/, an instance disk, and garbage collection after the ImageCache is deleted.
 */
import { createHash } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { execa } from "execa";
import { stringify } from "yaml";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../test/harness/control-plane.js";
import { ImageDir } from "../test/harness/images.js";
import { Origin } from "../test/harness/origin.js";
import { applyObjects, readManifests, type ManifestObject } from "../test/harness/manifests.js";
import { baseNameFor } from "../src/core/names.js";
import { formatBytes } from "../src/core/quantity.js";
import { parseImageCache, parseNodeImageCache } from "../src/kube/parse.js";
import type { RawObject } from "../src/kube/client.js";
import { formatRow, isImageCacheReady, planChangedRows, planNodeRows, summarizeImageCache } from "./view.js";
import { runBasecache, startBasecache, type BasecacheProcess } from "./processes.js";

const repoRoot = resolve(fileURLToPath(new URL("..", import.meta.url)));
const ns = "basecache-system";
const group = "basecache.io";
const version = "v1alpha1";
/** Short, so that the demo shows a base removed within seconds of the ImageCache's deletion. */
const demoRetention = "15s";
const gcInterval = "3s";
const workloadKinds = new Set(["Deployment", "DaemonSet", "PodDisruptionBudget", "Service"]);

/** The demo's nodes: two that the example ImageCache selects, one it does not. */
const nodes = [
  { name: "demo-node-a", labels: { "kubevirt.io/schedulable": "true", "topology.kubernetes.io/zone": "zone-1" } },
  { name: "demo-node-b", labels: { "kubevirt.io/schedulable": "true", "topology.kubernetes.io/zone": "zone-2" } },
  { name: "demo-node-c", labels: { "kubevirt.io/schedulable": "false", "topology.kubernetes.io/zone": "zone-2" } },
];

export interface SystemDemoOptions {
  /** Keep everything running at the end, until SIGINT, and print how to explore it. */
  keep: boolean;
  /** Prints one line for a person. */
  say: (line: string) => void;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

interface NodeDirs {
  baseDir: string;
  instancesDir: string;
}

/** What the steps share; `processes` and the resources are released by `runSystemDemo`'s cleanup. */
interface Demo {
  opts: SystemDemoOptions;
  work: string;
  cp: ControlPlane;
  admin: KubeConfig;
  processes: BasecacheProcess[];
  dirs: Map<string, NodeDirs>;
}

/** Runs the whole-system demo; throws when a step does not reach its expected state. */
export async function runSystemDemo(opts: SystemDemoOptions): Promise<void> {
  if (opts.signal.aborted) throw opts.signal.reason;
  const work = await mkdtemp(join(tmpdir(), "basecache-demo-"));
  const removeWork = () => rmSync(work, { recursive: true, force: true });
  process.on("exit", removeWork);
  const processes: BasecacheProcess[] = [];
  let cp: ControlPlane | undefined;
  let origin: Origin | undefined;
  let images: ImageDir | undefined;
  let step = 0;
  const heading = (text: string) => opts.say(`\n==> [${++step}/8] ${text}`);
  try {
    heading("Starting a real control plane (etcd + kube-apiserver with RBAC; the first run builds both from source, several minutes)");
    cp = await startControlPlane({ log: (line) => opts.say(`    ${line}`) });
    const demo: Demo = { opts, work, cp, admin: cp.adminConfig(), processes, dirs: new Map() };

    heading("Serving a generated disk image from an HTTP origin on loopback");
    images = await ImageDir.create("basecache-demo-img-");
    origin = await Origin.start();
    const image = await serveDemoImage(demo, images, origin);

    heading("Installing crds/ and deploy/'s ServiceAccounts, RBAC and admission policy; creating three Nodes");
    await installIdentitiesAndNodes(demo);

    heading("Starting the controller and one agent per node as local processes, each with its own ServiceAccount token");
    await startProcesses(demo);

    heading("Applying deploy/examples/imagecache.yaml, pointed at the local origin");
    const cache = await cacheImage(demo, image);

    heading("Creating an instance disk on demo-node-a with `basecache disk create`, as a VM pod's init container would");
    await createInstanceDisk(demo, cache.imageId);

    heading(`Deleting the ImageCache: GC keeps the base the disk uses and removes the rest after ${demoRetention}`);
    await deleteAndCollect(demo, cache);

    heading(opts.keep ? "Everything keeps running (--keep)" : "Cleaning up");
    if (opts.keep) await keepRunning(cp, work, opts);
  } finally {
    await Promise.all(processes.map((p) => p.stop()));
    await origin?.close();
    await images?.cleanup();
    await cp?.stop();
    await rm(work, { recursive: true, force: true });
    process.off("exit", removeWork);
  }
  opts.say("    Stopped the controller, the agents, the origin and the control plane; removed every temp dir");
}

async function serveDemoImage(demo: Demo, images: ImageDir, origin: Origin): Promise<{ url: string; sha256: string }> {
  const image = await makeDemoImage(images);
  const url = origin.serve("/images/ubuntu-24.04.qcow2", { file: image.path });
  demo.opts.say(`    ${image.description}`);
  demo.opts.say(`    ${url}  sha256:${image.sha256.slice(0, 16)}…`);
  return { url, sha256: image.sha256 };
}

async function installIdentitiesAndNodes(demo: Demo): Promise<void> {
  await demo.cp.applyCrds();
  // Everything in deploy/ but the workloads, which the demo runs as local processes instead.
  const identities = (await readManifests([join(repoRoot, "deploy")])).filter((o) => !workloadKinds.has(o.kind));
  await applyObjects(demo.admin, identities);
  const core = demo.admin.makeApiClient(CoreV1Api);
  for (const n of nodes) {
    await core.createNode({ body: { metadata: { name: n.name, labels: n.labels } } });
    demo.opts.say(`    Node ${n.name.padEnd(12)} ${Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  }
}

async function startProcesses(demo: Demo): Promise<void> {
  const { cp, work } = demo;
  const say = demo.opts.say;
  const logDir = join(work, "logs");
  await mkdir(logDir);
  const controllerKc = await cp.serviceAccountConfig(ns, "basecache-controller");
  const controller = startBasecache("controller", controllerArgs(controllerKc.kubeconfigPath), join(logDir, "controller.log"));
  demo.processes.push(controller);
  say(`    controller             log ${controller.logPath}`);
  for (const n of nodes) {
    const d = { baseDir: join(work, "nodes", n.name, "_base"), instancesDir: join(work, "nodes", n.name, "instances") };
    await mkdir(d.baseDir, { recursive: true });
    await mkdir(d.instancesDir, { recursive: true });
    demo.dirs.set(n.name, d);
    // A token bound to a pod on this node: the API server names the node in the agent's user info, and
    // the admission policy lets it write only this node's status.
    const kc = await cp.serviceAccountConfig(ns, "basecache-agent", { nodeName: n.name });
    const agent = startBasecache(`agent ${n.name}`, agentArgs(n.name, d, kc.kubeconfigPath), join(logDir, `agent-${n.name}.log`));
    demo.processes.push(agent);
    say(`    agent on ${n.name.padEnd(13)} _base ${d.baseDir}`);
  }
}

async function cacheImage(demo: Demo, image: { url: string; sha256: string }): Promise<{ name: string; imageId: string }> {
  const say = demo.opts.say;
  const example = await demoImageCache(image.url, image.sha256);
  const imageId = (example.spec as { images: { id: string }[] }).images[0]?.id ?? "";
  await writeFile(join(demo.work, "imagecache.yaml"), stringify(example));
  await applyObjects(demo.admin, [example]);
  say(`    ImageCache ${example.metadata.name}: image "${imageId}" on nodes with kubevirt.io/schedulable=true`);
  say(`    retention ${demoRetention} instead of the example's 24h (the agents' default retention is ${demoRetention} too), GC every ${gcInterval}`);
  await watchUntilReady(demo.admin, example.metadata.name, demo.processes, demo.opts);
  for (const n of nodes) {
    const files = (await readdir(nodeDirs(demo, n.name).baseDir)).filter((f) => !f.startsWith("."));
    say(`    ${n.name} _base: ${files.length ? files.join(" ") : "(empty)"}`);
  }
  return { name: example.metadata.name, imageId };
}

async function createInstanceDisk(demo: Demo, imageId: string): Promise<void> {
  const a = nodeDirs(demo, "demo-node-a");
  const disk = join(a.instancesDir, "vm-demo", "disk.qcow2");
  await mkdir(join(a.instancesDir, "vm-demo"));
  const created = await runBasecache(["disk", "create", "--base-dir", a.baseDir, "--id", imageId, "--out", disk, "--size", "2Gi"]);
  if (created.exitCode !== 0) throw new Error(`Cannot create the instance disk: basecache disk create exited ${created.exitCode}: ${created.stderr.trim()}`);
  for (const line of created.stdout.trim().split("\n")) if (line) demo.opts.say(`    ${line}`);
  const backing = await execa("qemu-img", ["info", "-f", "qcow2", "--output=json", disk]);
  demo.opts.say(`    ${disk}: backing file ${(JSON.parse(backing.stdout) as { "backing-filename"?: string })["backing-filename"] ?? "(none)"}`);
}

async function deleteAndCollect(demo: Demo, cache: { name: string; imageId: string }): Promise<void> {
  const { opts, processes } = demo;
  await demo.admin.makeApiClient(CustomObjectsApi).deleteClusterCustomObject({ group, version, plural: "imagecaches", name: cache.name });
  const base = baseNameFor(cache.imageId);
  const a = nodeDirs(demo, "demo-node-a");
  const b = nodeDirs(demo, "demo-node-b");
  await waitFor("the base on demo-node-b to be removed", async () => !existsSync(join(b.baseDir, base)), processes, opts, 120_000);
  opts.say(`    demo-node-b: base ${base.slice(0, 12)}… removed (unused for ${demoRetention})`);
  // Give demo-node-a's agent a few more GC passes to show that the base in use survives them.
  await delay(3 * 3_000, undefined, { signal: opts.signal });
  if (!existsSync(join(a.baseDir, base))) throw new Error("The base on demo-node-a was removed although an instance disk uses it");
  const dry = await runBasecache(["gc", "--base-dir", a.baseDir, "--instances-dir", a.instancesDir, "--dry-run", "--json"]);
  opts.say(`    demo-node-a: base ${base.slice(0, 12)}… kept: ${describeGcDecision(dry.stdout, base)}`);
  await showEvents(demo.admin, opts.say);
}

function nodeDirs(demo: Demo, node: string): NodeDirs {
  const d = demo.dirs.get(node);
  if (!d) throw new Error(`Cannot find the directories of node "${node}"`);
  return d;
}

function controllerArgs(kubeconfig: string): string[] {
  return ["controller", "--kubeconfig", kubeconfig, "--leader-elect", "--lease-namespace", ns, "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"];
}

function agentArgs(node: string, d: NodeDirs, kubeconfig: string): string[] {
  return ["agent", "--node", node, "--base-dir", d.baseDir, "--instances-dir", d.instancesDir, "--kubeconfig", kubeconfig, "--gc-interval", gcInterval, "--retention", demoRetention, "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"];
}

/** A 1 GiB qcow2 with data, zero clusters and holes, built by the test harness with qemu-img and qemu-io. */
async function makeDemoImage(images: ImageDir): Promise<{ path: string; sha256: string; description: string }> {
  const path = await images.qcow2("ubuntu-24.04.qcow2", 1024);
  const sha256 = createHash("sha256").update(await readFile(path)).digest("hex");
  const info = JSON.parse((await execa("qemu-img", ["info", "-f", "qcow2", "--output=json", path])).stdout) as { "virtual-size": number; "actual-size": number };
  return { path, sha256, description: `qcow2, virtual size ${formatBytes(info["virtual-size"])}, ${formatBytes(info["actual-size"])} on disk (made with qemu-img and qemu-io)` };
}

/** deploy/examples/imagecache.yaml with its URL pointed at the origin, the checksum filled in, and a short retention. */
async function demoImageCache(url: string, sha256: string): Promise<ManifestObject> {
  const [example] = await readManifests([join(repoRoot, "deploy/examples/imagecache.yaml")]);
  if (!example) throw new Error("Cannot read deploy/examples/imagecache.yaml: no object in it");
  const spec = example.spec as { images: { source: { http?: { url: string } }; checksum?: string }[]; retention?: { unusedFor?: string } };
  for (const img of spec.images) {
    img.source = { http: { url } };
    img.checksum = `sha256:${sha256}`;
  }
  spec.retention = { unusedFor: demoRetention };
  return example;
}

/** Prints each change of the nodes' image status until the ImageCache is Ready on every matching node. */
async function watchUntilReady(kc: KubeConfig, name: string, processes: BasecacheProcess[], opts: SystemDemoOptions): Promise<void> {
  const api = kc.makeApiClient(CustomObjectsApi);
  let shown = new Map<string, string>();
  let lastSummary = "";
  await waitFor(
    `ImageCache "${name}" to be Ready on every matching node`,
    async () => {
      const list = (await api.listClusterCustomObject({ group, version, plural: "nodeimagecaches" })) as { items: RawObject[] };
      const { changed, next } = planChangedRows(shown, planNodeRows(list.items.map(parseNodeImageCache)));
      shown = next;
      for (const row of changed) opts.say(`    ${formatRow(row)}`);
      const ic = parseImageCache((await api.getClusterCustomObject({ group, version, plural: "imagecaches", name })) as RawObject);
      const summary = summarizeImageCache(ic);
      if (summary !== lastSummary) opts.say(`    ${summary}`);
      lastSummary = summary;
      return isImageCacheReady(ic);
    },
    processes,
    opts,
    300_000,
  );
}

/** Polls `check` every 500 ms until it holds; fails early when one of the demo's processes died. */
async function waitFor(what: string, check: () => Promise<boolean>, processes: BasecacheProcess[], opts: SystemDemoOptions, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = processes.find((p) => p.exited());
    if (dead) throw new Error(`Cannot wait for ${what}: the ${dead.name} process exited\n${await dead.logTail()}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`Cannot wait for ${what}: not reached within ${timeoutMs / 1000} s`);
    await delay(500, undefined, { signal: opts.signal });
  }
}

function describeGcDecision(json: string, base: string): string {
  try {
    const out = JSON.parse(json) as { decisions?: { name: string; reason: string; message: string }[] };
    const d = out.decisions?.find((x) => x.name === base);
    return d ? `${d.reason}, ${d.message}` : "still on disk";
  } catch {
    return "still on disk";
  }
}

/** Prints the Events the controller and the agents recorded about ImageCaches and NodeImageCaches. */
async function showEvents(kc: KubeConfig, say: (line: string) => void): Promise<void> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const list = (await api.listClusterCustomObject({ group: "events.k8s.io", version: "v1", plural: "events" })) as {
    items: { regarding?: { kind?: string; name?: string }; reason?: string; note?: string; eventTime?: string; metadata?: { creationTimestamp?: string } }[];
  };
  const kinds = new Set(["ImageCache", "NodeImageCache"]);
  const events = list.items
    .filter((e) => kinds.has(e.regarding?.kind ?? ""))
    .sort((x, y) => (x.eventTime ?? x.metadata?.creationTimestamp ?? "").localeCompare(y.eventTime ?? y.metadata?.creationTimestamp ?? ""));
  if (events.length === 0) return;
  say("    Events:");
  for (const e of events) say(`      ${`${e.regarding?.kind ?? ""}/${e.regarding?.name ?? ""}`.padEnd(27)} ${(e.reason ?? "").padEnd(14)} ${e.note ?? ""}`);
}

async function keepRunning(cp: ControlPlane, work: string, opts: SystemDemoOptions): Promise<void> {
  const { say } = opts;
  say(`    export KUBECONFIG=${cp.kubeconfigPath}`);
  say("    kubectl get nodes --show-labels; kubectl get imagecaches,nodeimagecaches");
  say(`    kubectl apply -f ${join(work, "imagecache.yaml")}    # the demo's ImageCache again`);
  say(`    logs: ${join(work, "logs")}   node dirs: ${join(work, "nodes")}`);
  say("    (no kubectl? `hack/build-tools.sh kubectl` builds the pinned one)  Press Ctrl-C to stop.");
  await new Promise<void>((res) => {
    if (opts.signal.aborted) return res();
    opts.signal.addEventListener("abort", () => res(), { once: true });
  });
}
