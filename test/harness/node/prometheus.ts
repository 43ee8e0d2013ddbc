/**
 * A real Prometheus (Debian's `prometheus`) beside the real node, pointed at basecache as a user would point one:
 * it scrapes the pods behind the chart's metrics Services (what the ServiceMonitor selects:
 * `app.kubernetes.io/name=basecache`, component controller or agent, port `metrics`) on the bridge, and loads
 * deploy/monitoring/basecache.rules.yaml. Debian builds Prometheus without Kubernetes service discovery
 * (`promtool check config` rejects `kubernetes_sd_configs`), so discovery is what a user of that package does
 * instead: read the Services' EndpointSlices, as a dedicated service account that may read nothing but the
 * EndpointSlices of basecache's namespace, and write them as a `file_sd_configs` target file. Prometheus listens on
 * loopback, keeps its data in its own temp dir, and runs at most `maxRunMs`.
 */
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { eventually } from "../eventually.js";
import type { TestNode } from "./node.js";
import { Pki } from "./pki.js";
import { freePort } from "./readiness.js";

const MonitoringNamespace = "monitoring";
const ServiceAccount = "prometheus";

/** A scrape target as discovered: the pod's address and labels naming the pod. */
export interface DiscoveredTarget {
  address: string;
  component: string;
  pod: string;
  node: string;
}

export interface TestPrometheus {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Reads the EndpointSlices again and rewrites the target file (Prometheus notices the change); resolves the targets. */
  discover(): Promise<DiscoveredTarget[]>;
  /** GET of an HTTP API path (e.g. `/api/v1/targets`); resolves its `data`. */
  api<T>(path: string): Promise<T>;
  /** Stops Prometheus and removes its files. */
  stop(): Promise<void>;
}

/** Why this machine cannot run the Prometheus test, or undefined. */
export async function prometheusUnavailable(): Promise<string | undefined> {
  const found = await execa("sh", ["-c", "command -v prometheus"], { reject: false });
  return found.exitCode === 0 ? undefined : "the Prometheus test needs the prometheus command (Debian: prometheus)";
}

/**
 * The service account targets are discovered as: a Role in `namespace` to read EndpointSlices, nothing else. Resolves a kubeconfig with a short-lived token of it.
 */
async function discoveryKubeconfig(node: TestNode, namespace: string, dir: string): Promise<string> {
  const objects = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: MonitoringNamespace } },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: ServiceAccount, namespace: MonitoringNamespace } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "prometheus-discovery", namespace },
      rules: [{ apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"] }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "prometheus-discovery", namespace },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "prometheus-discovery" },
      subjects: [{ kind: "ServiceAccount", name: ServiceAccount, namespace: MonitoringNamespace }],
    },
  ];
  const manifest = join(dir, "discovery-rbac.json");
  await writeFile(manifest, JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }));
  await node.kubectl(["apply", "-f", manifest]);
  const token = (await node.kubectl(["create", "token", ServiceAccount, "-n", MonitoringNamespace, "--duration=1h"])).trim();
  const kubeconfig = join(dir, "discovery.kubeconfig");
  const cluster = { name: "node", cluster: { server: node.server, "certificate-authority": Pki.ca } };
  const user = { name: ServiceAccount, user: { token } };
  const context = { name: "discovery", context: { cluster: "node", user: ServiceAccount, namespace } };
  await writeFile(kubeconfig, JSON.stringify({ apiVersion: "v1", kind: "Config", clusters: [cluster], users: [user], contexts: [context], "current-context": "discovery" }), { mode: 0o600 });
  return kubeconfig;
}

interface SliceJson {
  metadata: { labels?: Record<string, string> };
  ports?: { name?: string; port?: number }[];
  endpoints?: { addresses: string[]; nodeName?: string; targetRef?: { kind?: string; name?: string } }[];
}

