/**
 * A real Kubernetes control plane for tests, benchmarks and the demo: pinned etcd and kube-apiserver
 * (built by hack/build-tools.sh) on free loopback ports, generated certificates, service-account token
 * signing, RBAC, and an admin kubeconfig. See docs/control-plane.md.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { parseAllDocuments, stringify } from "yaml";
import { ApiextensionsV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi, type KubernetesObject } from "@kubernetes/client-node";
import { createCertAuthority, createServiceAccountKeys, fileBase64, type CertAuthority } from "./certs.js";
import { eventually } from "./eventually.js";

export interface ControlPlane {
  /** Admin kubeconfig file (system:masters). */
  kubeconfigPath: string;
  /** https://127.0.0.1:PORT */
  server: string;
  adminConfig(): KubeConfig;
  /** A client-certificate kubeconfig for any user and groups. */
  userConfig(user: string, groups?: string[]): Promise<KubeConfig>;
  /**
   * A token kubeconfig for a service account, from the TokenRequest API. With `nodeName` the token is bound
   * to a Pod on that node (created if needed), so the API server puts
   * `authentication.kubernetes.io/node-name` into the user's extra.
   */
  serviceAccountConfig(ns: string, sa: string, opts?: { nodeName?: string }): Promise<{ kubeConfig: KubeConfig; kubeconfigPath: string }>;
  /** Applies crds/*.yaml (or `dir`) and waits until discovery serves every resource. */
  applyCrds(dir?: string): Promise<void>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Receives progress lines (tool builds, start-up). Default: stderr. */
  log?: (line: string) => void;
}

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const startTimeoutMs = 120_000;

interface Daemon {
  name: string;
  proc: ResultPromise;
  logPath: string;
}

// Every running plane, so that an exit or a signal can still stop their processes and remove their dirs.
const live = new Set<{ daemons: Daemon[]; dir: string }>();
let handlersInstalled = false;

function emergencyCleanup(): void {
  for (const plane of live) {
    for (const d of plane.daemons) {
      if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill("SIGKILL");
    }
    rmSync(plane.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }
  live.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", emergencyCleanup);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      emergencyCleanup();
      process.kill(process.pid, sig);
    });
  }
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

async function buildTools(log: (line: string) => void): Promise<string> {
  const proc = execa(join(repoRoot, "hack/build-tools.sh"), ["etcd", "kube-apiserver"], { cwd: repoRoot, stdin: "ignore", stderr: "pipe", stdout: "pipe", buffer: { stderr: false } });
  proc.stderr.on("data", (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) if (line.trim()) log(line);
  });
  const { stdout } = await proc;
  return stdout.trim().split("\n").at(-1) ?? "";
}

function startDaemon(dir: string, name: string, bin: string, args: string[]): Daemon {
  const logPath = join(dir, `${name}.log`);
  const proc = execa(bin, args, { stdin: "ignore", stdout: { file: logPath, append: true }, stderr: { file: logPath, append: true }, reject: false, cleanup: true });
  return { name, proc, logPath };
}

async function logTail(d: Daemon, lines = 30): Promise<string> {
  const text = await readFile(d.logPath, "utf8").catch(() => "");
  return text.split("\n").slice(-lines).join("\n");
}

function exited(d: Daemon): boolean {
  return d.proc.exitCode !== null || d.proc.signalCode !== null;
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (exited(d)) return;
  d.proc.kill("SIGTERM");
  const killTimer = setTimeout(() => d.proc.kill("SIGKILL"), 10_000);
  await d.proc;
  clearTimeout(killTimer);
}

/** GETs `path` with the admin client certificate; resolves the status code, or 0 when the connection fails. */
function probe(server: string, path: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<number> {
  return new Promise((res) => {
    const req = httpsRequest(new URL(path, server), { ...tls, timeout: 5_000 }, (resp) => {
      resp.resume();
      resp.on("end", () => res(resp.statusCode ?? 0));
    });
    req.on("error", () => res(0));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

async function waitUntil(what: string, daemons: Daemon[], check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + startTimeoutMs;
  while (performance.now() < deadline) {
    for (const d of daemons) {
      if (exited(d)) throw new Error(`Cannot start the control plane: ${d.name} exited (${d.proc.exitCode ?? d.proc.signalCode})\n${await logTail(d)}`);
    }
    if (await check()) return;
    await delay(200);
  }
  const tails = await Promise.all(daemons.map(async (d) => `--- ${d.name}\n${await logTail(d)}`));
  throw new Error(`Cannot start the control plane: ${what} not ready within ${startTimeoutMs} ms\n${tails.join("\n")}`);
}

export function kubeconfigYaml(server: string, caData: string, user: Record<string, string>): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "basecache-test", cluster: { server, "certificate-authority-data": caData } }],
    users: [{ name: "user", user }],
    contexts: [{ name: "basecache-test", context: { cluster: "basecache-test", user: "user" } }],
    "current-context": "basecache-test",
  });
}

