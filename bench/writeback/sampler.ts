/**
 * The sampler thread of bench/writeback: Dirty + Writeback of /proc/meminfo (the node) and of the memory cgroup
 * this process runs in, every `sampleMs` ms. On its own thread because the fetch keeps the main event loop
 * busy, and a late timer would miss peaks. Plain JavaScript run with `eval` (as image/hasher.ts runs its
 * worker): a worker does not get the tsx loader.
 */

/** Bytes dirty or under writeback, for the node and for our cgroup. */
export interface Level {
  sys: number;
  cg: number;
}

export const samplerSource = String.raw`
const { readFileSync } = require("node:fs");
const { parentPort, workerData } = require("node:worker_threads");

function cgroupStatPath() {
  const lines = readFileSync("/proc/self/cgroup", "utf8").split("\n");
  const v1 = lines.find((l) => l.split(":")[1] === "memory")?.split(":")[2];
  const v2 = lines.find((l) => l.startsWith("0::"))?.split(":")[2];
  for (const p of [v1 === undefined ? undefined : "/sys/fs/cgroup/memory" + v1 + "/memory.stat", v2 === undefined ? undefined : "/sys/fs/cgroup" + v2 + "/memory.stat"]) {
    if (p === undefined) continue;
    try {
      readFileSync(p, "utf8");
      return p;
    } catch {}
  }
  return undefined;
}
const cgroupStat = cgroupStatPath();

function read() {
  const m = readFileSync("/proc/meminfo", "utf8");
  const kb = (k) => Number(new RegExp("^" + k + ":\\s+(\\d+) kB", "m").exec(m)?.[1] ?? 0);
  let cg = 0;
  if (cgroupStat) {
    // cgroup v1 names them dirty and writeback, v2 file_dirty and file_writeback; bytes in both.
    const c = readFileSync(cgroupStat, "utf8");
    const b = (k) => Number(new RegExp("^" + k + " (\\d+)$", "m").exec(c)?.[1] ?? 0);
    cg = b("dirty") + b("writeback") + b("file_dirty") + b("file_writeback");
  }
  return { sys: (kb("Dirty") + kb("Writeback")) * 1024, cg };
}

let peak = { sys: 0, cg: 0 };
let samples = 0;
let timer;
const sample = () => {
  const r = read();
  peak = { sys: Math.max(peak.sys, r.sys), cg: Math.max(peak.cg, r.cg) };
  samples++;
};
parentPort.on("message", (cmd) => {
  if (cmd === "now") parentPort.postMessage(read());
  else if (cmd === "start") {
    peak = { sys: 0, cg: 0 };
    samples = 0;
    timer = setInterval(sample, workerData.sampleMs);
  } else if (cmd === "stop") {
    clearInterval(timer);
    sample();
    parentPort.postMessage({ peak, samples, cgroup: cgroupStat ?? null });
  }
});
`;
