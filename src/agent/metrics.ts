/**
 * The agent's Prometheus metrics and its two small HTTP endpoints: `/metrics` on --metrics-addr, and
 * `/healthz` + `/readyz` on --health-addr. Byte-level fetch progress lives here, not in the API.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { ConfigError } from "../lib/errors.js";

/** Every metric the agent exports, on a registry of its own. */
export interface AgentMetrics {
  registry: Registry;
  bytesFetched: Counter<"image_id">;
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
  statusWrites: Counter<"outcome">;
}

/** Creates the agent's metrics on a fresh registry, with Node's default process metrics. */
export function createAgentMetrics(): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    bytesFetched: new Counter({ name: "basecache_fetch_bytes_total", help: "Bytes downloaded from image sources", labelNames: ["image_id"], registers }),
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
    gcPasses: new Counter({ name: "basecache_gc_passes_total", help: "Garbage-collection passes, by outcome", labelNames: ["outcome"], registers }),
    gcSeconds: new Histogram({ name: "basecache_gc_duration_seconds", help: "Duration of garbage-collection passes", buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers }),
    gcRemovals: new Counter({ name: "basecache_gc_removals_total", help: "Files removed by garbage collection, by reason and kind", labelNames: ["reason", "kind"], registers }),
    gcRemovedBytes: new Counter({ name: "basecache_gc_removed_bytes_total", help: "Allocated bytes freed by garbage collection", labelNames: ["reason"], registers }),
    gcRefusals: new Counter({ name: "basecache_gc_refusals_total", help: "Removals refused because their premise no longer held, or passes that could not see every use", labelNames: ["reason"], registers }),
    statusWrites: new Counter({ name: "basecache_status_writes_total", help: "NodeImageCache status writes, by outcome", labelNames: ["outcome"], registers }),
  };
}

/** Parses `:8080`, `127.0.0.1:0` or `[::1]:9090` into a host and port. */
export function parseListenAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`Cannot listen on "${addr}": expected host:port, :port or [ipv6]:port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export type Handler = (path: string) => Promise<{ status: number; type: string; body: string }>;

/** Serves `handler` on `addr`; resolves with the server and the port it bound (useful with port 0). */
export async function serveHttp(addr: string, handler: Handler): Promise<{ server: Server; port: number }> {
  const { host, port } = parseListenAddr(addr);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    handler(path).then(
      (r) => res.writeHead(r.status, { "content-type": r.type }).end(r.body),
      (e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${e instanceof Error ? e.message : String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/** The handler of `/metrics`. */
export function metricsHandler(registry: Registry): Handler {
  return async (path) => {
    if (path !== "/metrics") return { status: 404, type: "text/plain", body: "Not found\n" };
    return { status: 200, type: registry.contentType, body: await registry.metrics() };
  };
}

/** The handler of `/healthz` (the process serves) and `/readyz` (the agent has synced and scanned its disk). */
export function healthHandler(checks: { live: () => boolean; ready: () => string | undefined }): Handler {
  return async (path) => {
    if (path === "/healthz" || path === "/livez") {
      return checks.live() ? { status: 200, type: "text/plain", body: "ok\n" } : { status: 503, type: "text/plain", body: "stopping\n" };
    }
    if (path === "/readyz") {
      const notReady = checks.ready();
      return notReady === undefined ? { status: 200, type: "text/plain", body: "ok\n" } : { status: 503, type: "text/plain", body: `${notReady}\n` };
    }
    return { status: 404, type: "text/plain", body: "Not found\n" };
  };
}
