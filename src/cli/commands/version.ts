import { readFile } from "node:fs/promises";
import { ExitCode } from "../../lib/exit.js";
import type { Command } from "../command.js";

/** Prints the basecache version. */
export const versionCommand: Command = async (_argv, ctx) => {
  const pkg = JSON.parse(await readFile(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  ctx.stdout.write(`basecache ${pkg.version}\n`);
  return ExitCode.Ok;
};
