import { AbortedError, ConfigError, asError } from "../lib/errors.js";
import { ExitCode, exit, exitCodeFor } from "../lib/exit.js";
import { createRootLogger } from "../lib/log.js";
import type { Command, CommandContext } from "./command.js";

// Loaded on demand so that `basecache fetch` does not pay for the kube client's start-up.
const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {};

/** Registers a command; each commands/<name>.ts file is listed once below. */
function register(name: string, summary: string, load: () => Promise<Command>): void {
  commands[name] = { summary, load };
}

register("version", "Print the basecache version", async () => (await import("./commands/version.js")).versionCommand);
register("fetch", "Fetch an image and store it as a safe raw base", async () => (await import("./commands/fetch.js")).fetchCommand);
register("disk", "Create an instance disk on a base, or say which base a disk uses", async () => (await import("./commands/disk.js")).diskCommand);
register("agent", "Run the node agent: mirror this node's NodeImageCache, report progress, collect garbage", async () => (await import("./commands/agent.js")).agentCommand);
register("gc", "Collect garbage in a base dir once, on demand", async () => (await import("./commands/gc.js")).gcCommand);
register("controller", "Fan ImageCaches out to NodeImageCaches and roll status up", async () => (await import("./commands/controller.js")).controllerCommand);

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return ["Usage: basecache <command> [flags]", "", "Commands:", ...lines, "", "Run `basecache <command> --help` for its flags."].join("\n");
}

async function main(argv: string[]): Promise<ExitCode> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name ? ExitCode.Ok : ExitCode.Usage;
  }
  const entry = commands[name];
  if (!entry) {
    process.stderr.write(`basecache: Cannot run "${name}": no such command\n\n${usage()}\n`);
    return ExitCode.Usage;
  }
  const log = createRootLogger(name);
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info({ signal: sig }, "Received signal, stopping");
      controller.abort(new AbortedError(`Received ${sig}`));
    } else {
      log.warn({ signal: sig }, "Received second signal, forcing stop");
      exit(ExitCode.Forced);
    }
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const ctx: CommandContext = { signal: controller.signal, log, stdout: process.stdout, stderr: process.stderr, env: process.env };
  try {
    const command = await entry.load();
    return await command(rest, ctx);
  } catch (e) {
    const err = asError(e);
    const code = exitCodeFor(err);
    if (err instanceof ConfigError) {
      process.stderr.write(`basecache ${name}: ${err.message}\n`);
    } else if (code === ExitCode.Internal) {
      log.error({ err }, "Command failed");
      process.stderr.write(`basecache ${name}: ${err.message}\n`);
    } else {
      process.stderr.write(`basecache ${name}: ${err.message}\n`);
    }
    return code;
  }
}

// Flush stdout before exiting so that piped `--json` output is never cut short.
const code = await main(process.argv.slice(2));
process.stdout.write("", () => exit(code));
