/**
 * One fetch in a fresh process, for bench/fetch/main.ts: runs fetchImage and prints its result with the
 * process's peak RSS, how long the process took to get here (the parent times the whole process), and its CPU
 * seconds (its own threads plus the qemu-img and decompressor processes it ran) when the conversion started and
 * at the end. Usage: child.ts BASE_DIR ID URL [CHECKSUM]
 */
import { performance } from "node:perf_hooks";
import { fetchImage } from "../../src/image/pipeline.js";
import { ownCpuSeconds, reapedChildrenCpuSeconds } from "./cpu.js";

const startupSeconds = performance.now() / 1000;
const [baseDir = "", id = "", url = "", checksum = ""] = process.argv.slice(2);
const started = performance.now();
let converting: number | undefined;
let cpuUntilConvert: number | undefined;
const r = await fetchImage({
  baseDir,
  id,
  source: { http: { url } },
  ...(checksum ? { checksum } : {}),
  onProgress: (p) => {
    if (p.phase !== "Converting" || converting !== undefined) return;
    converting = performance.now();
    // Download, hashing, the decompressor (reaped when the body closed) and the inspections done, nothing converted.
    cpuUntilConvert = ownCpuSeconds() + reapedChildrenCpuSeconds();
  },
});
const seconds = (performance.now() - started) / 1000;
const untilConvert = converting === undefined ? undefined : (converting - started) / 1000;
process.stdout.write(
  JSON.stringify({
    seconds,
    startupSeconds,
    untilConvert,
    cpuUntilConvert,
    cpuSelf: ownCpuSeconds(),
    cpuChildren: reapedChildrenCpuSeconds(),
    allocatedBytes: r.allocatedBytes,
    format: r.format,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  }) + "\n",
);