/** A throwaway single-member etcd on loopback with its data in `dir`/etcd (the test node runs the same). */
export function etcdArgs(dir: string, clientPort: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    "--name=default",
    `--data-dir=${join(dir, "etcd")}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=default=${peer}`,
    "--listen-metrics-urls=",
    // Throwaway data: durability costs fsyncs that slow every test for nothing.
    "--unsafe-no-fsync",
    "--log-level=warn",
  ];
}

interface ApiserverFiles {
  ca: CertAuthority;
  serving: { certPath: string; keyPath: string };
  sa: { privatePath: string; publicPath: string };
}

function apiserverArgs(dir: string, port: number, etcdPort: number, f: ApiserverFiles): string[] {
  return [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${port}`,
    `--cert-dir=${join(dir, "apiserver-certs")}`,
    `--tls-cert-file=${f.serving.certPath}`,
    `--tls-private-key-file=${f.serving.keyPath}`,
    `--client-ca-file=${f.ca.certPath}`,
    "--authorization-mode=Node,RBAC",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${f.sa.publicPath}`,
    `--service-account-signing-key-file=${f.sa.privatePath}`,
    "--service-cluster-ip-range=10.96.0.0/24",
    "--allow-privileged=true",
    "--profiling=false",
    "--enable-priority-and-fairness=false",
    "--max-requests-inflight=1000",
    "--max-mutating-requests-inflight=500",
    "--v=0",
  ];
}

/** Builds (or reuses) the pinned binaries and starts etcd and kube-apiserver; call `stop()` when done. */
export async function startControlPlane(opts: StartOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`control-plane: ${line}\n`));
  const bin = await buildTools(log);
  installHandlers();
  const dir = await mkdtemp(join(tmpdir(), "basecache-cp-"));
  const plane = { daemons: [] as Daemon[], dir };
  live.add(plane);
  const stop = async () => {
    if (!live.has(plane)) return;
    // The API server first, so that it never sees its storage vanish.
    for (const d of [...plane.daemons].reverse()) await stopDaemon(d);
    live.delete(plane);
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  };
  try {
    return await boot(bin, dir, plane.daemons, log, stop);
  } catch (err) {
    await stop();
    throw err;
  }
}

async function boot(bin: string, dir: string, daemons: Daemon[], log: (line: string) => void, stop: () => Promise<void>): Promise<ControlPlane> {
  const ca = await createCertAuthority(dir);
  const [serving, admin, sa] = await Promise.all([ca.issueServingCert("apiserver"), ca.issueClientCert("admin", "basecache-admin", ["system:masters"]), createServiceAccountKeys(dir)]);
  const [etcdPort, peerPort, apiPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const server = `https://127.0.0.1:${apiPort}`;
  const etcd = startDaemon(dir, "etcd", join(bin, "etcd"), etcdArgs(dir, etcdPort, peerPort));
  daemons.push(etcd);
  const apiserver = startDaemon(dir, "kube-apiserver", join(bin, "kube-apiserver"), apiserverArgs(dir, apiPort, etcdPort, { ca, serving, sa }));
  daemons.push(apiserver);
  const tls = { ca: await readFile(ca.certPath), cert: await readFile(admin.certPath), key: await readFile(admin.keyPath) };
  const started = performance.now();
  await waitUntil("kube-apiserver /readyz", daemons, async () => (await probe(server, "/readyz", tls)) === 200);
  log(`kube-apiserver ready at ${server} after ${Math.round(performance.now() - started)} ms`);

  const caData = await fileBase64(ca.certPath);
  const kubeconfigPath = join(dir, "admin.kubeconfig");
  await writeFile(kubeconfigPath, kubeconfigYaml(server, caData, { "client-certificate-data": await fileBase64(admin.certPath), "client-key-data": await fileBase64(admin.keyPath) }));
  const adminConfig = () => {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    return kc;
  };
  let userCount = 0;
  const writeConfig = async (name: string, user: Record<string, string>) => {
    const path = join(dir, `${name}-${++userCount}.kubeconfig`);
    await writeFile(path, kubeconfigYaml(server, caData, user));
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    return { kubeConfig: kc, kubeconfigPath: path };
  };
  return {
    kubeconfigPath,
    server,
    adminConfig,
    async userConfig(user, groups = []) {
      const pair = await ca.issueClientCert(`user-${++userCount}`, user, groups);
      const { kubeConfig } = await writeConfig("user", { "client-certificate-data": await fileBase64(pair.certPath), "client-key-data": await fileBase64(pair.keyPath) });
      return kubeConfig;
    },
    async serviceAccountConfig(ns, saName, o = {}) {
      const token = await requestToken(adminConfig(), ns, saName, o.nodeName);
      return writeConfig(`sa-${ns}-${saName}`, { token });
    },
    applyCrds: (crdDir) => applyCrds(adminConfig(), crdDir ?? join(repoRoot, "crds")),
    stop,
  };
}

function isStatus(err: unknown, code: number): boolean {
  return typeof err === "object" && err !== null && "code" in err && (err as { code: unknown }).code === code;
}

async function createIfMissing(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!isStatus(err, 409)) throw err;
  }
}

