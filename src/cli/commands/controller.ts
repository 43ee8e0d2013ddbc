/** `basecache controller [flags]`: the controller (src/controller/main.ts). */
import { ControllerParts, runController, type ControllerOptions, type ControllerPart } from "../../controller/main.js";
import { ConfigError } from "../../lib/errors.js";
import { clockFromEnv } from "../../lib/clock.js";
import { ExitCode } from "../../lib/exit.js";
import { DefaultHealthAddr, DefaultMetricsAddr } from "../../lib/health.js";
import { loadKubeConfig } from "../../kube/client.js";
import type { Command } from "../command.js";
import { addressFlag, durationFlag, intFlag, parseFlags, renderHelp, type CommandSpec } from "../flags.js";

const flags = {
  kubeconfig: { type: "string", value: "PATH", defaultText: "$KUBECONFIG, ~/.kube/config, or in-cluster", help: "cluster access" },
  "leader-elect": { type: "boolean", help: "hold a coordination.k8s.io Lease; only the holder acts" },
  "lease-namespace": { type: "string", value: "NS", defaultText: '$POD_NAMESPACE or "default"', help: "namespace of the Lease" },
  "keys-namespace": { type: "string", value: "NS", defaultText: "$POD_NAMESPACE", help: 'read the ConfigMaps holding checksumFrom\'s public keys here\n(list/watch, this namespace only) and copy the keys into NodeImageCaches;\n"" reads none' },
  "lease-name": { type: "string", value: "NAME", default: "basecache-controller", help: "name of the Lease" },
  "lease-duration": { type: "string", value: "DUR", default: "15s", help: "lease duration, at least 3s" },
  "metrics-addr": { type: "string", value: "HOST:PORT", default: DefaultMetricsAddr, help: 'serve /metrics here; "" disables\n(a free port instead when no address is given and the default is taken)' },
  "health-addr": { type: "string", value: "HOST:PORT", default: DefaultHealthAddr, help: 'serve /healthz and /readyz here; "" disables' },
  workers: { type: "string", value: "N", default: "4", help: "parallel reconcile passes" },
  "status-interval": { type: "string", value: "DUR", default: "2s", help: "minimum time between two status writes of one ImageCache" },
  controllers: {
    type: "string",
    value: "LIST",
    default: ControllerParts.join(","),
    help: "the parts to run, comma-separated: fanout (NodeImageCaches and ImageCache status),\nplacement (Node labels and taint), pod-uses (tells agents which bases pods use)",
  },
  "relist-interval": { type: "string", value: "DUR", default: "10m", help: "relist every informer this often, at least 10s" },
} as const;

const spec: CommandSpec<typeof flags> = {
  name: "controller",
  synopsis: "[flags]",
  description: "Fans ImageCaches out into one NodeImageCache per node and rolls node status back up. Stops gracefully\non SIGTERM or SIGINT; exits 1 when it loses the leader lease, so that a fresh process starts over.",
  flags,
};

/** Parses the controller's flags. @throws ConfigError on a usage error */
export function parseControllerFlags(argv: string[], env: NodeJS.ProcessEnv): (Omit<ControllerOptions, "kc"> & { kubeconfig: string | undefined }) | "help" {
  const parsed = parseFlags(argv, spec);
  if (parsed === "help") return "help";
  const v = parsed.values;
  return {
    kubeconfig: v.kubeconfig,
    leaderElect: v["leader-elect"],
    leaseNamespace: v["lease-namespace"] || env.POD_NAMESPACE || "default",
    leaseName: v["lease-name"],
    keysNamespace: v["keys-namespace"] ?? env.POD_NAMESPACE ?? "",
    leaseDurationMs: durationFlag("lease-duration", v["lease-duration"], 3000),
    metricsAddr: addressFlag("metrics-addr", v["metrics-addr"]),
    healthAddr: addressFlag("health-addr", v["health-addr"]),
    defaultAddrs: !parsed.given.has("metrics-addr") && !parsed.given.has("health-addr"),
    workers: intFlag("workers", v.workers, 1, 64),
    statusIntervalMs: durationFlag("status-interval", v["status-interval"]),
    relistIntervalMs: durationFlag("relist-interval", v["relist-interval"], 10_000),
    clock: clockFromEnv(env),
    parts: partsFlag(v.controllers),
  };
}

function partsFlag(text: string): ControllerPart[] {
  const names = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const bad = names.find((n) => !(ControllerParts as readonly string[]).includes(n));
  if (bad !== undefined || names.length === 0) throw new ConfigError(`Cannot use --controllers "${text}": expected a comma-separated list of ${ControllerParts.join(", ")}`);
  return names as ControllerPart[];
}

/** `basecache controller`: runs the controller until SIGTERM/SIGINT. */
export const controllerCommand: Command = async (argv, ctx) => {
  const flags = parseControllerFlags(argv, ctx.env);
  if (flags === "help") {
    ctx.stdout.write(renderHelp(spec));
    return ExitCode.Ok;
  }
  const kc = loadKubeConfig(flags.kubeconfig);
  return runController({ ...flags, kc }, ctx.signal, ctx.log);
};
