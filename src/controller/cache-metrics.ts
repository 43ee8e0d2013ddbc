/**
 * Per-ImageCache gauges for alerts, read at scrape time from the status the roll-up last wrote (the informer
 * cache), so they cost nothing between scrapes. Only the leader has the cache: a standby exports no series,
 * and rules take the max over replicas.
 */
import { Gauge, type Registry } from "prom-client";
import type { RawObject } from "../kube/client.js";
import type { Informer } from "../kube/informer.js";

/** Registers the gauges; `imageCaches` gives the leader's ImageCache informer, or undefined on a standby. */
export function registerImageCacheGauges(registry: Registry, imageCaches: () => Informer<RawObject> | undefined): void {
  const fromStatus = (name: string, help: string, field: "failedCount" | "desiredNodes" | "readyNodes") =>
    new Gauge({
      name,
      help,
      labelNames: ["imagecache"],
      registers: [registry],
      collect() {
        this.reset();
        const informer = imageCaches();
        if (!informer?.hasSynced) return;
        for (const ic of informer.list()) {
          const v = (ic.status as Record<string, unknown> | undefined)?.[field];
          if (typeof v === "number" && Number.isFinite(v)) this.set({ imagecache: ic.metadata?.name ?? "" }, v);
        }
      },
    });
  fromStatus("basecache_imagecache_failed_images", "Failing (node, image) pairs of each ImageCache, from its status", "failedCount");
  fromStatus("basecache_imagecache_desired_nodes", "Nodes each ImageCache selects, from its status", "desiredNodes");
  fromStatus("basecache_imagecache_ready_nodes", "Selected nodes holding every image of each ImageCache Ready, from its status", "readyNodes");
}
