/**
 * The node agent process: watches only its own NodeImageCache and the pods on its node, keeps `_base` in
 * step (reconcile.ts), garbage-collects on a timer and on demand (gc-pass.ts), serves metrics and health,
 * and stops gracefully: fetches are aborted and roll back before it returns.
 */
import { mkdir } from "node:fs/promises";
import { DefaultRetentionMs } from "../core/gc.js";
import type { BackoffPolicy } from "../core/backoff.js";
import type { GcBudget } from "../core/watermarks.js";
import { removeStaleTempFiles } from "../image/base-dir.js";
import type { RetryPolicy } from "../image/http-fetch.js";
import { NodeImageCachePlural, Group, type NodeImageCache } from "../kube/api-types.js";
import { call, loadKubeConfig, makeClients, type KubeClients, type RawObject } from "../kube/client.js";
import { EventRecorder } from "../kube/events.js";
import { Informer } from "../kube/informer.js";
import { parseNodeImageCache } from "../kube/parse.js";
import { WorkQueue } from "../kube/work-queue.js";
import { sleep, type Clock } from "../lib/clock.js";
import { startEndpoints, type RunningEndpoints } from "../lib/health.js";
import type { Logger } from "../lib/log.js";
import { GcRunner, podUsesFrom, wantedFrom, type PodMeta } from "./gc-runner.js";
import { createAgentMetrics, type AgentMetrics } from "./metrics.js";
import { StatusWriter } from "./progress.js";
import { NodeAgent } from "./reconcile.js";

/** Annotation on a NodeImageCache that asks its agent for a GC pass now; any new value triggers one. */
export const GcRequestAnnotation = `${Group}/gc-requested`;

export interface AgentOptions {
  node: string;
  baseDir: string;
  instancesDir: string;
  kubeconfig?: string;
  concurrency: number;
  gcIntervalMs: number;
  defaultRetentionMs?: number;
  budget?: GcBudget;
  dryRunGc: boolean;
  /** Where to serve /metrics and /healthz + /readyz; undefined serves nothing. */
  metricsAddr?: string | undefined;
  healthAddr?: string | undefined;
  /** The addresses are the defaults: when one is taken, serve on a free port instead of failing. */
  defaultAddrs?: boolean;
  clock: Clock;
  retry?: BackoffPolicy;
  fetchRetry?: RetryPolicy;
}

/** Runs the agent until `signal` aborts. */
export async function runAgent(opts: AgentOptions, log: Logger, signal: AbortSignal): Promise<void> {
  await mkdir(opts.baseDir, { recursive: true });
  const removed = await removeStaleTempFiles(opts.baseDir);
  if (removed.length > 0) log.info({ files: removed }, "Removed work files of an earlier run");
  const metrics = createAgentMetrics();
  if (opts.budget) metrics.cacheHighWatermarkBytes.set(Math.floor(opts.budget.limitBytes * opts.budget.highWatermark));
  const clients = makeClients(loadKubeConfig(opts.kubeconfig));
  const { nics, pods, nic } = makeInformers(clients, opts.node, log);
  const queue = new WorkQueue({ name: "node", log, metrics: metrics.queue, reconcile: (_key, s) => agent.reconcile(s) });
  const status = new StatusWriter({ resource: clients.nodeImageCaches, name: opts.node, clock: opts.clock, log, metrics });
  const events = new EventRecorder({ events: clients.events, controller: "basecache.io/agent", instance: opts.node, log });
  const retention = opts.defaultRetentionMs ?? DefaultRetentionMs;
  const gc = new GcRunner({
    ...opts,
    log,
    metrics,
    signal,
    references: { wanted: () => wantedFrom(nic(), nics.hasSynced, retention), podUses: () => (pods.hasSynced ? podUsesFrom(pods.list()) : undefined) },
    event: (type, reason, note) => {
      const current = nic();
      if (current) agent.event(current, type, reason, "GarbageCollect", note);
    },
    afterRemoval: () => {
      agent.refreshUsage();
      queue.add(opts.node);
    },
    onBudget: (b) => {
      agent.setBudgetState(b);
      queue.add(opts.node);
    },
  });
  const agent = new NodeAgent({
    ...opts,
    log,
    metrics,
    status,
    events,
    nodeImageCache: nic,
    requeue: (ms) => (ms ? queue.addAfter(opts.node, ms) : queue.add(opts.node)),
    ...(opts.budget ? { makeRoom: (bytes: number) => gc.run("room", bytes) } : {}),
  });
  watchNodeImageCache(nics, () => queue.add(opts.node), () => void gc.run("requested"));
  let ready = false;
  const servers = await startAgentEndpoints(opts, metrics, signal, () => ready, log);
  const onUsr1 = () => void gc.run("signal");
  process.on("SIGUSR1", onUsr1);
  nics.start(signal);
  pods.start(signal);
  queue.start(signal);
  try {
    await Promise.all([nics.waitForSync(signal), pods.waitForSync(signal)]);
    ready = true;
    log.info({ node: opts.node, baseDir: opts.baseDir, instancesDir: opts.instancesDir }, "Agent started");
    queue.add(opts.node);
    void gc.run("start");
    await gcLoop(gc, opts.gcIntervalMs, signal);
  } catch (e) {
    if (!signal.aborted) throw e;
  } finally {
    process.off("SIGUSR1", onUsr1);
    await agent.stop();
    await queue.drain();
    await gc.idle();
    await status.flush().catch(() => undefined);
    status.stop();
    await Promise.all([nics.stopped(), pods.stopped()]);
    await Promise.all(servers.map((s) => s.close()));
    log.info("Agent stopped");
  }
}

