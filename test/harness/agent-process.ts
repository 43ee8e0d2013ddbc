/**
 * Runs `basecache agent` as a real child process (node + tsx on the sources), one per simulated node, each
 * with its own base and instances dirs. Tests observe it through the API, its files, its exit code and what it
 * serves (found from the kernel's socket table, listening.ts), never through its log, which is kept only as a
 * tail for failure messages. Also sets up the agent's real identity: the RBAC and admission policy from
 * deploy/ and a service-account token bound to a pod on the node.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { execa, type ResultPromise } from "execa";
import { eventually } from "./eventually.js";
import type { ControlPlane } from "./control-plane.js";
import { servingAddress } from "./listening.js";
import { applyObjects, readManifests } from "./manifests.js";
import { LogTail, parseMetrics } from "./process-output.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** A node's directories: `base` is its `_base`, `instances` holds its instance disks. */
export interface NodeDirs {
  root: string;
  base: string;
  instances: string;
}

export async function makeNodeDirs(node: string): Promise<NodeDirs> {
  const root = await mkdtemp(join(tmpdir(), `basecache-${node}-`));
  const dirs = { root, base: join(root, "_base"), instances: join(root, "instances") };
  await mkdir(dirs.base, { recursive: true });
  await mkdir(dirs.instances, { recursive: true });
  return dirs;
}

export async function removeNodeDirs(dirs: NodeDirs): Promise<void> {
  await rm(dirs.root, { recursive: true, force: true });
}

/** Applies the agent's RBAC, events binding and own-node admission policy from deploy/. */
export async function applyAgentIdentity(cp: ControlPlane): Promise<void> {
  const files = (await readdir(join(repoRoot, "deploy")))
    .filter((f) => /^(00-namespace|11-agent-rbac|12-agent-admission-policy|13-events-rbac)\.yaml$/.test(f))
    .sort()
    .map((f) => join(repoRoot, "deploy", f));
  await applyObjects(cp.adminConfig(), await readManifests(files));
}

/** A kubeconfig file for the agent's service account with a token bound to a pod on `node`. */
export async function agentKubeconfig(cp: ControlPlane, node: string, dir: string): Promise<string> {
  const { kubeConfig } = await cp.serviceAccountConfig("basecache-system", "basecache-agent", { nodeName: node });
  const path = join(dir, "agent.kubeconfig");
  await writeFile(path, kubeConfig.exportConfig());
  return path;
}

export interface AgentProcess {
  readonly pid: number;
  /** The last lines it logged, for failure messages only. */
  logTail(): string;
  /** The loopback address it serves `path` (/metrics, /healthz, /readyz) on. */
  address(path: string): Promise<string>;
  /** Waits until its /readyz answers 200 (its informers have synced). */
  ready(timeoutMs?: number): Promise<void>;
  /** Fetches and parses /metrics: `name{labels}` -> value. */
  metrics(): Promise<Map<string, number>>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (unless it already exited), then the exit code. */
  stop(): Promise<number | undefined>;
  exited: Promise<number | undefined>;
}

export interface StartAgentOptions {
  node: string;
  dirs: NodeDirs;
  kubeconfigPath: string;
  args?: string[];
  env?: Record<string, string>;
  /** Leave out --metrics-addr and --health-addr, so that the agent serves on its defaults. */
  defaultAddrs?: boolean;
}

export function startAgent(o: StartAgentOptions): AgentProcess {
  const addrs = o.defaultAddrs ? [] : ["--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"];
  const args = ["--node", o.node, "--base-dir", o.dirs.base, "--instances-dir", o.dirs.instances, "--kubeconfig", o.kubeconfigPath, ...addrs, "--retry-base", "1s", "--retry-max", "2s", ...(o.args ?? [])];
  const proc: ResultPromise = execa("node", ["--import", "tsx", "src/cli/main.ts", "agent", ...args], {
    cwd: repoRoot,
    reject: false,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    buffer: { stderr: false },
    env: { BASECACHE_LOG_LEVEL: "debug", ...o.env },
  });
  const tail = new LogTail(proc.stderr);
  const exited = proc.then((r) => r.exitCode);
  let done = false;
  void exited.then(() => (done = true));
  const address = (path: string) => servingAddress(proc.pid ?? 0, path);
  const ready = async (timeoutMs = 60_000) => {
    const at = await address("/readyz");
    await eventually(
      async () => {
        const res = await fetch(`http://${at}/readyz`);
        assert.equal(res.status, 200, `agent ${o.node} not ready (${done ? "exited" : "running"}): ${await res.text()}\n${tail.text()}`);
      },
      { timeoutMs, description: `agent ${o.node} ready` },
    );
  };
  return {
    pid: proc.pid ?? 0,
    logTail: () => tail.text(),
    address,
    ready,
    async metrics() {
      const res = await fetch(`http://${await address("/metrics")}/metrics`);
      return parseMetrics(await res.text());
    },
    kill: (signal = "SIGTERM") => void proc.kill(signal),
    async stop() {
      if (!done) proc.kill("SIGTERM");
      return exited;
    },
    exited,
  };
}
