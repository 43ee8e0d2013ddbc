/**
 * What every controller pass shares: clients, informer caches, metrics, the Event recorder, and a memory of
 * our own latest writes so that a pass running before the informer has seen our write does not write again.
 */
import type { ImageCache, ImageCacheStatus, NodeImageCache, NodeInfo, VersionRecord } from "../kube/api-types.js";
import type { KubeClients, RawObject } from "../kube/client.js";
import type { EventRecorder } from "../kube/events.js";
import type { Informer } from "../kube/informer.js";
import { ownerReferencesOf, parseImageCache, parseImageCacheStatus, parseNode, parseNodeImageCache } from "../kube/parse.js";
import type { Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";
import type { OwnerRef } from "../core/fanout.js";
import type { ControllerMetrics } from "./metrics.js";

export interface ControllerInformers {
  imageCaches: Informer<RawObject>;
  nodes: Informer<RawObject>;
  nodeImageCaches: Informer<RawObject>;
  /** ConfigMaps in the keys namespace (checksumFrom's public keys); absent when no namespace is set. */
  configMaps?: Informer<RawObject>;
}

/** True when resourceVersion `a` is newer than `b`; opaque versions compare as "not newer". */
export function newerVersion(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^[0-9]+$/.test(a) || !/^[0-9]+$/.test(b)) return false;
  return BigInt(a) > BigInt(b);
}

/** The controller's clocks: `wall` stamps status times, `monotonic` measures intervals between writes. */
export interface ControllerClocks {
  wall: Clock;
  monotonic: Clock;
}

export class ControllerContext {
  readonly fieldManager = "basecache-controller";
  private readonly written = new Map<string, RawObject>();
  private readonly statusWritten = new Map<string, { rv: string; status: ImageCacheStatus; at: number }>();
  private parsedCaches = new Map<string, { rv: string; ic: ImageCache }>();
  private readonly checked = new Map<string, VersionRecord[]>();

  constructor(
    readonly clients: KubeClients,
    readonly informers: ControllerInformers,
    readonly metrics: ControllerMetrics,
    readonly events: EventRecorder,
    readonly clocks: ControllerClocks,
    readonly log: Logger,
  ) {}

  readonly parse = { node: (raw: RawObject): NodeInfo => parseNode(raw) };

  /** The namespace of the ConfigMaps that hold checksumFrom's public keys; empty when there is none. */
  keysNamespace = "";

  /** One key of a ConfigMap in the keys namespace, from the cache; undefined when any part is missing. */
  configMapValue(ref: { name: string; key: string }): string | undefined {
    const raw = this.keysNamespace ? this.informers.configMaps?.get(`${this.keysNamespace}/${ref.name}`) : undefined;
    const value = (raw?.data as Record<string, unknown> | undefined)?.[ref.key];
    return typeof value === "string" ? value : undefined;
  }

  /** Every ImageCache in the cache, parsed (memoised per resourceVersion). */
  allImageCaches(): ImageCache[] {
    const next = new Map<string, { rv: string; ic: ImageCache }>();
    for (const raw of this.informers.imageCaches.list()) {
      const name = raw.metadata?.name ?? "";
      const rv = raw.metadata?.resourceVersion ?? "";
      const prior = this.parsedCaches.get(name);
      next.set(name, prior && prior.rv === rv && rv !== "" ? prior : { rv, ic: parseImageCache(raw) });
    }
    this.parsedCaches = next;
    return [...next.values()].map((e) => e.ic);
  }

  /** One ImageCache from the cache, parsed. */
  imageCache(name: string): ImageCache | undefined {
    const raw = this.informers.imageCaches.get(name);
    return raw ? parseImageCache(raw) : undefined;
  }

  /** The node's NodeImageCache: our own write if the informer has not caught up with it yet, else the cache. */
  nicView(name: string): { nic: NodeImageCache; owners: OwnerRef[] } | undefined {
    const cached = this.informers.nodeImageCaches.get(name);
    const mine = this.written.get(name);
    let raw = cached;
    if (mine && (!cached || newerVersion(mine.metadata?.resourceVersion, cached.metadata?.resourceVersion))) raw = mine;
    else this.written.delete(name);
    return raw ? { nic: parseNodeImageCache(raw), owners: ownerReferencesOf(raw) } : undefined;
  }

  /** Records an object we just wrote. */
  remember(obj: RawObject): void {
    const name = obj.metadata?.name;
    if (name) this.written.set(name, obj);
  }

  forget(name: string): void {
    this.written.delete(name);
  }

  /** The ImageCache status to compare against: our last write if the cache has not caught up, else the cache's. */
  currentStatus(name: string, cached: RawObject | undefined): ImageCacheStatus | undefined {
    const mine = this.statusWritten.get(name);
    const rv = cached?.metadata?.resourceVersion;
    if (mine && (!cached || newerVersion(mine.rv, rv))) return mine.status;
    return cached?.status === undefined ? undefined : parseImageCacheStatus(cached.status);
  }

  lastStatusWriteAt(name: string): number | undefined {
    return this.statusWritten.get(name)?.at;
  }

  rememberStatus(name: string, rv: string, status: ImageCacheStatus, at: number): void {
    this.statusWritten.set(name, { rv, status, at });
  }

  forgetStatus(name: string): void {
    this.statusWritten.delete(name);
    this.checked.delete(name);
  }

  /**
   * The version records of an ImageCache: this process's latest checks, else what its status says (a new leader
   * carries on from there). The roll-up is the one writer of status, so the records reach it from here.
   */
  versionRecords(ic: ImageCache): VersionRecord[] {
    return this.checked.get(ic.metadata.name) ?? this.currentStatus(ic.metadata.name, this.informers.imageCaches.get(ic.metadata.name))?.versions ?? [];
  }

  /** Records the results of a version pass, for the fan-out and the roll-up. */
  setVersionRecords(name: string, records: VersionRecord[]): void {
    this.checked.set(name, records);
  }
}