// Only this node's NodeImageCache (field selector on its name) and the pods on this node.
function makeInformers(clients: KubeClients, node: string, log: Logger) {
  const nics = new Informer<RawObject>({
    name: NodeImageCachePlural,
    kc: clients.kc,
    path: clients.nodeImageCaches.path,
    list: (o) => clients.nodeImageCaches.list(o),
    fieldSelector: `metadata.name=${node}`,
    log,
  });
  const pods = new Informer<PodMeta>({ name: "pods", kc: clients.kc, path: "/api/v1/pods", list: (o) => listPods(clients.core, o), fieldSelector: `spec.nodeName=${node}`, log });
  const nic = (): NodeImageCache | undefined => {
    const raw = nics.get(node);
    return raw ? parseNodeImageCache(raw) : undefined;
  };
  return { nics, pods, nic };
}

// Every change queues the node; a new value of the gc-requested annotation also asks for a GC pass.
function watchNodeImageCache(nics: Informer<RawObject>, enqueue: () => void, requestGc: () => void): void {
  let lastGcRequest: string | undefined;
  nics.on("add", (o) => {
    lastGcRequest = annotations(o)[GcRequestAnnotation];
    enqueue();
  });
  nics.on("update", (o) => {
    const request = annotations(o)[GcRequestAnnotation];
    if (request !== undefined && request !== lastGcRequest) requestGc();
    lastGcRequest = request;
    enqueue();
  });
  nics.on("delete", enqueue);
}

function startAgentEndpoints(opts: AgentOptions, metrics: AgentMetrics, signal: AbortSignal, ready: () => boolean, log: Logger): Promise<RunningEndpoints[]> {
  const addrs = { metricsAddr: opts.metricsAddr, healthAddr: opts.healthAddr, defaultAddrs: opts.defaultAddrs ?? false };
  const healthz = { agent: () => (signal.aborted ? "stopping" : true) };
  const readyz = { informers: () => (ready() ? true : "informers not synced") };
  return startEndpoints(addrs, { healthz, readyz, registry: metrics.registry }, log);
}

async function gcLoop(gc: GcRunner, intervalMs: number, signal: AbortSignal): Promise<void> {
  for (;;) {
    await sleep(intervalMs, signal);
    await gc.run("interval");
  }
}

function annotations(o: RawObject): Record<string, string> {
  return ((o.metadata as { annotations?: Record<string, string> } | undefined)?.annotations ?? {}) as Record<string, string>;
}

async function listPods(core: KubeClients["core"], o: { fieldSelector?: string; labelSelector?: string }) {
  const r = await call("Cannot list pods", () => core.listPodForAllNamespaces({ ...(o.fieldSelector ? { fieldSelector: o.fieldSelector } : {}) }));
  const items: PodMeta[] = r.items.map((p) => ({
    metadata: {
      name: p.metadata?.name ?? "",
      namespace: p.metadata?.namespace ?? "",
      resourceVersion: p.metadata?.resourceVersion ?? "",
      annotations: p.metadata?.annotations ?? {},
    },
  }));
  return { items, resourceVersion: r.metadata?.resourceVersion ?? "" };
}

