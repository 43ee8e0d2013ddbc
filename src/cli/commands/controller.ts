import { parseArgs } from "node:util";
import { runController, type ControllerOptions } from "../../controller/main.js";
import { parseDuration } from "../../core/duration.js";
import { ConfigError } from "../../lib/errors.js";
import { ExitCode } from "../../lib/exit.js";
import { parseListenAddress } from "../../lib/health.js";
import { loadKubeConfig } from "../../kube/client.js";
import type { Command } from "../command.js";

const help = `Usage: basecache controller [flags]

Fans ImageCaches out into one NodeImageCache per node and rolls node status back up.

Flags:
  --kubeconfig PATH         kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --leader-elect            hold a coordination.k8s.io Lease; only the holder acts
  --lease-namespace NS      namespace of the Lease (default: $POD_NAMESPACE or "default")
  --lease-name NAME         name of the Lease (default: basecache-controller)
  --lease-duration DUR      lease duration (default: 15s)
  --metrics-addr HOST:PORT  serve /metrics here (default: :8080, or a free port when
                            both defaults are taken; "" disables)
  --health-addr HOST:PORT   serve /healthz and /readyz here (default: :8081; "" disables)
  --workers N               parallel reconcile passes (default: 4)
  --status-interval DUR     minimum time between two status writes of one ImageCache (default: 2s)
  --relist-interval DUR     relist every informer this often (default: 10m)
`;

function durationFlag(name: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new ConfigError(`Cannot use --${name}: ${(err as Error).message}`);
  }
}

function addressFlag(name: string, text: string): string | undefined {
  if (text === "") return undefined;
  try {
    parseListenAddress(text);
  } catch (err) {
    throw new ConfigError(`Cannot use --${name}: ${(err as Error).message}`);
  }
  return text;
}

/** Parses the controller's flags. */
export function parseControllerFlags(argv: string[], env: NodeJS.ProcessEnv): Omit<ControllerOptions, "kc"> & { kubeconfig: string | undefined; help: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        kubeconfig: { type: "string" },
        "leader-elect": { type: "boolean", default: false },
        "lease-namespace": { type: "string" },
        "lease-name": { type: "string", default: "basecache-controller" },
        "lease-duration": { type: "string", default: "15s" },
        "metrics-addr": { type: "string" },
        "health-addr": { type: "string" },
        workers: { type: "string", default: "4" },
        "status-interval": { type: "string", default: "2s" },
        "relist-interval": { type: "string", default: "10m" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`Cannot parse flags: ${(err as Error).message}`);
  }
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ConfigError(`Cannot use --workers "${values.workers}": expected a whole number from 1 to 64`);
  const leaseDurationMs = durationFlag("lease-duration", values["lease-duration"]);
  if (leaseDurationMs < 3000) throw new ConfigError(`Cannot use --lease-duration "${values["lease-duration"]}": at least 3s`);
  return {
    help: values.help,
    kubeconfig: values.kubeconfig,
    leaderElect: values["leader-elect"],
    leaseNamespace: values["lease-namespace"] ?? env.POD_NAMESPACE ?? "default",
    leaseName: values["lease-name"],
    leaseDurationMs,
    metricsAddr: addressFlag("metrics-addr", values["metrics-addr"] ?? ":8080"),
    healthAddr: addressFlag("health-addr", values["health-addr"] ?? ":8081"),
    // Two controllers started by hand on one host must not fail on the default ports.
    defaultAddrs: values["metrics-addr"] === undefined && values["health-addr"] === undefined,
    workers,
    statusIntervalMs: durationFlag("status-interval", values["status-interval"]),
    relistIntervalMs: Math.max(10_000, durationFlag("relist-interval", values["relist-interval"])),
  };
}

/** `basecache controller`: runs the controller until SIGTERM/SIGINT. */
export const controllerCommand: Command = async (argv, ctx) => {
  const flags = parseControllerFlags(argv, ctx.env);
  if (flags.help) {
    ctx.stdout.write(help);
    return ExitCode.Ok;
  }
  const kc = loadKubeConfig(flags.kubeconfig);
  return runController({ ...flags, kc }, ctx.signal, ctx.log);
};
