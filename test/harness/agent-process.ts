/**
 * Runs `basecache agent` as a real child process (node + tsx on the sources), one per simulated node, each
 * with its own base and instances dirs, collecting its JSON log lines. Also sets up the agent's real identity:
 * the RBAC and admission policy from deploy/ and a service-account token bound to a pod on the node.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import type { ControlPlane } from "./control-plane.js";
import { eventually } from "./eventually.js";
import { applyObjects, readManifests } from "./manifests.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

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
  readonly lines: LogLine[];
  waitForLog(msg: string, match?: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The address it serves `path` (/metrics, /healthz, /readyz) on, from its log. */
  address(path: string): Promise<string>;
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
  const lines: LogLine[] = [];
  let partial = "";
  proc.stderr?.on("data", (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split("\n");
    partial = parts.pop() ?? "";
    for (const p of parts) {
      if (!p.trim()) continue;
      try {
        lines.push(JSON.parse(p) as LogLine);
      } catch {
        lines.push({ level: "raw", msg: p });
      }
    }
  });
  const exited = proc.then((r) => r.exitCode);
  let done = false;
  void exited.then(() => (done = true));
  const waitForLog = (msg: string, match: (l: LogLine) => boolean = () => true, timeoutMs = 60_000) =>
    eventually(
      () => {
        const hit = lines.find((l) => l.msg === msg && match(l));
        if (!hit) throw new Error(`No log line "${msg}" yet (agent ${o.node} ${done ? "exited" : "running"}); last: ${lines.slice(-3).map((l) => l.msg).join(" | ")}`);
        return hit;
      },
      { timeoutMs, intervalMs: 100 },
    );
  const address = async (path: string) => {
    const line = await waitForLog("Serving HTTP endpoints", (l) => Array.isArray(l.paths) && (l.paths as string[]).includes(path));
    // An address on every interface is reached on loopback.
    return String(line.address).replace(/^(0\.0\.0\.0|\[::\]):/, "127.0.0.1:");
  };
  return {
    pid: proc.pid ?? 0,
    lines,
    waitForLog,
    address,
    async metrics() {
      const res = await fetch(`http://${await address("/metrics")}/metrics`);
      const out = new Map<string, number>();
      for (const l of (await res.text()).split("\n")) {
        if (!l || l.startsWith("#")) continue;
        const i = l.lastIndexOf(" ");
        out.set(l.slice(0, i), Number(l.slice(i + 1)));
      }
      return out;
    },
    kill: (signal = "SIGTERM") => void proc.kill(signal),
    async stop() {
      if (!done) proc.kill("SIGTERM");
      return exited;
    },
    exited,
  };
}
