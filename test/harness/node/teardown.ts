/**
 * `down` and `leftovers` of the test node. down drains the pods through the kubelet first (so the CRI tears
 * down their sandboxes, veths and IPAM itself), stops each daemon with a bounded grace, then removes by force
 * whatever is left, from this run or a lost one: shims, mounts, netns, veths, the bridge, iptables chains,
 * kubepods cgroups, files, sysctls.
 */
import { setTimeout as delay } from "node:timers/promises";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { alive, killAll, processesWith, stopDaemon } from "./daemons.js";
import {
  bridgeExists,
  cgroupPids,
  listCgroups,
  listChains,
  listMounts,
  listNetns,
  listOutsideFiles,
  listVeths,
  removeBridge,
  removeCgroups,
  removeChains,
  removeOutsideFiles,
  restoreSysctls,
  unmountAll,
} from "./host.js";
import { Bridge, DefaultHostPaths, readState, Root, RunRoot, type DaemonRecord, type NodeState } from "./layout.js";
import { Kubeconfigs } from "./pki.js";

const DrainTimeoutMs = 45_000;
/** The order of stopping: nothing recreates pods while they drain; the API server before its etcd. */
const StopOrder = ["kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-apiserver", "etcd", "containerd", "registry"];
const Grace: Record<string, number> = { "kube-apiserver": 5_000, etcd: 10_000, containerd: 10_000, kubelet: 10_000 };

function byName(state: NodeState, name: string): DaemonRecord | undefined {
  return state.daemons.find((d) => d.name === name);
}

// Deletes every pod with a 1 s grace and waits (bounded) until the kubelet has confirmed each one: then
// their containers, sandboxes and network are gone the regular way.
async function drainPods(log: (line: string) => void): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(Kubeconfigs.admin);
  const core = kc.makeApiClient(CoreV1Api);
  const deadline = performance.now() + DrainTimeoutMs;
  let pods = (await core.listPodForAllNamespaces({ timeoutSeconds: 10 })).items;
  for (const p of pods) {
    await core.deleteNamespacedPod({ namespace: p.metadata?.namespace ?? "", name: p.metadata?.name ?? "", gracePeriodSeconds: 1 }).catch(() => {});
  }
  while (pods.length > 0 && performance.now() < deadline) {
    await delay(500);
    pods = (await core.listPodForAllNamespaces({ timeoutSeconds: 10 })).items;
  }
  if (pods.length > 0) log(`${pods.length} pods still there after ${DrainTimeoutMs} ms; removing them by force`);
}

/** Stops the node and removes everything it left. Does nothing when there is nothing; safe to repeat. */
export async function down(log: (line: string) => void = () => {}): Promise<{ ms: number }> {
  const started = performance.now();
  const state = await readState();
  if (state) {
    for (const name of ["kube-controller-manager", "kube-scheduler"]) {
      const d = byName(state, name);
      if (d) await stopDaemon(d, Grace[name] ?? 5_000);
    }
    const kubelet = byName(state, "kubelet");
    const apiserver = byName(state, "kube-apiserver");
    if (kubelet && apiserver && (await alive(kubelet)) && (await alive(apiserver))) {
      await drainPods(log).catch((err: unknown) => log(`cannot drain the pods (${(err as Error).message}); removing them by force`));
    }
    for (const name of StopOrder) {
      const d = byName(state, name);
      if (d) await stopDaemon(d, Grace[name] ?? 5_000);
    }
  }
  await forceCleanup(state?.hostPaths ?? DefaultHostPaths);
  if (state) {
    const changed = await restoreSysctls(state.sysctls);
    if (changed.length > 0) log(`put back sysctls: ${changed.join(", ")}`);
  }
  return { ms: Math.round(performance.now() - started) };
}

async function strayPids(): Promise<number[]> {
  // Shims carry our containerd socket in their args; daemons of a lost state carry our dirs.
  const byCmdline = [...(await processesWith(Root)), ...(await processesWith(RunRoot))].map((p) => p.pid);
  return [...new Set([...byCmdline, ...(await cgroupPids())])];
}

async function forceCleanup(hostPaths: string[]): Promise<void> {
  await killAll(await strayPids());
  await unmountAll();
  await removeCgroups();
  await removeChains();
  await removeBridge();
  await removeOutsideFiles(hostPaths);
}

/** Everything of a node still on the host, one line each; empty after a clean `down`. */
export async function leftovers(hostPaths: string[] = DefaultHostPaths): Promise<string[]> {
  const out: string[] = [];
  const state = await readState();
  for (const d of state?.daemons ?? []) if (await alive(d)) out.push(`process ${d.name} (pid ${d.pid})`);
  for (const pid of await strayPids()) out.push(`process ${pid}`);
  for (const m of await listMounts()) out.push(`mount ${m}`);
  for (const n of await listNetns()) out.push(`netns ${n}`);
  for (const v of await listVeths()) out.push(`veth ${v}`);
  if (await bridgeExists()) out.push(`bridge ${Bridge}`);
  for (const c of await listChains()) out.push(`iptables chain ${c}`);
  for (const c of await listCgroups()) out.push(`cgroup ${c}`);
  for (const f of await listOutsideFiles(state?.hostPaths ?? hostPaths)) out.push(`file ${f}`);
  return out;
}
