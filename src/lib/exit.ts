import { ConfigError, DeadlineError, DiskFullError, FetchError, ForeignFileError, ImageRejectedError } from "./errors.js";

/** Process exit codes; see STYLE.md. */
export const ExitCode = {
  Ok: 0,
  Internal: 1,
  Usage: 2,
  Rejected: 3,
  SourceFailed: 4,
  DiskFull: 5,
  Deadline: 124,
  Forced: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The one mapping from an error to a process exit code. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof ImageRejectedError) return ExitCode.Rejected;
  if (err instanceof FetchError) return ExitCode.SourceFailed;
  if (err instanceof DiskFullError) return ExitCode.DiskFull;
  // A planted file in the base or instances dir is the node's configuration gone wrong, as a bad --base-dir is.
  if (err instanceof ConfigError || err instanceof ForeignFileError) return ExitCode.Usage;
  if (err instanceof DeadlineError) return ExitCode.Deadline;
  return ExitCode.Internal;
}

/** Ends the process with `code`; only `main.ts` files call this. */
export function exit(code: ExitCode): never {
  process.exit(code);
}
