/**
 * `basecache gc --base-dir DIR --instances-dir DIR [--node NAME] [--kubeconfig PATH] [--dry-run] [--json]`:
 * one garbage-collection pass on demand, with the agent's rules (docs/design/gc-rules.md).
 */
import { resolve } from "node:path";
import type { GcBudget } from "../../core/watermarks.js";
import { DefaultRetentionMs, type GcDecision } from "../../core/gc.js";
import { formatDuration } from "../../core/duration.js";
import { formatBytes } from "../../core/quantity.js";
import { runGcPass, type GcPassResult, type GcReferences } from "../../agent/gc-pass.js";
import { InstanceDiskScanner } from "../../agent/inventory.js";
import { diskInspector } from "../../agent/options.js";
import { clockFromEnv, monotonicClock } from "../../lib/clock.js";
import { ExitCode } from "../../lib/exit.js";
import type { Command, CommandContext } from "../command.js";
import { checkDirFlags } from "../dir-flag.js";
import { DefaultHighWatermark, DefaultLowWatermark, budgetFlags, durationFlag, parseFlags, renderHelp, requireFlag, type CommandSpec } from "../flags.js";

const flags = {
  "base-dir": { type: "string", value: "DIR", help: "the base dir (`_base`); required" },
  "instances-dir": { type: "string", value: "DIR", help: "where instance disks live (read only); required" },
  node: {
    type: "string",
    value: "NAME",
    defaultText: "$NODE_NAME",
    help: "this node's name\n(with cluster access, pods on the node and its NodeImageCache count as uses;\nwithout it no base is removed, only work files)",
  },
  kubeconfig: { type: "string", value: "PATH", defaultText: "$KUBECONFIG, ~/.kube/config, or in-cluster", help: "cluster access" },
  retention: { type: "string", value: "DUR", default: formatDuration(DefaultRetentionMs), help: "retention of an unused base whose ImageCache named none" },
  "cache-budget": { type: "string", value: "SIZE", help: "bytes the cache may hold (1Ti, 500Gi); past the high watermark,\nunused bases go least recently used first down to the low watermark" },
  "high-watermark": { type: "string", value: "FRACTION", defaultText: String(DefaultHighWatermark), help: "with --cache-budget: where eviction starts" },
  "low-watermark": { type: "string", value: "FRACTION", defaultText: String(DefaultLowWatermark), help: "with --cache-budget: where eviction stops" },
  "dry-run": { type: "boolean", help: "report what a pass would remove and why; change nothing" },
  json: { type: "boolean", help: "print one JSON object with every decision" },
} as const;

const spec: CommandSpec<typeof flags> = {
  name: "gc",
  synopsis: "--base-dir DIR --instances-dir DIR [flags]",
  description:
    "Runs one garbage-collection pass: removes work files no live process holds, and bases that no ImageCache\nwants on this node, that nothing uses, and that have been unused for the retention age (or, above the\ncache budget's high watermark, least recently used first down to the low watermark).",
  flags,
};

interface GcFlags {
  baseDir: string;
  instancesDir: string;
  node?: string;
  kubeconfig?: string;
  retentionMs: number;
  budget?: GcBudget;
  dryRun: boolean;
  json: boolean;
}

/** Parses argv. @throws ConfigError on a usage error */
export function parseGcFlags(argv: string[], env: NodeJS.ProcessEnv): GcFlags | "help" {
  const parsed = parseFlags(argv, spec);
  if (parsed === "help") return "help";
  const v = parsed.values;
  const node = v.node || env.NODE_NAME;
  const budget = budgetFlags(v["cache-budget"], v["high-watermark"], v["low-watermark"]);
  return {
    baseDir: resolve(requireFlag(spec, "base-dir", v["base-dir"])),
    instancesDir: resolve(requireFlag(spec, "instances-dir", v["instances-dir"])),
    ...(node ? { node } : {}),
    ...(v.kubeconfig ? { kubeconfig: v.kubeconfig } : {}),
    retentionMs: durationFlag("retention", v.retention),
    ...(budget ? { budget } : {}),
    dryRun: v["dry-run"],
    json: v.json,
  };
}

/** Runs one GC pass and prints its decisions. */
export const gcCommand: Command = async (argv, ctx) => {
  const flags = parseGcFlags(argv, ctx.env);
  if (flags === "help") {
    ctx.stdout.write(renderHelp(spec));
    return ExitCode.Ok;
  }
  await checkDirFlags({ "base-dir": flags.baseDir, "instances-dir": flags.instancesDir });
  const references = await referencesFor(flags, ctx);
  const result = await runGcPass(
    {
      baseDir: flags.baseDir,
      instancesDir: flags.instancesDir,
      clock: clockFromEnv(ctx.env),
      monotonic: monotonicClock,
      defaultRetentionMs: flags.retentionMs,
      ...(flags.budget ? { budget: flags.budget } : {}),
      dryRun: flags.dryRun,
      references,
      scanner: new InstanceDiskScanner(diskInspector),
      log: ctx.log,
    },
    ctx.signal,
  );
  ctx.stdout.write(flags.json ? JSON.stringify(toJson(result)) + "\n" : formatHuman(result));
  return ExitCode.Ok;
};

async function referencesFor(flags: GcFlags, ctx: CommandContext): Promise<GcReferences> {
  if (!flags.node) {
    ctx.log.warn("No node name given: pods are not known, so no base is removed");
    return { wanted: () => undefined, podUses: () => undefined };
  }
  const { readClusterReferences } = await import("../../agent/cluster-refs.js");
  return readClusterReferences({ node: flags.node, ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}), log: ctx.log, defaultRetentionMs: flags.retentionMs });
}

function toJson(r: GcPassResult) {
  return {
    dryRun: r.plan.dryRun,
    usage: r.plan.usage,
    decisions: r.plan.decisions,
    removed: r.removed.map((d) => d.name),
    refused: r.refused.map((x) => ({ name: x.decision.name, why: x.why })),
    disks: r.disks,
    timings: r.timings,
  };
}

function formatHuman(r: GcPassResult): string {
  const removed = new Set(r.removed.map((d) => d.name));
  const lines = r.plan.decisions.map((d: GcDecision) => {
    const action = d.action === "delete" ? (r.plan.dryRun ? "would delete" : removed.has(d.name) ? "deleted" : "kept") : d.action;
    return `${action.padEnd(12)} ${d.reason.padEnd(20)} ${d.name}  ${formatBytes(d.bytes)}  ${d.message}`;
  });
  for (const x of r.refused) lines.push(`refused      ${x.decision.name}: ${x.why}`);
  const u = r.plan.usage;
  const budget = u.highBytes !== undefined ? `, high mark ${formatBytes(u.highBytes)}, low mark ${formatBytes(u.lowBytes ?? 0)}` : "";
  lines.push(`cache ${formatBytes(u.cacheBytes)} -> ${formatBytes(r.plan.dryRun ? u.cacheBytes : u.afterBytes)}${budget}; ${r.disks.count} instance disks`);
  const t = r.timings;
  lines.push(`took ${Math.round(t.listMs + t.disksMs + t.planMs + t.applyMs)} ms`);
  return lines.join("\n") + "\n";
}
