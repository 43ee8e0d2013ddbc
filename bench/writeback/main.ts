/**
 * bench/writeback: how many dirty pages does a fetch leave in the node's memory, with write-back (the default
 * 32 MiB interval, or --interval) against the same fetch with write-back off (the baseline), measured in the
 * same process on the same loopback origin? And what does it cost in wall time?
 *
 * Each fetch is `fetchImage` of a 2 GiB raw image of random data (the same as qcow2, and as zstd) into a base dir under
 * /var/tmp (a real disk: tmpfs pages are never dirty), while a worker thread samples /proc/meminfo every 50 ms
 * (Dirty + Writeback). The figures are system-wide, so the bench syncs and waits for the counters to settle
 * before each fetch and reports the peak above that starting level; variants are interleaved so a burst of
 * someone else's writes on the shared machine hits both alike. With write-back off, a raw or qcow2 download
 * still takes its resume checkpoints (an fdatasync per 32 MiB, not waited for); a zstd one takes none (a
 * compressed download restarts rather than resumes), so it shows a download with no discipline at all.
 *
 * Run: node --import tsx bench/writeback/main.ts [--reps N] [--size-mib N] [--interval SIZE] [--sources raw,qcow2,zstd]
 * Needs about 4 x size of free space under /var/tmp; everything is removed at the end.
 */
import { execa } from "execa";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { parseByteQuantity } from "../../src/core/quantity.js";
import { DefaultWriteBackBytes } from "../../src/core/write-back.js";
import { fetchImage, type FetchResult } from "../../src/image/pipeline.js";
import { Origin } from "../../test/harness/origin.js";
import { samplerSource, type Level } from "./sampler.js";

const MiB = 1024 * 1024;
const { values } = parseArgs({ options: { reps: { type: "string", default: "3" }, "size-mib": { type: "string", default: "2048" }, interval: { type: "string", default: `${DefaultWriteBackBytes}` }, sources: { type: "string", default: "raw,qcow2,zstd" } } });
const only = new Set(values.sources.split(","));
const reps = Number(values.reps);
const sizeMiB = Number(values["size-mib"]);
const interval = parseByteQuantity(values.interval);
const sampleMs = 50;
const log = (s: string) => process.stderr.write(s + "\n");
let cgroupPath: string | undefined;

class Sampler {
  private readonly worker = new Worker(samplerSource, { eval: true, workerData: { sampleMs } });
  private ask<T>(cmd: string): Promise<T> {
    return new Promise((resolve) => {
      this.worker.once("message", resolve);
      this.worker.postMessage(cmd);
    });
  }
  now(): Promise<Level> {
    return this.ask("now");
  }
  start(): void {
    this.worker.postMessage("start");
  }
  stop(): Promise<{ peak: Level; samples: number; cgroup: string | null }> {
    return this.ask("stop");
  }
  close(): Promise<number> {
    return this.worker.terminate();
  }
}

interface Run {
  seconds: number;
  /** Peak Dirty + Writeback during the fetch, above the level when it started. */
  peakAbove: number;
  peak: number;
  start: number;
  /** The same for the memory cgroup the bench runs in (this session's processes, not other jobs on the machine). */
  peakCgAbove: number;
  samples: number;
  result: FetchResult;
}

