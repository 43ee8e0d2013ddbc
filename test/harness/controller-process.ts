/**
 * Runs `basecache controller` as a real child process (node + tsx on the sources) for integration tests and
 * benchmarks, collecting its JSON log lines.
 */
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { eventually } from "./eventually.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface ControllerProcess {
  readonly pid: number;
  readonly lines: LogLine[];
  /** Waits for a log line matching `msg` (exact message) and optional fields. */
  waitForLog(msg: string, timeoutMs?: number): Promise<LogLine>;
  /** The metrics/health address it serves on, from its log. */
  address(): Promise<string>;
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
  const lines: LogLine[] = [];
  let partial = "";
  proc.stderr?.on("data", (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const parts = text.split("\n");
    partial = parts.pop() ?? "";
    for (const p of parts) {
      if (!p.trim()) continue;
      try {
        lines.push(JSON.parse(p) as LogLine);
      } catch {
        lines.push({ level: "raw", msg: p });
      }
    }
  });
  const exited = proc.then((r) => r.exitCode);
  let done = false;
  void exited.then(() => (done = true));
  const waitForLog = (msg: string, timeoutMs = 60_000) =>
    eventually(
      () => {
        const hit = lines.find((l) => l.msg === msg);
        if (!hit) throw new Error(`No log line "${msg}" yet (process ${done ? "exited" : "running"}); last: ${lines.slice(-3).map((l) => l.msg).join(" | ")}`);
        return hit;
      },
      { timeoutMs, intervalMs: 100 },
    );
  const address = async () => {
    const line = await eventually(() => {
      const l = lines.find((x) => x.msg === "Serving HTTP endpoints" && Array.isArray(x.paths) && (x.paths as string[]).includes("/metrics"));
      if (!l) throw new Error("The controller has not logged its metrics address yet");
      return l;
    });
    return String(line.address);
  };
  return {
    pid: proc.pid ?? 0,
    lines,
    waitForLog,
    address,
    async metrics() {
      const res = await fetch(`http://${await address()}/metrics`);
      const out = new Map<string, number>();
      for (const line of (await res.text()).split("\n")) {
        if (!line || line.startsWith("#")) continue;
        const i = line.lastIndexOf(" ");
        out.set(line.slice(0, i), Number(line.slice(i + 1)));
      }
      return out;
    },
    kill: (signal = "SIGTERM") => void proc.kill(signal),
    async stop() {
      if (!done) proc.kill("SIGTERM");
      return exited;
    },
    exited,
  };
}
