/**
 * The controller process: leader election, informers on ImageCaches, Nodes and NodeImageCaches, one work
 * queue whose keys are `node:<name>` (fan-out), `imagecache:<name>` (roll-up), `placement:<name>` (a Node's
 * labels and taint) and `poduses:<name>` (answering an agent's pod-uses request), health and metrics endpoints.
 */
import type { Registry } from "prom-client";
import { monotonicClock, systemClock, type Clock } from "../lib/clock.js";
import { AbortedError, asError } from "../lib/errors.js";
import { ExitCode } from "../lib/exit.js";
import { startEndpoints, type EndpointAddresses, type RunningEndpoints } from "../lib/health.js";
import type { Logger } from "../lib/log.js";
import { createRegistry } from "../lib/metrics.js";
import { Group } from "../kube/api-types.js";
import { call, makeClients, type KubeClients, type RawObject } from "../kube/client.js";
import { EventRecorder } from "../kube/events.js";
import { Informer } from "../kube/informer.js";
import { LeaderElector, defaultIdentity } from "../kube/lease.js";
import { WorkQueue } from "../kube/work-queue.js";
import type { KubeConfig } from "@kubernetes/client-node";
import { registerImageCacheGauges } from "./cache-metrics.js";
import { ControllerContext, type ControllerInformers } from "./context.js";
import { reconcileNode } from "./fanout.js";
import { createControllerMetrics, type ControllerMetrics } from "./metrics.js";
import { reconcilePlacement, wirePlacement } from "./node-placement.js";
import { reconcilePodUses, wirePodUses } from "./pod-uses.js";
import { reconcileImageCache } from "./rollup.js";
import { imageCacheKey, nodeKey, wireEvents } from "./wiring.js";
import { reconcileVersions } from "./versions.js";

export interface ControllerOptions extends EndpointAddresses {
  kc: KubeConfig;
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  leaseDurationMs: number;
  workers: number;
  /** Minimum time between two status writes of one ImageCache. */
  statusIntervalMs: number;
  relistIntervalMs: number;
  /** The namespace of the ConfigMaps holding checksumFrom's public keys; empty: none are read (and copied). */
  keysNamespace?: string;
  /** The wall clock for status times, the Lease and Events; default the system clock. */
  clock?: Clock;
  /** The parts to run; default all of ControllerParts. */
  parts?: readonly ControllerPart[];
}

/** The controller's parts: fan-out with roll-up, Node placement, and answering agents' pod-uses requests. */
export const ControllerParts = ["fanout", "placement", "pod-uses"] as const;
export type ControllerPart = (typeof ControllerParts)[number];

interface State {
  leading: boolean;
  informers: ControllerInformers | undefined;
}

function makeInformers(clients: KubeClients, log: Logger, metrics: ControllerMetrics, relistIntervalMs: number, keysNamespace: string): ControllerInformers {
  const common = { kc: clients.kc, log, relistIntervalMs };
  const onError = (name: string) => () => metrics.informerErrors.inc({ informer: name });
  const configMaps = keysNamespace
    ? new Informer<RawObject>({
        ...common,
        name: "configmaps",
        path: `/api/v1/namespaces/${encodeURIComponent(keysNamespace)}/configmaps`,
        list: async (o) => {
          const r = await call(`Cannot list configmaps in "${keysNamespace}"`, () => clients.core.listNamespacedConfigMap({ ...o, namespace: keysNamespace }));
          return { items: r.items as unknown as RawObject[], resourceVersion: r.metadata?.resourceVersion ?? "" };
        },
        onError: onError("configmaps"),
      })
    : undefined;
  return {
    ...(configMaps ? { configMaps } : {}),
    imageCaches: new Informer<RawObject>({ ...common, name: "imagecaches", path: clients.imageCaches.path, list: (o) => clients.imageCaches.list(o), onError: onError("imagecaches") }),
    nodeImageCaches: new Informer<RawObject>({ ...common, name: "nodeimagecaches", path: clients.nodeImageCaches.path, list: (o) => clients.nodeImageCaches.list(o), onError: onError("nodeimagecaches") }),
    nodes: new Informer<RawObject>({
      ...common,
      name: "nodes",
      path: "/api/v1/nodes",
      list: async (o) => {
        const r = await call("Cannot list nodes", () => clients.core.listNode(o));
        return { items: r.items as unknown as RawObject[], resourceVersion: r.metadata?.resourceVersion ?? "" };
      },
      onError: onError("nodes"),
    }),
  };
}

function startControllerEndpoints(opts: ControllerOptions, registry: Registry, state: State, log: Logger): Promise<RunningEndpoints[]> {
  const readyz = {
    informers: () => {
      if (!state.leading) return true; // A standby is ready: it waits for the lease.
      const inf = state.informers;
      return !!inf && inf.imageCaches.hasSynced && inf.nodes.hasSynced && inf.nodeImageCaches.hasSynced && (inf.configMaps?.hasSynced ?? true) ? true : "informers not synced";
    },
  };
  return startEndpoints(opts, { healthz: { ping: () => true }, readyz, registry }, log);
}