/** Flushes everyone's dirty pages and waits (bounded) until the counters are low, so each fetch starts alike. */
async function settle(sampler: Sampler): Promise<Level> {
  let level: Level = { sys: 0, cg: 0 };
  for (let i = 0; i < 20; i++) {
    await execa("sync");
    level = await sampler.now();
    if (level.sys < 16 * MiB) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return level;
}

async function fetchOnce(sampler: Sampler, dir: string, id: string, url: string, sha: string, writeBackBytes: number): Promise<Run> {
  await mkdir(dir, { recursive: true });
  const start = await settle(sampler);
  sampler.start();
  const t0 = performance.now();
  const result = await fetchImage({ baseDir: dir, id, source: { http: { url } }, checksum: sha, writeBackBytes });
  const seconds = (performance.now() - t0) / 1000;
  const { peak, samples, cgroup } = await sampler.stop();
  if (cgroup) cgroupPath = cgroup;
  await rm(dir, { recursive: true, force: true });
  return { seconds, peak: peak.sys, start: start.sys, peakAbove: Math.max(0, peak.sys - start.sys), peakCgAbove: Math.max(0, peak.cg - start.cg), samples, result };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const mib = (n: number) => (n / MiB).toFixed(0);

async function main(): Promise<void> {
  await mkdir("/var/tmp", { recursive: true });
  const work = await mkdtemp("/var/tmp/basecache-bench-wb-");
  const origin = await Origin.start();
  const sampler = new Sampler();
  try {
    log(`Building a ${sizeMiB} MiB raw image of random data and its qcow2 form`);
    const raw = join(work, "disk.raw");
    await execa("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", `count=${sizeMiB}`, "status=none"]);
    const qcow2 = join(work, "disk.qcow2");
    await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2]);
    const zst = join(work, "disk.raw.zst");
    await execa("zstd", ["-q", "-1", "-T1", raw, "-o", zst]);
    const sha = async (p: string) => `sha256:${(await execa("sha256sum", [p])).stdout.split(" ")[0] ?? ""}`;
    const sources = {
      raw: { url: origin.serve("/disk.raw", { file: raw }), sha: await sha(raw) },
      qcow2: { url: origin.serve("/disk.qcow2", { file: qcow2 }), sha: await sha(qcow2) },
      // The checksum of a compressed source is over the decoded bytes.
      zstd: { url: origin.serve("/disk.raw.zst", { file: zst }), sha: await sha(raw) },
    };
    const rows: string[] = [];
    for (const [kind, src] of Object.entries(sources).filter(([k]) => only.has(k))) {
      const runs: Record<"off" | "on", Run[]> = { off: [], on: [] };
      for (let i = 0; i < reps; i++) {
        // Interleaved, and the order flips each round, so neither variant always follows the other's writes.
        const order: ("off" | "on")[] = i % 2 === 0 ? ["off", "on"] : ["on", "off"];
        for (const v of order) {
          const r = await fetchOnce(sampler, join(work, `${kind}-${v}-${i}`), `${kind}-${v}-${i}`, src.url, src.sha, v === "on" ? interval : 0);
          const wb = r.result.writeBack;
          log(`  ${kind} write-back ${v}: ${r.seconds.toFixed(2)} s, peak Dirty+Writeback ${mib(r.peak)} MiB (${mib(r.peakAbove)} above the start's ${mib(r.start)} MiB, ${r.samples} samples; cgroup ${mib(r.peakCgAbove)} MiB), syncs ${wb?.syncs}, holds ${wb?.holds}, peak unsynced ${mib(wb?.peakUnsyncedBytes ?? 0)} MiB`);
          runs[v].push(r);
        }
      }
      const peakOff = median(runs.off.map((r) => r.peakAbove));
      const peakOn = median(runs.on.map((r) => r.peakAbove));
      const cgOff = median(runs.off.map((r) => r.peakCgAbove));
      const cgOn = median(runs.on.map((r) => r.peakCgAbove));
      const tOff = median(runs.off.map((r) => r.seconds));
      const tOn = median(runs.on.map((r) => r.seconds));
      const cg = cgroupPath ? ` ${mib(cgOff)} → ${mib(cgOn)} MiB (**${(cgOn / cgOff).toFixed(3)}**) |` : " - |";
      rows.push(`| ${kind} | ${mib(peakOff)} MiB | ${mib(peakOn)} MiB | **${(peakOn / peakOff).toFixed(3)}** |${cg} ${tOff.toFixed(2)} s | ${tOn.toFixed(2)} s | **${(tOn / tOff).toFixed(2)}** |`);
    }
    process.stdout.write(
      [
        `| source | peak dirty, write-back off | peak dirty, ${mib(interval)} MiB write-back | ratio | cgroup's peak dirty, off → on (ratio) | time off | time on | ratio |`,
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ...rows,
        "",
        `Image: ${sizeMiB} MiB of random data (raw, qcow2 of it, zstd -1 of it); ${reps} reps each, interleaved, medians; peak of /proc/meminfo Dirty + Writeback sampled every ${sampleMs} ms, above the level at the fetch's start (and the bench's memory cgroup's dirty + writeback, ${cgroupPath ?? "not readable"}); base dir under /var/tmp; load average ${loadavg()[0]?.toFixed(1)}.`,
      ].join("\n") + "\n",
    );
  } finally {
    await sampler.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
