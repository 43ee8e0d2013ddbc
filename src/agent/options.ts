/** Pieces shared by `basecache agent` and `basecache gc`. */
import { readHeaderFacts } from "../image/header-read.js";
import type { DiskInspector } from "./inventory.js";

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
