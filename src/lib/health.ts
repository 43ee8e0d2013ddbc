/**
 * The HTTP endpoints the controller and the agent serve: /healthz (alive), /readyz (ready to work) and
 * /metrics (Prometheus). One server per address; metrics and health may share one.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import { ConfigError } from "./errors.js";
import type { Logger } from "./log.js";

/** A named check: resolves true when healthy, or a string saying what is wrong. */
export type Check = () => boolean | string | Promise<boolean | string>;

export interface EndpointOptions {
  healthz?: Record<string, Check>;
  readyz?: Record<string, Check>;
  registry?: Registry;
}

/** The addresses `--metrics-addr` and `--health-addr` default to, in both commands. */
export const DefaultMetricsAddr = ":8080";
export const DefaultHealthAddr = ":8081";

/** Where to serve; an undefined address serves nothing. */
export interface EndpointAddresses {
  metricsAddr: string | undefined;
  healthAddr: string | undefined;
  /** The addresses are the defaults: when one is taken, serve on a free port instead of failing. */
  defaultAddrs?: boolean;
}

export interface RunningEndpoints {
  /** The bound address, e.g. 127.0.0.1:41234 (useful with port 0). */
  address: string;
  close(): Promise<void>;
}

/**
 * Parses `host:port` (`:8080` means every interface, port 0 picks a free one).
 * @throws ConfigError when it is not an address
 */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]*):([0-9]{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`Cannot parse listen address "${text}": expected host:port such as 127.0.0.1:8080 or :8080`);
  const host = m[1]!.replace(/^\[|\]$/g, "");
  return { host: host || "0.0.0.0", port };
}

async function runChecks(checks: Record<string, Check>): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  for (const [name, check] of Object.entries(checks)) {
    let result: boolean | string;
    try {
      result = await check();
    } catch (err) {
      result = err instanceof Error ? err.message : String(err);
    }
    if (result === true) lines.push(`[+]${name} ok`);
    else {
      ok = false;
      lines.push(`[-]${name} failed: ${result === false ? "not ready" : result}`);
    }
  }
  return { ok, lines };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Starts serving the endpoints at `address`; rejects with the listen error (e.g. EADDRINUSE). */
export async function serveEndpoints(address: string, opts: EndpointOptions, log: Logger): Promise<RunningEndpoints> {
  const { host, port } = parseListenAddress(address);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const checks = path === "/healthz" ? opts.healthz : path === "/readyz" ? opts.readyz : undefined;
    if (checks) {
      void runChecks(checks).then(({ ok, lines }) => {
        res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
        res.end(`${lines.join("\n")}\n${ok ? "ok" : "failed"}\n`);
      });
      return;
    }
    if (path === "/metrics" && opts.registry) {
      const registry = opts.registry;
      void registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  });
  await listen(server, host, port);
  const bound = server.address();
  const actual = typeof bound === "object" && bound ? `${bound.address.includes(":") ? `[${bound.address}]` : bound.address}:${bound.port}` : address;
  log.info({ address: actual, paths: [opts.healthz && "/healthz", opts.readyz && "/readyz", opts.registry && "/metrics"].filter(Boolean) }, "Serving HTTP endpoints");
  return {
    address: actual,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Serves /metrics on `metricsAddr` and /healthz + /readyz on `healthAddr` (one server when they are equal).
 * @throws ConfigError when an address cannot be listened on (unless it is a default that is taken)
 */
export async function startEndpoints(addrs: EndpointAddresses, opts: EndpointOptions, log: Logger): Promise<RunningEndpoints[]> {
  const health = { ...(opts.healthz ? { healthz: opts.healthz } : {}), ...(opts.readyz ? { readyz: opts.readyz } : {}) };
  const metrics = opts.registry ? { registry: opts.registry } : {};
  const serve = async (addr: string, o: EndpointOptions) => {
    try {
      return await serveEndpoints(addr, o, log);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EADDRINUSE" || !addrs.defaultAddrs) throw new ConfigError(`Cannot listen on "${addr}": ${code ?? (err as Error).message}`, { cause: err });
      // NOTE: two processes started by hand on one host must not fail on the default ports.
      log.warn({ address: addr }, "Default address in use, serving on a free port instead");
      return serveEndpoints(addr.replace(/:[0-9]+$/, ":0"), o, log);
    }
  };
  const running: RunningEndpoints[] = [];
  try {
    if (addrs.metricsAddr && addrs.metricsAddr === addrs.healthAddr) {
      running.push(await serve(addrs.metricsAddr, { ...health, ...metrics }));
      return running;
    }
    if (addrs.metricsAddr) running.push(await serve(addrs.metricsAddr, metrics));
    if (addrs.healthAddr) running.push(await serve(addrs.healthAddr, health));
    return running;
  } catch (err) {
    await Promise.all(running.map((r) => r.close()));
    throw err;
  }
}
