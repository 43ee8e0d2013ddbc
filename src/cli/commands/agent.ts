/**
 * `basecache agent --node NAME --base-dir DIR --instances-dir DIR [...]`: the node agent (src/agent/main.ts).
 */
import { resolve } from "node:path";
import { DefaultRetryPolicy } from "../../core/agent-memory.js";
import { formatDuration } from "../../core/duration.js";
import { DefaultRetentionMs } from "../../core/gc.js";
import { DefaultPodUsesTimeoutMs } from "../../agent/pod-uses.js";
import { runAgent, type AgentOptions } from "../../agent/main.js";
import { clockFromEnv } from "../../lib/clock.js";
import { ExitCode } from "../../lib/exit.js";
import { DefaultHealthAddr, DefaultMetricsAddr } from "../../lib/health.js";
import type { Command } from "../command.js";
import { checkDirFlags } from "../dir-flag.js";
import { DefaultHighWatermark, DefaultLowWatermark, addressFlag, budgetFlags, bytesFlag, durationFlag, intFlag, parseFlags, renderHelp, requireFlag, type CommandSpec } from "../flags.js";

const flags = {
  node: { type: "string", value: "NAME", defaultText: "$NODE_NAME", help: "this node's name" },
  "base-dir": { type: "string", value: "DIR", help: "the node's base dir (`_base`); required" },
  "instances-dir": { type: "string", value: "DIR", help: "where instance disks live (read only); required" },
  kubeconfig: { type: "string", value: "PATH", defaultText: "$KUBECONFIG, ~/.kube/config, or in-cluster", help: "cluster access" },
  concurrency: { type: "string", value: "N", default: "2", help: "images fetched at a time" },
  "gc-interval": { type: "string", value: "DUR", default: "40m", help: "time between GC passes\n(also one on SIGUSR1, or on a new basecache.io/gc-requested annotation)" },
  retention: { type: "string", value: "DUR", default: formatDuration(DefaultRetentionMs), help: "retention of an unused base whose ImageCache named none" },
  "dry-run-gc": { type: "boolean", help: "GC passes only report what they would remove" },
  "pod-uses-timeout": {
    type: "string",
    value: "DUR",
    default: formatDuration(DefaultPodUsesTimeoutMs),
    help: "how long a GC pass waits for the controller to say which bases pods use\n(the agent may not read pods); without an answer it keeps every base pods might use",
  },
  "cache-budget": { type: "string", value: "SIZE", help: "bytes the cache may hold (1Ti, 500Gi); past the high watermark,\nunused bases go least recently used first down to the low watermark" },
  "high-watermark": { type: "string", value: "FRACTION", defaultText: String(DefaultHighWatermark), help: "with --cache-budget: where eviction starts" },
  "low-watermark": { type: "string", value: "FRACTION", defaultText: String(DefaultLowWatermark), help: "with --cache-budget: where eviction stops" },
  "retry-base": { type: "string", value: "DUR", default: formatDuration(DefaultRetryPolicy.baseMs), help: "first backoff after a failed source" },
  "retry-max": { type: "string", value: "DUR", default: formatDuration(DefaultRetryPolicy.maxMs), help: "longest backoff after a failed source" },
  "write-back": { type: "string", value: "SIZE", default: "32Mi", help: "fdatasync each download every SIZE written and hold it while twice\nSIZE is not yet on disk, so dirty pages stay bounded; 0 turns it off" },
  "verify-interval": { type: "string", value: "DUR", default: "24h", help: "re-hash each stored base this often against the digest recorded when\nit was stored; a changed one is flagged (new disks refuse it) and fetched\nagain once unused; 0 re-hashes only bases whose size or mtime changed" },
  "verify-look": { type: "string", value: "DUR", default: "1m", help: "how often the bases' sizes and mtimes are compared with their sidecars" },
  "metrics-addr": { type: "string", value: "HOST:PORT", default: DefaultMetricsAddr, help: 'serve /metrics here; "" disables\n(a free port instead when no address is given and the default is taken)' },
  "health-addr": { type: "string", value: "HOST:PORT", default: DefaultHealthAddr, help: 'serve /healthz and /readyz here; "" disables' },
} as const;

const spec: CommandSpec<typeof flags> = {
  name: "agent",
  synopsis: "--node NAME --base-dir DIR --instances-dir DIR [flags]",
  description: "Keeps this node's base dir in step with its NodeImageCache, reports progress in its status, and\ngarbage-collects bases that nothing wants or uses. Stops gracefully on SIGTERM or SIGINT.",
  flags,
};

/** Parses argv. @throws ConfigError on a usage error */
export function parseAgentFlags(argv: string[], env: NodeJS.ProcessEnv): AgentOptions | "help" {
  const parsed = parseFlags(argv, spec);
  if (parsed === "help") return "help";
  const v = parsed.values;
  const budget = budgetFlags(v["cache-budget"], v["high-watermark"], v["low-watermark"]);
  return {
    node: requireFlag(spec, "node", v.node, env.NODE_NAME),
    baseDir: resolve(requireFlag(spec, "base-dir", v["base-dir"])),
    instancesDir: resolve(requireFlag(spec, "instances-dir", v["instances-dir"])),
    ...(v.kubeconfig ? { kubeconfig: v.kubeconfig } : {}),
    concurrency: intFlag("concurrency", v.concurrency, 1, 64),
    gcIntervalMs: durationFlag("gc-interval", v["gc-interval"], 1000),
    defaultRetentionMs: durationFlag("retention", v.retention),
    ...(budget ? { budget } : {}),
    dryRunGc: v["dry-run-gc"],
    podUsesTimeoutMs: durationFlag("pod-uses-timeout", v["pod-uses-timeout"], 1000),
    metricsAddr: addressFlag("metrics-addr", v["metrics-addr"]),
    healthAddr: addressFlag("health-addr", v["health-addr"]),
    defaultAddrs: !parsed.given.has("metrics-addr") && !parsed.given.has("health-addr"),
    clock: clockFromEnv(env),
    writeBackBytes: bytesFlag("write-back", v["write-back"]),
    verifyIntervalMs: durationFlag("verify-interval", v["verify-interval"]),
    verifyLookMs: durationFlag("verify-look", v["verify-look"], 1000),
    retry: { baseMs: durationFlag("retry-base", v["retry-base"]), maxMs: durationFlag("retry-max", v["retry-max"]) },
  };
}

/** Runs the node agent until SIGTERM/SIGINT. */
export const agentCommand: Command = async (argv, ctx) => {
  const opts = parseAgentFlags(argv, ctx.env);
  if (opts === "help") {
    ctx.stdout.write(renderHelp(spec));
    return ExitCode.Ok;
  }
  await checkDirFlags({ "base-dir": opts.baseDir, "instances-dir": opts.instancesDir });
  await runAgent(opts, ctx.log.child({ node: opts.node }), ctx.signal);
  return ExitCode.Ok;
};
