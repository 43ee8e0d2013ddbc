/**
 * The node agent process: watches only its own NodeImageCache (it may not read pods: it asks the controller
 * which bases they use, pod-uses.ts), keeps `_base` in step (reconcile.ts), garbage-collects on a timer and on
 * demand (gc-pass.ts), serves metrics and health, and stops gracefully: fetches are aborted and roll back
 * before it returns.
 */
import { mkdir } from "node:fs/promises";
import { DefaultRetentionMs } from "../core/gc.js";
import type { BackoffPolicy } from "../core/backoff.js";
import type { GcBudget } from "../core/watermarks.js";
import { removeStaleTempFiles } from "../image/base-dir.js";
import type { RetryPolicy } from "../image/http-fetch.js";
import { NodeImageCachePlural, Group, type NodeImageCache } from "../kube/api-types.js";
import { loadKubeConfig, makeClients, type KubeClients, type RawObject } from "../kube/client.js";
import { EventRecorder } from "../kube/events.js";
import { Informer } from "../kube/informer.js";
import { parseNodeImageCache } from "../kube/parse.js";
import { WorkQueue } from "../kube/work-queue.js";
import { monotonicClock, sleep, type Clock } from "../lib/clock.js";
import { startEndpoints, type RunningEndpoints } from "../lib/health.js";
import type { Logger } from "../lib/log.js";
import { GcRunner, wantedFrom, withCurrentVersions } from "./gc-runner.js";
import { podUsesOfVersions } from "../core/pod-uses.js";
import { createAgentMetrics, type AgentMetrics } from "./metrics.js";
import { DiskState } from "./disk-state.js";
import { BaseVerifier } from "./verifier.js";
import { FetchRunner } from "./fetch-runner.js";
import { NodeEvents } from "./node-events.js";
import { DefaultPodUsesTimeoutMs, PodUsesAsker } from "./pod-uses.js";
import { StatusWriter } from "./progress.js";
import { reconcileNode, type AgentParts } from "./reconcile.js";

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
  /** How long a GC pass waits for the controller's answer about pod uses; default DefaultPodUsesTimeoutMs. */
  podUsesTimeoutMs?: number;
  /** Where to serve /metrics and /healthz + /readyz; undefined serves nothing. */
  metricsAddr?: string | undefined;
  healthAddr?: string | undefined;
  /** The addresses are the defaults: when one is taken, serve on a free port instead of failing. */
  defaultAddrs?: boolean;
  clock: Clock;
  /** Measures durations; the process's monotonic clock when absent. */
  monotonic?: Clock;
  retry?: BackoffPolicy;
  fetchRetry?: RetryPolicy;
  /** The downloads' write-back interval (FetchRequest.writeBackBytes); the pipeline's default when absent. */
  writeBackBytes?: number;
  /** Time between re-verifications of a stored base (src/agent/verifier.ts); 0: only bases whose size or mtime changed. */
  verifyIntervalMs: number;
  /** How often the verifier looks at the bases' sizes and mtimes; its default when absent (tests use less). */
  verifyLookMs?: number;
}

/** Runs the agent until `signal` aborts. */
export async function runAgent(opts: AgentOptions, log: Logger, signal: AbortSignal): Promise<void> {
  await mkdir(opts.baseDir, { recursive: true });
  const removed = await removeStaleTempFiles(opts.baseDir);
  if (removed.length > 0) log.info({ files: removed }, "Removed work files of an earlier run");
  const metrics = createAgentMetrics();
  if (opts.budget) metrics.cacheHighWatermarkBytes.set(Math.floor(opts.budget.limitBytes * opts.budget.highWatermark));
  const clients = makeClients(loadKubeConfig(opts.kubeconfig));
  const { nics, nic } = makeInformers(clients, opts.node, log);
  const { gc, fetches, status, queue, verifier } = wireParts(opts, { clients, nics, nic, metrics, log, signal });
  let ready = false;
  const servers = await startAgentEndpoints(opts, metrics, signal, () => ready, log);
  const onUsr1 = () => void gc.run("signal");
  process.on("SIGUSR1", onUsr1);
  nics.start(signal);
  queue.start(signal);
  try {
    await nics.waitForSync(signal);
    ready = true;
    log.info({ node: opts.node, baseDir: opts.baseDir, instancesDir: opts.instancesDir }, "Agent started");
    queue.add(opts.node);
    void gc.run("start");
    const verifying = verifier.run(signal);
    await gcLoop(gc, opts.gcIntervalMs, signal);
    await verifying;
  } catch (e) {
    if (!signal.aborted) throw e;
  } finally {
    process.off("SIGUSR1", onUsr1);
    await fetches.stop();
    await queue.drain();
    await gc.idle();
    await status.flush().catch(() => undefined);
    status.stop();
    await nics.stopped();
    await Promise.all(servers.map((s) => s.close()));
    log.info("Agent stopped");
  }
}

