/**
 * One fetch in a fresh process, for bench/fetch/main.ts: runs fetchImage and prints its result with the
 * process's peak RSS and how long the process took to get here (the parent times the whole process).
 * Usage: child.ts BASE_DIR ID URL [CHECKSUM]
 */
import { performance } from "node:perf_hooks";
import { fetchImage } from "../../src/image/pipeline.js";

const startupSeconds = performance.now() / 1000;
const [baseDir = "", id = "", url = "", checksum = ""] = process.argv.slice(2);
const started = performance.now();
let converting: number | undefined;
const r = await fetchImage({
  baseDir,
  id,
  source: { http: { url } },
  ...(checksum ? { checksum } : {}),
  onProgress: (p) => {
    if (p.phase === "Converting") converting ??= performance.now();
  },
});
const seconds = (performance.now() - started) / 1000;
const untilConvert = converting === undefined ? undefined : (converting - started) / 1000;
process.stdout.write(
  JSON.stringify({ seconds, startupSeconds, untilConvert, allocatedBytes: r.allocatedBytes, format: r.format, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n",
);
