/** Flag and environment pieces shared by `basecache agent` and `basecache gc`. */
import { parseByteQuantity } from "../core/quantity.js";
import { validateBudget, type GcBudget } from "../core/watermarks.js";
import { readHeaderFacts } from "../image/header-read.js";
import { offsetClock, systemClock, type Clock } from "../lib/clock.js";
import { ConfigError } from "../lib/errors.js";
import type { DiskInspector } from "./inventory.js";

/** The process clock: system time shifted by BASECACHE_CLOCK_OFFSET_MS (tests pass retention ages with it). */
export function clockFromEnv(env: NodeJS.ProcessEnv): Clock {
  const raw = env.BASECACHE_CLOCK_OFFSET_MS;
  if (raw === undefined || raw === "") return systemClock;
  const offset = Number(raw);
  if (!Number.isSafeInteger(offset)) throw new ConfigError(`Cannot use BASECACHE_CLOCK_OFFSET_MS "${raw}": expected a whole number of milliseconds`);
  return offsetClock(offset);
}

/**
 * Parses --cache-budget, --high-watermark and --low-watermark; no budget when --cache-budget is absent.
 * @throws ConfigError on a bad value
 */
export function parseBudgetFlags(budget: string | undefined, high: string | undefined, low: string | undefined): GcBudget | undefined {
  if (budget === undefined) {
    if (high !== undefined || low !== undefined) throw new ConfigError("--high-watermark and --low-watermark need --cache-budget");
    return undefined;
  }
  try {
    return validateBudget({ limitBytes: parseByteQuantity(budget), highWatermark: fraction(high ?? "0.9", "--high-watermark"), lowWatermark: fraction(low ?? "0.8", "--low-watermark") });
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

function fraction(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) throw new ConfigError(`Cannot use ${flag} "${text}": expected a fraction such as 0.9`);
  return n;
}

// Formats that can name a backing file the header inspector does not read out.
const opaqueFormats = new Set(["qcow", "qed", "parallels"]);

/**
 * Reads an instance disk's backing and data file names from its header, with no qemu-img process.
 * @throws Error when the header may name a base that cannot be read out (the caller counts it as uncertain)
 */
export const diskInspector: DiskInspector = async (path) => {
  const facts = await readHeaderFacts(path);
  if (facts.format !== "raw" && facts.corrupt) throw new Error(`Cannot read the header of ${facts.format} disk: ${facts.corrupt}`);
  if (opaqueFormats.has(facts.format)) throw new Error(`Cannot read the backing file of ${facts.format} disk`);
  for (const name of [facts.backingFile, facts.dataFile]) {
    if (name && /^\(.*\)$/.test(name)) throw new Error(`Cannot read the referenced file name: ${name}`);
  }
  return { ...(facts.backingFile ? { backingFile: facts.backingFile } : {}), ...(facts.dataFile ? { dataFile: facts.dataFile } : {}) };
};
