/**
 * Runs the pinned helm (built from its Go module by hack/build-tools.sh) for the chart tests.
 */
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** The repository's chart directory. */
export const chartDir = resolve(repoRoot, "charts/basecache");

// Keep helm from writing into the user's own helm config and cache.
const helmHome = join(tmpdir(), "basecache-helm");
const helmEnv = { HELM_CACHE_HOME: join(helmHome, "cache"), HELM_CONFIG_HOME: join(helmHome, "config"), HELM_DATA_HOME: join(helmHome, "data") };

let helmPath: Promise<string> | undefined;

/** Builds helm on first use (several minutes, progress on stderr) and returns its path. */
export function helmBinary(): Promise<string> {
  helmPath ??= (async () => {
    const proc = execa(resolve(repoRoot, "hack/build-tools.sh"), ["helm"], { cwd: repoRoot, stdin: "ignore", stderr: "inherit" });
    const { stdout } = await proc;
    const bin = stdout.trim().split("\n").at(-1) ?? "";
    return resolve(bin, "helm");
  })();
  return helmPath;
}

/** Runs helm with `args`; resolves its stdout. @throws Error with helm's stderr when it exits non-zero. */
export async function helm(args: string[]): Promise<string> {
  const res = await execa(await helmBinary(), args, { cwd: repoRoot, stdin: "ignore", reject: false, env: helmEnv });
  if (res.exitCode !== 0) throw new Error(`Cannot run helm ${args.join(" ")}: exited ${String(res.exitCode)}\n${res.stderr}`);
  return res.stdout;
}

/** `helm template` of the repository's chart as release "basecache" in `namespace`, with `--set` pairs. */
export function renderChart(namespace = "basecache-system", set: string[] = []): Promise<string> {
  return helm(["template", "basecache", chartDir, "--namespace", namespace, ...set.flatMap((s) => ["--set", s])]);
}
