/**
 * One fetch in a fresh process, for bench/fetch/main.ts: runs fetchImage and prints its result with the
 * process's peak RSS. Usage: child.ts BASE_DIR ID URL
 */
import { performance } from "node:perf_hooks";
import { fetchImage } from "../../src/image/pipeline.js";

const [baseDir = "", id = "", url = ""] = process.argv.slice(2);
const started = performance.now();
let converting: number | undefined;
const r = await fetchImage({
  baseDir,
  id,
  source: { http: { url } },
  onProgress: (p) => {
    if (p.phase === "Converting") converting ??= performance.now();
  },
});
const seconds = (performance.now() - started) / 1000;
const untilConvert = converting === undefined ? undefined : (converting - started) / 1000;
process.stdout.write(JSON.stringify({ seconds, untilConvert, allocatedBytes: r.allocatedBytes, format: r.format, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n");
