import { Registry, collectDefaultMetrics } from "prom-client";

/** A fresh Prometheus registry with the process's default metrics (CPU, memory, event loop lag). */
export function createRegistry(prefix = "basecache_"): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  return registry;
}
