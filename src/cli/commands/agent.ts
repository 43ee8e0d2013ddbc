/**
 * `basecache agent --node NAME --base-dir DIR --instances-dir DIR [...]`: the node agent (src/agent/main.ts).
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseDuration } from "../../core/duration.js";
import { DefaultRetryPolicy } from "../../core/agent-memory.js";
import { runAgent, type AgentOptions } from "../../agent/main.js";
import { clockFromEnv, parseBudgetFlags } from "../../agent/options.js";
import { ConfigError } from "../../lib/errors.js";
import { ExitCode } from "../../lib/exit.js";
import type { Command } from "../command.js";

const usage = `Usage: basecache agent --node NAME --base-dir DIR --instances-dir DIR [--kubeconfig PATH]
                       [--concurrency 2] [--gc-interval 40m] [--retention 24h] [--dry-run-gc]
                       [--cache-budget SIZE --high-watermark 0.9 --low-watermark 0.8]
                       [--retry-base 5s --retry-max 2m] [--metrics-addr :8080] [--health-addr :8081]

Keeps this node's base dir in step with its NodeImageCache, reports progress in its status, and
garbage-collects bases that nothing wants or uses.
  --node            this node's name (default: $NODE_NAME)
  --kubeconfig      cluster access (default: $KUBECONFIG, then in-cluster)
  --concurrency     images fetched at a time
  --gc-interval     time between GC passes; also on SIGUSR1 or a new value of the NodeImageCache's
                    basecache.io/gc-requested annotation
  --retention       retention of an unused base whose ImageCache named none
  --dry-run-gc      GC passes only report what they would remove
  --cache-budget    bytes the cache may hold (1Ti, 500Gi); past the high watermark, unused bases go
                    least recently used first down to the low watermark
  --retry-base, --retry-max   backoff of a failed source
  --metrics-addr    serve /metrics; --health-addr serves /healthz and /readyz`;

/** Parses argv. @throws ConfigError on a usage error */
export function parseAgentFlags(argv: string[], env: NodeJS.ProcessEnv): AgentOptions | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        node: { type: "string" },
        "base-dir": { type: "string" },
        "instances-dir": { type: "string" },
        kubeconfig: { type: "string" },
        concurrency: { type: "string", default: "2" },
        "gc-interval": { type: "string", default: "40m" },
        retention: { type: "string" },
        "dry-run-gc": { type: "boolean", default: false },
        "cache-budget": { type: "string" },
        "high-watermark": { type: "string" },
        "low-watermark": { type: "string" },
        "retry-base": { type: "string" },
        "retry-max": { type: "string" },
        "metrics-addr": { type: "string" },
        "health-addr": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n\n${usage}`);
  }
  if (values.help) return "help";
  const node = values.node ?? env.NODE_NAME;
  if (!node) throw new ConfigError(`--node (or NODE_NAME) is required\n\n${usage}`);
  if (!values["base-dir"] || !values["instances-dir"]) throw new ConfigError(`--base-dir and --instances-dir are required\n\n${usage}`);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new ConfigError(`Cannot use --concurrency "${values.concurrency}": expected a whole number from 1 to 64`);
  const gcIntervalMs = duration(values["gc-interval"], "--gc-interval");
  if (gcIntervalMs < 1000) throw new ConfigError("Cannot use --gc-interval below 1s");
  const budget = parseBudgetFlags(values["cache-budget"], values["high-watermark"], values["low-watermark"]);
  const retry = {
    baseMs: values["retry-base"] ? duration(values["retry-base"], "--retry-base") : DefaultRetryPolicy.baseMs,
    maxMs: values["retry-max"] ? duration(values["retry-max"], "--retry-max") : DefaultRetryPolicy.maxMs,
  };
  return {
    node,
    baseDir: resolve(values["base-dir"]),
    instancesDir: resolve(values["instances-dir"]),
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    concurrency,
    gcIntervalMs,
    ...(values.retention ? { defaultRetentionMs: duration(values.retention, "--retention") } : {}),
    ...(budget ? { budget } : {}),
    dryRunGc: values["dry-run-gc"],
    ...(values["metrics-addr"] ? { metricsAddr: values["metrics-addr"] } : {}),
    ...(values["health-addr"] ? { healthAddr: values["health-addr"] } : {}),
    clock: clockFromEnv(env),
    retry,
  };
}

function duration(text: string, flag: string): number {
  try {
    return parseDuration(text);
  } catch (e) {
    throw new ConfigError(`${flag}: ${(e as Error).message}`);
  }
}

/** Runs the node agent until SIGTERM/SIGINT. */
export const agentCommand: Command = async (argv, ctx) => {
  const opts = parseAgentFlags(argv, ctx.env);
  if (opts === "help") {
    ctx.stdout.write(usage + "\n");
    return ExitCode.Ok;
  }
  await runAgent(opts, ctx.log.child({ node: opts.node }), ctx.signal);
  return ExitCode.Ok;
};