export async function requestToken(kc: KubeConfig, ns: string, sa: string, nodeName?: string): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  await createIfMissing(() => core.createNamespace({ body: { metadata: { name: ns } } }));
  await createIfMissing(() => core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: sa } } }));
  let boundObjectRef: { kind: string; apiVersion: string; name: string; uid: string } | undefined;
  if (nodeName) {
    const podName = `${sa}-on-${nodeName}`.slice(0, 253);
    await createIfMissing(() =>
      core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: podName },
          spec: { nodeName, serviceAccountName: sa, automountServiceAccountToken: false, containers: [{ name: "agent", image: "basecache.invalid/agent:test" }] },
        },
      }),
    );
    const pod = await core.readNamespacedPod({ namespace: ns, name: podName });
    boundObjectRef = { kind: "Pod", apiVersion: "v1", name: podName, uid: pod.metadata?.uid ?? "" };
  }
  const resp = await core.createNamespacedServiceAccountToken({
    namespace: ns,
    name: sa,
    body: { spec: { audiences: [], expirationSeconds: 6 * 3600, ...(boundObjectRef ? { boundObjectRef } : {}) } },
  });
  const token = resp.status?.token;
  if (!token) throw new Error(`Cannot get a token for service account "${ns}/${sa}": the response had none`);
  return token;
}

/** Sends one request with `kc`'s credentials and resolves the response body; rejects on a non-2xx status. */
async function rawRequest(kc: KubeConfig, method: string, path: string, body: string, contentType: string): Promise<string> {
  const server = kc.getCurrentCluster()?.server ?? "";
  const opts: Parameters<typeof httpsRequest>[1] = { method, headers: { "content-type": contentType, accept: "application/json" } };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((res, rej) => {
    const req = httpsRequest(new URL(path, server), opts, (resp) => {
      const chunks: Buffer[] = [];
      resp.on("data", (c: Buffer) => chunks.push(c));
      resp.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        const status = resp.statusCode ?? 0;
        if (status >= 200 && status < 300) res(text);
        else rej(new Error(`Cannot ${method} ${path}: HTTP ${status}: ${text.slice(0, 2000)}`));
      });
    });
    req.on("error", rej);
    req.end(body);
  });
}

interface CrdDoc extends KubernetesObject {
  spec: { group: string; names: { plural: string }; versions: { name: string; served: boolean }[] };
}

export async function applyCrds(kc: KubeConfig, dir: string): Promise<void> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml") || f.endsWith(".yml")).sort();
  const docs: CrdDoc[] = [];
  for (const f of files) {
    for (const doc of parseAllDocuments(await readFile(join(dir, f), "utf8"))) {
      const obj = doc.toJS() as CrdDoc | null;
      if (obj?.kind === "CustomResourceDefinition") docs.push(obj);
    }
  }
  // NOTE: not KubernetesObjectApi.patch: client-node's typed CRD model drops every `x-kubernetes-*` key
  // (validations, list types, defaults survive only under their TypeScript names), so send the YAML's JSON raw.
  for (const doc of docs) {
    const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${doc.metadata?.name}?fieldManager=basecache-test&force=true`;
    await rawRequest(kc, "PATCH", path, JSON.stringify(doc), "application/apply-patch+yaml");
  }
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  for (const doc of docs) {
    await eventually(
      async () => {
        const crd = await ext.readCustomResourceDefinition({ name: doc.metadata?.name ?? "" });
        const established = crd.status?.conditions?.find((c) => c.type === "Established")?.status === "True";
        if (!established) throw new Error(`CRD "${doc.metadata?.name}" is not Established yet`);
        for (const v of doc.spec.versions.filter((x) => x.served)) {
          // Discovery can lag the Established condition; a list through it proves the resource is served.
          await objects.list(`${doc.spec.group}/${v.name}`, crd.spec.names.kind);
        }
      },
      { timeoutMs: 60_000, intervalMs: 200, description: `CRD ${doc.metadata?.name} served` },
    );
  }
}
