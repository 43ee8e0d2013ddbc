/**
 * The one flag parser of the CLI commands. A command declares its flags once, each with its help and its
 * default; the same table parses argv and prints `--help`, so the help cannot show a default the code does
 * not use. Bad flags are usage errors (ConfigError, exit 2) in the house wording.
 */
import { parseArgs } from "node:util";
import { parseDuration } from "../core/duration.js";
import { parseByteQuantity } from "../core/quantity.js";
import { validateBudget, type GcBudget } from "../core/watermarks.js";
import { ConfigError } from "../lib/errors.js";
import { parseListenAddress } from "../lib/health.js";

export interface FlagSpec {
  type: "string" | "boolean";
  /** What the value is, in the help: DIR, DUR, SIZE. */
  value?: string;
  /** Used when the flag is absent, and shown in the help. */
  default?: string;
  /** Shown in the help as the default when it is not a plain value (`$NODE_NAME`). */
  defaultText?: string;
  /** One line, or several separated by "\n". */
  help: string;
  short?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface CommandSpec<S extends FlagSpecs> {
  /** The command's words after `basecache`, e.g. "disk create". */
  name: string;
  /** The synopsis after `Usage: basecache <name>`. */
  synopsis: string;
  /** What the command does, in a sentence or two. */
  description: string;
  flags: S;
  /** Text after the flags: exit codes, environment. */
  footer?: string;
  /** Whether the command takes positional arguments. */
  positionals?: boolean;
}

type FlagValue<F extends FlagSpec> = F extends { type: "boolean" } ? boolean : F extends { default: string } ? string : string | undefined;
export type FlagValues<S extends FlagSpecs> = { [K in keyof S]: FlagValue<S[K]> };

export interface ParsedFlags<S extends FlagSpecs> {
  values: FlagValues<S>;
  positionals: string[];
  /** The flags given on the command line (as opposed to defaulted). */
  given: ReadonlySet<keyof S & string>;
}

const HelpColumn = 28;

/** The `--help` text of a command, flags and their defaults included. */
export function renderHelp<S extends FlagSpecs>(spec: CommandSpec<S>): string {
  const lines = [`Usage: basecache ${spec.name}${spec.synopsis ? ` ${spec.synopsis}` : ""}`, "", spec.description, "", "Flags:"];
  for (const [name, f] of Object.entries(spec.flags)) {
    const left = `  --${name}${f.value ? ` ${f.value}` : ""}`;
    const shown = f.defaultText ?? (f.default === undefined ? undefined : f.default === "" ? '""' : f.default);
    const help = f.help.split("\n");
    if (shown !== undefined) help[0] += ` (default: ${shown})`;
    lines.push(left.length < HelpColumn ? left.padEnd(HelpColumn) + help[0] : `${left}\n${" ".repeat(HelpColumn)}${help[0]}`);
    for (const more of help.slice(1)) lines.push(" ".repeat(HelpColumn) + more);
  }
  lines.push(`  --help${" ".repeat(HelpColumn - 8)}print this help`);
  if (spec.footer) lines.push("", spec.footer);
  return lines.join("\n") + "\n";
}

/**
 * Parses argv against the command's flags; "help" when --help was given.
 * @throws ConfigError on an unknown flag, a missing value or an unexpected argument
 */
export function parseFlags<S extends FlagSpecs>(argv: string[], spec: CommandSpec<S>): ParsedFlags<S> | "help" {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const [name, f] of Object.entries(spec.flags)) options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: spec.positionals ?? false });
  } catch (e) {
    throw usageError(spec, describeParseError(e as Error));
  }
  if (parsed.values.help) return "help";
  const values: Record<string, unknown> = {};
  const given = new Set<keyof S & string>();
  for (const [name, f] of Object.entries(spec.flags)) {
    const v = parsed.values[name];
    if (v !== undefined) given.add(name);
    values[name] = v ?? (f.type === "boolean" ? false : f.default);
  }
  return { values: values as FlagValues<S>, positionals: parsed.positionals, given };
}

