/**
 * The check every directory flag (`--base-dir`, `--instances-dir`) gets before a command uses it: the path is a
 * directory (a symlink to one is fine: an operator may have put `_base` on another disk), or nothing yet. A file,
 * a FIFO or a path through a file is a usage error (exit 2) that names the flag and the path, not an EEXIST or
 * ENOTDIR from deep inside a fetch.
 */
import { stat } from "node:fs/promises";
import { ConfigError } from "../lib/errors.js";

/**
 * Checks each `flag -> path`.
 * @throws ConfigError when a path is there and is not a directory
 */
export async function checkDirFlags(dirs: Readonly<Record<string, string>>): Promise<void> {
  for (const [flag, path] of Object.entries(dirs)) {
    const what = await describeNonDir(path);
    if (what) throw new ConfigError(`Cannot use --${flag} "${path}": ${what}, not a directory`);
  }
}

async function describeNonDir(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    if (st.isDirectory()) return undefined;
    if (st.isFile()) return "it is a file";
    if (st.isFIFO()) return "it is a FIFO";
    if (st.isSocket()) return "it is a socket";
    return "it is a device";
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined; // created when needed
    if (code === "ENOTDIR") return "a component of the path is a file";
    if (code === "ELOOP") return "it is a symlink loop";
    throw e;
  }
}
