/**
 * CPU time of processes, for bench/fetch: this process's own (`process.cpuUsage`, every thread) and that of its
 * children that have been waited for, with their own waited-for descendants (fields 16 and 17 of
 * /proc/self/stat, what getrusage(RUSAGE_CHILDREN) reports; node has no call for it).
 */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat; 100 on every Linux this runs on, set from `getconf CLK_TCK` by the bench. */
export const clockTicks = Number(process.env.BENCH_CLK_TCK ?? "100");

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces), from field 3 (state) on. */
function statFields(pid: number | "self"): string[] {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}

/** User + system seconds of the reaped children of this process (and of their reaped descendants). */
export function reapedChildrenCpuSeconds(): number {
  const f = statFields("self");
  return (Number(f[13]) + Number(f[14])) / clockTicks;
}

/** User + system seconds of a running process `pid` itself (its own threads, not its children). */
export function processCpuSeconds(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / clockTicks;
}

/** User + system seconds of this process itself, every thread included. */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