// node:util's messages name the flag but read like stack traces ("Unknown option '--x'. To specify a positional
// argument starting with a '-', place it at the end of the command after '--', as in '-- \"--x\"").
function describeParseError(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  const flag = /'(-[^']*)'/.exec(e.message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && flag) return `unknown flag "${flag}"`;
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") return `unexpected argument ${/'([^']*)'/.exec(e.message)?.[0]?.replace(/'/g, '"') ?? ""}`.trim();
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && flag) return e.message.includes("argument missing") ? `${flag.split(" ")[0]} needs a value` : `${flag.split(" ")[0]} takes no value`;
  return e.message;
}

/** A usage error of `spec`'s command: the detail, then where to find the flags. */
export function usageError<S extends FlagSpecs>(spec: CommandSpec<S>, detail: string): ConfigError {
  return new ConfigError(`Cannot parse flags: ${detail}\nRun "basecache ${spec.name} --help" for the flags.`);
}

/**
 * The value of a flag that must be given (a flag's environment fallback goes in `fallback`).
 * @throws ConfigError when it is absent or empty
 */
export function requireFlag<S extends FlagSpecs>(spec: CommandSpec<S>, name: keyof S & string, value: string | undefined, fallback?: string): string {
  const v = value || fallback;
  if (!v) throw usageError(spec, `--${name} is required`);
  return v;
}

/** The detail of a house-worded message ("Cannot parse duration "x": detail" -> "detail"). */
function detailOf(message: string): string {
  return message.replace(/^Cannot [^":]*(?:"[^"]*")?[^":]*: /, "");
}

/** Parses a flag's value, or throws a usage error naming the flag; `flag` is "--name" or "NAME" (a variable). */
export function flagValue<T>(flag: string, text: string, parse: (text: string) => T): T {
  try {
    return parse(text);
  } catch (e) {
    throw new ConfigError(`Cannot use ${flag} "${text}": ${detailOf((e as Error).message)}`, { cause: e });
  }
}

/** A duration flag (`90s`, `40m`) in milliseconds, at least `minMs`. @throws ConfigError */
export function durationFlag(name: string, text: string, minMs = 0): number {
  const ms = flagValue(`--${name}`, text, parseDuration);
  if (ms < minMs) throw new ConfigError(`Cannot use --${name} "${text}": at least ${minMs / 1000}s`);
  return ms;
}

/** A byte quantity flag (`10Gi`, `500M`, bytes). @throws ConfigError */
export function bytesFlag(name: string, text: string): number {
  return flagValue(`--${name}`, text, parseByteQuantity);
}

/** A whole number flag from `min` to `max`. @throws ConfigError */
export function intFlag(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) throw new ConfigError(`Cannot use --${name} "${text}": expected a whole number from ${min} to ${max}`);
  return n;
}

/** A listen address flag (`:8080`, `127.0.0.1:0`); "" serves nothing. @throws ConfigError */
export function addressFlag(name: string, text: string): string | undefined {
  if (text === "") return undefined;
  flagValue(`--${name}`, text, parseListenAddress);
  return text;
}

/** The watermarks of a cache budget whose flags name none. */
export const DefaultHighWatermark = 0.9;
export const DefaultLowWatermark = 0.8;

/**
 * Parses --cache-budget, --high-watermark and --low-watermark (`basecache agent` and `basecache gc`); no
 * budget when --cache-budget is absent.
 * @throws ConfigError on a bad value
 */
export function budgetFlags(budget: string | undefined, high: string | undefined, low: string | undefined): GcBudget | undefined {
  if (budget === undefined) {
    if (high !== undefined || low !== undefined) throw new ConfigError("Cannot use --high-watermark or --low-watermark: they need --cache-budget");
    return undefined;
  }
  const limitBytes = bytesFlag("cache-budget", budget);
  const highWatermark = fractionFlag("high-watermark", high ?? String(DefaultHighWatermark));
  const lowWatermark = fractionFlag("low-watermark", low ?? String(DefaultLowWatermark));
  return flagValue("--cache-budget", budget, () => validateBudget({ limitBytes, highWatermark, lowWatermark }));
}

function fractionFlag(name: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) throw new ConfigError(`Cannot use --${name} "${text}": expected a fraction such as 0.9`);
  return n;
}
