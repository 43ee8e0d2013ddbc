/**
 * The node agent process: watches only its own NodeImageCache and the pods on its node, keeps `_base` in
 * step (reconcile.ts), garbage-collects on a timer and on demand (gc-pass.ts), serves metrics and health,
 * and stops gracefully: fetches are aborted and roll back before it returns.
 */
import { mkdir } from "node:fs/promises";
import type { Server } from "node:http";
import { DefaultRetentionMs, imagesFromAnnotation, type GcUse, type GcWant } from "../core/gc.js";
import type { BackoffPolicy } from "../core/backoff.js";
import { parseDuration } from "../core/duration.js";
import { baseNameFor } from "../core/names.js";
import type { GcBudget } from "../core/watermarks.js";
import { removeStaleTempFiles } from "../image/base-dir.js";
import type { RetryPolicy } from "../image/http-fetch.js";
import { ImagesAnnotation, NodeImageCachePlural, Group, type NodeImageCache } from "../kube/api-types.js";
import { call, loadKubeConfig, makeClients, type RawObject } from "../kube/client.js";
import { EventRecorder } from "../kube/events.js";
import { Informer } from "../kube/informer.js";
import { parseNodeImageCache } from "../kube/parse.js";
import { WorkQueue } from "../kube/work-queue.js";
import { sleep, type Clock } from "../lib/clock.js";
import { asError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { runGcPass, type GcReferences } from "./gc-pass.js";
import { InstanceDiskScanner } from "./inventory.js";
import { createAgentMetrics, healthHandler, metricsHandler, serveHttp, type AgentMetrics } from "./metrics.js";
import { diskInspector } from "./options.js";
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
  metricsAddr?: string;
  healthAddr?: string;
  clock: Clock;
  retry?: BackoffPolicy;
  fetchRetry?: RetryPolicy;
}

interface PodMeta extends RawObject {
  metadata?: RawObject["metadata"] & { annotations?: Record<string, string> };
}

/** Runs the agent until `signal` aborts. */
export async function runAgent(opts: AgentOptions, log: Logger, signal: AbortSignal): Promise<void> {
  await mkdir(opts.baseDir, { recursive: true });
  const removed = await removeStaleTempFiles(opts.baseDir);
  if (removed.length > 0) log.info({ files: removed }, "Removed work files of an earlier run");
  const metrics = createAgentMetrics();
  const clients = makeClients(loadKubeConfig(opts.kubeconfig));
  const nics = new Informer<RawObject>({
    name: NodeImageCachePlural,
    kc: clients.kc,
    path: clients.nodeImageCaches.path,
    list: (o) => clients.nodeImageCaches.list(o),
    fieldSelector: `metadata.name=${opts.node}`,
    log,
  });
  const pods = new Informer<PodMeta>({ name: "pods", kc: clients.kc, path: "/api/v1/pods", list: (o) => listPods(clients.core, o), fieldSelector: `spec.nodeName=${opts.node}`, log });
  const nic = (): NodeImageCache | undefined => {
    const raw = nics.get(opts.node);
    return raw ? parseNodeImageCache(raw) : undefined;
  };
  const queue = new WorkQueue({ name: "node", log, reconcile: (_key, s) => agent.reconcile(s), observe: (outcome) => log.debug({ outcome }, "Reconciled node") });
  const status = new StatusWriter({ resource: clients.nodeImageCaches, name: opts.node, clock: opts.clock, log, metrics });
  const events = new EventRecorder({ events: clients.events, controller: "basecache.io/agent", instance: opts.node, log });
  const gc = new GcRunner(
    opts,
    log,
    metrics,
    nics,
    pods,
    nic,
    (type, reason, note) => {
      const current = nic();
      if (current) agent.event(current, type, reason, "GarbageCollect", note);
    },
    () => {
      agent.refreshUsage();
      queue.add(opts.node);
    },
  );
  const agent = new NodeAgent({
    node: opts.node,
    baseDir: opts.baseDir,
    concurrency: opts.concurrency,
    clock: opts.clock,
    log,
    metrics,
    status,
    events,
    nodeImageCache: nic,
    requeue: (ms) => (ms ? queue.addAfter(opts.node, ms) : queue.add(opts.node)),
    ...(opts.budget ? { makeRoom: (bytes: number) => gc.run("room", bytes) } : {}),
    ...(opts.retry ? { retry: opts.retry } : {}),
    ...(opts.fetchRetry ? { fetchRetry: opts.fetchRetry } : {}),
  });
  let lastGcRequest: string | undefined;
  nics.on("add", (o) => {
    lastGcRequest = annotations(o)[GcRequestAnnotation];
    queue.add(opts.node);
  });
  nics.on("update", (o) => {
    const request = annotations(o)[GcRequestAnnotation];
    if (request !== undefined && request !== lastGcRequest) void gc.run("requested");
    lastGcRequest = request;
    queue.add(opts.node);
  });
  nics.on("delete", () => queue.add(opts.node));

  const servers: Server[] = [];
  let ready = false;
  if (opts.metricsAddr) {
    const s = await serveHttp(opts.metricsAddr, metricsHandler(metrics.registry));
    servers.push(s.server);
    log.info({ port: s.port, endpoint: "metrics" }, "Serving metrics");
  }
  if (opts.healthAddr) {
    const s = await serveHttp(opts.healthAddr, healthHandler({ live: () => !signal.aborted, ready: () => (ready ? undefined : "informers not synced") }));
    servers.push(s.server);
    log.info({ port: s.port, endpoint: "health" }, "Serving health");
  }
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
    for (const s of servers) s.close();
    log.info("Agent stopped");
  }
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

