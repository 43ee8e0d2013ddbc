/**
 * A real one-node Kubernetes on this machine for tests: `up` starts etcd, kube-apiserver (RBAC, Node
 * authorizer), kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables), Debian's containerd
 * and a local docker-registry; `down` (teardown.ts) removes all of it. Both are idempotent, and the daemons
 * are detached, so `up` and `down` may run in different processes (cli.ts). See docs/real-node.md.
 */
import { access, mkdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { KubeConfig } from "@kubernetes/client-node";
import { applyCrds } from "../control-plane.js";
import * as cmd from "./components.js";
import { cniConflist, containerdConfig, kubeletConfig, kubeProxyConfig, registryConfig, registryHostsToml } from "./configs.js";
import { alive, startDaemon } from "./daemons.js";
import { ensureBridge, readSysctls } from "./host.js";
import { DefaultHostPaths, Dirs, NodeIp, NodeName, readState, TouchedSysctls, writeState, type NodeState } from "./layout.js";
import { ensurePauseImage } from "./pause-image.js";
import { pushOciArchive, type OciImage } from "./oci-archive.js";
import { createNodePki, Kubeconfigs, Server } from "./pki.js";
import { freePort, nodeReady, waitReady } from "./readiness.js";
import { down } from "./teardown.js";

export { down } from "./teardown.js";
export { leftovers } from "./teardown.js";
export type { OciImage } from "./oci-archive.js";

const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

export interface UpOptions {
  /** OCI archives to push into the node's registry; pods pull them as `images[name]`. */
  images?: OciImage[];
  /** Host dirs the workloads use as hostPath (removed by `down`); default /var/lib/basecache. */
  hostPaths?: string[];
  log?: (line: string) => void;
}

export interface TestNode {
  nodeName: string;
  nodeIp: string;
  /** https://10.234.0.1:6443 */
  server: string;
  kubeconfigPath: string;
  /** `127.0.0.1:PORT`, plain http, on loopback. */
  registry: string;
  /** Pushed images: name (repo:tag) -> the reference pods use. */
  images: Record<string, string>;
  pauseImage: string;
  /** The directory of the pinned binaries (kubectl included). */
  binDir: string;
  adminConfig(): KubeConfig;
  applyCrds(dir?: string): Promise<void>;
  /** Runs the pinned kubectl as the admin; resolves stdout. */
  kubectl(args: string[]): Promise<string>;
}

/** etcd, registry, containerd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy. */
const DaemonCount = 8;
const Needed = ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "docker-registry", "iptables", "conntrack", "ip", "buildah", "gcc", "tar", "openssl", "curl", "nsenter"];
const CniPlugins = ["bridge", "host-local", "loopback"];

/** Why a real node cannot run here, in one line; undefined when it can. */
export async function unavailableReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "the real node needs root (it runs a kubelet, containerd and iptables)";
  const missing: string[] = [];
  for (const c of Needed) if ((await execa("sh", ["-c", `command -v ${c}`], { reject: false })).exitCode !== 0) missing.push(c);
  for (const p of CniPlugins) if (!(await access(`/usr/lib/cni/${p}`).then(() => true, () => false))) missing.push(`/usr/lib/cni/${p}`);
  if (missing.length > 0) return `the real node needs ${missing.join(", ")} (Debian: containerd runc docker-registry iptables conntrack iproute2 buildah gcc containernetworking-plugins)`;
  return undefined;
}

async function buildTools(log: (line: string) => void): Promise<string> {
  const proc = execa(join(repoRoot, "hack/build-tools.sh"), ["etcd", "node"], { cwd: repoRoot, stdin: "ignore", stderr: "pipe" });
  proc.stderr.on("data", (c: Buffer) => c.toString().split("\n").filter((l) => l.trim()).forEach(log));
  return (await proc).stdout.trim().split("\n").at(-1) ?? "";
}

function handle(state: NodeState, binDir: string): TestNode {
  const adminConfig = () => {
    const kc = new KubeConfig();
    kc.loadFromFile(Kubeconfigs.admin);
    return kc;
  };
  return {
    nodeName: NodeName,
    nodeIp: NodeIp,
    server: Server,
    kubeconfigPath: Kubeconfigs.admin,
    registry: state.registry,
    images: state.images,
    pauseImage: state.pauseImage,
    binDir,
    adminConfig,
    applyCrds: (dir) => applyCrds(adminConfig(), dir ?? join(repoRoot, "crds")),
    kubectl: async (args) => (await execa(join(binDir, "kubectl"), [`--kubeconfig=${Kubeconfigs.admin}`, ...args], { stdin: "ignore", timeout: 120_000 })).stdout,
  };
}

async function pushImages(state: NodeState, images: OciImage[]): Promise<void> {
  for (const image of images) state.images[image.name] = await pushOciArchive(image, state.registry);
  await writeState(state);
}

