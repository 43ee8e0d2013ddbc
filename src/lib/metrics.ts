import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * The process's one Prometheus registry, with Node's default process metrics (CPU, memory, event loop lag)
 * under the same `basecache_` prefix as every metric of ours. The controller and the agent each make one.
 */
export function createRegistry(prefix = "basecache_"): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  return registry;
}

/** What a work queue counts of its passes (kube/work-queue.ts), the same for the controller and the agent. */
export interface QueueMetrics {
  reconciles: Counter<"kind" | "outcome">;
  reconcileSeconds: Histogram<"kind">;
  queueDepth: Gauge;
}

/** The queue metrics of one process, named `basecache_<subsystem>_reconcile_total` and so on. */
export function createQueueMetrics(registry: Registry, subsystem: string): QueueMetrics {
  const registers = [registry];
  const name = (suffix: string) => `basecache_${subsystem}_${suffix}`;
  return {
    reconciles: new Counter({ name: name("reconcile_total"), help: "Reconcile passes by kind and outcome", labelNames: ["kind", "outcome"], registers }),
    reconcileSeconds: new Histogram({
      name: name("reconcile_duration_seconds"),
      help: "Duration of reconcile passes",
      labelNames: ["kind"],
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
      registers,
    }),
    queueDepth: new Gauge({ name: name("queue_depth"), help: "Keys waiting in the work queue", registers }),
  };
}
