/**
 * Bounded waits for the node's parts to be ready. Each wait also watches the daemons: one that exits fails
 * the wait at once with the tail of its log, instead of a timeout that says nothing.
 */
import { readFile } from "node:fs/promises";
import { request } from "node:https";
import { createServer } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { execa } from "execa";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { alive, logTail } from "./daemons.js";
import { ContainerdSocket, KubernetesServiceIp, NodeName, type NodeState } from "./layout.js";
import { Kubeconfigs, Pki, Server } from "./pki.js";

const ReadyTimeoutMs = 120_000;

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => res(typeof addr === "object" && addr ? addr.port : 0));
    });
  });
}

function admin(): CoreV1Api {
  const kc = new KubeConfig();
  kc.loadFromFile(Kubeconfigs.admin);
  return kc.makeApiClient(CoreV1Api);
}

export async function nodeReady(): Promise<boolean> {
  const node = await admin().readNode({ name: NodeName });
  return node.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
}

async function apiserverReady(): Promise<boolean> {
  const [ca, cert, key] = await Promise.all([readFile(Pki.ca), readFile(Pki.apiserverKubeletClient.certPath), readFile(Pki.apiserverKubeletClient.keyPath)]);
  return new Promise((res) => {
    const req = request(new URL("/readyz", Server), { ca, cert, key, timeout: 5_000 }, (r) => {
      r.resume();
      r.on("end", () => res(r.statusCode === 200));
    });
    req.on("error", () => res(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

const checks: Record<string, (state: NodeState) => Promise<boolean>> = {
  etcd: async (s) => (await fetch(`http://127.0.0.1:${s.ports.etcd}/health`)).ok,
  registry: async (s) => (await fetch(`http://${s.registry}/v2/`)).status === 200,
  containerd: async () => (await execa("ctr", ["--address", ContainerdSocket, "version"], { reject: false, stdin: "ignore", timeout: 10_000 })).exitCode === 0,
  "kube-apiserver": apiserverReady,
  node: nodeReady,
  // Pods of a namespace are refused until the kcm made its "default" ServiceAccount.
  "default-service-account": async () => (await admin().readNamespacedServiceAccount({ namespace: "default", name: "default" })) !== undefined,
  // kube-proxy's DNAT for the `kubernetes` Service: how pods reach the API server.
  "kubernetes-service-rules": async () => (await execa("iptables", ["-w", "5", "-t", "nat", "-S", "KUBE-SERVICES"], { reject: false })).stdout.includes(`${KubernetesServiceIp}/32`),
};

/** Polls `check` until true; fails early when a daemon of `state` exits. */
export async function waitFor(what: string, state: NodeState, check: () => Promise<boolean>, timeoutMs = ReadyTimeoutMs): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    for (const d of state.daemons) {
      if (!(await alive(d))) throw new Error(`Cannot start the real node: ${d.name} exited while waiting for ${what}\n${await logTail(d)}`);
    }
    if (await check().catch(() => false)) return;
    await delay(250);
  }
  const tails = await Promise.all(state.daemons.map((d) => logTail(d, 8)));
  throw new Error(`Cannot start the real node: ${what} not ready within ${timeoutMs} ms\n${tails.join("\n")}`);
}

export async function waitReady(state: NodeState, names: string[]): Promise<void> {
  for (const name of names) {
    const check = checks[name];
    if (!check) throw new Error(`No readiness check named "${name}"`);
    await waitFor(name, state, () => check(state));
  }
}