/** Whether every daemon of `state` runs and the node is Ready. */
async function healthy(state: NodeState): Promise<boolean> {
  for (const d of state.daemons) if (!(await alive(d))) return false;
  return state.daemons.length === DaemonCount && (await nodeReady().catch(() => false));
}

/** Brings the node up (or finds it up) and resolves a handle to it. A half-up node is taken down first. */
export async function up(opts: UpOptions = {}): Promise<TestNode> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`node: ${line}\n`));
  const reason = await unavailableReason();
  if (reason) throw new Error(`Cannot start the real node: ${reason}`);
  const binDir = await buildTools(log);
  const existing = await readState();
  if (existing && (await healthy(existing))) {
    await pushImages(existing, opts.images ?? []);
    return handle(existing, binDir);
  }
  if (existing) {
    log("a previous node is not whole; taking it down first");
    await down(log);
  }
  const pause = await ensurePauseImage(log);
  try {
    return await boot(binDir, pause, opts, log);
  } catch (err) {
    log(`start failed; tearing down (${(err as Error).message.split("\n")[0] ?? ""})`);
    await down(log);
    throw err;
  }
}

async function boot(binDir: string, pause: OciImage, opts: UpOptions, log: (line: string) => void): Promise<TestNode> {
  const started = performance.now();
  const hostPaths = opts.hostPaths ?? DefaultHostPaths;
  for (const d of Object.values(Dirs)) await mkdir(d, { recursive: true });
  const ports = { etcd: await freePort(), etcdPeer: await freePort(), registry: await freePort(), kubeletHealthz: await freePort(), proxyHealthz: await freePort(), proxyMetrics: await freePort() };
  const registry = `127.0.0.1:${ports.registry}`;
  const state: NodeState = {
    daemons: [],
    ports,
    registry,
    pauseImage: `${registry}/${pause.name}`,
    images: {},
    hostPaths,
    binDir,
    sysctls: await readSysctls(TouchedSysctls),
    startedAt: new Date().toISOString(),
  };
  // Written first: a `down` from another process can then clean up a half-made node.
  await writeState(state);
  await ensureBridge();
  await createNodePki();
  await writeConfigs(state);
  const start = async (c: cmd.Command) => {
    state.daemons.push(await startDaemon(c.name, c.bin, c.args, join(Dirs.logs, `${c.name}.log`)));
    await writeState(state);
  };
  await start(cmd.etcd(binDir, state));
  await start(cmd.registry());
  await start(cmd.containerd());
  await waitReady(state, ["etcd", "registry", "containerd"]);
  await pushImages(state, [pause, ...(opts.images ?? [])]);
  await start(cmd.apiserver(binDir, state));
  await waitReady(state, ["kube-apiserver"]);
  for (const c of [cmd.controllerManager(binDir), cmd.scheduler(binDir), cmd.kubelet(binDir), cmd.proxy(binDir)]) await start(c);
  await waitReady(state, ["node", "default-service-account", "kubernetes-service-rules"]);
  log(`node ${NodeName} Ready at ${Server} after ${Math.round(performance.now() - started)} ms (registry ${registry})`);
  return handle(state, binDir);
}

async function writeConfigs(state: NodeState): Promise<void> {
  const pki = Dirs.pki;
  await writeFile(join(Dirs.config, "containerd.toml"), containerdConfig(state.pauseImage));
  await mkdir(join(Dirs.certsD, state.registry), { recursive: true });
  await writeFile(join(Dirs.certsD, state.registry, "hosts.toml"), registryHostsToml(state.registry));
  await rm(Dirs.cniConf, { recursive: true, force: true });
  await mkdir(Dirs.cniConf, { recursive: true });
  await writeFile(join(Dirs.cniConf, "10-basecache-node.conflist"), cniConflist());
  await writeFile(join(Dirs.config, "registry.yml"), registryConfig(state.ports.registry));
  await writeFile(join(Dirs.config, "resolv.conf"), "# No cluster DNS: pods never query outside this machine.\nnameserver 127.0.0.1\n");
  await writeFile(join(Dirs.config, "kubelet.yaml"), kubeletConfig(state, pki));
  await writeFile(join(Dirs.config, "kube-proxy.yaml"), kubeProxyConfig(state, Kubeconfigs.proxy));
}

/** The running node, or undefined when none is up (or it is not whole). */
export async function status(): Promise<{ up: boolean; node?: TestNode; daemons: { name: string; pid: number; alive: boolean }[] }> {
  const state = await readState();
  if (!state) return { up: false, daemons: [] };
  const daemons = await Promise.all(state.daemons.map(async (d) => ({ name: d.name, pid: d.pid, alive: await alive(d) })));
  return (await healthy(state)) ? { up: true, node: handle(state, state.binDir), daemons } : { up: false, daemons };
}