/** Runs the controller until `signal` aborts (exit 0) or leadership is lost (exit 1, so a fresh process starts). */
export async function runController(opts: ControllerOptions, signal: AbortSignal, log: Logger): Promise<ExitCode> {
  const registry = createRegistry();
  const metrics = createControllerMetrics(registry);
  const clients = makeClients(opts.kc);
  const identity = defaultIdentity();
  const state: State = { leading: false, informers: undefined };
  registerImageCacheGauges(registry, () => (state.leading ? state.informers?.imageCaches : undefined));
  const endpoints = await startControllerEndpoints(opts, registry, state, log);
  try {
    if (!opts.leaderElect) {
      state.leading = true;
      metrics.leader.set(1);
      await runLeading(opts, clients, metrics, state, identity, signal, log);
      return ExitCode.Ok;
    }
    const elector = new LeaderElector({
      leases: clients.leases,
      namespace: opts.leaseNamespace,
      name: opts.leaseName,
      identity,
      leaseDurationMs: opts.leaseDurationMs,
      renewDeadlineMs: Math.round(opts.leaseDurationMs * (2 / 3)),
      retryPeriodMs: Math.max(500, Math.round(opts.leaseDurationMs / 7.5)),
      log,
      clock: opts.clock ?? systemClock,
      onLeaderChange: (leading) => metrics.leader.set(leading ? 1 : 0),
    });
    if (!(await elector.acquire(signal))) return ExitCode.Ok;
    state.leading = true;
    const work = new AbortController();
    const hold = new AbortController();
    const onStop = () => work.abort(signal.reason);
    signal.addEventListener("abort", onStop, { once: true });
    let lost = false;
    const holding = elector.hold(hold.signal).then((outcome) => {
      if (outcome === "lost") {
        lost = true;
        work.abort(new AbortedError("Lost the leader lease"));
      }
    });
    await runLeading(opts, clients, metrics, state, identity, work.signal, log);
    hold.abort();
    await holding;
    signal.removeEventListener("abort", onStop);
    if (lost) {
      log.error("Lost leadership, exiting so that a fresh process starts over");
      return ExitCode.Internal;
    }
    return ExitCode.Ok;
  } finally {
    await Promise.all(endpoints.map((e) => e.close()));
  }
}

async function runLeading(opts: ControllerOptions, clients: KubeClients, metrics: ControllerMetrics, state: State, identity: string, signal: AbortSignal, log: Logger): Promise<void> {
  const keysNamespace = opts.keysNamespace ?? "";
  const informers = makeInformers(clients, log, metrics, opts.relistIntervalMs, keysNamespace);
  state.informers = informers;
  const wall = opts.clock ?? systemClock;
  const events = new EventRecorder({ events: clients.events, controller: `${Group}/controller`, instance: identity, log, clock: wall });
  const ctx = new ControllerContext(clients, informers, metrics, events, { wall, monotonic: monotonicClock }, log);
  ctx.keysNamespace = keysNamespace;
  // A new version: every node may fetch it, and the roll-up writes the record (it is the one status writer).
  const versionPass = {
    changed: (ic: { metadata: { name: string } }) => {
      for (const n of informers.nodes.list()) queue.add(nodeKey(n.metadata?.name ?? ""));
      queue.add(imageCacheKey(ic.metadata.name));
    },
  };
  const queue = new WorkQueue({
    name: "controller",
    workers: opts.workers,
    log,
    metrics: metrics.queue,
    reconcile: async (key, passSignal, passLog) => {
      const [kind, name = ""] = splitKey(key);
      if (kind === "placement") return reconcilePlacement(ctx, name);
      if (kind === "versions") return reconcileVersions(ctx, name, versionPass, passSignal, passLog);
      if (kind === "poduses") return reconcilePodUses(ctx, name, passLog);
      return kind === "node" ? reconcileNode(ctx, name, passLog) : reconcileImageCache(ctx, name, opts.statusIntervalMs, passLog);
    },
  });
  const parts = new Set<ControllerPart>(opts.parts ?? ControllerParts);
  if (parts.has("fanout")) wireEvents(informers, queue);
  if (parts.has("placement")) wirePlacement(informers, queue);
  if (parts.has("pod-uses")) wirePodUses(informers, queue);
  for (const inf of Object.values(informers)) inf.start(signal);
  try {
    await Promise.all(Object.values(informers).map((inf) => inf.waitForSync(signal)));
  } catch (err) {
    if (!signal.aborted) throw err;
  }
  if (!signal.aborted) {
    log.info({ nodes: informers.nodes.size, imageCaches: informers.imageCaches.size, nodeImageCaches: informers.nodeImageCaches.size }, "Caches synced, starting workers");
    queue.start(signal);
  }
  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
  await queue.drain();
  await Promise.all(Object.values(informers).map((inf) => inf.stopped()));
  log.info({ reason: asError(signal.reason).message }, "Controller stopped");
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf(":");
  return [key.slice(0, i), key.slice(i + 1)];
}
