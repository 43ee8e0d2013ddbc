/**
 * `basecache disk create --base-dir DIR --id ID --out PATH [--size SIZE] [--copy] [--json]`: a qcow2 overlay
 * backed by the raw base (or a full raw copy with --copy).
 * `basecache disk inspect PATH [--format qcow2|raw] [--json]`: which base an instance disk uses.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { formatBytes, parseByteQuantity } from "../../core/quantity.js";
import { ConfigError } from "../../lib/errors.js";
import { ExitCode } from "../../lib/exit.js";
import { createInstanceDisk, inspectInstanceDisk } from "../../image/instance-disk.js";
import type { Command, CommandContext } from "../command.js";

const usage = `Usage: basecache disk create --base-dir DIR --id ID --out PATH [--size SIZE] [--copy] [--json]
       basecache disk inspect PATH [--format qcow2|raw] [--json]

create   makes a qcow2 overlay backed by the base of ID (backing format raw), grown to SIZE when given;
         --copy makes a full raw copy instead (reflink where the filesystem allows). SIZE: bytes or 10Gi.
inspect  prints which base an instance disk uses, read from its header (the format is never probed by qemu-img).`;

type Options = Record<string, { type: "string" | "boolean"; default?: boolean }>;

function parse(argv: string[], options: Options): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const all: Options = { ...options, json: { type: "boolean", default: false }, help: { type: "boolean", default: false } };
    const { values, positionals } = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n\n${usage}`);
  }
}

async function create(argv: string[], ctx: CommandContext): Promise<ExitCode> {
  const { values, positionals } = parse(argv, { "base-dir": { type: "string" }, id: { type: "string" }, out: { type: "string" }, size: { type: "string" }, copy: { type: "boolean", default: false } });
  if (values.help) return help(ctx);
  const str = (k: string) => {
    const v = values[k];
    if (typeof v !== "string" || v === "") throw new ConfigError(`missing --${k}\n\n${usage}`);
    return v;
  };
  if (positionals.length) throw new ConfigError(`unexpected argument "${positionals[0]}"\n\n${usage}`);
  let size: number | undefined;
  const sizeText = values.size;
  if (typeof sizeText === "string") {
    try {
      size = parseByteQuantity(sizeText);
    } catch (e) {
      throw new ConfigError(`--size: ${(e as Error).message}`);
    }
  }
  const disk = await createInstanceDisk({
    baseDir: resolve(str("base-dir")),
    id: str("id"),
    out: str("out"),
    ...(size === undefined ? {} : { size }),
    copy: values.copy === true,
    signal: ctx.signal,
    log: ctx.log,
  });
  if (values.json) ctx.stdout.write(JSON.stringify(disk) + "\n");
  else ctx.stdout.write(`Created ${disk.format === "raw" ? "raw copy" : "qcow2 overlay"} ${disk.path} (${formatBytes(disk.virtualSize)}) of base ${disk.baseName}\n`);
  return ExitCode.Ok;
}

async function inspect(argv: string[], ctx: CommandContext): Promise<ExitCode> {
  const { values, positionals } = parse(argv, { format: { type: "string" } });
  if (values.help) return help(ctx);
  if (positionals.length !== 1) throw new ConfigError(`give exactly one disk path\n\n${usage}`);
  const format = values.format;
  if (format !== undefined && format !== "qcow2" && format !== "raw") throw new ConfigError(`--format must be qcow2 or raw, not "${String(format)}"`);
  const path = resolve(positionals[0] ?? "");
  const info = await inspectInstanceDisk(path, format as "qcow2" | "raw" | undefined);
  if (values.json) ctx.stdout.write(JSON.stringify({ path, ...info }) + "\n");
  else if (info.baseName) ctx.stdout.write(`${path}: ${info.format} overlay of base ${info.baseName} (${info.backingFile ?? ""})\n`);
  else if (info.backingFile) ctx.stdout.write(`${path}: ${info.format} backed by ${info.backingFile}, not a base\n`);
  else ctx.stdout.write(`${path}: ${info.format}, uses no base\n`);
  return ExitCode.Ok;
}

function help(ctx: CommandContext): ExitCode {
  ctx.stdout.write(usage + "\n");
  return ExitCode.Ok;
}

/** Runs `basecache disk create|inspect`. */
export const diskCommand: Command = async (argv, ctx) => {
  const [sub, ...rest] = argv;
  if (sub === "create") return create(rest, ctx);
  if (sub === "inspect") return inspect(rest, ctx);
  if (sub === "--help" || sub === "-h" || sub === "help") return help(ctx);
  throw new ConfigError(`unknown subcommand "${sub ?? ""}"\n\n${usage}`);
};
