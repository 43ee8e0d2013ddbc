import type { Logger } from "../lib/log.js";
import type { ExitCode } from "../lib/exit.js";

/** What every CLI command gets from `main.ts`. */
export interface CommandContext {
  /** Aborted on the first SIGTERM/SIGINT; a command stops its work, rolls back and returns. */
  signal: AbortSignal;
  log: Logger;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/**
 * A CLI command: parses its own argv (after the command name) and returns an exit code. It throws
 * `ConfigError` for usage errors and the classes of `lib/errors.ts` for the rest; `main.ts` maps them.
 */
export type Command = (argv: string[], ctx: CommandContext) => Promise<ExitCode>;
