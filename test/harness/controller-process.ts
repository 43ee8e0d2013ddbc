/**
 * Runs `basecache controller` as a real child process (node + tsx on the sources) for integration tests and
 * benchmarks. Tests observe it through the API, its Lease, its exit code and what it serves (found from the
 * kernel's socket table, listening.ts), never through its log, which is kept only as a tail for failure messages.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { eventually } from "./eventually.js";
import { servingAddress } from "./listening.js";
import { LogTail, parseMetrics } from "./process-output.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export interface ControllerProcess {
  readonly pid: number;
  /** The last lines it logged, for failure messages only. */
  logTail(): string;
  /** The loopback address it serves `path` (/metrics, /healthz, /readyz) on. */
  address(path?: string): Promise<string>;
  /** Waits until it leads (basecache_controller_is_leader 1) and /readyz answers 200: its workers run. */
  leading(timeoutMs?: number): Promise<void>;
  /** Fetches and parses /metrics: `name{labels}` -> value. */
  metrics(): Promise<Map<string, number>>;
  kill(signal?: NodeJS.Signals): void;
  /** Sends SIGTERM (unless it already exited) and waits; resolves the exit code. */
  stop(): Promise<number | undefined>;
  exited: Promise<number | undefined>;
}

export function startController(kubeconfigPath: string, args: string[] = [], env: Record<string, string> = {}): ControllerProcess {
  const proc: ResultPromise = execa("node", ["--import", "tsx", "src/cli/main.ts", "controller", "--kubeconfig", kubeconfigPath, "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0", ...args], {
    cwd: repoRoot,
    reject: false,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    buffer: { stderr: false },
    env: { BASECACHE_LOG_LEVEL: "debug", ...env },
  });
  const tail = new LogTail(proc.stderr);
  const exited = proc.then((r) => r.exitCode);
  let done = false;
  void exited.then(() => (done = true));
  const address = (path = "/metrics") => servingAddress(proc.pid ?? 0, path);
  const metrics = async () => parseMetrics(await (await fetch(`http://${await address("/metrics")}/metrics`)).text());
  return {
    pid: proc.pid ?? 0,
    logTail: () => tail.text(),
    address,
    // Leading and ready means the informers have synced, and the workers start in the same turn.
    async leading(timeoutMs = 60_000) {
      const health = await address("/readyz");
      await eventually(
        async () => {
          const state = done ? "exited" : "running";
          assert.equal((await metrics()).get("basecache_controller_is_leader"), 1, `controller not leading (${state})\n${tail.text()}`);
          assert.equal((await fetch(`http://${health}/readyz`)).status, 200, `controller not ready (${state})\n${tail.text()}`);
        },
        { timeoutMs, description: "the controller leading with synced informers" },
      );
    },
    metrics,
    kill: (signal = "SIGTERM") => void proc.kill(signal),
    async stop() {
      if (!done) proc.kill("SIGTERM");
      return exited;
    },
    exited,
  };
}