async function listPods(core: ReturnType<typeof makeClients>["core"], o: { fieldSelector?: string; labelSelector?: string }) {
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

/** Wanted bases from the node's NodeImageCache: unknown until its informer synced; none when it does not exist. */
export function wantedFrom(nic: NodeImageCache | undefined, synced: boolean, defaultRetentionMs: number): GcWant[] | undefined {
  if (!synced) return undefined;
  return (nic?.spec.images ?? []).map((i) => {
    let retentionMs = defaultRetentionMs;
    try {
      if (i.unusedFor) retentionMs = parseDuration(i.unusedFor);
    } catch {
      // The CRD validates the pattern; an unparsable value keeps the default.
    }
    return { base: baseNameFor(i.id), imageId: i.id, retentionMs };
  });
}

/** Uses of bases declared by pods in their `basecache.io/images` annotation. */
export function podUsesFrom(pods: readonly PodMeta[]): GcUse[] {
  return pods.flatMap((p) =>
    imagesFromAnnotation(p.metadata?.annotations?.[ImagesAnnotation]).map((id) => ({ base: baseNameFor(id), by: `pod ${p.metadata?.namespace ?? ""}/${p.metadata?.name ?? ""}` })),
  );
}

/** Serializes GC passes: timer, signal, annotation and room-making requests never overlap. */
class GcRunner {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly scanner = new InstanceDiskScanner(diskInspector);
  private readonly references: GcReferences;

  constructor(
    private readonly opts: AgentOptions,
    private readonly log: Logger,
    private readonly metrics: AgentMetrics,
    nics: Informer<RawObject>,
    pods: Informer<PodMeta>,
    nic: () => NodeImageCache | undefined,
    private readonly event: (type: "Normal" | "Warning", reason: string, note: string) => void,
    private readonly afterPass: () => void,
  ) {
    const retention = opts.defaultRetentionMs ?? DefaultRetentionMs;
    this.references = {
      wanted: () => wantedFrom(nic(), nics.hasSynced, retention),
      podUses: () => (pods.hasSynced ? podUsesFrom(pods.list()) : undefined),
    };
  }

  /**
   * Runs a pass after any pass under way; resolves with whether a reserve (room for an image) fits. Never
   * rejects: a failed pass is logged and counted, and does not stop a fetch.
   */
  run(trigger: string, reserveBytes = 0): Promise<boolean> {
    const next = this.chain.then(() => this.pass(trigger, reserveBytes)).catch(() => true);
    this.chain = next;
    return next;
  }

  async idle(): Promise<void> {
    await this.chain;
  }

  private async pass(trigger: string, reserveBytes: number): Promise<boolean> {
    const log = this.log.child({ gcTrigger: trigger });
    const end = this.metrics.gcSeconds.startTimer();
    try {
      const r = await runGcPass({
        baseDir: this.opts.baseDir,
        instancesDir: this.opts.instancesDir,
        clock: this.opts.clock,
        defaultRetentionMs: this.opts.defaultRetentionMs ?? DefaultRetentionMs,
        ...(this.opts.budget ? { budget: this.opts.budget } : {}),
        ...(reserveBytes > 0 ? { reserveBytes } : {}),
        dryRun: this.opts.dryRunGc,
        references: this.references,
        scanner: this.scanner,
        log,
        metrics: this.metrics,
        onRemoved: (d) => {
          if (d.kind === "base") this.event("Normal", "BaseRemoved", `Removed base ${d.name}${d.imageId ? ` of image "${d.imageId}"` : ""}: ${d.reason}: ${d.message}`);
        },
      });
      this.metrics.gcPasses.inc({ outcome: "done" });
      const planned = r.plan.decisions.filter((d) => d.action === "delete");
      const uncertain = r.plan.decisions.find((d) => d.reason === "ReferencesIncomplete");
      if (uncertain) this.event("Warning", "GcRefused", `Kept every unused base: ${uncertain.message}`);
      if (r.plan.usage.overBudget) this.event("Warning", "CacheOverBudget", `Cache holds ${r.plan.usage.afterBytes} bytes, above its high watermark of ${r.plan.usage.highBytes ?? 0}, and nothing more may be evicted`);
      log.info(
        { removed: r.removed.length, refused: r.refused.length, planned: planned.length, dryRun: r.plan.dryRun, cacheBytes: r.plan.usage.cacheBytes, disks: r.disks.count, durationMs: Math.round(end() * 1000) },
        r.plan.dryRun ? "Planned garbage collection (dry run)" : "Collected garbage",
      );
      if (r.removed.length > 0) this.afterPass();
      return r.plan.usage.fits;
    } catch (e) {
      end();
      this.metrics.gcPasses.inc({ outcome: "failed" });
      log.error({ err: asError(e) }, "Garbage collection pass failed");
      return true;
    }
  }
}
