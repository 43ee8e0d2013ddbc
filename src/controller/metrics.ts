import { Counter, Gauge, type Registry } from "prom-client";
import { createQueueMetrics, type QueueMetrics } from "../lib/metrics.js";

/** The controller's Prometheus metrics; its queue's are `basecache_controller_reconcile_total` and so on. */
export interface ControllerMetrics {
  queue: QueueMetrics;
  writes: Counter<"resource" | "verb">;
  unchanged: Counter<"resource">;
  leader: Gauge;
  informerErrors: Counter<"informer">;
  conflicts: Gauge;
  podUsesAnswers: Counter<"outcome">;
  versionChecks: Counter<"result">;
}

export function createControllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  return {
    queue: createQueueMetrics(registry, "controller"),
    writes: new Counter({ name: "basecache_controller_writes_total", help: "API writes by resource and verb", labelNames: ["resource", "verb"], registers }),
    unchanged: new Counter({ name: "basecache_controller_unchanged_total", help: "Passes that found nothing to write", labelNames: ["resource"], registers }),
    leader: new Gauge({ name: "basecache_controller_is_leader", help: "1 while this process holds the leader lease", registers }),
    informerErrors: new Counter({ name: "basecache_controller_informer_errors_total", help: "Failed list or watch requests by informer", labelNames: ["informer"], registers }),
    podUsesAnswers: new Counter({
      name: "basecache_controller_pod_uses_answers_total",
      help: "Answers to agents' pod-uses requests, by outcome (answered, incomplete: the pods could not be listed or named too many images)",
      labelNames: ["outcome"],
      registers,
    }),
    versionChecks: new Counter({
      name: "basecache_controller_version_checks_total",
      help: "Checks of tracked images' sources, by result (same, new: a new version, failed)",
      labelNames: ["result"],
      registers,
    }),
    conflicts: new Gauge({ name: "basecache_controller_conflicting_image_ids", help: "Image ids defined differently by two or more ImageCaches", registers }),
  };
}