interface Edges {
  clients: KubeClients;
  nics: Informer<RawObject>;
  nic: () => NodeImageCache | undefined;
  metrics: AgentMetrics;
  log: Logger;
  signal: AbortSignal;
}

// Builds each part after the ones it uses, the queue that runs the passes last, then subscribes the queue to
// the parts that ask for a pass: no part reaches for one that does not exist yet.
function wireParts(opts: AgentOptions, edges: Edges) {
  const { clients, nics, nic, metrics, log, signal } = edges;
  const status = new StatusWriter({ resource: clients.nodeImageCaches, name: opts.node, clock: opts.clock, log, metrics });
  const events = new NodeEvents(new EventRecorder({ events: clients.events, controller: "basecache.io/agent", instance: opts.node, log }), nic);
  const disk = new DiskState({ baseDir: opts.baseDir, clock: opts.clock, metrics });
  const retention = opts.defaultRetentionMs ?? DefaultRetentionMs;
  const asker = new PodUsesAsker({
    status,
    nodeImageCache: nic,
    timeoutMs: opts.podUsesTimeoutMs ?? DefaultPodUsesTimeoutMs,
    log,
    metrics,
    onState: (s) => disk.recordPodUses(s),
  });
  const references = {
    wanted: () => withCurrentVersions(wantedFrom(nic(), nics.hasSynced, retention), nic(), opts.baseDir, log),
    // Asked only when the pass could remove a base: otherwise the uses cannot change what it does.
    podUses: async (needed: boolean) => {
      if (!needed) return [];
      const uses = await asker.ask(signal);
      // The versions stored here as of the agent's last measure of the cache (at most CacheUsageRefreshMs old):
      // one newer than that is the pointer's, wanted anyway.
      return Array.isArray(uses) ? podUsesOfVersions(uses, disk.versions) : uses;
    },
  };
  const monotonic = opts.monotonic ?? monotonicClock;
  const gc = new GcRunner({ ...opts, monotonic, log, metrics, signal, references, events, disk });
  const makeRoom = opts.budget ? { makeRoom: (bytes: number) => gc.run("room", bytes) } : {};
  const fetches = new FetchRunner({ ...opts, monotonic, metrics, events, disk, ...makeRoom });
  const parts: AgentParts = { nodeImageCache: nic, clock: opts.clock, concurrency: opts.concurrency, disk, fetches, status };
  const queue = new WorkQueue({ name: "node", log, metrics: metrics.queue, reconcile: (_key, s, passLog) => reconcileNode(parts, s, passLog) });
  fetches.onChange((ms) => (ms ? queue.addAfter(opts.node, ms) : queue.add(opts.node)));
  disk.onChange(() => queue.add(opts.node));
  watchNodeImageCache(nics, {
    enqueue: () => {
      asker.notify();
      queue.add(opts.node);
    },
    requestGc: () => void gc.run("requested"),
    observeStatus: (o) => status.observe(parseNodeImageCache(o).status),
  });
  const verifier = new BaseVerifier({
    baseDir: opts.baseDir,
    intervalMs: opts.verifyIntervalMs,
    clock: opts.clock,
    disk,
    metrics,
    events,
    log,
    // GC removes a corrupt base that nothing uses; the pass after it fetches the image again.
    onCorrupt: () => void gc.run("corrupt"),
    exclusive: (fn) => gc.exclusive(fn),
    ...(opts.verifyLookMs !== undefined ? { lookEveryMs: opts.verifyLookMs } : {}),
  });
  return { gc, fetches, status, queue, verifier };
}

// Only this node's NodeImageCache (field selector on its name).
function makeInformers(clients: KubeClients, node: string, log: Logger) {
  const nics = new Informer<RawObject>({
    name: NodeImageCachePlural,
    kc: clients.kc,
    path: clients.nodeImageCaches.path,
    list: (o) => clients.nodeImageCaches.list(o),
    fieldSelector: `metadata.name=${node}`,
    log,
  });
  const nic = (): NodeImageCache | undefined => {
    const raw = nics.get(node);
    return raw ? parseNodeImageCache(raw) : undefined;
  };
  return { nics, nic };
}

// Every change queues the node and tells the status writer what the server holds; a new value of the
// gc-requested annotation also asks for a GC pass.
function watchNodeImageCache(nics: Informer<RawObject>, on: { enqueue: () => void; requestGc: () => void; observeStatus: (o: RawObject) => void }): void {
  let lastGcRequest: string | undefined;
  nics.on("add", (o) => {
    lastGcRequest = annotations(o)[GcRequestAnnotation];
    on.enqueue();
    on.observeStatus(o);
  });
  nics.on("update", (o) => {
    const request = annotations(o)[GcRequestAnnotation];
    if (request !== undefined && request !== lastGcRequest) on.requestGc();
    lastGcRequest = request;
    on.enqueue();
    on.observeStatus(o);
  });
  nics.on("delete", on.enqueue);
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
