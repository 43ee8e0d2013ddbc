/**
 * The agent's Prometheus metrics, on the process's one registry (lib/metrics.ts), served by the endpoints
 * of lib/health.ts. Byte-level fetch progress lives here, not in the API.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createQueueMetrics, createRegistry, type QueueMetrics } from "../lib/metrics.js";

/** Every metric the agent exports, on a registry of its own. */
export interface AgentMetrics {
  registry: Registry;
  /** The node queue's passes: `basecache_agent_reconcile_total` and so on, as the controller counts its own. */
  queue: QueueMetrics;
  bytesFetched: Counter<"image_id">;
  /** Bytes of kept `.part` files that fetches continued instead of downloading again. */
  resumedBytes: Counter<"image_id">;
  fetchSeconds: Histogram<"outcome">;
  fetches: Counter<"outcome" | "reason">;
  rejections: Counter<"reason">;
  imageBytesDone: Gauge<"image_id">;
  imageBytesTotal: Gauge<"image_id">;
  bases: Gauge;
  cacheBytes: Gauge;
  cacheHighWatermarkBytes: Gauge;
  unknownFiles: Gauge;
  gcPasses: Counter<"outcome">;
  gcSeconds: Histogram;
  gcRemovals: Counter<"reason" | "kind">;
  gcRemovedBytes: Counter<"reason">;
  gcRefusals: Counter<"reason">;
  podUsesQuestions: Counter<"outcome">;
  statusWrites: Counter<"outcome">;
  verifications: Counter<"result">;
}

/** Creates the agent's metrics on a fresh registry, with the default process metrics (prefixed `basecache_`). */
export function createAgentMetrics(registry: Registry = createRegistry()): AgentMetrics {
  const registers = [registry];
  return {
    registry,
    queue: createQueueMetrics(registry, "agent"),
    bytesFetched: new Counter({ name: "basecache_fetch_bytes_total", help: "Bytes downloaded from image sources", labelNames: ["image_id"], registers }),
    resumedBytes: new Counter({ name: "basecache_fetch_resumed_bytes_total", help: "Bytes of interrupted downloads kept and continued (Range) instead of downloaded again", labelNames: ["image_id"], registers }),
    fetchSeconds: new Histogram({
      name: "basecache_fetch_duration_seconds",
      help: "Duration of image fetches, by outcome",
      labelNames: ["outcome"],
      buckets: [1, 5, 15, 60, 300, 900, 3600],
      registers,
    }),
    fetches: new Counter({ name: "basecache_fetches_total", help: "Image fetches, by outcome and reason", labelNames: ["outcome", "reason"], registers }),
    rejections: new Counter({ name: "basecache_rejections_total", help: "Images refused, by reason", labelNames: ["reason"], registers }),
    imageBytesDone: new Gauge({ name: "basecache_fetch_progress_bytes", help: "Bytes done of each fetch under way", labelNames: ["image_id"], registers }),
    imageBytesTotal: new Gauge({ name: "basecache_fetch_size_bytes", help: "Expected bytes of each fetch under way", labelNames: ["image_id"], registers }),
    bases: new Gauge({ name: "basecache_bases", help: "Complete bases in the base dir", registers }),
    cacheBytes: new Gauge({ name: "basecache_cache_bytes", help: "Bytes the cache's own files occupy on disk (allocated blocks)", registers }),
    cacheHighWatermarkBytes: new Gauge({
      name: "basecache_cache_high_watermark_bytes",
      help: "The cache budget's high watermark in bytes, past which GC evicts unused bases; 0 without a budget",
      registers,
    }),
    unknownFiles: new Gauge({ name: "basecache_unknown_files", help: "Files in the base dir whose names basecache does not write (reported, never deleted)", registers }),
    verifications: new Counter({ name: "basecache_base_verifications_total", help: "Re-verifications of stored bases against the digest recorded when they were stored, by result (ok, corrupt, error)", labelNames: ["result"], registers }),
    gcPasses: new Counter({ name: "basecache_gc_passes_total", help: "Garbage-collection passes, by outcome", labelNames: ["outcome"], registers }),
    gcSeconds: new Histogram({ name: "basecache_gc_duration_seconds", help: "Duration of garbage-collection passes", buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers }),
    gcRemovals: new Counter({ name: "basecache_gc_removals_total", help: "Files removed by garbage collection, by reason and kind", labelNames: ["reason", "kind"], registers }),
    gcRemovedBytes: new Counter({ name: "basecache_gc_removed_bytes_total", help: "Allocated bytes freed by garbage collection", labelNames: ["reason"], registers }),
    gcRefusals: new Counter({ name: "basecache_gc_refusals_total", help: "Removals refused because their premise no longer held, or passes that could not see every use", labelNames: ["reason"], registers }),
    podUsesQuestions: new Counter({
      name: "basecache_gc_pod_uses_questions_total",
      help: "Questions GC asked the controller about which bases pods use, by outcome (answered, timeout, incomplete, failed); any but answered kept every base",
      labelNames: ["outcome"],
      registers,
    }),
    statusWrites: new Counter({ name: "basecache_status_writes_total", help: "NodeImageCache status writes, by outcome", labelNames: ["outcome"], registers }),
  };
}
