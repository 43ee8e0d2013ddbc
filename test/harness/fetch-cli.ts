/** Runs `basecache fetch` / `basecache disk` as a child process, the way operators and the acceptance run do. */
import { execa, type ResultPromise } from "execa";
import { readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** The JSON object `basecache fetch --json` prints. */
export interface FetchJson {
  id: string;
  base: string;
  path: string;
  status: "ready" | "rejected" | "failed";
  reason: string;
  message: string;
  format: string | null;
  virtualSize: number | null;
  bytesDownloaded: number | null;
  sha256: string | null;
  seconds: number;
  cached?: boolean;
  allocatedBytes?: number;
}

/** Test-friendly retry and timeout settings. */
export const FastRetryEnv = { BASECACHE_FETCH_RETRY_BASE_MS: "50", BASECACHE_FETCH_RETRY_MAX_MS: "200", BASECACHE_FETCH_IDLE_TIMEOUT_MS: "1500", BASECACHE_LOG_LEVEL: "warn" };

/** Starts `basecache <args>`; await it for the result. */
export function startCli(args: string[], env: Record<string, string> = {}): ResultPromise<{ reject: false; cwd: string; env: Record<string, string> }> {
  return execa(process.execPath, ["--import", "tsx", main, ...args], { reject: false, cwd: root, env: { ...FastRetryEnv, ...env } });
}

/** Runs `basecache fetch --json` and returns exit code and parsed output. */
export async function runFetch(args: string[], env: Record<string, string> = {}): Promise<{ code: number; json: FetchJson; stderr: string }> {
  const r = await startCli(["fetch", "--json", ...args], env);
  let json: FetchJson;
  try {
    json = JSON.parse(r.stdout) as FetchJson;
  } catch {
    throw new Error(`basecache fetch printed no JSON (exit ${r.exitCode}): stdout=${r.stdout} stderr=${r.stderr}`);
  }
  return { code: r.exitCode ?? -1, json, stderr: r.stderr };
}

/** Names in `dir` that start with `prefix` (the base name of an id). */
export async function filesStartingWith(dir: string, prefix: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(prefix) || n.startsWith(`.${prefix}`));
}