/** The targets the ServiceMonitor's selector gives, read from EndpointSlices with `kubeconfig`. */
async function discoverTargets(node: TestNode, kubeconfig: string): Promise<DiscoveredTarget[]> {
  const selector = "app.kubernetes.io/name=basecache,app.kubernetes.io/component in (controller,agent)";
  const args = [`--kubeconfig=${kubeconfig}`, "get", "endpointslices.discovery.k8s.io", "-l", selector, "-o", "json"];
  const { stdout } = await execa(join(node.binDir, "kubectl"), args, { stdin: "ignore", timeout: 60_000 });
  const targets: DiscoveredTarget[] = [];
  for (const slice of (JSON.parse(stdout) as { items: SliceJson[] }).items) {
    const port = slice.ports?.find((p) => p.name === "metrics")?.port;
    const component = slice.metadata.labels?.["app.kubernetes.io/component"] ?? "";
    if (!port) continue;
    for (const e of slice.endpoints ?? []) {
      for (const a of e.addresses) targets.push({ address: `${a}:${port}`, component, pod: e.targetRef?.name ?? "", node: e.nodeName ?? "" });
    }
  }
  return targets;
}

function config(targetsFile: string, rulesFile: string): object {
  return {
    // Short intervals so that the test sees scrapes and evaluations quickly; `for:` is not waited for.
    global: { scrape_interval: "2s", scrape_timeout: "2s", evaluation_interval: "2s" },
    rule_files: [rulesFile],
    scrape_configs: [{ job_name: "basecache", file_sd_configs: [{ files: [targetsFile] }] }],
  };
}

/** Starts Prometheus against `node` (basecache installed in `namespace`), loading `rulesFile`; waits until it is ready. */
export async function startPrometheus(node: TestNode, namespace: string, rulesFile: string, maxRunMs = 15 * 60_000): Promise<TestPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), "basecache-prometheus-"));
  let proc: ResultPromise | undefined;
  /** Stops Prometheus (SIGKILL 5 s after SIGTERM); resolves what it wrote to stderr. */
  const end = async (): Promise<string> => {
    proc?.kill("SIGTERM");
    const result = await proc;
    await rm(dir, { recursive: true, force: true });
    return String(result?.stderr ?? "");
  };
  const stop = async () => void (await end());
  try {
    const kubeconfig = await discoveryKubeconfig(node, namespace, dir);
    const targetsFile = join(dir, "targets.json");
    const discover = async () => {
      const targets = await discoverTargets(node, kubeconfig);
      const groups = targets.map((t) => ({ targets: [t.address], labels: { component: t.component, pod: t.pod, node: t.node } }));
      // Written whole and renamed into place, so Prometheus never reads half a file.
      await writeFile(`${targetsFile}.tmp`, JSON.stringify(groups));
      await rename(`${targetsFile}.tmp`, targetsFile);
      return targets;
    };
    await discover();
    // JSON is YAML: Prometheus reads the config as written here.
    await writeFile(join(dir, "prometheus.yml"), JSON.stringify(config(targetsFile, rulesFile), null, 2));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const args = [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"];
    proc = execa("prometheus", args, { cwd: dir, stdin: "ignore", stdout: "ignore", stderr: "pipe", reject: false, cleanup: true, timeout: maxRunMs, forceKillAfterDelay: 5000 });
    const started = proc;
    await eventually(
      async () => {
        if (started.exitCode !== null) throw new Error(`prometheus exited with ${started.exitCode}`);
        const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) });
        if (res.status !== 200) throw new Error(`prometheus not ready: ${res.status}`);
      },
      { timeoutMs: 60_000, intervalMs: 500, description: "Prometheus ready" },
    );
    const api = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
      const body = (await res.json()) as { status: string; data: T; error?: string };
      if (body.status !== "success") throw new Error(`Prometheus ${path}: ${body.error ?? res.status}`);
      return body.data;
    };
    return { url, discover, api, stop };
  } catch (err) {
    const stderr = await end();
    throw new Error(`Cannot start Prometheus: ${(err as Error).message}${stderr ? `\n${stderr.slice(-2000)}` : ""}`, { cause: err });
  }
}
