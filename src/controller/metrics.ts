import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The controller's Prometheus metrics. */
export interface ControllerMetrics {
  reconciles: Counter<"kind" | "outcome">;
  reconcileSeconds: Histogram<"kind">;
  writes: Counter<"resource" | "verb">;
  unchanged: Counter<"resource">;
  queueDepth: Gauge;
  leader: Gauge;
  informerErrors: Counter<"informer">;
  conflicts: Gauge;
}

export function createControllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  return {
    reconciles: new Counter({ name: "basecache_controller_reconcile_total", help: "Reconcile passes by kind and outcome", labelNames: ["kind", "outcome"], registers }),
    reconcileSeconds: new Histogram({
      name: "basecache_controller_reconcile_duration_seconds",
      help: "Duration of reconcile passes",
      labelNames: ["kind"],
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
      registers,
    }),
    writes: new Counter({ name: "basecache_controller_writes_total", help: "API writes by resource and verb", labelNames: ["resource", "verb"], registers }),
    unchanged: new Counter({ name: "basecache_controller_unchanged_total", help: "Passes that found nothing to write", labelNames: ["resource"], registers }),
    queueDepth: new Gauge({ name: "basecache_controller_queue_depth", help: "Keys waiting in the work queue", registers }),
    leader: new Gauge({ name: "basecache_controller_is_leader", help: "1 while this process holds the leader lease", registers }),
    informerErrors: new Counter({ name: "basecache_controller_informer_errors_total", help: "Failed list or watch requests by informer", labelNames: ["informer"], registers }),
    conflicts: new Gauge({ name: "basecache_controller_conflicting_image_ids", help: "Image ids defined differently by two or more ImageCaches", registers }),
  };
}
