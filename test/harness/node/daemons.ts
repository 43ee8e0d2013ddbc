/**
 * The node's daemons as detached processes: they outlive the `up` that started them (so the CLI can
 * return), are found again by pid and start time, and are stopped with a bounded grace period.
 */
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import type { DaemonRecord } from "./layout.js";

/** Field 22 (start time in clock ticks) and field 3 (state) of /proc/PID/stat, or undefined when gone. */
async function procStat(pid: number): Promise<{ startTime: string; state: string } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses; the fields after the last ")" do not.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "", startTime: fields[19] ?? "" };
  } catch {
    return undefined;
  }
}

/** Whether the process of `d` still runs (a zombie or a reused pid does not count). */
export async function alive(d: Pick<DaemonRecord, "pid" | "startTime">): Promise<boolean> {
  const s = await procStat(d.pid);
  return s !== undefined && s.state !== "Z" && s.startTime === d.startTime;
}

/** Starts `bin` detached in its own session, stdout and stderr appended to `log`. */
export async function startDaemon(name: string, bin: string, args: string[], log: string, env: Record<string, string> = {}): Promise<DaemonRecord> {
  const fd = openSync(log, "a");
  try {
    const child = spawn(bin, args, { detached: true, stdio: ["ignore", fd, fd], env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env } });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`Cannot start ${name} (${bin}): no pid`);
    child.unref();
    // A failed exec shows as an exit right away; the caller's readiness wait names the log.
    child.on("error", () => {});
    const s = await procStat(pid);
    return { name, pid, startTime: s?.startTime ?? "", log };
  } finally {
    closeSync(fd);
  }
}

/** The last `lines` lines of a daemon's log, for error messages. */
export async function logTail(d: Pick<DaemonRecord, "log" | "name">, lines = 20): Promise<string> {
  const text = await readFile(d.log, "utf8").catch(() => "");
  return `--- ${d.name} (${d.log})\n${text.split("\n").slice(-lines).join("\n")}`;
}

/** Waits until `pid` is gone or `ms` passed; resolves whether it is gone. */
async function waitGone(d: Pick<DaemonRecord, "pid" | "startTime">, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (!(await alive(d))) return true;
    await delay(100);
  }
  return !(await alive(d));
}

/**
 * SIGTERM, then SIGKILL after `graceMs`, then waits (bounded) until the process is gone.
 * @throws Error naming the process when it survives SIGKILL (stuck in the kernel).
 */
export async function stopDaemon(d: DaemonRecord, graceMs: number): Promise<void> {
  if (!(await alive(d))) return;
  process.kill(d.pid, "SIGTERM");
  if (await waitGone(d, graceMs)) return;
  process.kill(d.pid, "SIGKILL");
  if (!(await waitGone(d, 10_000))) throw new Error(`Cannot stop ${d.name} (pid ${d.pid}): it survived SIGKILL for 10 s`);
}

/** Processes whose command line contains `needle` (e.g. our containerd socket path in a shim's args). */
export async function processesWith(needle: string): Promise<{ pid: number; cmdline: string }[]> {
  const out: { pid: number; cmdline: string }[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ").trim();
    if (cmdline.includes(needle)) out.push({ pid: Number(entry), cmdline });
  }
  return out;
}

/** SIGKILLs `pids` and waits (bounded) until they are gone. */
export async function killAll(pids: number[]): Promise<void> {
  const records = [];
  for (const pid of pids) {
    const s = await procStat(pid);
    if (!s) continue;
    records.push({ pid, startTime: s.startTime });
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
  for (const r of records) await waitGone(r, 10_000);
}
