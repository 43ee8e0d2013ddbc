import { readFile } from "node:fs/promises";
import { ExitCode } from "../../lib/exit.js";
import type { Command } from "../command.js";
import { parseFlags, renderHelp, type CommandSpec } from "../flags.js";

const spec: CommandSpec<Record<string, never>> = { name: "version", synopsis: "", description: "Prints the basecache version.", flags: {} };

// The package root is three levels up from src/cli/commands and four from dist/src/cli/commands.
async function readPackageVersion(): Promise<string> {
  for (const up of ["../../../package.json", "../../../../package.json"]) {
    try {
      const pkg = JSON.parse(await readFile(new URL(up, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "basecache" && pkg.version) return pkg.version;
    } catch {
      // Not there from this layout; try the other.
    }
  }
  return "unknown";
}

/** Prints the basecache version. */
export const versionCommand: Command = async (argv, ctx) => {
  if (parseFlags(argv, spec) === "help") {
    ctx.stdout.write(renderHelp(spec));
    return ExitCode.Ok;
  }
  ctx.stdout.write(`basecache ${await readPackageVersion()}\n`);
  return ExitCode.Ok;
};
