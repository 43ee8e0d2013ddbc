/**
 * basecache processes for the demo: long-running ones (controller, agents) with their logs in files, and
 * one-shot CLI runs. Each runs the TypeScript source through tsx, so the demo works right after `npm ci`.
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";

const repoRoot = resolve(fileURLToPath(new URL("..", import.meta.url)));
const cli = join(repoRoot, "src/cli/main.ts");

/** A basecache process started by the demo. */
export interface BasecacheProcess {
  name: string;
  logPath: string;
  proc: ResultPromise;
  /** Whether the process has exited. */
  exited(): boolean;
  /** Stops it with SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  /** The last lines of its log, for error messages. */
  logTail(lines?: number): Promise<string>;
}

/** Starts `basecache <args>` in the background with stdout and stderr appended to `logPath`. */
export function startBasecache(name: string, args: string[], logPath: string, env: Record<string, string> = {}): BasecacheProcess {
  const proc = execa(process.execPath, ["--import", "tsx", cli, ...args], {
    cwd: repoRoot,
    env: { BASECACHE_LOG_LEVEL: "info", ...env },
    stdin: "ignore",
    stdout: { file: logPath, append: true },
    stderr: { file: logPath, append: true },
    reject: false,
    cleanup: true,
  });
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  return {
    name,
    logPath,
    proc,
    exited,
    async stop(graceMs = 15_000) {
      if (exited()) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await proc;
      clearTimeout(timer);
    },
    async logTail(lines = 20) {
      const text = await readFile(logPath, "utf8").catch(() => "");
      return text.trimEnd().split("\n").slice(-lines).join("\n");
    },
  };
}

/** Runs `basecache <args>` to completion; resolves its exit code and output. */
export async function runBasecache(args: string[], env: Record<string, string> = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const res = await execa(process.execPath, ["--import", "tsx", cli, ...args], { cwd: repoRoot, env: { BASECACHE_LOG_LEVEL: "warn", ...env }, stdin: "ignore", reject: false });
  return { exitCode: res.exitCode ?? 1, stdout: res.stdout, stderr: res.stderr };
}
