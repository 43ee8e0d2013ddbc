/**
 * `basecache gc --base-dir DIR --instances-dir DIR [--node NAME] [--kubeconfig PATH] [--dry-run] [--json]`:
 * one garbage-collection pass on demand, with the agent's rules (docs/design/gc-rules.md).
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { DefaultRetentionMs, type GcDecision } from "../../core/gc.js";
import { parseDuration } from "../../core/duration.js";
import { formatBytes } from "../../core/quantity.js";
import { runGcPass, type GcPassResult, type GcReferences } from "../../agent/gc-pass.js";
import { InstanceDiskScanner } from "../../agent/inventory.js";
import { clockFromEnv, diskInspector, parseBudgetFlags } from "../../agent/options.js";
import { ConfigError } from "../../lib/errors.js";
import { ExitCode } from "../../lib/exit.js";
import type { Command, CommandContext } from "../command.js";

const usage = `Usage: basecache gc --base-dir DIR --instances-dir DIR [--node NAME] [--kubeconfig PATH]
                    [--retention 24h] [--cache-budget SIZE --high-watermark 0.9 --low-watermark 0.8]
                    [--dry-run] [--json]

Runs one garbage-collection pass: removes work files no live process holds, and bases that no ImageCache
wants on this node, that nothing uses, and that have been unused for the retention age (or, above the
cache budget's high watermark, least recently used first down to the low watermark).
  --node            this node's name (default: $NODE_NAME); with cluster access, pods on the node and the
                    node's NodeImageCache count as uses. Without it no base is removed, only work files.
  --kubeconfig      cluster access (default: $KUBECONFIG, then in-cluster)
  --retention       retention of an unused base whose ImageCache named none (default 24h)
  --dry-run         report what a pass would remove and why; change nothing
  --json            print one JSON object with every decision`;

interface GcFlags {
  baseDir: string;
  instancesDir: string;
  node?: string;
  kubeconfig?: string;
  retentionMs: number;
  budget?: ReturnType<typeof parseBudgetFlags>;
  dryRun: boolean;
  json: boolean;
}

/** Parses argv. @throws ConfigError on a usage error */
export function parseGcFlags(argv: string[], env: NodeJS.ProcessEnv): GcFlags | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        "base-dir": { type: "string" },
        "instances-dir": { type: "string" },
        node: { type: "string" },
        kubeconfig: { type: "string" },
        retention: { type: "string" },
        "cache-budget": { type: "string" },
        "high-watermark": { type: "string" },
        "low-watermark": { type: "string" },
        "dry-run": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n\n${usage}`);
  }
  if (values.help) return "help";
  if (!values["base-dir"] || !values["instances-dir"]) throw new ConfigError(`--base-dir and --instances-dir are required\n\n${usage}`);
  let retentionMs = DefaultRetentionMs;
  try {
    if (values.retention !== undefined) retentionMs = parseDuration(values.retention);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const node = values.node ?? env.NODE_NAME;
  const kubeconfig = values.kubeconfig;
  const budget = parseBudgetFlags(values["cache-budget"], values["high-watermark"], values["low-watermark"]);
  return {
    baseDir: resolve(values["base-dir"]),
    instancesDir: resolve(values["instances-dir"]),
    ...(node ? { node } : {}),
    ...(kubeconfig ? { kubeconfig } : {}),
    retentionMs,
    ...(budget ? { budget } : {}),
    dryRun: values["dry-run"],
    json: values.json,
  };
}

/** Runs one GC pass and prints its decisions. */
export const gcCommand: Command = async (argv, ctx) => {
  const flags = parseGcFlags(argv, ctx.env);
  if (flags === "help") {
    ctx.stdout.write(usage + "\n");
    return ExitCode.Ok;
  }
  const references = await referencesFor(flags, ctx);
  const result = await runGcPass(
    {
      baseDir: flags.baseDir,
      instancesDir: flags.instancesDir,
      clock: clockFromEnv(ctx.env),
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
